//! # solution_tc_drop_port — drop TCP to one port at TC ingress (exercise solution)
//!
//! A one-rule firewall: the TC ingress program drops every incoming TCP segment
//! to destination port `--port` (80 unless told otherwise) and reports each drop;
//! all other traffic goes on. The port reaches the program as a `const volatile`
//! global set before load.
//!
//! Hook: TC ingress (`SEC("tc")`), through a TCX link on Linux 6.6+ (gone when the
//! process is), or a clsact qdisc + netlink filter on older kernels (removed on
//! exit; `--cleanup` removes what a killed run left).
//!
//! Try it in the lab (`make lab`): run
//! `sudo ip netns exec ebpfws-server target/debug/examples/solution_tc_drop_port veth-server`,
//! then `sudo ip netns exec ebpfws-client timeout 3 bash -c 'exec 3<>/dev/tcp/10.77.0.2/80'`
//! gets no answer at all: its SYNs (flags S) are listed as they are dropped. Ping
//! still works.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF; TCX needs Linux 6.6.

use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::format::{endpoint, ip_version, Clock, Table};
use ebpf_workshop::net::{guard_default_route, interface};
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::ring::RingReader;
use ebpf_workshop::skel::solution_tc_drop_port::{
    types::drop_event, SolutionTcDropPortSkelBuilder,
};
use ebpf_workshop::tc::{cleanup_or_attach, TcOptions};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// SSH: dropping it on the interface you are logged in through locks you out.
const SSH_PORT: u16 = 22;

/// Drop incoming TCP to one destination port at TC ingress and report each drop.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/solution_tc_drop_port veth-server --port 8080"
)]
struct Args {
    /// Interface whose incoming packets to filter (`ip link` lists them).
    iface: String,
    /// Destination TCP port to drop.
    #[arg(long, default_value_t = 80, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    #[command(flatten)]
    tc: TcOptions,
    /// Run even on the interface that carries the default route (with --port 22).
    #[arg(long)]
    force: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    if args.port == SSH_PORT {
        guard_default_route(&iface, args.force, "drop incoming SSH")?;
    }

    // open → configure → load → attach
    let mut storage = MaybeUninit::uninit();
    let mut open = SolutionTcDropPortSkelBuilder::default()
        .open(&mut storage)
        .context("opening the BPF object")?;
    open.maps.rodata_data.as_mut().context("no read-only data")?.drop_port = args.port;
    let skel = open.load().context("loading the TC program into the kernel")?;
    let Some(_attached) = cleanup_or_attach(&skel.progs.tc_drop_port, &iface, &args.tc)? else {
        return Ok(());
    };
    eprintln!("dropping incoming TCP to port {}", args.port);

    let clock = Clock::start();
    let table =
        Table::new(&[("TIME(s)", 9), ("IP", 2), ("SOURCE", 28), ("DESTINATION", 28), ("FLAGS", 0)]);
    let summary = RingReader::new(&skel.maps.events, &skel.maps.lost_events, |e: &drop_event| {
        table.row(&[
            clock.at(e.ts_ns),
            ip_version(e.family),
            endpoint(e.family, &e.saddr, e.sport),
            endpoint(e.family, &e.daddr, e.dport),
            tcp_flags(e.tcp_flags),
        ]);
    })?
    .run()?;
    summary.print("dropped segments");
    Ok(())
}

/// The TCP flags as tcpdump prints them: S (SYN), . (ACK), F, R, P, U, E, W.
fn tcp_flags(bits: u8) -> String {
    const NAMES: [(u8, char); 8] = [
        (0x02, 'S'),
        (0x01, 'F'),
        (0x04, 'R'),
        (0x08, 'P'),
        (0x20, 'U'),
        (0x40, 'E'),
        (0x80, 'W'),
        (0x10, '.'),
    ];
    NAMES.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, c)| *c).collect()
}
