//! # xdp — inspect packets in the driver (talk step 4)
//!
//! An XDP program runs for every frame an interface receives, in the driver, before
//! the kernel has allocated anything for it. This one counts packets per protocol
//! (printed every second while they change), reports each ping (ICMP/ICMPv6 echo
//! request) and passes everything on — or, with `--drop-pings`, drops the pings
//! right there.
//!
//! Hook: XDP (`SEC("xdp")`), attached through a bpf_link so that nothing stays
//! attached when the process ends, even on SIGKILL.
//!
//! Try it (in the lab, see `make lab`):
//! `sudo ip netns exec ebpfws-server target/debug/examples/xdp veth-server`,
//! then ping 10.77.0.2 from the client namespace.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), BTF. Drivers with XDP support (veth,
//! most 10G+ NICs) run it natively; the kernel runs it in generic mode elsewhere.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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

// The skeleton that build.rs generated from bpf/xdp.bpf.c: the program, its maps,
// and Rust twins of the C types it shares with us.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/xdp.skel.rs"));
}
use skel::types::{echo_action, echo_event, proto_counts};
use skel::XdpSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for echo_event {}
unsafe impl plain::Plain for proto_counts {}

/// The longest a report waits in the ring buffer: the program does not wake us
/// for every ping (see bpf/include/wakeup.h), so we look at least this often.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

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
    if args.drop_pings {
        guard_default_route(&iface, args.force, "drop pings")?;
    } else if args.replace {
        guard_default_route(&iface, args.force, "remove the XDP program there")?;
    }

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
        XdpSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let rodata = open.maps.rodata_data.as_mut().context("no read-only data")?;
    rodata.drop_pings = args.drop_pings;
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
    // attach: from now on every frame on the interface runs xdp_inspect. It is a
    // bpf_link: when this process ends, even killed, the program is detached.
    let link = skel
        .progs
        .xdp_inspect
        .attach_xdp(iface.index as i32)
        .with_context(|| format!("attaching the XDP program to {}", iface.name))?;
    eprintln!("attached: XDP program xdp_inspect on {} ({} mode)", iface.name, xdp::mode(&iface));

    // The ring buffer: one callback per record, with its bytes: a batch of
    // reports from one CPU, in the order they were made there.
    let pings = PingTable::new(!args.quiet);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        for report in data.chunks_exact(std::mem::size_of::<echo_event>()) {
            if let Ok(e) = plain::from_bytes::<echo_event>(report) {
                let action = match e.action {
                    echo_action::ECHO_DROPPED => "dropped",
                    _ => "seen",
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
    // passes; consume() then reads what came without a wake-up. Once a second,
    // the counters are printed if they changed.
    let mut shown = proto_counts::default();
    let mut next_totals = Instant::now() + Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        match ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                return Err(e).context("reading the ring buffer")
            }
            _ => {} // reports handled, or interrupted by Ctrl-C
        }
        if Instant::now() >= next_totals {
            next_totals += Duration::from_secs(1);
            let c: proto_counts = per_cpu_sum(&skel.maps.counts, 0)?;
            if (c.icmp, c.tcp, c.udp, c.other) != (shown.icmp, shown.tcp, shown.udp, shown.other) {
                let now = pings.now();
                println!(
                    "{now:<9} totals    icmp {}  tcp {}  udp {}  other {}",
                    c.icmp, c.tcp, c.udp, c.other
                );
                shown = c;
            }
        }
    }

    // Detach (close the link), so that nothing new arrives, then read what is
    // still in the ring: one record per call, now that `stop` is set.
    drop(link);
    // Reports still in a batch reach the ring when its timer fires (20 ms).
    wait_for_batches(&skel.maps.batches)?;
    while ring.consume_raw() == -nix::libc::EINTR {}

    // The summary, from the program's per-CPU counters.
    let c: proto_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!("packets: icmp {}  tcp {}  udp {}  other {}", c.icmp, c.tcp, c.udp, c.other);
    if !args.quiet {
        eprintln!("{} pings seen, {} events lost", pings.rows(), c.lost);
    }
    Ok(())
}
