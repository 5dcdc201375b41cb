//! # xdp — inspect packets in the driver (talk step 4)
//!
//! An XDP program runs for every frame an interface receives, in the driver, before
//! the kernel has allocated anything for it. This one counts packets per protocol,
//! reports each ping and passes everything on; `--drop-pings` drops the pings there.
//!
//! Hook: XDP (`SEC("xdp")`) through a bpf_link: nothing stays attached after exit.
//! Try it: `cargo run --example xdp -- eth0`, then ping this machine.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), BTF, Linux 5.9+ (XDP links).
//! veth, virtio_net and most 10G+ NICs run it in the driver; others in generic mode.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::ip;
use ebpf_workshop::iface::{interface, note_default_route};
use ebpf_workshop::maps::per_cpu_sum;
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

/// Count packets per protocol and report pings at the driver; optionally drop pings.
#[derive(Parser)]
#[command(after_help = "Example: sudo target/debug/examples/xdp eth0 --drop-pings")]
struct Args {
    /// Interface to attach to (`ip link` lists them).
    iface: String,
    /// Drop ICMP/ICMPv6 echo requests (XDP_DROP) instead of passing them.
    #[arg(long)]
    drop_pings: bool,
    /// No report per ping, only the counters (the program skips the reports).
    #[arg(long)]
    quiet: bool,
    /// Remove an XDP program already on the interface (not put back on exit).
    #[arg(long)]
    replace: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    let doing = if args.drop_pings { "drops pings there" } else { "watches packets there" };
    note_default_route(&iface, &format!("{doing} (attaching may pause the NIC briefly)"));

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
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

    // load: the maps are created and the verifier checks the program.
    let skel = open.load().context("loading the XDP program into the kernel")?;

    // One interface runs one XDP program: refuse (or with --replace remove) one there.
    xdp::ensure_free(&iface, args.replace)?;
    // attach: from now on every frame on the interface runs xdp_inspect. It is a
    // bpf_link: when this process ends, even killed, the program is detached.
    let link = skel
        .progs
        .xdp_inspect
        .attach_xdp(iface.index as i32)
        .with_context(|| format!("attaching the XDP program to {}", iface.name))?;
    eprintln!("attached: XDP program xdp_inspect on {} ({} mode)", iface.name, xdp::mode(&iface));

    // The ring buffer: one callback per record, with its bytes: one ping report.
    let pings = PingTable::new(!args.quiet);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<echo_event>(data) {
            let action = if e.action == echo_action::ECHO_DROPPED { "dropped" } else { "seen" };
            let (src, dst) = (ip(e.family, &e.saddr), ip(e.family, &e.daddr));
            pings.row(e.ts_ns, action, src, dst, e.id, e.seq);
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

    // Once a second, the counters are printed if they changed:
    let totals = |c: proto_counts| {
        format!("icmp {}  tcp {}  udp {}  other {}", c.icmp, c.tcp, c.udp, c.other)
    };
    let mut shown = String::new();
    // poll() sleeps until the program wakes us or 100 ms pass: it does not wake us
    // for each record (bpf/include/wakeup.h), so consume() reads what came anyway.
    let mut next_totals = Instant::now() + Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        match ring.poll(Duration::from_millis(100)).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {} // reports handled, or interrupted by Ctrl-C
        }
        if Instant::now() >= next_totals {
            next_totals += Duration::from_secs(1);
            let now = totals(per_cpu_sum(&skel.maps.counts, 0)?);
            if now != shown {
                println!("{:<9} totals    {now}", pings.now());
                shown = now;
            }
        }
    }

    // Detach, so that nothing new arrives; read what is left (a record a call).
    drop(link);
    while ring.consume_raw() == -nix::libc::EINTR {}
    // The summary, from the program's per-CPU counters.
    let c: proto_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!("packets: {}", totals(c));
    if !args.quiet {
        eprintln!("{} pings seen, {} events lost", pings.rows(), c.lost);
    }
    Ok(())
}
