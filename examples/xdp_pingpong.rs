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
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), BTF, an interface with XDP support.

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
use ebpf_workshop::xdp;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, RingBufferBuilder};

// The skeleton that build.rs generated from bpf/xdp_pingpong.bpf.c: the program,
// its maps, and Rust twins of the C types it shares with us.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/xdp_pingpong.skel.rs"));
}
use skel::types::{echo_event, pingpong_counts};
use skel::XdpPingpongSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for echo_event {}
unsafe impl plain::Plain for pingpong_counts {}

/// The longest a report waits in the ring buffer: the program does not wake us
/// for every ping (see bpf/include/wakeup.h), so we look at least this often.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Answer pings (ICMP/ICMPv6 echo requests) with XDP_TX, bypassing the kernel stack.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/xdp_pingpong veth-server"
)]
struct Args {
    /// Interface to answer pings on (`ip link` lists them).
    iface: String,
    /// No report per ping, only the counters (the program skips the reports).
    #[arg(long)]
    quiet: bool,
    /// Replace an XDP program already attached to the interface (it is removed,
    /// and not put back on exit).
    #[arg(long)]
    replace: bool,
    /// Run even on the interface that carries the default route.
    #[arg(long)]
    force: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
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
        XdpPingpongSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let rodata = open.maps.rodata_data.as_mut().context("no read-only data")?;
    rodata.report_pings = !args.quiet;
    // Reports wait in a batch per CPU (bpf/include/echo.h): one map entry each;
    // on a PREEMPT_RT kernel no batches at all: each report is sent at once.
    rodata.batch_reports = !preflight::realtime_kernel();
    let cpus = libbpf_rs::num_possible_cpus().context("counting CPUs")?;
    open.maps.batches.set_max_entries(cpus as u32).context("sizing the batches")?;

    // load: the maps are created and the verifier checks the program.
    let skel = open.load().context("loading the XDP program into the kernel")?;

    // One interface runs one XDP program: refuse (or, with --replace, remove)
    // one that is there already, now that ours has loaded.
    xdp::make_room(&iface, args.replace)?;
    // attach: from now on every frame on the interface runs xdp_pingpong. It is a
    // bpf_link: when this process ends, even killed, the program is detached.
    let link = skel
        .progs
        .xdp_pingpong
        .attach_xdp(iface.index as i32)
        .with_context(|| format!("attaching the XDP program to {}", iface.name))?;
    eprintln!("attached: XDP program xdp_pingpong on {} ({} mode)", iface.name, xdp::mode(&iface));

    // The ring buffer: one callback per record, with its bytes: a batch of
    // reports from one CPU, in the order they were made there.
    let pings = PingTable::new(!args.quiet);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        for report in data.chunks_exact(std::mem::size_of::<echo_event>()) {
            if let Ok(e) = plain::from_bytes::<echo_event>(report) {
                let (src, dst) = (ip(e.family, &e.saddr), ip(e.family, &e.daddr));
                pings.row(e.ts_ns, "answered", src, dst, e.id, e.seq);
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

    // Detach (close the link), so that nothing new arrives, then read what is
    // still in the ring: one record per call, now that `stop` is set.
    drop(link);
    // Reports still in a batch reach the ring when its timer fires (20 ms).
    wait_for_batches(&skel.maps.batches)?;
    while ring.consume_raw() == -nix::libc::EINTR {}

    // The summary, from the program's per-CPU counters.
    let n: pingpong_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!("packets: replied {}, passed {}", n.replied, n.passed);
    if !args.quiet {
        eprintln!("{} pings seen, {} events lost", pings.rows(), n.lost);
    }
    Ok(())
}
