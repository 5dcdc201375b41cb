//! Section 10: sock_lb: connections per second from the load-balancer lab's client
//! to its two backends: direct; through sock_lb (balanced in connect(), no
//! balancer in the data path); through xdp_lb (full NAT in XDP on the balancer);
//! through the kernel's own NAT on the balancer (nftables DNAT with `numgen`, and
//! SNAT, as kube-proxy's nftables mode does it).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ebpf_workshop::netns::in_namespace;
use ebpf_workshop_dev::lab::{answered_by, serve_name, LbLab, LB_PORT, LB_SERVICE};

use crate::figures::Figures;
use crate::stats::{BpfStats, RunStats};
use crate::{median, start, stop_cleanly, undo};
use ebpf_workshop_dev::progs::prog_of;
use std::os::fd::AsFd;

const CONNECTIONS: usize = 2000;
const ROUNDS: usize = 5;
const THREADS: usize = 4; // clients at a time

pub fn title() -> String {
    "sock_lb: connections per second, balanced in connect() or per packet".to_string()
}

/// CONNECTIONS connections (a line, the whole answer, close) from the client's
/// namespace, THREADS at a time, connection i to `targets[i % len]`.
fn rate(lab: &LbLab, targets: &[SocketAddr]) -> Result<f64> {
    let started = Instant::now();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let (ns, targets) = (lab.client.ns.clone(), targets.to_vec());
            std::thread::spawn(move || {
                in_namespace(&ns, || -> Result<()> {
                    for i in 0..CONNECTIONS / THREADS {
                        let to = targets[(t + i) % targets.len()];
                        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
                            .with_context(|| format!("connecting to {to}"))?;
                        s.set_read_timeout(Some(Duration::from_secs(3)))?;
                        s.write_all(b"hi\n")?;
                        let mut answer = Vec::new();
                        s.read_to_end(&mut answer)?;
                        answered_by(&answer).context("an incomplete answer")?;
                    }
                    Ok(())
                })?
            })
        })
        .collect();
    for w in workers {
        w.join().expect("client thread")?;
    }
    Ok(CONNECTIONS as f64 / started.elapsed().as_secs_f64())
}

/// This process's cgroup v2 directory, from /proc/self/cgroup ("0::/path"), below
/// `mount`.
fn own_cgroup(mount: &Path) -> Result<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/cgroup")?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::")).context("no cgroup v2 line")?;
    Ok(mount.join(rel.trim_start_matches('/')))
}

/// Move this whole process (all its threads) into the cgroup at `dir`.
fn join(dir: &Path) -> Result<()> {
    std::fs::write(dir.join("cgroup.procs"), std::process::id().to_string())
        .with_context(|| format!("moving the bench into {}", dir.display()))
}

/// The number after `word` in `text` ("forwarded 48," -> 48).
fn number_after(text: &str, word: &str) -> Result<f64> {
    let at = text.find(word).with_context(|| format!("no \"{word}\" in:\n{text}"))?;
    let digits: String =
        text[at + word.len()..].chars().take_while(|c| c.is_ascii_digit()).collect();
    digits.parse().with_context(|| format!("no number after \"{word}\""))
}

pub fn run(examples: &Path, json: &mut Figures) -> Result<()> {
    let lab = LbLab::up(&format!("ebpflb-sbench{}", std::process::id()))?;
    undo().lb_lab = Some(lab.name.clone());
    for (b, name) in lab.backends.iter().zip(["b1", "b2"]) {
        let listener = in_namespace(&b.ns, || std::net::TcpListener::bind(("0.0.0.0", LB_PORT)))??;
        std::thread::spawn(move || serve_name(listener, name));
    }
    let backends: Vec<SocketAddr> =
        lab.backends.iter().map(|b| SocketAddr::new(b.ipv4.into(), LB_PORT)).collect();
    let (service, vip) =
        (SocketAddr::new(LB_SERVICE.into(), LB_PORT), SocketAddr::new(lab.vip.into(), LB_PORT));

    // sock_lb runs throughout; the bench itself joins its cgroup for its rounds
    // (the client threads run in the lab's client namespace) and leaves after each.
    let cg = format!("sock_lb_bench{}", std::process::id());
    let mut cmd = Command::new(examples.join("sock_lb"));
    cmd.args(["--vip", &service.to_string(), "--cgroup", &cg, "--quiet"]);
    for b in &backends {
        cmd.args(["--backend", &b.to_string()]);
    }
    let sock_lb = start(cmd)?;
    // The kernel times every run of every program while this lives (restored after).
    let _stats = BpfStats::set(true)?;
    let connect4 = prog_of(sock_lb.pid(), "sock_lb_connect")?; // names stop at 15 bytes
    let mut in_connect = RunStats::default();
    let dir = ebpf_workshop::cgroup::resolve(&cg)?;
    let home = own_cgroup(dir.parent().context("the cgroup mount")?)?;

    // xdp_lb on the balancer, as the lab's instructions run it (full NAT); started
    // for its own rounds only, since it takes every packet for the VIP first.
    let (mut in_xdp, mut xdp_packets) = (RunStats::default(), 0.0);
    let mut xdp_lb = || -> Result<f64> {
        let mut cmd = lab.lb.cmd(examples.join("xdp_lb"));
        cmd.args([lab.lb.iface, "--vip", &lab.vip.to_string(), "--quiet"]);
        for b in &lab.backends {
            cmd.args(["--backend", &b.ipv4.to_string()]);
        }
        let running = start(cmd)?;
        let prog = prog_of(running.pid(), "xdp_lb")?;
        let before = RunStats::of(prog.as_fd())?;
        let r = rate(&lab, &[vip])?;
        in_xdp.add(RunStats::of(prog.as_fd())?.since(before));
        // Its own count of the packets it rewrote, both ways (see below).
        let said = stop_cleanly(running)?;
        xdp_packets += number_after(&said, "forwarded ")? + number_after(&said, "returned ")?;
        Ok(r)
    };

    // The kernel's NAT on the balancer: DNAT to a backend picked by a counter
    // (numgen inc), SNAT to the balancer so that replies come back through it.
    let (b1, b2, own) = (lab.backends[0].ipv4, lab.backends[1].ipv4, lab.lb.ipv4);
    let rules = format!(
        "table ip sock_lb_bench {{\n\
         chain pre {{ type nat hook prerouting priority dstnat;\n\
           ip daddr {} tcp dport {LB_PORT} dnat to numgen inc mod 2 map {{ 0 : {b1}, 1 : {b2} }}; }}\n\
         chain post {{ type nat hook postrouting priority srcnat;\n\
           ip daddr {{ {b1}, {b2} }} tcp dport {LB_PORT} snat to {own}; }}\n}}\n",
        lab.vip
    );
    lab.lb.sysctl("net/ipv4/ip_forward", "1")?;
    lab.lb.sysctl("net/ipv4/conf/all/send_redirects", "0")?;
    lab.lb.sysctl(&format!("net/ipv4/conf/{}/send_redirects", lab.lb.iface), "0")?;
    let nft = |script: &str| -> Result<()> {
        let mut nft = lab
            .lb
            .cmd("nft")
            .args(["-f", "-"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .context("running nft (nftables: `apt-get install nftables`)")?;
        nft.stdin.take().context("nft's stdin")?.write_all(script.as_bytes())?;
        if !nft.wait()?.success() {
            bail!("nft refused:\n{script}");
        }
        Ok(())
    };
    let nat = || -> Result<f64> {
        nft(&rules)?;
        let r = rate(&lab, &[vip]);
        nft("delete table ip sock_lb_bench\n")?;
        r
    };

    // Rounds of the four, one after the other, and the median of each: the
    // machine's other load then falls on all of them alike.
    let mut runs: [Vec<f64>; 4] = Default::default();
    for _ in 0..ROUNDS {
        runs[0].push(rate(&lab, &backends)?);
        join(&dir)?;
        let before = RunStats::of(connect4.as_fd())?;
        let r = rate(&lab, &[service]);
        join(&home)?;
        runs[1].push(r?);
        in_connect.add(RunStats::of(connect4.as_fd())?.since(before));
        runs[2].push(xdp_lb()?);
        runs[3].push(nat()?);
    }
    drop(connect4);
    let said = stop_cleanly(sock_lb)?;
    let line = said.lines().find(|l| l.starts_with("connections:")).context("sock_lb's summary")?;
    let balanced: f64 = line.split(' ').filter_map(|w| w.parse::<f64>().ok()).sum();
    let [direct, through_sock_lb, through_xdp_lb, through_nat] = runs.map(median);

    println!(
        "Median of {ROUNDS} rounds of {CONNECTIONS} connections from the client ({THREADS} at a time;"
    );
    println!("each sends a line and reads a 5.2 kB answer) to the same two backends; the");
    println!("balancers run with --quiet.\n");
    println!(
        "| path | connections/s | vs. direct | BPF runs per connection | BPF ns per connection |"
    );
    println!("|---|---|---|---|---|");
    // Runs per connection from the examples' own counts; the time of a run from the
    // kernel's statistics. (Not the kernel's run counts: another process on the
    // machine may switch kernel.bpf_stats_enabled off for a while, and then the runs
    // it missed are missing from both of its totals alike.)
    let total = (ROUNDS * CONNECTIONS) as f64;
    let (connect_runs, xdp_runs) = (balanced / total, xdp_packets / total);
    let (connect_ns, xdp_ns) = (in_connect.per_run() * connect_runs, in_xdp.per_run() * xdp_runs);
    let rows = [
        ("client → backends, direct", direct, String::new()),
        (
            "client → service → sock_lb in connect() → backends",
            through_sock_lb,
            format!("{connect_runs:.1} | {connect_ns:.0}"),
        ),
        (
            "client → VIP → xdp_lb (full NAT in XDP) → backends",
            through_xdp_lb,
            format!("{xdp_runs:.1} | {xdp_ns:.0}"),
        ),
        (
            "client → VIP → nftables DNAT + SNAT on the balancer → backends",
            through_nat,
            String::new(),
        ),
    ];
    for (path, r, bpf) in rows {
        let bpf = if bpf.is_empty() { " | ".to_string() } else { bpf };
        println!("| {path} | {r:.0} | {:.2}x | {bpf} |", r / direct);
    }
    json.record("sock_lb_connect4_ns_per_connection", connect_ns);
    json.record("sock_lb_xdp_lb_ns_per_connection", xdp_ns);
    json.record("sock_lb_direct_conn_per_s", direct);
    json.record("sock_lb_conn_per_s", through_sock_lb);
    json.record("sock_lb_xdp_lb_conn_per_s", through_xdp_lb);
    json.record("sock_lb_nft_nat_conn_per_s", through_nat);
    undo().lb_lab = None; // `lab` removes itself (and the nft table) when dropped
    Ok(())
}
