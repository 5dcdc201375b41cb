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
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), BTF.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::format::ip;
use ebpf_workshop::iface::{guard_default_route, interface};
use ebpf_workshop::maps::{per_cpu_sum, wait_for_batches};
use ebpf_workshop::pings::PingTable;
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::tc::{self, TcApi};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, RingBufferBuilder};

// The skeleton that build.rs generated from bpf/tc_pingpong.bpf.c: the program, its
// maps, and Rust twins of the C types it shares with us.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/tc_pingpong.skel.rs"));
}
use skel::types::{echo_action, echo_event, pingpong_counts};
use skel::TcPingpongSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for echo_event {}
unsafe impl plain::Plain for pingpong_counts {}

/// The longest a report waits in the ring buffer: the program does not wake us
/// for every ping (see bpf/include/wakeup.h), so we look at least this often.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Answer pings at TC ingress with bpf_clone_redirect.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/tc_pingpong veth-server"
)]
struct Args {
    /// Interface to answer pings on (`ip link` lists them).
    iface: String,
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
    /// Run even on the interface that carries the default route.
    #[arg(long)]
    force: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    if args.cleanup {
        return tc::cleanup(&iface);
    }
    guard_default_route(&iface, args.force, "answer pings in place of the kernel")?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop below ends, and everything is
    // detached on the way out. Set before anything is attached, so that no Ctrl-C
    // can end the process with a program still attached.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open: libbpf reads the object built into the skeleton; nothing is in the
    // kernel yet, so read-only data can still be set.
    let mut storage = MaybeUninit::uninit();
    let mut open =
        TcPingpongSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let rodata = open.maps.rodata_data.as_mut().context("no read-only data")?;
    rodata.report_pings = !args.quiet;
    // Reports wait in a batch per CPU (bpf/include/echo.h): one map entry each;
    // on a PREEMPT_RT kernel no batches at all: each report is sent at once.
    rodata.batch_reports = !preflight::realtime_kernel();
    let cpus = libbpf_rs::num_possible_cpus().context("counting CPUs")?;
    open.maps.batches.set_max_entries(cpus as u32).context("sizing the batches")?;

    // load: the maps are created and the verifier checks the program.
    let skel = open.load().context("loading the TC program into the kernel")?;

    // attach: libbpf-rs has no call for TCX links yet, so src/tc.rs makes one
    // (or, before Linux 6.6, a clsact qdisc with a netlink filter).
    let attached = tc::attach_ingress(&skel.progs.tc_pingpong, &iface, args.attach, args.stack)?;
    eprintln!(
        "attached: TC ingress program tc_pingpong on {} ({})",
        iface.name,
        attached.describe()
    );

    // The ring buffer: one callback per record, with its bytes: a batch of
    // reports from one CPU, in the order they were made there.
    let pings = PingTable::new(!args.quiet);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        for report in data.chunks_exact(std::mem::size_of::<echo_event>()) {
            if let Ok(e) = plain::from_bytes::<echo_event>(report) {
                let action = match e.action {
                    echo_action::ECHO_ANSWERED => "answered",
                    _ => "dropped", // the answer could not be sent
                };
                let (src, dst) = (ip(e.family, &e.saddr), ip(e.family, &e.daddr));
                pings.row(e.ts_ns, action, src, dst, e.id, e.seq);
            }
        }
        // Checked between records, so a flood of reports cannot hold off Ctrl-C:
        // a negative return ends this round of reading (as -EINTR).
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;

    // poll() sleeps until the program wakes us (a batch is waiting) or the timeout
    // passes; consume() then reads what came without a wake-up.
    while !stop.load(Ordering::SeqCst) {
        match ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                return Err(e).context("reading the ring buffer")
            }
            _ => {} // reports handled, or interrupted by Ctrl-C
        }
    }

    // Detach, so that nothing new arrives, then read what is still in the ring:
    // one record per call, now that `stop` is set.
    drop(attached);
    // Reports still in a batch reach the ring when its timer fires (20 ms).
    wait_for_batches(&skel.maps.batches)?;
    while ring.consume_raw() == -nix::libc::EINTR {}

    // The summary, from the program's per-CPU counters.
    let n: pingpong_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!("packets: replied {}, passed {}, failed {}", n.replied, n.passed, n.failed);
    if !args.quiet {
        eprintln!("{} pings seen, {} events lost", pings.rows(), n.lost);
    }
    Ok(())
}
