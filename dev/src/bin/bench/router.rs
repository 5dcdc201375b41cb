//! Section 9: xdp_router: a UDP flood from the router lab's client to its server,
//! forwarded by the router's kernel and then by xdp_router: packets per second,
//! CPU per packet, and xdp_router's cost in place beside the XDP floor.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ebpf_workshop::netns::in_namespace;
use ebpf_workshop_dev::lab::RouterLab;
use ebpf_workshop_dev::progs::prog_of;

use crate::figures::Figures;
use crate::floor::{Floor, Hook};
use crate::stats::{BpfStats, RunStats};
use crate::{median, start, stop_cleanly, undo};

const FLOOD: Duration = Duration::from_secs(2);
const PORT: u16 = 9999;

pub fn title() -> String {
    "xdp_router: forwarding by the kernel and in XDP".to_string()
}

/// What one flood measured.
#[derive(Clone, Copy)]
struct Flood {
    /// Frames that reached the server's veth (the floor program's runs there).
    per_s: f64,
    /// Busy time of the sender's CPU per frame forwarded, in ns: on veth the
    /// router's and the server's receive work run there too, in softirq.
    cpu_ns: f64,
}

pub fn run(examples: &Path, json: &mut Figures) -> Result<()> {
    const ROUNDS: usize = 3;
    let lab = RouterLab::up(&format!("ebpfws-rtbench{}", std::process::id()))?;
    undo().router_lab = Some(lab.name.clone());
    // The server's veth end already has the lab's XDP pass program: it runs once
    // per frame that arrives there, whoever forwarded it. It counts the packets
    // and it is the floor.
    let floor = Floor::up(Hook::Xdp, &lab.server)?;
    // The sender on one CPU, everything else (the server's reader) on the other.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (sender_cpu, reader_cpu) = (cpus - 1, 0);
    // A socket on the server drains the flood (else ICMP errors would come back).
    let sink = in_namespace(&lab.server.ns, || UdpSocket::bind(("0.0.0.0", PORT)))??;
    sink.set_read_timeout(Some(Duration::from_millis(200)))?;
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let drain = std::thread::spawn(move || {
        let _ = pin(reader_cpu);
        let mut buf = [0u8; 2048];
        while !flag.load(Ordering::SeqCst) {
            let _ = sink.recv(&mut buf);
        }
    });
    let _stats = BpfStats::set(true)?;
    let to = SocketAddr::new(lab.server.ipv4.into(), PORT);
    let flood = |what: &str| -> Result<Flood> {
        let ns = lab.client.ns.clone();
        // One sender, as fast as it can, pinned: on veth the router's and the
        // receiver's work runs mostly in the sender's softirq, on its CPU.
        let before = (floor.stats()?, busy_ns(sender_cpu)?);
        in_namespace(&ns, || -> Result<()> {
            pin(sender_cpu)?;
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect(to)?;
            let payload = [0u8; 64];
            let started = Instant::now();
            while started.elapsed() < FLOOD {
                for _ in 0..256 {
                    let _ = s.send(&payload); // ENOBUFS now and then: the flood is the point
                }
            }
            Ok(())
        })?
        .with_context(|| format!("the UDP flood ({what})"))?;
        let frames = floor.stats()?.since(before.0).runs as f64;
        let busy = busy_ns(sender_cpu)? - before.1;
        Ok(Flood { per_s: frames / FLOOD.as_secs_f64(), cpu_ns: busy as f64 / frames.max(1.0) })
    };

    // Rounds that alternate, so that the machine's other load falls on both alike.
    let (mut kernel, mut xdp, mut cost, mut floor_cost) = (vec![], vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        kernel.push(flood("kernel forwarding")?);
        let router = start({
            let mut cmd = lab.router.cmd(examples.join("xdp_router"));
            cmd.args([lab.router.iface, lab.router_server_side.iface]);
            cmd
        })?;
        let prog = prog_of(router.pid(), "xdp_router")?;
        let (before, floor_before) = (RunStats::of(prog.as_fd())?, floor.stats()?);
        xdp.push(flood("xdp_router")?);
        cost.push(RunStats::of(prog.as_fd())?.since(before).per_run());
        floor_cost.push(floor.stats()?.since(floor_before).per_run());
        stop_cleanly(router)?;
    }
    done.store(true, Ordering::SeqCst);
    drain.join().expect("drain thread");
    let mid = |v: &[Flood], f: fn(&Flood) -> f64| median(v.iter().map(f).collect());
    let (k_pps, k_cpu) = (mid(&kernel, |f| f.per_s), mid(&kernel, |f| f.cpu_ns));
    let (x_pps, x_cpu) = (mid(&xdp, |f| f.per_s), mid(&xdp, |f| f.cpu_ns));
    let (cost, floor_ns) = (median(cost), median(floor_cost));

    println!(
        "A UDP flood (64-byte payloads, one sender pinned to CPU {sender_cpu}, {} s) from the client",
        FLOOD.as_secs()
    );
    println!("through the router to the server, on veth; medians of {ROUNDS} alternating rounds.");
    println!("CPU is the sender's CPU's busy time per packet: sender, router and the server's");
    println!(
        "receive path all run there in softirq (the server's reader runs on CPU {reader_cpu}).\n"
    );
    println!("| forwarded by | packets/s | vs. kernel | CPU ns/packet | in place ns/packet |");
    println!("|---|---|---|---|---|");
    println!("| the router's kernel | {k_pps:.0} | 1.00x | {k_cpu:.0} | |");
    println!(
        "| xdp_router | {x_pps:.0} | {:.2}x | {x_cpu:.0} | {cost:.0} (floor {floor_ns:.0}) |",
        x_pps / k_pps
    );
    json.record("router_kernel_pps", k_pps);
    json.record("router_kernel_cpu_ns_per_packet", k_cpu);
    json.record("router_xdp_pps", x_pps);
    json.record("router_xdp_cpu_ns_per_packet", x_cpu);
    json.record("router_xdp_ns_per_packet", cost);
    json.record("router_xdp_floor_ns_per_packet", floor_ns);
    undo().router_lab = None; // `lab` removes itself when dropped, right after this
    Ok(())
}

/// Run the calling thread on `cpu` only.
fn pin(cpu: usize) -> Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)?;
    Ok(())
}

/// Busy time of `cpu` so far (/proc/stat: user, nice, system, irq, softirq,
/// steal), in ns.
fn busy_ns(cpu: usize) -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(&name))
        .with_context(|| format!("no {name} in /proc/stat"))?;
    let f: Vec<u64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let ticks: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum();
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as u64;
    Ok(ticks * 1_000_000_000 / hz)
}
