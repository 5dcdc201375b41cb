//! # sock_lb — load balancing in connect(), no per-packet NAT (after the talk)
//!
//! What Cilium does instead of kube-proxy for connections that start on the node.
//! When a process in the cgroup calls `connect()` to the service address, a
//! `cgroup/connect4` (or `connect6`) program changes the destination to one live
//! backend, round robin, before the kernel sends anything. The connection is then an
//! ordinary one to that backend: no packet is rewritten, no balancer is in the data
//! path, and the service address, which no host owns, is never on the wire.
//! `cgroup/getpeername4` (`6`) makes the application still see the service address.
//! One line per balanced connection; `add ADDR:PORT` / `remove ADDR:PORT` on stdin
//! change the backends while it runs.
//!
//! Hook: cgroup sock_addr (`SEC("cgroup/connect4")`, `"cgroup/getpeername4"`, and the
//! IPv6 pair), attached to a cgroup v2 directory through bpf_links: nothing stays
//! attached after exit. The cgroup is created (and removed on exit) as in
//! cgroup_firewall; `--run -- COMMAND` starts a command inside it, in any netns.
//!
//! Try it in the load-balancer lab (`make lab-lb`):
//! `sudo target/debug/examples/sock_lb --vip 10.78.0.100:8080 --backend 10.78.0.11:8080 --backend 10.78.0.12:8080 --run -- ip netns exec ebpflb-client bash`
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF, cgroup v2, Linux 5.8
//! (getpeername hooks); the client's pid and command in the reports need 6.1.

use std::io::BufRead;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use ebpf_workshop::cgroup::{self, Cgroup};
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::{c_str, Clock, Table};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::preflight::{self, Needs};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, Link, MapCore, MapFlags, RingBufferBuilder};

// The skeleton that build.rs generated from bpf/sock_lb.bpf.c.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/sock_lb.skel.rs"));
}
use skel::types::{backend, lb_counts, lb_event, live_set};
use skel::SockLbSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for backend {}
unsafe impl plain::Plain for lb_counts {}
unsafe impl plain::Plain for lb_event {}
unsafe impl plain::Plain for live_set {}

/// The longest a report waits in the ring buffer (see bpf/include/wakeup.h).
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const COLUMNS: [(&str, usize); 5] =
    [("TIME(s)", 9), ("PID", 7), ("COMM", 16), ("UID", 6), ("BACKEND", 0)];

/// Balance connect()s to a service address over backends, in the client's kernel.
#[derive(Parser)]
#[command(after_help = "Example: sudo target/debug/examples/sock_lb --vip 10.78.0.100:8080 \
    --backend 10.78.0.11:8080 --backend 10.78.0.12:8080 --run -- ip netns exec ebpflb-client bash\n\
    While running, type `remove ADDR:PORT`, `add ADDR:PORT` or `list` and Enter.")]
struct Args {
    /// The service address clients connect to (IPv6 in brackets); no host owns it.
    #[arg(long, value_name = "ADDR:PORT", value_parser = parse_endpoint, required_unless_present = "cleanup")]
    vip: Option<SocketAddr>,
    /// A backend (repeat the option), of the service's address family.
    #[arg(long = "backend", value_name = "ADDR:PORT", value_parser = parse_endpoint, required_unless_present = "cleanup")]
    backends: Vec<SocketAddr>,
    /// The cgroup: a name (created under the cgroup v2 mount, removed on exit) or a
    /// path inside the cgroup v2 hierarchy (used as it is, never removed).
    #[arg(long, default_value = "sock_lb")]
    cgroup: String,
    /// No line per connection, only the counts at the end.
    #[arg(long)]
    quiet: bool,
    /// Start the command after `--` inside the cgroup, and stop when it exits. It
    /// gets the terminal: backend changes on stdin need a run without --run.
    #[arg(long, requires = "command")]
    run: bool,
    /// The command for --run.
    #[arg(last = true, requires = "run", value_name = "COMMAND")]
    command: Vec<String>,
    /// Remove the cgroup that a killed earlier run created, then exit.
    #[arg(long, conflicts_with_all = ["vip", "backends", "run"])]
    cleanup: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    if args.cleanup {
        return Ok(cgroup::cleanup(&args.cgroup)?);
    }
    let vip = args.vip.context("no --vip")?;
    if let Some(b) = args.backends.iter().find(|b| b.is_ipv4() != vip.is_ipv4()) {
        Err(anyhow!("backend {b} and the service {vip} are of different address families"))?;
    }
    if args.backends.len() > max_backends() {
        Err(anyhow!("at most {} backends (MAX_BACKENDS in bpf/sock_lb.h)", max_backends()))?;
    }
    let code = run(&args, vip)?; // everything is detached and removed when run() returns
    std::process::exit(code)
}

fn run(args: &Args, vip: SocketAddr) -> Result<i32> {
    let cgroup = Cgroup::open_or_create(&args.cgroup)?; // bad input refused before load
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open, then the constants: the service address, in network byte order.
    let mut storage = MaybeUninit::uninit();
    let mut open = SockLbSkelBuilder::default().open(&mut storage).context("opening")?;
    let rodata = open.maps.rodata_data.as_mut().context("no read-only data")?;
    match vip.ip() {
        IpAddr::V4(a) => rodata.vip4 = u32::from_ne_bytes(a.octets()),
        IpAddr::V6(_) => rodata.vip6 = addr_words(vip.ip()),
    }
    rodata.vip_port = vip.port().to_be();
    rodata.report_connections = !args.quiet;
    rodata.has_pid = preflight::sock_addr_has_pid();
    let skel = open.load().context("loading the cgroup sock_addr programs into the kernel")?;
    let mut table: Vec<backend> = Vec::new();
    for &b in &args.backends {
        set_backend(&skel.maps.backends, &skel.maps.live, &mut table, b, true)?;
    }

    // attach: from now on every connect() and getpeername() of a process in the
    // cgroup runs them. bpf_links: when this process ends, even killed, they are gone.
    let progs = &skel.progs;
    let progs = match vip {
        SocketAddr::V4(_) => [&progs.sock_lb_connect4, &progs.sock_lb_getpeername4],
        SocketAddr::V6(_) => [&progs.sock_lb_connect6, &progs.sock_lb_getpeername6],
    };
    let _links = progs
        .iter()
        .map(|p| p.attach_cgroup(cgroup.fd()).context("attaching to the cgroup"))
        .collect::<Result<Vec<Link>>>()?;
    let made = if cgroup.created() { "created, removed on exit" } else { "existing" };
    eprintln!(
        "attached: connect and getpeername programs to cgroup {} ({made}), service {vip}",
        cgroup.name()
    );
    print_backends(&table);
    let mut child = args.run.then(|| cgroup.spawn(&args.command)).transpose()?;

    // Backend changes come as lines on stdin, read on a thread of their own; with
    // --run the command has the terminal instead.
    let (tx, commands) = mpsc::channel::<String>();
    if child.is_none() {
        eprintln!(
            "put processes in it: `echo PID > {}/cgroup.procs`; type add/remove ADDR:PORT, \
             list; Ctrl-C to stop",
            cgroup.path().display()
        );
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }

    let (clock, out) = (Clock::start(), Table::new(&COLUMNS));
    let mut builder = RingBufferBuilder::new();
    let backends = &skel.maps.backends; // read by slot: `table` changes meanwhile
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<lb_event>(data) {
            let pid = if e.pid == 0 { "-".to_string() } else { e.pid.to_string() };
            let b = backends.lookup(&e.slot.to_ne_bytes(), MapFlags::ANY).ok().flatten();
            let b = b.and_then(|v| plain::from_bytes::<backend>(&v).ok().map(endpoint));
            let b = b.map_or("?".to_string(), |a| a.to_string());
            out.row(&[clock.at(e.ts_ns), pid, c_str(&e.comm), e.uid.to_string(), b]);
        }
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;

    let status = loop {
        match ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {}
        }
        // A line on stdin: one map update, which the next connect() sees.
        for line in commands.try_iter() {
            match command(&line, &skel.maps.backends, &skel.maps.live, &mut table) {
                Ok(Some(done)) => println!("{:<9} {done}", clock.now()),
                Ok(None) => {}
                Err(e) => eprintln!("{line}: {e:#}"),
            }
        }
        if let Some(c) = child.as_mut() {
            if let Some(status) = c.try_wait().context("waiting for the command")? {
                break Some(status);
            }
        }
        if stop.load(Ordering::SeqCst) {
            break None;
        }
    };
    if let Some(mut c) = child.filter(|_| status.is_none()) {
        let _ = c.kill(); // Ctrl-C: the command goes too, so the cgroup can go
        let _ = c.wait();
    }
    while ring.consume_raw() == -nix::libc::EINTR {}

    let n: lb_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    let per: Vec<u64> = (0..table.len() as u32)
        .map(|slot| per_cpu_sum::<u64>(&skel.maps.per_backend, slot))
        .collect::<Result<_>>()?;
    let total = per.iter().sum::<u64>().max(1);
    let parts: Vec<String> = table
        .iter()
        .zip(&per)
        .map(|(b, c)| format!("{} {c} ({}%)", endpoint(b), c * 100 / total))
        .collect();
    eprintln!("connections: {}", parts.join(", "));
    eprintln!("refused (no live backend): {}; {} reports lost", n.no_backend, n.lost);
    let code = status.map_or(0, |s| s.code().unwrap_or(1));
    if status.is_some() {
        eprintln!("the command exited with code {code}");
    }
    Ok(code)
}

/// Write backend `addr` into the `backends` map, `live` or not (removed: open
/// connections are not touched, they never pass here again). A new address takes
/// the next free slot. Then the list of live slots, from which the program picks.
fn set_backend(
    map: &dyn MapCore,
    live_map: &dyn MapCore,
    table: &mut Vec<backend>,
    addr: SocketAddr,
    live: bool,
) -> Result<()> {
    let slot = match table.iter().position(|b| endpoint(b) == addr) {
        Some(slot) => slot,
        None if !live => bail!("{addr} is not a backend"),
        None if table.len() == max_backends() => bail!("all {} slots are taken", max_backends()),
        None => {
            let port = addr.port().to_be();
            table.push(backend { addr: addr_words(addr.ip()), port, ..Default::default() });
            table.len() - 1
        }
    };
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

/// Apply one stdin line: `add ADDR:PORT`, `remove ADDR:PORT` or `list`.
fn command(
    line: &str,
    map: &dyn MapCore,
    live_map: &dyn MapCore,
    table: &mut Vec<backend>,
) -> Result<Option<String>> {
    match line.split_whitespace().collect::<Vec<_>>()[..] {
        [verb @ ("add" | "remove"), addr] => {
            let addr = parse_endpoint(addr).map_err(|e| anyhow!(e))?;
            if table.first().is_some_and(|b| endpoint(b).is_ipv4() != addr.is_ipv4()) {
                bail!("not of the service's address family");
            }
            set_backend(map, live_map, table, addr, verb == "add")?;
            Ok(Some(format!("{verb} {addr}")))
        }
        ["list"] => {
            print_backends(table);
            Ok(None)
        }
        [] => Ok(None),
        _ => bail!("commands: add ADDR:PORT, remove ADDR:PORT, list"),
    }
}

fn print_backends(table: &[backend]) {
    for (slot, b) in table.iter().enumerate() {
        let state = if b.live == 1 { "live" } else { "removed" };
        eprintln!("backend {slot}: {} {state}", endpoint(b));
    }
}

/// A backend as an address: IPv4 when only the first word is set.
fn endpoint(b: &backend) -> SocketAddr {
    let bytes: Vec<u8> = b.addr.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let bytes: [u8; 16] = bytes.try_into().expect("16 bytes");
    let ip = match b.addr[1..] {
        [0, 0, 0] => IpAddr::from([bytes[0], bytes[1], bytes[2], bytes[3]]),
        _ => IpAddr::from(bytes),
    };
    SocketAddr::new(ip, u16::from_be(b.port))
}

/// An address as the program's four words, in network byte order (IPv4 in the first).
fn addr_words(ip: IpAddr) -> [u32; 4] {
    let bytes = match ip {
        IpAddr::V4(a) => [a.octets().as_slice(), &[0; 12]].concat(),
        IpAddr::V6(a) => a.octets().to_vec(),
    };
    std::array::from_fn(|i| u32::from_ne_bytes(bytes[4 * i..4 * i + 4].try_into().unwrap()))
}

/// `MAX_BACKENDS` in bpf/sock_lb.h, from the generated type.
fn max_backends() -> usize {
    live_set::default().slot.len()
}

/// `--vip` and `--backend` values.
fn parse_endpoint(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| {
        format!("{s} is not ADDR:PORT (like 10.78.0.100:8080, or [fd78::100]:8080 for IPv6)")
    })
}
