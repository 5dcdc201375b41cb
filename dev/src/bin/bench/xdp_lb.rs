//! Section 7: xdp_lb against the kernel's own balancer, with real servers and a
//! real client: nginx (one process each) on the two backends of the
//! load-balancer lab, ab on its client. Requests per second and CPU per request,
//! in one run, for: straight to the backends, xdp_lb --mode dsr, xdp_lb --mode
//! nat, and nftables DNAT + masquerade on the balancer. And what Maglev moves
//! when one of three backends goes.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ebpf_workshop::netns::in_namespace;
use ebpf_workshop_dev::harness::{Running, Stdout};
use ebpf_workshop_dev::lab::{Host, LbLab, LB_PORT};
use ebpf_workshop_dev::progs::prog_of;

use crate::figures::Figures;
use crate::stats::{BpfStats, RunStats};
use crate::{start, undo};

/// Requests per row (ab -n), and how many at a time (ab -c).
const REQUESTS: u32 = 20_000;
const CONCURRENCY: u32 = 8;
/// Turns each path takes; the best counts.
const ROUNDS: usize = 3;

pub fn title() -> String {
    "xdp_lb: direct server return, full NAT and the kernel's nftables, with nginx and ab"
        .to_string()
}

pub fn run(examples: &Path, json: &mut Figures) -> Result<()> {
    let lab = LbLab::up(&format!("ebpflb-bench{}", std::process::id()))?;
    undo().lb_lab = Some(lab.name.clone());
    let dir = std::env::temp_dir().join(&lab.name);
    let _servers: Vec<Running> = lab
        .backends
        .iter()
        .zip(["b1", "b2"])
        .map(|(b, name)| nginx(&lab.client, b, &dir.join(name), name))
        .collect::<Result<_>>()?;
    let vip = lab.vip;

    // Straight to one backend. One ab in every row: ab, one process, is the
    // client's limit (two of them would make twice the client), and one nginx
    // answers more than it asks.
    let b1 = lab.backends[0].ipv4;
    let direct = || measure(|| ab(&lab.client, b1, REQUESTS, CONCURRENCY));

    // xdp_lb on the balancer, as the lab's instructions run it. While it runs,
    // it takes the VIP's packets before the kernel's nftables could.
    let balanced = |mode: &str| -> Result<Row> {
        let mut cmd = lab.lb.cmd(examples.join("xdp_lb"));
        cmd.args([lab.lb.iface, "--vip", &vip.to_string(), "--quiet", "--mode", mode]);
        for b in &lab.backends {
            cmd.args(["--backend", &b.ipv4.to_string()]);
        }
        let running = start(cmd)?; // stdin /dev/null: no backend changes
        let prog = prog_of(running.pid(), "xdp_lb")?;
        let _stats = BpfStats::set(true)?;
        let before = RunStats::of(prog.as_fd())?;
        let mut row = measure(|| ab(&lab.client, vip, REQUESTS, CONCURRENCY))?;
        let cost = RunStats::of(prog.as_fd())?.since(before);
        row.prog_ns = Some(cost.ns as f64 / f64::from(REQUESTS));
        Ok(row)
    };

    // The kernel's own: DNAT to the backends in turn (numgen), masquerade so that
    // the replies come back through the balancer, as with --mode nat.
    nftables(&lab)?;
    let kernel = || measure(|| ab(&lab.client, vip, REQUESTS, CONCURRENCY));

    // The paths take turns, ROUNDS times, and each keeps its best round: on a
    // shared machine, another's load then weighs on all of them alike.
    let mut best = [Row::default(); 4];
    for _ in 0..ROUNDS {
        let round = [direct()?, balanced("dsr")?, balanced("nat")?, kernel()?];
        for (b, r) in best.iter_mut().zip(round) {
            if r.rate > b.rate {
                *b = r;
            }
        }
    }
    let [direct, dsr, nat, nft] = best;

    println!("ab -n {REQUESTS} -c {CONCURRENCY} (a new connection per request) from the lab's");
    println!("client; nginx, one process each, on both backends. CPU: the whole machine's");
    println!("busy time (/proc/stat) per request, client and servers included; xdp_lb: its");
    println!("program's own time in place (bpf_stats) per request. Best of {ROUNDS} turns each.\n");
    println!(
        "| path | requests/s | vs. direct | vs. nftables | CPU µs/request | xdp_lb ns/request |"
    );
    println!("|---|---|---|---|---|---|");
    let rows = [
        ("client → b1, direct", direct),
        ("client → VIP → xdp_lb --mode dsr → backends → client", dsr),
        ("client → VIP → xdp_lb --mode nat → backends → xdp_lb → client", nat),
        ("client → VIP → nftables DNAT + masquerade → backends → back", nft),
    ];
    for (path, row) in rows {
        let ns = row.prog_ns.map(|ns| format!("{ns:.0}")).unwrap_or_default();
        println!(
            "| {path} | {:.0} | {:.2}x | {:.2}x | {:.0} | {ns} |",
            row.rate,
            row.rate / direct.rate,
            row.rate / nft.rate,
            row.cpu_us
        );
    }
    for (key, row) in [("direct", direct), ("dsr", dsr), ("nat", nat), ("nftables", nft)] {
        json.record(&format!("xdp_lb_{key}_req_per_s"), row.rate);
        json.record(&format!("xdp_lb_{key}_cpu_us_per_req"), row.cpu_us);
    }
    json.record("xdp_lb_dsr_ns_per_req", dsr.prog_ns.unwrap_or_default());
    json.record("xdp_lb_nat_ns_per_req", nat.prog_ns.unwrap_or_default());

    // Maglev: the share of flows that move when one of three backends goes,
    // among those whose backend stayed (the lookup table as xdp_lb builds it).
    let names: Vec<u32> = (11..14).map(|i| u32::from_be_bytes([10, 78, 0, i])).collect();
    let size = 65537; // MAGLEV_SIZE in bpf/xdp_lb.h
    let by_name = |n: &[u32]| -> Vec<u32> {
        ebpf_workshop::maglev::table(n, size).into_iter().map(|i| n[i]).collect()
    };
    let moved = ebpf_workshop::maglev::moved_share(&by_name(&names), &by_name(&names[..2]));
    println!(
        "\nMaglev ({size} entries): removing one of three backends moves {:.2}% of the \
         flows whose backend stayed.",
        moved * 100.0
    );
    json.record("xdp_lb_maglev_moved_share", moved);
    undo().lb_lab = None; // `lab` removes itself when dropped, right after this
    drop(_servers);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[derive(Clone, Copy, Default)]
struct Row {
    rate: f64,
    cpu_us: f64,
    /// xdp_lb's own time per request, in place.
    prog_ns: Option<f64>,
}

/// Run `load` (which returns requests/s) and take the machine's busy CPU time
/// per request meanwhile.
fn measure(load: impl FnOnce() -> Result<f64>) -> Result<Row> {
    let busy = || -> Result<u64> {
        let stat = std::fs::read_to_string("/proc/stat")?;
        let cpu: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal: all but idle and iowait.
        Ok(cpu.iter().take(8).sum::<u64>() - cpu.get(3).unwrap_or(&0) - cpu.get(4).unwrap_or(&0))
    };
    let before = busy()?;
    let rate = load()?;
    let ticks = busy()? - before;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    Ok(Row { rate, cpu_us: ticks as f64 / hz * 1e6 / f64::from(REQUESTS), prog_ns: None })
}

/// `ab -n requests -c concurrency http://to:LB_PORT/` from `client`: requests/s.
fn ab(client: &Host, to: Ipv4Addr, requests: u32, concurrency: u32) -> Result<f64> {
    let url = format!("http://{to}:{LB_PORT}/");
    let out = client
        .cmd("ab")
        .args(["-q", "-n", &requests.to_string(), "-c", &concurrency.to_string(), "-s", "5", &url])
        .output()
        .context("running ab (apache2-utils)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
    };
    match (field("Requests per second:"), field("Failed requests:"), field("Complete requests:")) {
        (Some(rate), Some(failed), Some(done)) if failed == 0.0 && done == f64::from(requests) => {
            Ok(rate)
        }
        _ => bail!("ab to {url} failed:\n{text}{}", String::from_utf8_lossy(&out.stderr)),
    }
}

/// nginx in `host`'s namespace, one process (no master: a kill stops it all),
/// answering "served by NAME" on LB_PORT, its files in `dir`. Ready when `client`
/// can connect.
fn nginx(client: &Host, host: &Host, dir: &Path, name: &str) -> Result<Running> {
    std::fs::create_dir_all(dir)?;
    let d = dir.display();
    let conf = format!(
        "daemon off; master_process off; worker_processes 1; user root;\n\
         pid {d}/nginx.pid; error_log {d}/error.log;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off;\n\
           client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
           fastcgi_temp_path {d}/fastcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
           server {{ listen {LB_PORT}; location / {{ return 200 \"served by {name}\\n\"; }} }}\n\
         }}\n"
    );
    std::fs::write(dir.join("nginx.conf"), conf)?;
    let mut cmd = host.cmd("nginx");
    cmd.args([
        "-p",
        &d.to_string(),
        "-c",
        &format!("{d}/nginx.conf"),
        "-e",
        &format!("{d}/error.log"),
    ]);
    let mut running =
        Running::start(cmd, Stdout::Discard).context("starting nginx (nginx-light)")?;
    let to = SocketAddr::new(host.ipv4.into(), LB_PORT);
    let deadline = Instant::now() + Duration::from_secs(10);
    while in_namespace(&client.ns, || TcpStream::connect_timeout(&to, Duration::from_secs(1)))?
        .is_err()
    {
        if Instant::now() > deadline {
            let end = running.try_stop(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(2));
            bail!(
                "nginx on {} did not start: {}",
                host.ns,
                end.map(|e| e.stderr).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(running)
}

/// nftables DNAT on the balancer: the VIP's connections to the backends in turn,
/// their source rewritten to the balancer's (masquerade), forwarding on.
fn nftables(lab: &LbLab) -> Result<()> {
    let (vip, b1, b2) = (lab.vip, lab.backends[0].ipv4, lab.backends[1].ipv4);
    let rules = format!(
        "table ip ebpflb {{\n\
           chain pre {{ type nat hook prerouting priority dstnat;\n\
             ip daddr {vip} tcp dport {LB_PORT} dnat to numgen inc mod 2 map {{ 0 : {b1}, 1 : {b2} }}\n\
           }}\n\
           chain post {{ type nat hook postrouting priority srcnat;\n\
             ip daddr {{ {b1}, {b2} }} tcp dport {LB_PORT} masquerade\n\
           }}\n\
         }}\n"
    );
    lab.lb.sysctl("net/ipv4/ip_forward", "1")?;
    // The balancer forwards out of the interface it received on: no ICMP redirects.
    lab.lb.sysctl("net/ipv4/conf/all/send_redirects", "0")?;
    lab.lb.sysctl(&format!("net/ipv4/conf/{}/send_redirects", lab.lb.iface), "0")?;
    let mut nft = lab.lb.cmd("nft");
    nft.args(["-f", "-"]).stdin(std::process::Stdio::piped());
    let mut child = nft.spawn().context("running nft (nftables)")?;
    use std::io::Write;
    child.stdin.take().context("nft's stdin")?.write_all(rules.as_bytes())?;
    if !child.wait()?.success() {
        bail!("nft refused the rules:\n{rules}");
    }
    Ok(())
}
