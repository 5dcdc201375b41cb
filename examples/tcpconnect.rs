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

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::attach::{attach_with_fallback, AttachMode, Hook, HookKind};
use ebpf_workshop::format::{c_str, endpoint, errno_name, ip_version, Clock, Table};
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::ring::RingReader;
use ebpf_workshop::skel::tcpconnect::{types::connect_event, TcpconnectSkelBuilder};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::TracepointCategory;

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
    let result_name = |ret: i32| match (ret, attached.kind) {
        (0, HookKind::Kprobe) => "sent".to_string(),
        (0, HookKind::Tracepoint) => "ok".to_string(),
        (err, _) => errno_name(err), // e.g. ECONNREFUSED
    };

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
    let summary =
        RingReader::new(&skel.maps.events, &skel.maps.lost_events, |e: &connect_event| {
            table.row(&[
                clock.at(e.ts_ns),
                e.pid.to_string(),
                c_str(&e.comm),
                ip_version(e.family),
                endpoint(e.family, &e.saddr, e.sport),
                endpoint(e.family, &e.daddr, e.dport),
                result_name(e.ret),
            ]);
        })?
        .run()?;
    summary.print("connections");
    Ok(())
}
