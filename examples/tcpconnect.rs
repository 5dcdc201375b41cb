//! # tcpconnect — who connects where (talk step 2)
//!
//! Reports every outgoing TCP connection (IPv4 and IPv6): the process that called
//! `connect()`, its source address and port, the destination, and the result.
//!
//! Hook: kprobes on `tcp_v4_connect()` / `tcp_v6_connect()` plus kretprobes for the
//! return value, as in the talk; on kernels without kprobes, the
//! `sock:inet_sock_set_state` tracepoint (the handshake's start and end).
//! `--pid` and `--port` filter inside the kernel, so unwanted events cost nothing.
//!
//! Try it: `cargo run --example tcpconnect`, then `curl http://example.com` elsewhere.
//!
//! Needs: root (or CAP_BPF + CAP_PERFMON), BTF, ring buffers (5.8+).

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::format::{c_str, endpoint, errno_name, ip_version, Clock, Table};
use ebpf_workshop::kprobe_fallback::{attach_with_fallback, AttachMode, Hook, HookKind};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::preflight::{self, Needs};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, RingBufferBuilder, TracepointCategory};

// The skeleton that build.rs generated from bpf/tcpconnect.bpf.c: the programs,
// their maps, and Rust twins of the C types they share with us (bpf/tcpconnect.h).
mod skel {
    include!(concat!(env!("OUT_DIR"), "/tcpconnect.skel.rs"));
}
use skel::types::{connect_counts, connect_event};
use skel::TcpconnectSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for connect_event {}
unsafe impl plain::Plain for connect_counts {}

/// The longest an event waits in the ring buffer: the program does not wake us
/// for every connection (see bpf/include/wakeup.h), so we look at least this often.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Trace outgoing TCP connections: process, source, destination, result.
#[derive(Parser)]
#[command(after_help = "Example: cargo run --example tcpconnect -- --port 443")]
struct Args {
    /// Which hook to use: the talk's kprobes, or the tracepoint that works
    /// without kprobes.
    #[arg(long, value_enum, default_value = "auto")]
    attach: AttachMode,
    /// Only connections made by this process id.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pid: Option<u32>,
    /// Only connections to this destination port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::Tracing)?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop below ends, and everything is
    // detached on the way out. Set before anything is attached, so that no Ctrl-C
    // can end the process with a program still attached.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open → configure: filters go into read-only data before the verifier sees it.
    let mut storage = MaybeUninit::uninit();
    let mut open =
        TcpconnectSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let rodata = open.maps.rodata_data.as_mut().context("the program has no read-only data")?;
    rodata.target_pid = args.pid.unwrap_or(0);
    rodata.target_port = args.port.unwrap_or(0);

    // load → attach.
    let skel = open.load().context("loading the BPF programs into the kernel")?;
    let progs = &skel.progs;
    let attached = attach_with_fallback(
        args.attach,
        Hook::kprobe("kprobes on tcp_v4_connect/tcp_v6_connect", || {
            let mut links = Vec::new();
            for func in ["tcp_v4_connect", "tcp_v6_connect"] {
                links.push(progs.connect_entry.attach_kprobe(false, func)?);
                links.push(progs.connect_exit.attach_kprobe(true, func)?);
            }
            Ok(links)
        }),
        Hook::tracepoint("tracepoint sock:inet_sock_set_state", || {
            Ok(vec![progs
                .connect_state
                .attach_tracepoint(TracepointCategory::Sock, "inet_sock_set_state")?])
        }),
    )?;
    // What RESULT means depends on the hook: the kprobe sees the function's return
    // (SYN sent or not), the tracepoint sees how the handshake ended.
    let kind = attached.kind;
    let result_name = |ret: i32| match (ret, kind) {
        (0, HookKind::Kprobe) => "sent".to_string(),
        (0, HookKind::Tracepoint) => "ok".to_string(),
        (err, _) => errno_name(err), // e.g. ECONNREFUSED
    };

    // The ring buffer: one callback per event, with the record's bytes.
    let clock = Clock::start();
    let table = Table::new(&[
        ("TIME(s)", 9),
        ("PID", 7),
        ("COMM", 16),
        ("IP", 2),
        ("SOURCE", 22),
        ("DESTINATION", 22),
        ("RESULT", 0),
    ]);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<connect_event>(data) {
            table.row(&[
                clock.at(e.ts_ns),
                e.pid.to_string(),
                c_str(&e.comm),
                ip_version(e.family),
                endpoint(e.family, &e.saddr, e.sport),
                endpoint(e.family, &e.daddr, e.dport),
                result_name(e.ret),
            ]);
        }
        // Checked between records, so a stream of events cannot hold off Ctrl-C:
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
            _ => {} // events handled, or interrupted by Ctrl-C
        }
    }

    // Detach, so that nothing new arrives, then read what is still in the ring:
    // one record per call, now that `stop` is set.
    drop(attached);
    while ring.consume_raw() == -nix::libc::EINTR {}

    // The summary, from the program's per-CPU counters.
    let n: connect_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    let plural = if n.reported == 1 { "connection" } else { "connections" };
    eprintln!("{} {plural} seen, {} events lost", n.reported, n.lost);
    Ok(())
}
