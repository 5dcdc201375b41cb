//! # solution_connect_latency — how long TCP handshakes take (exercise solution)
//!
//! Like tcpconnect, but for each outgoing TCP connection it reports the connect
//! latency: the time from the SYN going out (the socket enters SYN_SENT) to the end
//! of the handshake (it leaves SYN_SENT: ESTABLISHED, or refused / timed out), in
//! microseconds. That is about one network round trip plus the server's time to
//! answer the SYN.
//!
//! Hook: the `sock:inet_sock_set_state` tracepoint only (no kprobe path: it works
//! the same on kernels with and without kprobes). `--pid` filters in the kernel.
//!
//! Try it: `sudo target/debug/examples/solution_connect_latency`, then
//! `curl http://example.com` elsewhere; in the lab, run it in ebpfws-client
//! (`sudo ip netns exec ebpfws-client target/debug/examples/solution_connect_latency`)
//! and connect to a listener on the server, e.g. `curl -m 3 http://10.77.0.2/`.
//!
//! Needs: root (or CAP_BPF + CAP_PERFMON), BTF, ring buffers (5.8+).

use std::mem::MaybeUninit;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::format::{c_str, endpoint, errno_name, ip_version, Clock, Table};
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::ring::RingReader;
use ebpf_workshop::skel::solution_connect_latency::{
    types::latency_event, SolutionConnectLatencySkelBuilder,
};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::TracepointCategory;

/// Trace outgoing TCP connections with their handshake latency in microseconds.
#[derive(Parser)]
#[command(after_help = "Example: sudo target/debug/examples/solution_connect_latency --pid 1234")]
struct Args {
    /// Only connections made by this process id.
    #[arg(long)]
    pid: Option<u32>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::Tracing)?;

    // open → configure → load → attach
    let mut storage = MaybeUninit::uninit();
    let mut open = SolutionConnectLatencySkelBuilder::default()
        .open(&mut storage)
        .context("opening the BPF object")?;
    open.maps.rodata_data.as_mut().context("the program has no read-only data")?.target_pid =
        args.pid.unwrap_or(0);
    let skel = open.load().context("loading the BPF program into the kernel")?;
    let _link = skel
        .progs
        .connect_latency
        .attach_tracepoint(TracepointCategory::Sock, "inet_sock_set_state")
        .context("attaching to the tracepoint sock:inet_sock_set_state")?;
    eprintln!("attached: tracepoint sock:inet_sock_set_state");

    let clock = Clock::start();
    let table = Table::new(&[
        ("TIME(s)", 9),
        ("PID", 7),
        ("COMM", 16),
        ("IP", 2),
        ("SOURCE", 22),
        ("DESTINATION", 22),
        ("LAT(us)", 10),
        ("RESULT", 0),
    ]);
    let summary =
        RingReader::new(&skel.maps.events, &skel.maps.lost_events, |e: &latency_event| {
            let result = match e.ret {
                0 => "ok".to_string(),
                err => errno_name(err), // e.g. ECONNREFUSED
            };
            table.row(&[
                clock.at(e.ts_ns),
                e.pid.to_string(),
                c_str(&e.comm),
                ip_version(e.family),
                endpoint(e.family, &e.saddr, e.sport),
                endpoint(e.family, &e.daddr, e.dport),
                format!("{:.2}", e.latency_ns as f64 / 1000.0),
                result,
            ]);
        })?
        .run()?;
    summary.print("connections");
    Ok(())
}
