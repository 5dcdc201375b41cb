//! # cgroup_firewall — network policy for one cgroup (after the talk)
//!
//! Drops the packets that processes in one cgroup send to a denied address, prefix
//! or port (or, with `--ingress`, receive from one); processes in other cgroups are
//! untouched. IPv4 and IPv6. This is the hook container network policies are built
//! on: the cgroup is the container. Each drop is reported and counted.
//!
//! Hook: cgroup_skb (`SEC("cgroup_skb/egress")` or `"cgroup_skb/ingress"`),
//! attached to a cgroup v2 directory through a bpf_link: nothing stays attached
//! after exit. A name is created under the cgroup v2 mount (and removed on exit);
//! `--run -- COMMAND` starts a command inside it.
//!
//! A report has no pid: a packet may be sent by the kernel for a socket (a TCP
//! retransmit, from a timer) while no process of the cgroup runs, and cgroup_skb
//! programs cannot ask for the current pid. It has what the packet's socket tells:
//! the owner's uid, the socket's cookie (one number per socket) and its cgroup id.
//!
//! Try it in the lab (`make lab`):
//! `sudo target/debug/examples/cgroup_firewall demo --deny 10.77.0.2 --run -- ip netns exec ebpfws-client ping -c 2 10.77.0.2`
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF, cgroup v2.

use std::mem::MaybeUninit;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::cgroup::{self, Cgroup};
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::{endpoint, ip, Clock, Table};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::preflight::{self, Needs};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, MapCore, MapFlags, RingBufferBuilder};

// The skeleton that build.rs generated from bpf/cgroup_firewall.bpf.c: the two
// programs, the maps, and Rust twins of the C types it shares with us.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/cgroup_firewall.skel.rs"));
}
use skel::types::{drop_event, drop_reason, firewall_counts};
use skel::CgroupFirewallSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for drop_event {}
unsafe impl plain::Plain for firewall_counts {}

/// The longest a report waits in the ring buffer (see bpf/include/wakeup.h).
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Drop one cgroup's packets to denied addresses and ports; report each drop (with
/// the socket's uid, cookie and cgroup: a pid is not known at this hook).
#[derive(Parser)]
#[command(
    after_help = "Example: sudo target/debug/examples/cgroup_firewall demo --deny 10.77.0.2 --run -- \\\n    ip netns exec ebpfws-client ping -c 2 10.77.0.2"
)]
struct Args {
    /// The cgroup: a name (created under the cgroup v2 mount, removed on exit) or a
    /// path inside the cgroup v2 hierarchy (used as it is, never removed).
    cgroup: String,
    /// Drop packets to this address or prefix (with --ingress: from it). Repeatable.
    #[arg(long, value_name = "ADDR[/PREFIX]", value_parser = parse_prefix)]
    deny: Vec<(IpAddr, u8)>,
    /// Drop TCP and UDP packets to this port (with --ingress: from it). Repeatable.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    deny_port: Vec<u16>,
    /// Check the packets the cgroup's processes receive, not those they send.
    #[arg(long)]
    ingress: bool,
    /// Start the command after `--` inside the cgroup, and stop when it exits.
    #[arg(long, requires = "command")]
    run: bool,
    /// The command for --run.
    #[arg(last = true, requires = "run", value_name = "COMMAND")]
    command: Vec<String>,
    /// Remove the cgroup that a killed earlier run created, then exit.
    #[arg(long, conflicts_with_all = ["deny", "deny_port", "run"])]
    cleanup: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    if args.cleanup {
        return Ok(cgroup::cleanup(&args.cgroup)?);
    }
    if args.deny.is_empty() && args.deny_port.is_empty() {
        Err(anyhow::anyhow!("nothing to deny: add --deny ADDR[/PREFIX] or --deny-port N"))?;
    }
    let code = run(&args)?; // everything is detached and removed when run() returns
    std::process::exit(code)
}

/// Attach, report until Ctrl-C or the end of the command, and return the exit code.
fn run(args: &Args) -> Result<i32> {
    // The cgroup first: bad input is refused before anything is loaded.
    let cgroup = Cgroup::open_or_create(&args.cgroup)?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open + load: the maps are created and the verifier checks both programs.
    let mut storage = MaybeUninit::uninit();
    let mut open = CgroupFirewallSkelBuilder::default().open(&mut storage).context("opening")?;
    // With port rules, a TCP/UDP packet whose ports cannot be read is dropped.
    open.maps.rodata_data.as_mut().context("rodata")?.port_rules = !args.deny_port.is_empty();
    let skel = open.load().context("loading the cgroup_skb programs into the kernel")?;

    // Fill the deny lists. An LPM key is struct deny_v4_key (or _v6_key): the
    // prefix length (host order), then the address; the value is the rule's
    // number, for the reports. The kernel checks both sizes against the map's.
    for (rule, &(addr, len)) in (0u32..).zip(&args.deny) {
        let (map, octets) = match addr {
            IpAddr::V4(a) => (&skel.maps.denied_v4, a.octets().to_vec()),
            IpAddr::V6(a) => (&skel.maps.denied_v6, a.octets().to_vec()),
        };
        let key = [u32::from(len).to_ne_bytes().as_slice(), &octets].concat();
        map.update(&key, &rule.to_ne_bytes(), MapFlags::ANY).context("filling denied_v4/v6")?;
    }
    for port in &args.deny_port {
        skel.maps
            .denied_ports
            .update(&port.to_ne_bytes(), &[1], MapFlags::ANY)
            .context("filling denied_ports")?;
    }

    // attach: from now on every packet a socket in the cgroup sends (or receives)
    // runs the program. A bpf_link: when this process ends, even killed, it is gone.
    let (prog, way) = match args.ingress {
        true => (&skel.progs.cgroup_ingress, "from"),
        false => (&skel.progs.cgroup_egress, "to"),
    };
    let link = prog.attach_cgroup(cgroup.fd()).context("attaching the program to the cgroup")?;
    let made = if cgroup.created() { "created, removed on exit" } else { "existing" };
    let (name, dir, id) = (cgroup.name(), cgroup.path().display(), cgroup.id());
    eprintln!(
        "attached: cgroup_skb program {} to cgroup {name} ({made}; id {id})",
        prog.name().to_string_lossy()
    );
    let mut rules: Vec<String> = args.deny.iter().map(|(a, l)| format!("{a}/{l}")).collect();
    rules.extend(args.deny_port.iter().map(|p| format!("port {p}")));
    eprintln!("dropping packets {way} {} for processes in the cgroup", rules.join(", "));
    let mut child = args.run.then(|| cgroup.spawn(&args.command)).transpose()?;
    if child.is_none() {
        eprintln!("put processes in it: `echo PID > {dir}/cgroup.procs`; Ctrl-C to stop");
    }

    // The ring buffer: one callback per drop report, with the record's bytes.
    let (clock, table) = (Clock::start(), Table::new(&COLUMNS));
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<drop_event>(data) {
            table.row(&row(&clock, e, &rules));
        }
        // A negative return ends this round of reading, so Ctrl-C is seen.
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;

    // Until Ctrl-C, or until the command exits.
    let status = loop {
        if stop.load(Ordering::SeqCst) {
            break None;
        }
        if let Some(status) = child.as_mut().map(|c| c.try_wait()).transpose()?.flatten() {
            break Some(status);
        }
        match ring.poll(POLL_TIMEOUT).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {} // reports handled, or interrupted by Ctrl-C
        }
    };
    if let (None, Some(c)) = (status, child.as_mut()) {
        let _ = c.kill(); // stopped by Ctrl-C: the command does not outlive its firewall
        c.wait()?;
    }

    // Detach (close the link), then read what is still in the ring.
    drop(link);
    stop.store(true, Ordering::SeqCst);
    while ring.consume_raw() == -nix::libc::EINTR {}

    // The summary, from the programs' per-CPU counters.
    let n: firewall_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    let (addr, port, unreadable) = (n.dropped_address, n.dropped_port, n.dropped_unreadable);
    let dropped = addr + port + unreadable;
    eprintln!(
        "packets: passed {}, dropped {dropped} (address {addr}, port {port}, unreadable \
         {unreadable})",
        n.passed
    );
    let lost = n.lost;
    eprintln!("{lost} drop reports lost");
    let code = status.map_or(0, |s| s.code().unwrap_or(1)); // the command's becomes ours
    if status.is_some() {
        eprintln!("the command exited with code {code}");
    }
    Ok(code)
}

/// The table's columns: there is no PID (see the top of this file).
const COLUMNS: [(&str, usize); 8] = [
    ("TIME(s)", 9),
    ("PROTO", 6),
    ("SOURCE", 24),
    ("DESTINATION", 24),
    ("UID", 6),
    ("SOCKET", 7),
    ("CGROUP", 7),
    ("RULE", 0),
];

/// One report as the table's cells; `rules` are the --deny rules, then the ports.
fn row(clock: &Clock, e: &drop_event, rules: &[String]) -> Vec<String> {
    use nix::libc::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP};
    let (proto, ports) = match i32::from(e.protocol) {
        IPPROTO_ICMP => ("icmp", false),
        IPPROTO_TCP => ("tcp", true),
        IPPROTO_UDP => ("udp", true),
        IPPROTO_ICMPV6 => ("icmp6", false),
        _ => ("other", false),
    };
    let at = |addr: &[u8; 16], port| match ports {
        true => endpoint(e.family, addr, port),
        false => ip(e.family, addr).to_string(),
    };
    let rule = match e.reason {
        drop_reason::DROP_PORT => format!("port {}", e.rule),
        drop_reason::DROP_UNREADABLE => "unreadable".to_string(),
        _ => rules.get(e.rule as usize).cloned().unwrap_or_default(),
    };
    let cells =
        [clock.at(e.ts_ns), proto.to_string(), at(&e.saddr, e.sport), at(&e.daddr, e.dport)];
    let socket = [u64::from(e.uid), e.cookie, e.cgroup_id].map(|n| n.to_string());
    cells.into_iter().chain(socket).chain([rule]).collect()
}

/// `--deny` values: an address, optionally with a prefix length (all bits if none).
fn parse_prefix(s: &str) -> Result<(IpAddr, u8), String> {
    let (addr, len) = s.split_once('/').map_or((s, None), |(a, l)| (a, Some(l)));
    let addr: IpAddr = addr.parse().map_err(|_| {
        format!("{addr} is not an IPv4 or IPv6 address (like 10.77.0.2 or fd77::2)")
    })?;
    let bits = if addr.is_ipv4() { 32 } else { 128 };
    let bad = |l: &str| format!("/{l} is not a prefix length for {addr}: 0 to {bits}");
    let len =
        len.map_or(Ok(bits), |l| l.parse().ok().filter(|&n| n <= bits).ok_or_else(|| bad(l)))?;
    Ok((addr, len))
}
