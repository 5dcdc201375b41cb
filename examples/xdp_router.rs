//! # xdp_router — routing in XDP, with the kernel's own routes
//!
//! A router in a few lines of C: for each packet the XDP program asks the kernel's
//! routing and neighbour tables where it goes (`bpf_fib_lookup`), lowers the TTL
//! (hop limit), puts the next hop's MAC on the frame and sends it out of the
//! egress interface with `XDP_REDIRECT` through a `DEVMAP`. No routing table of
//! its own: `ip route` and `ip neigh` are the tables. What the lookup cannot
//! finish (no neighbour entry yet, TTL 1, packets for the router itself, not IP)
//! goes to the kernel, which knows what to do with it.
//!
//! Hook: XDP (`SEC("xdp")`) on every interface named, through bpf_links: nothing
//! stays attached after exit.
//!
//! Try it in the router lab (`make lab-router` prints the commands): run it on the
//! router, ping the server from the client and watch the forwarded counts grow;
//! `--verbose` adds a line per new flow.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF, interfaces with XDP support
//! (bpf_fib_lookup 4.18, DEVMAP_HASH 5.4), and forwarding switched on
//! (`sysctl net.ipv4.ip_forward=1`): bpf_fib_lookup answers "forwarding disabled"
//! otherwise.

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::{ip, Clock};
use ebpf_workshop::iface::{guard_default_route, interface, Interface};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::xdp;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, MapCore, MapFlags, RingBufferBuilder};

// The skeleton that build.rs generated from bpf/xdp_router.bpf.c.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/xdp_router.skel.rs"));
}
use skel::types::{flow_event, router_counts};
use skel::XdpRouterSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for flow_event {}
unsafe impl plain::Plain for router_counts {}

/// The longest a report waits in the ring buffer (see bpf/include/wakeup.h).
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Forward packets between interfaces in XDP, by the kernel's routing table.
#[derive(Parser)]
#[command(after_help = "Example: sudo ip netns exec ebpfrt-router \
    target/debug/examples/xdp_router veth-rc veth-rs --verbose")]
struct Args {
    /// The interfaces to route between (two or more; `ip link` lists them).
    #[arg(required = true, num_args = 2..)]
    ifaces: Vec<String>,
    /// A line per new flow (source, destination, protocol), not per packet.
    #[arg(long)]
    verbose: bool,
    /// Replace XDP programs already attached to the interfaces.
    #[arg(long)]
    replace: bool,
    /// Run even on the interface that carries the default route.
    #[arg(long)]
    force: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let ifaces = args.ifaces.iter().map(|n| interface(n)).collect::<Result<Vec<_>>>()?;
    for iface in &ifaces {
        // Forwarding here also skips the kernel's firewall (see the chapter).
        guard_default_route(iface, args.force, "forward packets past the kernel's firewall")?;
    }
    // bpf_fib_lookup() honours the kernel's forwarding switch: with it off, every
    // answer is BPF_FIB_LKUP_RET_FWD_DISABLED and nothing is forwarded.
    let v4 = sysctl_on("net/ipv4/ip_forward");
    let v6 = sysctl_on("net/ipv6/conf/all/forwarding");
    if !v4 && !v6 {
        Err(anyhow!(
            "forwarding is off in this namespace, so bpf_fib_lookup() would refuse every packet: \
             `sysctl -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1`"
        ))?;
    }
    for (on, family, key) in
        [(v4, "IPv4", "ipv4.ip_forward"), (v6, "IPv6", "ipv6.conf.all.forwarding")]
    {
        if !on {
            eprintln!(
                "note: {family} forwarding is off (net.{key}=0): {family} goes to the kernel"
            );
        }
    }

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open, set the read-only data, load (maps created, program verified).
    let mut storage = MaybeUninit::uninit();
    let mut open =
        XdpRouterSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    open.maps.rodata_data.as_mut().context("no read-only data")?.report_flows = args.verbose;
    let skel = open.load().context("loading the XDP program into the kernel")?;

    // The egress interfaces: the DEVMAP that bpf_redirect_map() sends through, and
    // a zeroed counter each (one copy per CPU).
    let zeros = vec![vec![0u8; 8]; libbpf_rs::num_possible_cpus()?];
    for iface in &ifaces {
        let key = iface.index.to_ne_bytes();
        skel.maps.egress.update(&key, &key, MapFlags::ANY).with_context(|| {
            format!("adding {} to the DEVMAP (does its driver support XDP redirect?)", iface.name)
        })?;
        skel.maps.forwarded.update_percpu(&key, &zeros, MapFlags::ANY).context("counters")?;
    }

    // One XDP program on every interface: it routes what comes in on any of them.
    let mut links = Vec::new();
    for iface in &ifaces {
        xdp::ensure_free(iface, args.replace)?;
        let link = skel
            .progs
            .xdp_router
            .attach_xdp(iface.index as i32)
            .with_context(|| format!("attaching the XDP program to {}", iface.name))?;
        links.push(link);
    }
    let modes: Vec<String> =
        ifaces.iter().map(|i| format!("{} ({})", i.name, xdp::mode(i))).collect();
    eprintln!("attached: XDP program xdp_router on {}", modes.join(", "));

    let clock = Clock::start();
    println!("{:<9} {:<7} WHAT", "TIME(s)", "EVENT");
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<flow_event>(data) {
            let (from, to) = (ip(e.family, &e.saddr), ip(e.family, &e.daddr));
            let route =
                format!("{} -> {}", name(&ifaces, e.ifindex_in), name(&ifaces, e.ifindex_out));
            let what = format!("{} {from} -> {to} via {route}", protocol(e.protocol));
            println!("{:<9} {:<7} {what}", clock.at(e.ts_ns), "flow");
        }
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;

    // Every second: the counters so far.
    let mut last = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {}
        }
        if last.elapsed() >= Duration::from_secs(1) {
            let (fwd, passed) = summary(&skel.maps.forwarded, &skel.maps.counts, &ifaces)?;
            println!(
                "{:<9} {:<7} forwarded out {fwd}; to the kernel {passed}",
                clock.now(),
                "counts"
            );
            last = Instant::now();
        }
    }

    drop(links); // detached: the kernel forwards again (or not, as its firewall says)
    while ring.consume_raw() == -nix::libc::EINTR {}
    let (fwd, passed) = summary(&skel.maps.forwarded, &skel.maps.counts, &ifaces)?;
    let lost = per_cpu_sum::<router_counts>(&skel.maps.counts, 0)?.lost;
    eprintln!("forwarded out: {fwd}; to the kernel: {passed}; {lost} reports lost");
    Ok(())
}

/// "veth-rc 12, veth-rs 12" and "ttl 1, for the router 4" (zero reasons left out).
fn summary(
    forwarded: &dyn MapCore,
    counts: &dyn MapCore,
    ifaces: &[Interface],
) -> Result<(String, String)> {
    let mut fwd = Vec::new();
    for iface in ifaces {
        let copies = forwarded
            .lookup_percpu(&iface.index.to_ne_bytes(), MapFlags::ANY)
            .context("reading the forwarded counters")?
            .unwrap_or_default();
        let n: u64 = copies.iter().map(|c| u64::from_ne_bytes(c[..8].try_into().unwrap())).sum();
        fwd.push(format!("{} {n}", iface.name));
    }
    let c: router_counts = per_cpu_sum(counts, 0)?;
    let reasons = [
        ("not IP", c.not_ip),
        ("malformed", c.malformed),
        ("ttl", c.ttl),
        ("options", c.options),
        ("for the router", c.local),
        ("no neighbour", c.no_neigh),
        ("forwarding off", c.fwd_disabled),
        ("unroutable", c.unroutable),
        ("other interface", c.not_ours),
    ];
    let passed: Vec<String> =
        reasons.iter().filter(|(_, n)| *n > 0).map(|(what, n)| format!("{what} {n}")).collect();
    let passed = if passed.is_empty() { "0".to_string() } else { passed.join(", ") };
    Ok((fwd.join(", "), passed))
}

/// Is /proc/sys/`key` switched on (1) in this namespace?
fn sysctl_on(key: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/{key}")).is_ok_and(|v| v.trim() != "0")
}

fn name(ifaces: &[Interface], index: u32) -> String {
    ifaces.iter().find(|i| i.index == index).map_or(format!("ifindex {index}"), |i| i.name.clone())
}

fn protocol(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmpv6".into(),
        p => format!("proto {p}"),
    }
}
