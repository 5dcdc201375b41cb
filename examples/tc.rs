//! # tc — a traffic-control ingress filter (talk step 6)
//!
//! A TC program runs when a packet enters the network stack, after the kernel has
//! built its socket buffer. This one drops pings (ICMP/ICMPv6 echo requests) and
//! reports each drop; everything else goes on. `--drop-all` is the talk's
//! `tc_drop`: nothing gets through.
//!
//! Hook: TC ingress (`SEC("tc")`), through a TCX link on Linux 6.6+ (gone when the
//! process is), or a clsact qdisc + netlink filter before (removed on exit;
//! `--cleanup` removes what a killed run left). Try it: `cargo run --example tc --
//! eth0`, then ping this machine: no answer, while TCP still works.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), BTF; TCX needs Linux 6.6.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::ip;
use ebpf_workshop::iface::{guard_default_route, interface, note_default_route};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::pings::PingTable;
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::tc::{self, TcApi};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, RingBufferBuilder};

// The skeleton that build.rs generated from bpf/tc.bpf.c: the program, its
// maps, and Rust twins of the C types it shares with us.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/tc.skel.rs"));
}
use skel::types::{echo_event, tc_counts};
use skel::TcSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for echo_event {}
unsafe impl plain::Plain for tc_counts {}

/// Drop pings (or everything) at TC ingress and report each dropped ping.
#[derive(Parser)]
#[command(after_help = "Example: sudo target/debug/examples/tc eth0")]
struct Args {
    /// Interface whose incoming packets to filter (`ip link` lists them).
    iface: String,
    /// Drop every incoming packet, not just pings (the talk's tc_drop).
    #[arg(long)]
    drop_all: bool,
    /// No report per ping, only the counters (the program skips the reports).
    #[arg(long)]
    quiet: bool,
    /// How to attach: a TCX link (Linux 6.6+) or the classic clsact qdisc and
    /// netlink filter.
    #[arg(long, value_enum, default_value = "auto")]
    attach: TcApi,
    /// Remove the netlink filter that a killed earlier run left, then exit.
    #[arg(long)]
    cleanup: bool,
    /// Attach even when other TC ingress programs are there (ours runs after them).
    #[arg(long)]
    stack: bool,
    /// With --drop-all: run even on the interface that carries the default route.
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
    if args.drop_all {
        guard_default_route(&iface, args.force, "drop every incoming packet")?;
    } else {
        note_default_route(&iface, "drops incoming pings there; everything else passes");
    }

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open: libbpf reads the object built into the skeleton; nothing is in the
    // kernel yet, so read-only data can still be set.
    let mut storage = MaybeUninit::uninit();
    let mut open = TcSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let rodata = open.maps.rodata_data.as_mut().context("no read-only data")?;
    rodata.drop_all = args.drop_all;
    rodata.report_pings = !args.quiet;

    // load: the maps are created and the verifier checks the program.
    let skel = open.load().context("loading the TC program into the kernel")?;

    // attach: libbpf-rs has no call for TCX links yet, so src/tc.rs makes one
    // (or, before Linux 6.6, a clsact qdisc with a netlink filter).
    let attached = tc::attach_ingress(&skel.progs.tc_ingress, &iface, args.attach, args.stack)?;
    eprintln!(
        "attached: TC ingress program tc_ingress on {} ({})",
        iface.name,
        attached.describe()
    );

    // The ring buffer: one callback per record, with its bytes: one report.
    let pings = PingTable::new(!args.quiet);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<echo_event>(data) {
            let (src, dst) = (ip(e.family, &e.saddr), ip(e.family, &e.daddr));
            pings.row(e.ts_ns, "dropped", src, dst, e.id, e.seq);
        }
        // A negative return ends this round of reading (as -EINTR): checked
        // between records, so that a flood of reports cannot hold off Ctrl-C.
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;

    // poll() sleeps until the program wakes us or 100 ms pass: it does not wake us
    // for each record (bpf/include/wakeup.h), so consume() reads what came anyway.
    while !stop.load(Ordering::SeqCst) {
        match ring.poll(Duration::from_millis(100)).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {} // reports handled, or interrupted by Ctrl-C
        }
    }

    // Detach, so that nothing new arrives; read what is left (a record a call).
    drop(attached);
    while ring.consume_raw() == -nix::libc::EINTR {}

    // The summary, from the program's per-CPU counters.
    let n: tc_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!("packets: dropped {}, passed {}", n.dropped, n.passed);
    if !args.quiet {
        eprintln!("{} pings seen, {} events lost", pings.rows(), n.lost);
    }
    Ok(())
}
