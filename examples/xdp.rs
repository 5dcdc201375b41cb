//! # xdp — inspect packets in the driver (talk step 4)
//!
//! An XDP program runs for every frame an interface receives, in the driver, before
//! the kernel has allocated anything for it. This one counts packets per protocol
//! (printed every second), reports each ping (ICMP/ICMPv6 echo request) and passes
//! everything on — or, with `--drop-pings`, drops the pings right there.
//!
//! Hook: XDP (`SEC("xdp")`), attached through a bpf_link so that nothing stays
//! attached when the process ends, even on SIGKILL.
//!
//! Try it (in the lab, see `make lab`):
//! `sudo ip netns exec ebpfws-server target/debug/examples/xdp veth-server`,
//! then ping 10.77.0.2 from the client namespace.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF; native XDP needs driver support
//! (veth, most 10G+ NICs), generic mode works everywhere.

use std::mem::MaybeUninit;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::echo::{EchoEvent, EchoTable};
use ebpf_workshop::net::{attach_xdp, guard_default_route, interface, XdpOptions};
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::ring::{per_cpu, RingReader};
use ebpf_workshop::skel::xdp::{types::proto_counts, XdpSkelBuilder};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::MapCore;

/// Count packets per protocol and report pings at the driver; optionally drop pings.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/xdp veth-server --drop-pings"
)]
struct Args {
    /// Interface to attach to (`ip link` lists them).
    iface: String,
    /// Drop ICMP/ICMPv6 echo requests (XDP_DROP) instead of passing them.
    #[arg(long)]
    drop_pings: bool,
    #[command(flatten)]
    xdp: XdpOptions,
    /// Run even on the interface that carries the default route.
    #[arg(long)]
    force: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    if args.drop_pings {
        guard_default_route(&iface, args.force, "drop pings")?;
    }

    // open → configure → load
    let mut storage = MaybeUninit::uninit();
    let mut open =
        XdpSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    open.maps.rodata_data.as_mut().context("no read-only data")?.drop_pings = args.drop_pings;
    let skel = open.load().context("loading the XDP program into the kernel")?;

    // attach: from now on every frame on the interface runs xdp_inspect.
    let _link = attach_xdp(&skel.progs.xdp_inspect, &iface, &args.xdp)?;

    let pings = EchoTable::new();
    let summary =
        RingReader::new(&skel.maps.events, &skel.maps.lost_events, |e: &EchoEvent| pings.row(e))?
            .every(Duration::from_secs(1), || {
                if let Ok(c) = read_counts(&skel.maps.counts) {
                    println!(
                        "{:<9} totals    icmp {}  tcp {}  udp {}  other {}",
                        pings.now(),
                        c.icmp,
                        c.tcp,
                        c.udp,
                        c.other
                    );
                }
            })
            .run()?;
    let c = read_counts(&skel.maps.counts)?;
    eprintln!("\npackets: icmp {}  tcp {}  udp {}  other {}", c.icmp, c.tcp, c.udp, c.other);
    summary.print("pings");
    Ok(())
}

/// Add up the per-CPU copies of the counters.
fn read_counts(map: &dyn MapCore) -> Result<proto_counts> {
    Ok(per_cpu::<proto_counts>(map, 0)?.iter().fold(proto_counts::default(), |t, c| proto_counts {
        icmp: t.icmp + c.icmp,
        tcp: t.tcp + c.tcp,
        udp: t.udp + c.udp,
        other: t.other + c.other,
    }))
}
