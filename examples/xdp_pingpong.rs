//! # xdp_pingpong — answer pings in the driver (talk step 5)
//!
//! Turns every ICMP and ICMPv6 echo request that arrives on an interface into the
//! echo reply, right in the driver, and sends it back out with `XDP_TX`. The
//! kernel's network stack never sees the ping. Everything else passes untouched.
//!
//! Hook: XDP (`SEC("xdp")`) through a bpf_link: nothing stays attached after exit.
//!
//! Try it: `cargo run --example xdp_pingpong -- eth0` and ping this machine; or in
//! the lab (`make lab`), where the server kernel's own replies can be turned off.
//! On veth, the peer needs an XDP program too (the lab has one) or XDP_TX frames
//! are dropped.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), BTF, Linux 5.9+ (XDP links).

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

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

/// Answer pings (ICMP/ICMPv6 echo requests) with XDP_TX, bypassing the kernel stack.
#[derive(Parser)]
#[command(after_help = "Example: sudo target/debug/examples/xdp_pingpong eth0")]
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
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    note_default_route(&iface, "answers pings there (attaching may pause the NIC briefly)");

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
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

    // load: the maps are created and the verifier checks the program.
    let skel = open.load().context("loading the XDP program into the kernel")?;

    // One interface runs one XDP program: refuse (or, with --replace, remove)
    // one that is there already, now that ours has loaded.
    xdp::ensure_free(&iface, args.replace)?;
    // attach: from now on every frame on the interface runs xdp_pingpong. It is a
    // bpf_link: when this process ends, even killed, the program is detached.
    let link = skel
        .progs
        .xdp_pingpong
        .attach_xdp(iface.index as i32)
        .with_context(|| format!("attaching the XDP program to {}", iface.name))?;
    eprintln!("attached: XDP program xdp_pingpong on {} ({} mode)", iface.name, xdp::mode(&iface));

    // The ring buffer: one callback per record, with its bytes: one report.
    let pings = PingTable::new(!args.quiet);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<echo_event>(data) {
            let (src, dst) = (ip(e.family, &e.saddr), ip(e.family, &e.daddr));
            pings.row(e.ts_ns, "answered", src, dst, e.id, e.seq);
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
    drop(link);
    while ring.consume_raw() == -nix::libc::EINTR {}

    // The summary, from the program's per-CPU counters.
    let n: pingpong_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!("packets: replied {}, passed {}", n.replied, n.passed);
    if !args.quiet {
        eprintln!("{} pings seen, {} events lost", pings.rows(), n.lost);
    }
    Ok(())
}
