//! # xdp_lb — a load balancer in XDP (the capstone)
//!
//! Clients connect to a virtual address (the VIP) that this host owns. For each
//! new TCP connection the XDP program picks a backend by a hash of the
//! connection's addresses and ports, rewrites the frame towards it (MACs, IPs,
//! checksums) and sends it straight back out with `XDP_TX`; the backend's replies
//! are rewritten back to the client the same way. This host's kernel never sees
//! the balanced packets. Everything else passes to the kernel untouched.
//!
//! Hook: XDP (`SEC("xdp")`) through a bpf_link: nothing stays attached after exit.
//!
//! Try it in the load-balancer lab (`make lab-lb` prints the commands): run it on
//! the balancer, connect to the VIP from the client, and watch each connection
//! land on a backend. While it runs, type `remove ADDR` or `add ADDR` (then Enter)
//! to take a backend out of (or back into) rotation: new connections go only to
//! live backends; existing ones stay on theirs.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF, an interface with XDP support,
//! and the backends in this host's neighbour table (their MACs come from there).

use std::io::BufRead;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::Clock;
use ebpf_workshop::iface::{guard_default_route, interface, ipv4_addresses};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::neigh::{mac_of, mac_string};
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::xdp;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, MapCore, MapFlags, RingBufferBuilder};

// The skeleton that build.rs generated from bpf/xdp_lb.bpf.c.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/xdp_lb.skel.rs"));
}
use skel::types::{backend, backend_counts, lb_counts, lb_event, live_set};
use skel::XdpLbSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for backend {}
unsafe impl plain::Plain for backend_counts {}
unsafe impl plain::Plain for lb_counts {}
unsafe impl plain::Plain for lb_event {}
unsafe impl plain::Plain for live_set {}

/// The longest a report waits in the ring buffer (see bpf/include/wakeup.h).
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// `MAX_BACKENDS` in bpf/xdp_lb.h (the slots of the `backends` map), taken from the
/// generated type rather than copied by hand.
fn max_backends() -> usize {
    live_set::default().slot.len()
}

/// Balance TCP connections to a virtual address over backends, in XDP.
#[derive(Parser)]
#[command(after_help = "Example: sudo ip netns exec ebpflb-lb target/debug/examples/xdp_lb \
    veth-lb --vip 10.78.0.10 --backend 10.78.0.11 --backend 10.78.0.12\n\
    While running, type `remove ADDR`, `add ADDR` or `list` and Enter.")]
struct Args {
    /// Interface the clients and backends are reached on (`ip link` lists them).
    iface: String,
    /// The virtual address clients connect to (an address of this host).
    #[arg(long)]
    vip: Ipv4Addr,
    /// A backend's address (repeat the option); its MAC comes from `ip neigh`.
    #[arg(long = "backend", required = true)]
    backends: Vec<Ipv4Addr>,
    /// No line per new connection, only the counts.
    #[arg(long)]
    quiet: bool,
    /// Replace an XDP program already attached to the interface.
    #[arg(long)]
    replace: bool,
    /// Run even on the interface that carries the default route.
    #[arg(long)]
    force: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    guard_default_route(&iface, args.force, "balance connections in place of the kernel")?;
    if args.backends.len() > max_backends() {
        Err(anyhow!("at most {} backends (MAX_BACKENDS in bpf/xdp_lb.h)", max_backends()))?;
    }
    // The balancer's own address: the backends see it as their client, so their
    // replies come back here. The VIP must be ours too, to get the clients' frames.
    let (addrs, vip, name) = (ipv4_addresses(&iface.name), args.vip, &iface.name);
    if !addrs.contains(&vip) {
        Err(anyhow!(
            "{vip} is not an address of {name}: add it (`ip addr add {vip}/32 dev {name}`)"
        ))?;
    }
    let own =
        addrs.into_iter().find(|&a| a != args.vip).context("no IPv4 address besides the VIP")?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open, then set the read-only data: the program's constants.
    let mut storage = MaybeUninit::uninit();
    let mut open =
        XdpLbSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let rodata = open.maps.rodata_data.as_mut().context("no read-only data")?;
    rodata.vip = u32::from_ne_bytes(args.vip.octets()); // network byte order, as in packets
    rodata.lb_addr = u32::from_ne_bytes(own.octets());
    rodata.report_connections = !args.quiet;

    // load: maps created, program verified. Then fill the backend table.
    let skel = open.load().context("loading the XDP program into the kernel")?;
    let mut table: Vec<backend> = Vec::new();
    for &addr in &args.backends {
        set_backend(&skel.maps.backends, &skel.maps.live, &mut table, addr, true, &iface.name)?;
    }

    // One interface runs one XDP program: refuse (or, with --replace, remove)
    // one that is there already, now that ours has loaded.
    xdp::ensure_free(&iface, args.replace)?;
    let link = skel
        .progs
        .xdp_lb
        .attach_xdp(iface.index as i32)
        .with_context(|| format!("attaching the XDP program to {}", iface.name))?;
    eprintln!(
        "attached: XDP program xdp_lb on {} ({} mode), VIP {}, balancer {own}",
        iface.name,
        xdp::mode(&iface),
        args.vip
    );
    print_backends(&table);

    // Backend changes come as lines on stdin, read on a thread of their own and
    // applied between polls (a map update is one system call; the program sees
    // the new table on its next packet).
    let (tx, commands) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let clock = Clock::start();
    println!("{:<9} {:<8} {:<22} BACKEND", "TIME(s)", "EVENT", "CLIENT");
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<lb_event>(data) {
            let client = format!("{}:{}", Ipv4Addr::from(e.client.to_ne_bytes()), e.client_port);
            let backend = format!("{}:{}", Ipv4Addr::from(e.backend.to_ne_bytes()), e.port);
            println!("{:<9} {:<8} {client:<22} {backend}", clock.at(e.ts_ns), "new");
        }
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;

    let mut last = (Instant::now(), connections(&skel.maps.per_backend, &table)?);
    while !stop.load(Ordering::SeqCst) {
        match ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {}
        }
        // A line on stdin changes the backend table: one map update, which the
        // program sees on its next packet.
        for line in commands.try_iter() {
            match command(&line, &skel.maps.backends, &skel.maps.live, &mut table, &iface.name) {
                Ok(Some(done)) => println!("{:<9} {done}", clock.now()),
                Ok(None) => {}
                Err(e) => eprintln!("{line}: {e:#}"),
            }
        }
        // Every second, while connections come: how many each backend got so far.
        if last.0.elapsed() >= Duration::from_secs(1) {
            let now = connections(&skel.maps.per_backend, &table)?;
            if now != last.1 {
                println!("{:<9} {:<8} {}", clock.now(), "counts", counts_line(&table, &now));
            }
            last = (Instant::now(), now);
        }
    }

    drop(link);
    while ring.consume_raw() == -nix::libc::EINTR {}

    let n: lb_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!(
        "connections: {}",
        counts_line(&table, &connections(&skel.maps.per_backend, &table)?)
    );
    eprintln!(
        "packets: forwarded {}, returned {}, passed {}; dropped: no live backend {}, port collisions {}; {} events lost",
        n.forwarded, n.returned, n.passed, n.no_backend, n.collisions, n.lost
    );
    Ok(())
}

/// Write backend `addr` into the `backends` map: `live` takes new connections, or
/// not (removed: its connections drain). A new address takes the next free slot.
/// Then the list of live slots, from which the program picks.
fn set_backend(
    map: &dyn MapCore,
    live_map: &dyn MapCore,
    table: &mut Vec<backend>,
    addr: Ipv4Addr,
    live: bool,
    iface: &str,
) -> Result<()> {
    let key = u32::from_ne_bytes(addr.octets());
    // The MAC first: a backend the balancer cannot reach takes no slot.
    let mac = if live { Some(mac_of(addr, iface)?) } else { None }; // (again: it may change)
    let slot = match table.iter().position(|b| b.addr == key) {
        Some(slot) => slot,
        None if !live => bail!("{addr} is not a backend"),
        None if table.len() == max_backends() => bail!("all {} slots are taken", max_backends()),
        None => {
            table.push(backend { addr: key, ..Default::default() });
            table.len() - 1
        }
    };
    if let Some(mac) = mac {
        table[slot].mac = mac;
    }
    table[slot].live = live as u8;
    // SAFETY: a plain C struct, viewed as its bytes.
    let value = unsafe { plain::as_bytes(&table[slot]) };
    map.update(&(slot as u32).to_ne_bytes(), value, MapFlags::ANY)
        .with_context(|| format!("writing backend {addr} into the backends map"))?;
    let mut set = live_set::default();
    for (slot, _) in table.iter().enumerate().filter(|(_, b)| b.live == 1) {
        set.slot[set.count as usize] = slot as u32;
        set.count += 1;
    }
    // SAFETY: a plain C struct, viewed as its bytes.
    let value = unsafe { plain::as_bytes(&set) };
    live_map.update(&0u32.to_ne_bytes(), value, MapFlags::ANY).context("writing the live set")
}

/// Connections each backend got, from the per-CPU `per_backend` counters.
fn connections(map: &dyn MapCore, table: &[backend]) -> Result<Vec<u64>> {
    (0..table.len())
        .map(|slot| Ok(per_cpu_sum::<backend_counts>(map, slot as u32)?.connections))
        .collect()
}

/// "10.78.0.11 512 (51%), 10.78.0.12 488 (49%)"
fn counts_line(table: &[backend], counts: &[u64]) -> String {
    let total = counts.iter().sum::<u64>().max(1);
    let parts: Vec<String> = table
        .iter()
        .zip(counts)
        .map(|(b, n)| {
            let state = if b.live == 1 { "" } else { " removed" };
            format!("{} {n} ({}%){state}", Ipv4Addr::from(b.addr.to_ne_bytes()), n * 100 / total)
        })
        .collect();
    parts.join(", ")
}

fn print_backends(table: &[backend]) {
    for (slot, b) in table.iter().enumerate() {
        let state = if b.live == 1 { "live" } else { "removed" };
        let addr = Ipv4Addr::from(b.addr.to_ne_bytes());
        eprintln!("backend {slot}: {addr:<15} {} {state}", mac_string(&b.mac));
    }
}

/// Apply one stdin line: `add ADDR`, `remove ADDR` or `list`. What to print.
fn command(
    line: &str,
    map: &dyn MapCore,
    live_map: &dyn MapCore,
    table: &mut Vec<backend>,
    iface: &str,
) -> Result<Option<String>> {
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        [verb @ ("add" | "remove"), addr] => {
            let addr: Ipv4Addr = addr.parse().context("not an IPv4 address")?;
            set_backend(map, live_map, table, addr, verb == "add", iface)?;
            Ok(Some(format!("{verb:<8} {:<22} {addr}", "")))
        }
        ["list"] => {
            print_backends(table);
            Ok(None)
        }
        [] => Ok(None),
        _ => bail!("commands: add ADDR, remove ADDR, list"),
    }
}
