//! # solution_pingpong_one_address — answer pings for one address only (exercise solution)
//!
//! xdp_pingpong, narrowed: the XDP program turns IPv4 pings (ICMP echo requests)
//! sent to the address given with `--only` into replies in the driver (`XDP_TX`).
//! Pings to every other address of the machine, and IPv6 pings, pass to the kernel,
//! which answers them (or not) as usual. The address reaches the program as a
//! `const volatile` global set before load: the verifier sees it as a constant.
//!
//! Hook: XDP (`SEC("xdp")`) through a bpf_link: nothing stays attached after exit.
//!
//! Try it in the lab (`make lab`): give the server a second address
//! (`sudo ip -n ebpfws-server addr add 10.77.0.3/24 dev veth-server`), turn its
//! kernel's echo replies off (`sudo ip netns exec ebpfws-server sysctl
//! net.ipv4.icmp_echo_ignore_all=1`), run
//! `sudo ip netns exec ebpfws-server target/debug/examples/solution_pingpong_one_address veth-server --only 10.77.0.2`
//! and ping 10.77.0.2 (answered) and 10.77.0.3 (not) from ebpfws-client.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), BTF, an interface with XDP support; on
//! veth, an XDP program on the peer (the lab has one) or XDP_TX frames are dropped.

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::ip;
use ebpf_workshop::iface::{interface, ipv4_addresses, note_default_route};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::pings::PingTable;
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::xdp;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, RingBufferBuilder};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/solution_pingpong_one_address.skel.rs"));
}
use skel::types::{echo_event, pingpong_counts};
use skel::SolutionPingpongOneAddressSkelBuilder;

// SAFETY: plain C structs of integers.
unsafe impl plain::Plain for echo_event {}
unsafe impl plain::Plain for pingpong_counts {}

/// How often we read the ring buffer when the program has not woken us.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Answer pings to one IPv4 address with XDP_TX; all other pings go to the kernel.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/solution_pingpong_one_address veth-server --only 10.77.0.2"
)]
struct Args {
    /// Interface to answer pings on (`ip link` lists them).
    iface: String,
    /// The IPv4 address whose pings the program answers.
    #[arg(long, value_name = "ADDR")]
    only: Ipv4Addr,
    /// Replace an XDP program already attached to the interface.
    #[arg(long)]
    replace: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    note_default_route(&iface, "answers pings for that address there in place of the kernel");
    if !ipv4_addresses(&iface.name).contains(&args.only) {
        eprintln!(
            "note: {} is not an address of {}: nobody will send pings for it there \
             (`ip addr show {}` lists its addresses)",
            args.only, iface.name, iface.name
        );
    }

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open → configure → load → attach
    let mut storage = MaybeUninit::uninit();
    let mut open = SolutionPingpongOneAddressSkelBuilder::default()
        .open(&mut storage)
        .context("opening the BPF object")?;
    // octets() is network order; from_ne_bytes keeps those bytes as they are, so
    // the program can compare with iphdr.daddr without bpf_ntohl().
    let rodata = open.maps.rodata_data.as_mut().context("no read-only data")?;
    rodata.only_addr = u32::from_ne_bytes(args.only.octets());
    let skel = open.load().context("loading the XDP program into the kernel")?;
    // One interface runs one XDP program: refuse (or, with --replace, remove)
    // one that is there already, now that ours has loaded.
    xdp::ensure_free(&iface, args.replace)?;
    let link = skel
        .progs
        .xdp_pingpong_one
        .attach_xdp(iface.index as i32)
        .with_context(|| format!("attaching the XDP program to {}", iface.name))?;
    eprintln!(
        "attached: XDP program xdp_pingpong_one on {} ({} mode)",
        iface.name,
        xdp::mode(&iface)
    );
    eprintln!("answering pings to {}", args.only);

    let pings = PingTable::new(true);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<echo_event>(data) {
            let (src, dst) = (ip(e.family, &e.saddr), ip(e.family, &e.daddr));
            pings.row(e.ts_ns, "answered", src, dst, e.id, e.seq);
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
    drop(link); // detach, then read what is left

    while ring.consume_raw() == -nix::libc::EINTR {}

    let n: pingpong_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!("packets: replied {}, passed {}", n.replied, n.passed);
    eprintln!("{} pings seen, {} events lost", pings.rows(), n.lost);
    Ok(())
}
