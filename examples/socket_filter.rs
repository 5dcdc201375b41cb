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

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::echo::EchoEvent;
use ebpf_workshop::format::{ip, Clock, Table};
use ebpf_workshop::frames::tcp_summary;
use ebpf_workshop::net::interface;
use ebpf_workshop::packet_socket::PacketSocket;
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::ring::RingReader;
use ebpf_workshop::skel::socket_filter::SocketFilterSkelBuilder;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// Show the TCP packets on an interface through a BPF socket filter.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/socket_filter veth-server"
)]
struct Args {
    /// Interface to watch (`ip link` lists them).
    iface: String,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::PacketSocket)?;
    let iface = interface(&args.iface)?;

    let mut storage = MaybeUninit::uninit();
    let open =
        SocketFilterSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let skel = open.load().context("loading the socket filter into the kernel")?;
    let socket = PacketSocket::open(&iface, &skel.progs.socket_filter)?;
    eprintln!("attached: socket filter on a packet socket bound to {}", iface.name);

    // Two streams of lines under one header: packets the filter kept (read from
    // the socket) and ping reports (read from the ring buffer).
    let clock = Clock::start();
    let table = Table::new(&[
        ("TIME(s)", 9),
        ("KIND", 5),
        ("SOURCE", 26),
        ("DESTINATION", 26),
        ("DETAILS", 0),
    ]);
    let mut frame = vec![0u8; 65536];
    let kept = Cell::new(0u64);
    let summary = RingReader::new(&skel.maps.events, &skel.maps.lost_events, |e: &EchoEvent| {
        let (src, dst) = (ip(e.family, &e.saddr), ip(e.family, &e.daddr));
        table.row(&[
            clock.at(e.ts_ns),
            "ping".into(),
            src.to_string(),
            dst.to_string(),
            format!("id {} seq {}", e.id, e.seq),
        ]);
    })?
    .watch(socket.as_fd(), || {
        while let Some(len) = socket.try_recv(&mut frame) {
            kept.set(kept.get() + 1);
            if let Some(t) = tcp_summary(&frame[..len]) {
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
    })
    .run()?;
    eprintln!("\n{} TCP packets copied to user space", kept.get());
    summary.print("pings");
    Ok(())
}
