//! # tc — a traffic-control ingress filter (talk step 6)
//!
//! A TC program runs when a packet enters the network stack, after the kernel has
//! built its socket buffer. This one drops pings (ICMP/ICMPv6 echo requests) and
//! reports each drop; everything else goes on. `--drop-all` is the talk's
//! `tc_drop`: nothing gets through.
//!
//! Hook: TC ingress (`SEC("tc")`), through a TCX link on Linux 6.6+ (gone when the
//! process is), or a clsact qdisc + netlink filter on older kernels (removed on
//! exit; `--cleanup` removes what a killed run left).
//!
//! Try it in the lab (`make lab`):
//! `sudo ip netns exec ebpfws-server target/debug/examples/tc veth-server`, then ping
//! 10.77.0.2 from the client: no answer, while TCP still works.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF; TCX needs Linux 6.6.

use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::echo::{EchoEvent, EchoTable};
use ebpf_workshop::net::{guard_default_route, interface};
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::ring::RingReader;
use ebpf_workshop::skel::tc::TcSkelBuilder;
use ebpf_workshop::tc::{cleanup_or_attach, TcOptions};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// Drop pings (or everything) at TC ingress and report each dropped ping.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/tc veth-server"
)]
struct Args {
    /// Interface whose incoming packets to filter (`ip link` lists them).
    iface: String,
    /// Drop every incoming packet, not just pings (the talk's tc_drop). Careful on
    /// the interface you are logged in through.
    #[arg(long)]
    drop_all: bool,
    #[command(flatten)]
    tc: TcOptions,
    /// Run even on the interface that carries the default route.
    #[arg(long)]
    force: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    if args.drop_all {
        guard_default_route(&iface, args.force, "drop every incoming packet")?;
    }

    let mut storage = MaybeUninit::uninit();
    let mut open = TcSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    open.maps.rodata_data.as_mut().context("no read-only data")?.drop_all = args.drop_all;
    let skel = open.load().context("loading the TC program into the kernel")?;
    let Some(_attached) = cleanup_or_attach(&skel.progs.tc_ingress, &iface, &args.tc)? else {
        return Ok(());
    };

    let pings = EchoTable::new();
    let summary =
        RingReader::new(&skel.maps.events, &skel.maps.lost_events, |e: &EchoEvent| pings.row(e))?
            .run()?;
    summary.print("pings");
    Ok(())
}
