//! # tcpconnect — who connects where (talk step 2)
//!
//! Reports every outgoing TCP connection (IPv4 and IPv6): the process that called
//! `connect()`, its source address and port, the destination, and the result.
//!
//! Hook: kprobes on `tcp_v4_connect()` / `tcp_v6_connect()` and kretprobes for the
//! result, as in the talk; without kprobes, the `sock:inet_sock_set_state`
//! tracepoint. `--pid` and `--port` filter in the kernel: unwanted events cost nothing.
//! Try it: `cargo run --example tcpconnect`, then `curl http://example.com` elsewhere.
//!
//! Needs: root (or CAP_BPF + CAP_PERFMON), BTF, ring buffers (5.8+).

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
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

/// Trace outgoing TCP connections: process, source, destination, result.
#[derive(Parser)]
#[command(after_help = "Example: cargo run --example tcpconnect -- --port 443")]
struct Args {
    /// The talk's kprobes, or the tracepoint that works without them.
    #[arg(long, value_enum, default_value = "auto")]
    attach: AttachMode,
    /// Only connections made by this process id.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pid: Option<u32>,
    /// Only connections to this destination port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    port: Option<u16>,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Tracing)?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
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

    // load → attach: the talk's kprobes if this kernel has kprobes, else the tracepoint.
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
    // (SYN sent or not), the tracepoint how the handshake ended (an errno if not ok).
    let ok = if attached.kind == HookKind::Kprobe { "sent" } else { "ok" };

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
                if e.ret == 0 { ok.to_string() } else { errno_name(e.ret) },
            ]);
        }
        // Checked between records, so that a stream of events cannot hold off Ctrl-C.
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
            _ => {} // events handled, or interrupted by Ctrl-C
        }
    }

    // Detach, so that nothing new arrives; read what is left (a record a call).
    drop(attached);
    while ring.consume_raw() == -nix::libc::EINTR {}

    // The summary, from the program's per-CPU counters.
    let n: connect_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    let plural = if n.reported == 1 { "connection" } else { "connections" };
    eprintln!("{} {plural} seen, {} events lost", n.reported, n.lost);
    Ok(())
}
