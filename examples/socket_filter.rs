//! # socket_filter — copy only TCP packets to user space (talk step 3)
//!
//! Opens a raw packet socket on an interface, as tcpdump does, and attaches a BPF
//! program as its filter. The program chooses which packets the socket gets a copy
//! of: whole copies of TCP packets, nothing else. The original traffic is not
//! affected in any way. Pings do not reach the socket; the program reports them
//! through a ring buffer instead (the talk used bpf_printk).
//!
//! Hook: socket filter (`SEC("socket")`), attached with `SO_ATTACH_BPF`. Closing
//! the socket removes it.
//!
//! Try it: `cargo run --example socket_filter -- eth0` and browse, or in the lab:
//! `sudo ip netns exec ebpfws-server target/debug/examples/socket_filter veth-server`.
//!
//! Needs: root (or CAP_BPF + CAP_NET_RAW), BTF.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::{ip, tcp_summary, Clock, Table};
use ebpf_workshop::iface::interface;
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::packet_socket::PacketSocket;
use ebpf_workshop::preflight::{self, Needs};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, RingBufferBuilder};

// The skeleton that build.rs generated from bpf/socket_filter.bpf.c: the program,
// its maps, and Rust twins of the C types it shares with us.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/socket_filter.skel.rs"));
}
use skel::types::{echo_event, filter_counts};
use skel::SocketFilterSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for echo_event {}
unsafe impl plain::Plain for filter_counts {}

/// How often we look for packets and reports: the program does not wake us for
/// every ping (see bpf/include/wakeup.h), and the socket is read on the same beat.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Show the TCP packets on an interface through a BPF socket filter.
#[derive(Parser)]
#[command(after_help = "Example: sudo target/debug/examples/socket_filter eth0")]
struct Args {
    /// Interface to watch (`ip link` lists them).
    iface: String,
    /// No lines per packet or ping, only the counts at exit.
    #[arg(long)]
    quiet: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::PacketSocket)?;
    let iface = interface(&args.iface)?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open → configure → load: the verifier checks the filter.
    let mut storage = MaybeUninit::uninit();
    let mut open =
        SocketFilterSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let rodata = open.maps.rodata_data.as_mut().context("no read-only data")?;
    rodata.report_pings = !args.quiet;
    let skel = open.load().context("loading the socket filter into the kernel")?;

    // attach: a socket filter belongs to one socket (SO_ATTACH_BPF); closing the
    // socket removes it. src/packet_socket.rs shows the few socket calls.
    let socket = PacketSocket::open(&iface, &skel.progs.socket_filter)?;
    eprintln!("attached: socket filter on a packet socket bound to {}", iface.name);

    // Two streams of lines under one header: packets the filter kept (read from
    // the socket) and ping reports (read from the ring buffer).
    let clock = Clock::start();
    let table = (!args.quiet).then(|| {
        Table::new(&[
            ("TIME(s)", 9),
            ("KIND", 5),
            ("SOURCE", 26),
            ("DESTINATION", 26),
            ("DETAILS", 0),
        ])
    });
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let (Ok(e), Some(table)) = (plain::from_bytes::<echo_event>(data), &table) {
            let (src, dst) = (ip(e.family, &e.saddr), ip(e.family, &e.daddr));
            let details = format!("id {} seq {}", e.id, e.seq);
            table.row(&[
                clock.at(e.ts_ns),
                "ping".into(),
                src.to_string(),
                dst.to_string(),
                details,
            ]);
        }
        // Checked between records, so a flood of reports cannot hold off Ctrl-C.
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;

    let mut frame = vec![0u8; 65536];
    while !stop.load(Ordering::SeqCst) {
        match ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {}
        }
        // The copies the filter let through wait in the socket.
        while let Some(len) = socket.try_recv(&mut frame) {
            if let (Some(t), Some(table)) = (tcp_summary(&frame[..len]), &table) {
                let details = format!("{} len {}", t.flags, t.len);
                table.row(&[
                    clock.now(),
                    "tcp".into(),
                    t.src.to_string(),
                    t.dst.to_string(),
                    details,
                ]);
            }
        }
    }
    drop(socket); // detaches the filter

    while ring.consume_raw() == -nix::libc::EINTR {}

    let n: filter_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!("{} TCP packets copied to user space", n.tcp_copied);
    eprintln!("{} pings seen, {} events lost", n.pings, n.lost);
    Ok(())
}
