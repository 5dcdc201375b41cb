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
//! gets no answer at all: its SYNs (flags SYN) are listed as they are dropped. Ping
//! still works.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), BTF; TCX needs Linux 6.6.

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::{endpoint, ip_version, tcp_flags, Clock, Table};
use ebpf_workshop::iface::{guard_default_route, interface};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::tc::{self, TcApi};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, RingBufferBuilder};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/solution_tc_drop_port.skel.rs"));
}
use skel::types::drop_event;
use skel::SolutionTcDropPortSkelBuilder;

// SAFETY: a plain C struct of integers.
unsafe impl plain::Plain for drop_event {}

/// How often we read the ring buffer when the program has not woken us.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

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
    /// How to attach: a TCX link (Linux 6.6+) or a clsact qdisc and netlink filter.
    #[arg(long, value_enum, default_value = "auto")]
    attach: TcApi,
    /// Remove the netlink filter that a killed earlier run left, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Attach even when other TC ingress programs are there (ours runs after them).
    #[arg(long)]
    stack: bool,
    /// Run even on the interface that carries the default route.
    #[arg(long)]
    force: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    if args.cleanup {
        return Ok(tc::cleanup(&iface)?);
    }
    // Any port: the one your SSH (or other) connection uses may be the one dropped.
    let doing = format!("drop incoming TCP to port {}", args.port);
    guard_default_route(&iface, args.force, &doing)?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open → configure → load → attach
    let mut storage = MaybeUninit::uninit();
    let mut open = SolutionTcDropPortSkelBuilder::default()
        .open(&mut storage)
        .context("opening the BPF object")?;
    open.maps.rodata_data.as_mut().context("no read-only data")?.drop_port = args.port;
    let skel = open.load().context("loading the TC program into the kernel")?;
    let attached = tc::attach_ingress(&skel.progs.tc_drop_port, &iface, args.attach, args.stack)?;
    eprintln!(
        "attached: TC ingress program tc_drop_port on {} ({})",
        iface.name,
        attached.describe()
    );
    eprintln!("dropping incoming TCP to port {}", args.port);

    let clock = Clock::start();
    let table =
        Table::new(&[("TIME(s)", 9), ("IP", 2), ("SOURCE", 28), ("DESTINATION", 28), ("FLAGS", 0)]);
    let seen = Cell::new(0u64);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<drop_event>(data) {
            seen.set(seen.get() + 1);
            table.row(&[
                clock.at(e.ts_ns),
                ip_version(e.family),
                endpoint(e.family, &e.saddr, e.sport),
                endpoint(e.family, &e.daddr, e.dport),
                tcp_flags(e.tcp_flags),
            ]);
        }
        // Checked between records, so a stream of events cannot hold off Ctrl-C.
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;
    while !stop.load(Ordering::SeqCst) {
        match ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {}
        }
    }
    drop(attached); // detach, then read what is left
    while ring.consume_raw() == -nix::libc::EINTR {}
    let lost: u64 = per_cpu_sum(&skel.maps.lost_events, 0)?;
    eprintln!("{} dropped segments seen, {lost} events lost", seen.get());
    Ok(())
}
