//! # xdp_pingpong — answer pings in the driver (talk step 5)
//!
//! Turns every ICMP and ICMPv6 echo request that arrives on an interface into the
//! echo reply, right in the driver, and sends it back out with `XDP_TX`. The
//! kernel's network stack never sees the ping: no socket buffer, no routing, no
//! ICMP code. Everything else passes untouched.
//!
//! Hook: XDP (`SEC("xdp")`) through a bpf_link: nothing stays attached after exit.
//!
//! Try it in the lab (`make lab` prints the commands): run it on `veth-server`, turn
//! the server kernel's own replies off, and ping from the client: the answers now
//! come from this program. On veth, the peer needs an XDP program too (the lab has
//! one) or XDP_TX frames are dropped.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF, an interface with XDP support.

use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::echo::{print_pingpong_summary, EchoEvent, EchoTable};
use ebpf_workshop::net::{attach_xdp, guard_default_route, interface, XdpOptions};
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::ring::RingReader;
use ebpf_workshop::skel::xdp_pingpong::XdpPingpongSkelBuilder;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// Answer pings (ICMP/ICMPv6 echo requests) with XDP_TX, bypassing the kernel stack.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/xdp_pingpong veth-server"
)]
struct Args {
    /// Interface to answer pings on (`ip link` lists them).
    iface: String,
    #[command(flatten)]
    xdp: XdpOptions,
    /// No line per ping, only the summary at exit (for floods and benchmarks).
    #[arg(long)]
    quiet: bool,
    /// Run even on the interface that carries the default route.
    #[arg(long)]
    force: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    guard_default_route(&iface, args.force, "answer pings in place of the kernel")?;

    let mut storage = MaybeUninit::uninit();
    let open =
        XdpPingpongSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let skel = open.load().context("loading the XDP program into the kernel")?;
    let _link = attach_xdp(&skel.progs.xdp_pingpong, &iface, &args.xdp)?;

    let pings = EchoTable::showing_rows(!args.quiet);
    let summary =
        RingReader::new(&skel.maps.events, &skel.maps.lost_events, |e: &EchoEvent| pings.row(e))?
            .run()?;
    print_pingpong_summary(&skel.maps.counts, &summary)
}
