//! # xdp_lb — a load balancer in XDP (the capstone)
//!
//! Clients connect to a virtual address (the VIP) that this host owns. For each
//! new TCP connection the XDP program picks a backend from a Maglev table (built
//! here, see src/maglev.rs) by a hash of the connection's addresses and ports,
//! and sends the frame straight back out towards it with `XDP_TX`:
//! - `--mode dsr` (direct server return, the default): only the destination MAC
//!   changes; the backends own the VIP on a non-ARPing interface and answer the
//!   client directly, so replies never come back through here.
//! - `--mode nat` (full NAT): addresses, a fresh source port and checksums are
//!   rewritten towards the backend, and its replies are rewritten back.
//!
//! This host's kernel never sees the balanced packets. Everything else passes.
//! TCP; IPv4, and IPv6 too with `--vip6` (dsr only).
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
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, ValueEnum};
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::Clock;
use ebpf_workshop::iface::{guard_default_route, interface, ipv4_addresses};
use ebpf_workshop::maglev;
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
use skel::types::{backend, backend_counts, lb_counts, lb_event, maglev_slot};
use skel::XdpLbSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for backend {}
unsafe impl plain::Plain for backend_counts {}
unsafe impl plain::Plain for lb_counts {}
unsafe impl plain::Plain for lb_event {}
unsafe impl plain::Plain for maglev_slot {}

/// The longest a report waits in the ring buffer (see bpf/include/wakeup.h).
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// How frames reach the backends (see bpf/xdp_lb.bpf.c).
#[derive(Clone, Copy, PartialEq, ValueEnum)]
enum Mode {
    /// Direct server return: only the MAC changes; the backends answer the client.
    Dsr,
    /// Full NAT: the backends see this host as their client; replies come back here.
    Nat,
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
    /// An IPv6 VIP too (dsr only), balanced over the same backends (which own it).
    #[arg(long)]
    vip6: Option<Ipv6Addr>,
    /// dsr: the backends own the VIP too (on lo) and answer clients directly.
    #[arg(long, value_enum, default_value = "dsr")]
    mode: Mode,
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
    // The VIP must be ours, to get the clients' frames; and an address of our own:
    // with --mode nat the backends see it as their client, and reply to it.
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
    rodata.dsr = args.mode == Mode::Dsr;
    if let Some(vip6) = args.vip6 {
        if args.mode == Mode::Nat {
            Err(anyhow!("--vip6 works with --mode dsr only (nat is IPv4 only)"))?;
        }
        // Four 32-bit words as they lie in packets.
        for (word, bytes) in rodata.vip6.iter_mut().zip(vip6.octets().chunks(4)) {
            *word = u32::from_ne_bytes(bytes.try_into().unwrap());
        }
        rodata.has_vip6 = true;
    }

    // load: maps created, program verified. Then fill the backend table.
    let skel = open.load().context("loading the XDP program into the kernel")?;
    let mut backends = Backends {
        slots: &skel.maps.backends,
        maglev: &skel.maps.maglev,
        table: Vec::new(),
        lookup: Vec::new(),
        iface: iface.name.clone(),
    };
    for &addr in &args.backends {
        backends.set(addr, true)?;
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
        "attached: XDP program xdp_lb on {} ({} mode), VIP {}{}, balancer {own}, {}",
        iface.name,
        xdp::mode(&iface),
        args.vip,
        args.vip6.map(|v| format!(" and {v}")).unwrap_or_default(),
        if args.mode == Mode::Dsr { "direct server return" } else { "full NAT" }
    );
    backends.print();

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

    let mut last = (Instant::now(), connections(&skel.maps.per_backend, &backends.table)?);
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
            match backends.command(&line) {
                Ok(Some(done)) => println!("{:<9} {done}", clock.now()),
                Ok(None) => {}
                Err(e) => eprintln!("{line}: {e:#}"),
            }
        }
        // Every second, while connections come: how many each backend got so far.
        if last.0.elapsed() >= Duration::from_secs(1) {
            let now = connections(&skel.maps.per_backend, &backends.table)?;
            if now != last.1 {
                let line = counts_line(&backends.table, &now);
                println!("{:<9} {:<8} {line}", clock.now(), "counts");
            }
            last = (Instant::now(), now);
        }
    }

    drop(link);
    while ring.consume_raw() == -nix::libc::EINTR {}

    let n: lb_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!(
        "connections: {}",
        counts_line(&backends.table, &connections(&skel.maps.per_backend, &backends.table)?)
    );
    eprintln!(
        "packets: forwarded {}, returned {}, passed {}; dropped: no live backend {}, no free port {}; {} events lost",
        n.forwarded, n.returned, n.passed, n.no_backend, n.collisions, n.lost
    );
    Ok(())
}

/// The backends as the program sees them: `table` mirrors the `backends` map (a
/// slot each), `lookup` the `maglev` map (slot numbers), as last written.
struct Backends<'m> {
    slots: &'m dyn MapCore,
    maglev: &'m dyn MapCore,
    table: Vec<backend>,
    lookup: Vec<u32>,
    iface: String,
}

impl Backends<'_> {
    /// Write backend `addr` into the `backends` map: `live` takes new connections,
    /// or not (removed: its connections drain). A new address takes the next free
    /// slot. Then rebuild the Maglev table over the live ones.
    fn set(&mut self, addr: Ipv4Addr, live: bool) -> Result<()> {
        let key = u32::from_ne_bytes(addr.octets());
        // The MAC first: a backend the balancer cannot reach takes no slot.
        let mac = if live { Some(mac_of(addr, &self.iface)?) } else { None }; // (it may change)
        let max = self.slots.max_entries() as usize; // MAX_BACKENDS in bpf/xdp_lb.h
        let slot = match self.table.iter().position(|b| b.addr == key) {
            Some(slot) => slot,
            None if !live => bail!("{addr} is not a backend"),
            None if self.table.len() == max => bail!("all {max} backend slots are taken"),
            None => {
                self.table.push(backend { addr: key, ..Default::default() });
                self.table.len() - 1
            }
        };
        if let Some(mac) = mac {
            self.table[slot].mac = mac;
        }
        self.table[slot].live = live as u8;
        // SAFETY: a plain C struct, viewed as its bytes.
        let value = unsafe { plain::as_bytes(&self.table[slot]) };
        self.slots
            .update(&(slot as u32).to_ne_bytes(), value, MapFlags::ANY)
            .with_context(|| format!("writing backend {addr} into the backends map"))?;
        self.write_maglev()
    }

    /// Build the Maglev table over the live backends (named by their addresses)
    /// and write the entries that changed: about 1/N of them when one backend comes
    /// or goes. Each entry is one update; a packet in between sees an entry of the
    /// old table or of the new one, both real backends.
    fn write_maglev(&mut self) -> Result<()> {
        let size = self.maglev.max_entries() as usize; // MAGLEV_SIZE, a prime
        let live: Vec<u32> =
            (0..self.table.len() as u32).filter(|&s| self.table[s as usize].live == 1).collect();
        let names: Vec<u32> = live.iter().map(|&s| self.table[s as usize].addr).collect();
        let none = self.slots.max_entries(); // MAX_BACKENDS: "no live backend"
        let new: Vec<u32> = match maglev::table(&names, size) {
            t if t.is_empty() => vec![none; size],
            t => t.into_iter().map(|i| live[i]).collect(),
        };
        for (i, &slot) in new.iter().enumerate() {
            if self.lookup.get(i) != Some(&slot) {
                let value = maglev_slot { slot };
                // SAFETY: a plain C struct, viewed as its bytes.
                let bytes = unsafe { plain::as_bytes(&value) };
                self.maglev
                    .update(&(i as u32).to_ne_bytes(), bytes, MapFlags::ANY)
                    .context("writing the Maglev table")?;
            }
        }
        self.lookup = new;
        Ok(())
    }

    fn print(&self) {
        for (slot, b) in self.table.iter().enumerate() {
            let state = if b.live == 1 { "live" } else { "removed" };
            let share = self.lookup.iter().filter(|&&s| s == slot as u32).count();
            let addr = Ipv4Addr::from(b.addr.to_ne_bytes());
            let mac = mac_string(&b.mac);
            eprintln!("backend {slot}: {addr:<15} {mac} {state}, {share} Maglev entries");
        }
    }

    /// Apply one stdin line: `add ADDR`, `remove ADDR` or `list`. What to print.
    fn command(&mut self, line: &str) -> Result<Option<String>> {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            [verb @ ("add" | "remove"), addr] => {
                let addr: Ipv4Addr = addr.parse().context("not an IPv4 address")?;
                self.set(addr, verb == "add")?;
                Ok(Some(format!("{verb:<8} {:<22} {addr}", "")))
            }
            ["list"] => {
                self.print();
                Ok(None)
            }
            [] => Ok(None),
            _ => bail!("commands: add ADDR, remove ADDR, list"),
        }
    }
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
