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

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::{c_str, endpoint, errno_name, ip_version, Clock, Table};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::preflight::{self, Needs};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, RingBufferBuilder, TracepointCategory};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/solution_connect_latency.skel.rs"));
}
use skel::types::latency_event;
use skel::SolutionConnectLatencySkelBuilder;

// SAFETY: a plain C struct of integers.
unsafe impl plain::Plain for latency_event {}

/// How often we read the ring buffer when the program has not woken us.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Trace outgoing TCP connections with their handshake latency in microseconds.
#[derive(Parser)]
#[command(after_help = "Example: sudo target/debug/examples/solution_connect_latency --pid 1234")]
struct Args {
    /// Only connections made by this process id.
    #[arg(long)]
    pid: Option<u32>,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Tracing)?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open → configure → load → attach
    let mut storage = MaybeUninit::uninit();
    let mut open = SolutionConnectLatencySkelBuilder::default()
        .open(&mut storage)
        .context("opening the BPF object")?;
    open.maps.rodata_data.as_mut().context("the program has no read-only data")?.target_pid =
        args.pid.unwrap_or(0);
    let skel = open.load().context("loading the BPF program into the kernel")?;
    let attached = skel
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
    let seen = Cell::new(0u64);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<latency_event>(data) {
            seen.set(seen.get() + 1);
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
        }
        // Checked between records, so a stream of events cannot hold off Ctrl-C.
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;
    while !stop.load(Ordering::SeqCst) {
        match ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {}
        }
    }
    drop(attached); // detach, then read what is left
    while ring.consume_raw() == -nix::libc::EINTR {}
    let lost: u64 = per_cpu_sum(&skel.maps.lost_events, 0)?;
    eprintln!("{} connections seen, {lost} events lost", seen.get());
    Ok(())
}
