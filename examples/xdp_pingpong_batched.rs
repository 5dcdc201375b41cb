//! # xdp_pingpong_batched — the same answers, cheaper reports (batching chapter)
//!
//! xdp_pingpong, with its ping reports sent in per-CPU batches: 64 reports to a
//! ring-buffer record, and a timer that sends a batch that is not full within
//! 20 ms. Compare it with examples/xdp_pingpong.rs: the difference is the lesson
//! (sizing the batch map before load, splitting records, waiting for the last
//! batches before the final read). `make bench` measures the steps side by side;
//! `--wake-each` is the first step: a record and a wake-up per report.
//!
//! Hook: XDP (`SEC("xdp")`) through a bpf_link, as xdp_pingpong.
//! Try it: `cargo run --example xdp_pingpong_batched -- eth0` and ping this machine.
//!
//! Needs: what xdp_pingpong needs, and bpf_timer (Linux 5.15); batches need pinned
//! timers (6.7: before, each report is sent at once), and no PREEMPT_RT kernel.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use ebpf_workshop::batches::wait_for_batches;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::ip;
use ebpf_workshop::iface::{interface, note_default_route};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::pings::PingTable;
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::xdp;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, RingBufferBuilder};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/xdp_pingpong_batched.skel.rs"));
}
use skel::types::{echo_event, pingpong_counts};
use skel::XdpPingpongBatchedSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for echo_event {}
unsafe impl plain::Plain for pingpong_counts {}

/// Answer pings with XDP_TX, and report them in per-CPU batches.
#[derive(Parser)]
#[command(after_help = "Example: sudo target/debug/examples/xdp_pingpong_batched eth0")]
struct Args {
    /// Interface to answer pings on (`ip link` lists them).
    iface: String,
    /// No report per ping, only the counters (the program skips the reports).
    #[arg(long)]
    quiet: bool,
    /// No batches: each report a record of its own, with a wake-up (to measure).
    #[arg(long)]
    wake_each: bool,
    /// Remove an XDP program already on the interface (not put back on exit).
    #[arg(long)]
    replace: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    if !preflight::has_bpf_timer() {
        Err(anyhow!(
            "this kernel has no bpf_timer (Linux 5.15+), which batching needs; \
             xdp_pingpong sends a record per report and runs here"
        ))?;
    }
    note_default_route(&iface, "answers pings there (attaching may pause the NIC briefly)");

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    let mut storage = MaybeUninit::uninit();
    let mut open = XdpPingpongBatchedSkelBuilder::default()
        .open(&mut storage)
        .context("opening the BPF object")?;
    let rodata = open.maps.rodata_data.as_mut().context("no read-only data")?;
    rodata.report_pings = !args.quiet;
    rodata.wake_each = args.wake_each;
    // New: a batch per CPU, one map entry each, sized before load. On a
    // PREEMPT_RT kernel no batches at all (bpf/include/batch.h says why).
    rodata.batch_reports = !preflight::realtime_kernel();
    let cpus = libbpf_rs::num_possible_cpus().context("counting CPUs")?;
    open.maps.batches.set_max_entries(cpus as u32).context("sizing the batches")?;
    let skel = open.load().context("loading the XDP program into the kernel")?;

    xdp::ensure_free(&iface, args.replace)?;
    let link = skel
        .progs
        .xdp_pingpong_batched
        .attach_xdp(iface.index as i32)
        .with_context(|| format!("attaching the XDP program to {}", iface.name))?;
    eprintln!(
        "attached: XDP program xdp_pingpong_batched on {} ({} mode)",
        iface.name,
        xdp::mode(&iface)
    );

    // New: a record is a batch of reports from one CPU, in the order made there.
    let pings = PingTable::new(!args.quiet);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        for report in data.chunks_exact(std::mem::size_of::<echo_event>()) {
            if let Ok(e) = plain::from_bytes::<echo_event>(report) {
                let (src, dst) = (ip(e.family, &e.saddr), ip(e.family, &e.daddr));
                pings.row(e.ts_ns, "answered", src, dst, e.id, e.seq);
            }
        }
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;

    while !stop.load(Ordering::SeqCst) {
        match ring.poll(Duration::from_millis(100)).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {}
        }
    }

    drop(link);
    // New: reports still in a batch reach the ring when its timer fires (20 ms).
    wait_for_batches(&skel.maps.batches)?;
    while ring.consume_raw() == -nix::libc::EINTR {}

    let n: pingpong_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!("packets: replied {}, passed {}", n.replied, n.passed);
    if !args.quiet {
        eprintln!("{} pings seen, {} events lost", pings.rows(), n.lost);
    }
    Ok(())
}
