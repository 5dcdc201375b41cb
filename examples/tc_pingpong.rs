//! # tc_pingpong — answer pings at TC ingress (talk step 7)
//!
//! Like xdp_pingpong, one layer up: the program rewrites each ICMP/ICMPv6 echo
//! request into its reply on the socket buffer, fixes the checksum with the
//! kernel's skb helpers, sends a copy back out with `bpf_clone_redirect()` and
//! drops the original. Works on any interface, no driver support needed, and
//! needs no XDP program on a veth peer.
//!
//! Hook: TC ingress (`SEC("tc")`), TCX link on Linux 6.6+, netlink clsact before.
//!
//! Try it in the lab (`make lab` prints the commands): run it on `veth-server`,
//! switch the server kernel's echo replies off, ping from the client.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF.

use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::echo::{print_pingpong_summary, EchoEvent, EchoTable};
use ebpf_workshop::net::{guard_default_route, interface};
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::ring::RingReader;
use ebpf_workshop::skel::tc_pingpong::TcPingpongSkelBuilder;
use ebpf_workshop::tc::{cleanup_or_attach, TcOptions};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// Answer pings at TC ingress with bpf_clone_redirect.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/tc_pingpong veth-server"
)]
struct Args {
    /// Interface to answer pings on (`ip link` lists them).
    iface: String,
    #[command(flatten)]
    tc: TcOptions,
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
        TcPingpongSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let skel = open.load().context("loading the TC program into the kernel")?;
    let Some(_attached) = cleanup_or_attach(&skel.progs.tc_pingpong, &iface, &args.tc)? else {
        return Ok(());
    };

    let pings = EchoTable::showing_rows(!args.quiet);
    let summary =
        RingReader::new(&skel.maps.events, &skel.maps.lost_events, |e: &EchoEvent| pings.row(e))?
            .run()?;
    print_pingpong_summary(&skel.maps.counts, &summary)
}
