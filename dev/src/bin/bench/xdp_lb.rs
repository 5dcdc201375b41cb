//! Section 7: xdp_lb: connections per second from the load-balancer lab's client,
//! direct and through the balancer, and xdp_lb's cost per packet in place.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ebpf_workshop::netns::in_namespace;
use ebpf_workshop_dev::lab::{answered_by, serve_name, LbLab, LB_PORT};
use ebpf_workshop_dev::progs::prog_of;

use crate::figures::Figures;
use crate::stats::{BpfStats, RunStats};
use crate::{start, undo};

pub fn title() -> String {
    "xdp_lb: connections per second, and its cost in place".to_string()
}

/// Connections per second from the load-balancer lab's client: straight to one
/// backend; through xdp_lb to that one backend (the fair comparison: the same
/// server work, plus the balancer); through xdp_lb to two. And xdp_lb's cost per
/// packet in place (bpf_stats) under the two-backend traffic.
pub fn run(examples: &Path, json: &mut Figures) -> Result<()> {
    const CONNECTIONS: usize = 4000;
    const THREADS: usize = 4; // clients at a time

    let lab = LbLab::up(&format!("ebpflb-bench{}", std::process::id()))?;
    undo().lb_lab = Some(lab.name.clone());
    for (b, name) in lab.backends.iter().zip(["b1", "b2"]) {
        let listener = in_namespace(&b.ns, || std::net::TcpListener::bind(("0.0.0.0", LB_PORT)))??;
        std::thread::spawn(move || serve_name(listener, name));
    }
    // CONNECTIONS connections (a line, the whole answer, close), THREADS at a time.
    let rate = |to: SocketAddr| -> Result<f64> {
        let started = Instant::now();
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let ns = lab.client.ns.clone();
                std::thread::spawn(move || {
                    in_namespace(&ns, || -> Result<()> {
                        for _ in 0..CONNECTIONS / THREADS {
                            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
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
    };
    let vip = SocketAddr::new(lab.vip.into(), LB_PORT);
    let direct = rate(SocketAddr::new(lab.backends[0].ipv4.into(), LB_PORT))?;

    // xdp_lb on the balancer, as the lab's instructions run it, with `backends`.
    let balanced = |backends: usize| -> Result<(f64, f64)> {
        let mut cmd = lab.lb.cmd(examples.join("xdp_lb"));
        cmd.args([lab.lb.iface, "--vip", &lab.vip.to_string(), "--quiet"]);
        for b in &lab.backends[..backends] {
            cmd.args(["--backend", &b.ipv4.to_string()]);
        }
        let running = start(cmd)?; // stdin /dev/null: no backend changes

        let prog = prog_of(running.pid(), "xdp_lb")?;
        let _stats = BpfStats::set(true)?;
        let before = RunStats::of(prog.as_fd())?;
        let through = rate(vip)?;
        let cost = RunStats::of(prog.as_fd())?.since(before);
        Ok((through, cost.per_run()))
    };
    let (one, _) = balanced(1)?;
    let (two, ns) = balanced(2)?;

    println!(
        "{CONNECTIONS} connections from the client ({THREADS} at a time; each sends a line and"
    );
    println!("reads a 5.2 kB answer); xdp_lb runs with --quiet.\n");
    println!("| path | connections/s | vs. direct | xdp_lb ns/packet in place |");
    println!("|---|---|---|---|");
    println!("| client → one backend, direct | {direct:.0} | 1.00x | |");
    println!(
        "| client → VIP → xdp_lb → the same one backend | {one:.0} | {:.2}x | |",
        one / direct
    );
    println!(
        "| client → VIP → xdp_lb → two backends | {two:.0} | {:.2}x | {ns:.0} |",
        two / direct
    );
    json.record("xdp_lb_direct_conn_per_s", direct);
    json.record("xdp_lb_one_backend_conn_per_s", one);
    json.record("xdp_lb_two_backends_conn_per_s", two);
    json.record("xdp_lb_ns_per_packet", ns);
    undo().lb_lab = None; // `lab` removes itself when dropped, right after this
    Ok(())
}
