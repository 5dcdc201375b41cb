//! # sockmap — local TCP without the TCP/IP stack between the two ends (after the talk)
//!
//! Every established TCP connection of the processes in one cgroup goes into a socket
//! map (both ends, each keyed by its 4-tuple), and every message a socket of the map
//! sends to a peer that is in the map too is put straight into the peer's receive
//! queue: no TCP segments, no IP packets, no loopback device. What Cilium and
//! Merbridge do for the hop between an application and its sidecar proxy. The
//! programs are unmodified socket programs: they call connect(), send(), recv().
//!
//! Hooks: sock_ops (`SEC("sockops")`, attached to a cgroup v2 directory through a
//! bpf_link) puts the sockets into a `BPF_MAP_TYPE_SOCKHASH`; sk_msg (`SEC("sk_msg")`,
//! attached to that map with bpf_prog_attach, since a bpf_link for it needs 6.10)
//! redirects. A line per socket added, the counters every second there is traffic,
//! a summary at exit. A name is created under the cgroup v2 mount (and removed on
//! exit); `--run -- COMMAND` starts a command inside it.
//!
//! Try it, in a namespace of its own (its loopback only):
//! `sudo ip netns add ebpfws-sm && sudo ip -n ebpfws-sm link set lo up`, then
//! `sudo target/debug/examples/sockmap demo --run -- ip netns exec ebpfws-sm iperf3 -s -1`
//! and in another terminal `sudo ip netns exec ebpfws-sm iperf3 -c 127.0.0.1 -t 2`
//! (outside the cgroup: the server's end is in the map, the client's is not, so
//! nothing is redirected; put the client in the cgroup too and everything is).
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF, cgroup v2; Linux 5.8 (the ring buffer).

use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::cgroup::{self, Cgroup};
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::{Clock, Table};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::preflight::{self, Needs};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, MapCore, RingBufferBuilder};

// The skeleton that build.rs generated from bpf/sockmap.bpf.c.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/sockmap.skel.rs"));
}
use skel::types::{sock_event, sock_key, sockmap_counts};
use skel::SockmapSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for sock_event {}
unsafe impl plain::Plain for sockmap_counts {}

/// The longest a report waits in the ring buffer (see bpf/include/wakeup.h).
const POLL_TIMEOUT: Duration = Duration::from_millis(100);

/// Send one cgroup's local TCP traffic from socket to socket, without the TCP/IP
/// stack: a line per socket put into the socket map, the counters every second.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo target/debug/examples/sockmap demo --run -- \\\n    ip netns exec ebpfws-sm iperf3 -s -1"
)]
struct Args {
    /// The cgroup: a name (created under the cgroup v2 mount, removed on exit) or a
    /// path inside the cgroup v2 hierarchy (used as it is, never removed).
    cgroup: String,
    /// Start the command after `--` inside the cgroup, and stop when it exits.
    #[arg(long, requires = "command")]
    run: bool,
    /// The command for --run.
    #[arg(last = true, requires = "run", value_name = "COMMAND")]
    command: Vec<String>,
    /// Remove the cgroup that a killed earlier run created, then exit.
    #[arg(long, conflicts_with = "run")]
    cleanup: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    if args.cleanup {
        return Ok(cgroup::cleanup(&args.cgroup)?);
    }
    let code = run(&args)?; // everything is detached and removed when run() returns
    std::process::exit(code)
}

/// Attach, report until Ctrl-C or the end of the command, and return the exit code.
fn run(args: &Args) -> Result<i32> {
    let cgroup = Cgroup::open_or_create(&args.cgroup)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open + load: the socket map is created and the verifier checks both programs.
    let mut storage = MaybeUninit::uninit();
    let open = SockmapSkelBuilder::default().open(&mut storage).context("opening")?;
    let skel = open.load().context("loading the sock_ops and sk_msg programs into the kernel")?;

    // attach sk_msg to the map first: a socket takes the map's programs when it goes
    // in. No bpf_link before 6.10: bpf_prog_attach(prog, map, BPF_SK_MSG_VERDICT),
    // undone by bpf_prog_detach2 below, or by the kernel when the map goes (killed).
    let (msg_prog, map_fd) = (&skel.progs.redirect_msg, skel.maps.sock_map.as_fd().as_raw_fd());
    msg_prog.attach_sockmap(map_fd).context("attaching the sk_msg program to the socket map")?;
    // attach sock_ops to the cgroup: from now on its TCP sockets run the program.
    let link = skel
        .progs
        .track_sockets
        .attach_cgroup(cgroup.fd())
        .context("attaching the sock_ops program to the cgroup")?;
    let made = if cgroup.created() { "created, removed on exit" } else { "existing" };
    let (name, dir, id) = (cgroup.name(), cgroup.path().display(), cgroup.id());
    eprintln!(
        "attached: sock_ops program track_sockets to cgroup {name} ({made}; id {id}), sk_msg \
         program redirect_msg to the socket map"
    );
    let mut child = args.run.then(|| cgroup.spawn(&args.command)).transpose()?;
    if child.is_none() {
        eprintln!("put processes in it: `echo PID > {dir}/cgroup.procs`; Ctrl-C to stop");
    }

    let (clock, table) = (Clock::start(), Table::new(&COLUMNS));
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<sock_event>(data) {
            let end = if e.passive != 0 { "accept" } else { "connect" };
            let (local, remote) = endpoints(&e.key);
            table.row(&[clock.at(e.ts_ns), end.into(), local, remote, e.cookie.to_string()]);
        }
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR // ends this round of reading, so Ctrl-C is seen
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;

    // Until Ctrl-C, or until the command exits; the counters each second they move.
    let (mut last, mut tick) = (sockmap_counts::default(), Instant::now());
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
            _ => {}
        }
        if tick.elapsed() >= Duration::from_secs(1) {
            tick = Instant::now();
            let n: sockmap_counts = per_cpu_sum(&skel.maps.counts, 0)?;
            if (n.redirected_msgs, n.passed_msgs, n.added)
                != (last.redirected_msgs, last.passed_msgs, last.added)
            {
                let in_map = skel.maps.sock_map.keys().count();
                println!("{:<9} {}; in the map: {in_map} sockets", clock.now(), traffic(&n));
            }
            last = n;
        }
    };
    if let (None, Some(c)) = (status, child.as_mut()) {
        let _ = c.kill(); // stopped by Ctrl-C: the command does not outlive us
        c.wait()?;
    }

    // Detach: no new sockets, then no more redirects (sockets still in the map keep
    // the program they took until the map goes, when `skel` is dropped).
    drop(link);
    let (prog_fd, verdict) = (msg_prog.as_fd().as_raw_fd(), libbpf_sys::BPF_SK_MSG_VERDICT);
    // SAFETY: two open fds of ours; the call only reads them.
    let rc = unsafe { libbpf_sys::bpf_prog_detach2(prog_fd, map_fd, verdict) };
    if rc != 0 {
        eprintln!("detaching the sk_msg program: {}", std::io::Error::from_raw_os_error(-rc));
    }
    stop.store(true, Ordering::SeqCst);
    while ring.consume_raw() == -nix::libc::EINTR {}

    let n: sockmap_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    let in_map = skel.maps.sock_map.keys().count();
    eprintln!("{}", traffic(&n));
    eprintln!(
        "sockets: added {}, closed {}, refused by the full map {}; still in the map {in_map}",
        n.added, n.closed, n.add_failed
    );
    eprintln!("{} socket reports lost", n.lost);
    let code = status.map_or(0, |s| s.code().unwrap_or(1)); // the command's becomes ours
    if status.is_some() {
        eprintln!("the command exited with code {code}");
    }
    Ok(code)
}

/// The table's columns: no PID (see track_sockets() in bpf/sockmap.bpf.c).
const COLUMNS: [(&str, usize); 5] =
    [("TIME(s)", 9), ("END", 8), ("LOCAL", 24), ("REMOTE", 24), ("SOCKET", 0)];

/// The counters as one line: what went socket to socket, what went by TCP.
fn traffic(n: &sockmap_counts) -> String {
    format!(
        "redirected: {} messages, {} bytes; by TCP: {} messages, {} bytes",
        n.redirected_msgs, n.redirected_bytes, n.passed_msgs, n.passed_bytes
    )
}

/// A key's two ends as text. The addresses are IPv6 (IPv4 as ::ffff:a.b.c.d, shown
/// as IPv4), in network order: each word's bytes in memory are the address's bytes.
fn endpoints(k: &sock_key) -> (String, String) {
    let addr = |words: &[u32; 4]| {
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
        let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).expect("16 bytes"));
        IpAddr::V6(v6).to_canonical()
    };
    let at = |ip, port: u32| SocketAddr::new(ip, port as u16).to_string();
    (at(addr(&k.local_ip), k.local_port), at(addr(&k.remote_ip), k.remote_port))
}
