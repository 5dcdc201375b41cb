//! `make bench`: measure the talk's claim — "eBPF networking enables efficiency and
//! high performance" — on this machine, in the lab. Prints a markdown table and
//! writes the figures to target/bench.json. Run the release build as root:
//! `cargo build --release --examples --bins && sudo target/release/bench`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ebpf_workshop::frames::{self, Ping};
use ebpf_workshop::lab::{return_only_program, Host, Lab};
use ebpf_workshop::netns::in_namespace;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// The packet examples' skeletons (build.rs writes them to OUT_DIR).
mod skel {
    macro_rules! skeletons {
        ($($name:ident),*) => {$(
            #[allow(clippy::all, unused)]
            pub mod $name {
                include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".skel.rs"));
            }
        )*};
    }
    skeletons!(xdp, xdp_pingpong, tc, tc_pingpong);
}

/// Single runs per program-cost figure, and pings per lab figure.
const SINGLE_RUNS: u32 = 20_000;
const REPEATS: u32 = 100_000;
const FLOOD: u32 = 100_000;
const LATENCY_PINGS: u32 = 2_000;
const EVENT_PINGS: u32 = 100;
const EXECS: u32 = 10_000;

fn main() -> Result<()> {
    ebpf_workshop::preflight::check(ebpf_workshop::preflight::Needs::Tracing)?;
    let examples = std::env::current_exe()?.parent().context("bin dir")?.join("examples");
    if !examples.join("xdp_pingpong").exists() {
        bail!(
            "{} has no examples: run `cargo build --release --examples` (or `make bench`)",
            examples.display()
        );
    }
    let mut json = Vec::new();
    let lab = Lab::up(&format!("ebpfws-bench{}", std::process::id()))?;

    println!("## 1. Program cost per packet (BPF_PROG_TEST_RUN)\n");
    program_cost(&lab, &mut json)?;
    println!("\n## 2. Ping answered three ways ({FLOOD}-ping flood; {LATENCY_PINGS} pings for latency)\n");
    let modes = ping_three_ways(&lab, &examples, &mut json)?;
    println!("\n## 3. Kernel net events per ping on the server ({EVENT_PINGS} pings)\n");
    net_events_per_ping(&lab, &examples, &modes, &mut json)?;
    println!("\n## 4. Start-up: process start to \"attached\", and peak memory (median of 3)\n");
    startup(&lab, &examples, &mut json)?;
    println!("\n## 5. Event delivery: hello under a burst of {EXECS} execs\n");
    event_delivery(&examples, &mut json)?;

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench.json");
    std::fs::write(&path, format!("{{\n{}\n}}\n", json.join(",\n")))?;
    println!("\nfigures written to {}", path.display());
    Ok(())
}

fn record(json: &mut Vec<String>, key: &str, value: f64) {
    json.push(format!("  \"{key}\": {value:.3}"));
}

// ---- 1 -----------------------------------------------------------------------

/// Mean ns per run over `SINGLE_RUNS` separate runs, each on a fresh copy of the
/// frame (a rewriting program must see the request every time), and the kernel's
/// mean over `REPEATS` repetitions in one call (valid only for programs that leave
/// the frame as it is: later repetitions see what earlier ones wrote).
fn cost(prog: &impl std::os::fd::AsFd, frame: &[u8]) -> Result<(f64, f64)> {
    let mut total = Duration::ZERO;
    for _ in 0..SINGLE_RUNS {
        total += test_run(prog, frame, 1)?;
    }
    let single = total.as_nanos() as f64 / SINGLE_RUNS as f64;
    let repeated = test_run(prog, frame, REPEATS)?.as_nanos() as f64;
    Ok((single, repeated))
}

/// The kernel's mean time per run of `prog` on `frame`, `repeat` times over
/// (BPF_PROG_TEST_RUN). By fd, not libbpf-rs's `Program::test_run`: the floors
/// are bare program fds, not skeleton programs.
fn test_run(prog: &impl std::os::fd::AsFd, frame: &[u8], repeat: u32) -> Result<Duration> {
    use std::os::fd::AsRawFd;
    let mut out = vec![0u8; frame.len() + 256];
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    opts.data_in = frame.as_ptr().cast();
    opts.data_size_in = frame.len() as u32;
    opts.data_out = out.as_mut_ptr().cast();
    opts.data_size_out = out.len() as u32;
    opts.repeat = repeat as i32;
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_fd().as_raw_fd(), &mut opts) };
    if rc < 0 {
        bail!("BPF_PROG_TEST_RUN: {}", std::io::Error::from_raw_os_error(-rc));
    }
    Ok(Duration::from_nanos(opts.duration.into()))
}

fn program_cost(lab: &Lab, json: &mut Vec<String>) -> Result<()> {
    let echo = Ping::new(false).request();
    let tcp = frames::ethernet(
        frames::SERVER_MAC,
        frames::CLIENT_MAC,
        None,
        frames::ETH_P_IP,
        &frames::ipv4(
            frames::CLIENT_V4,
            frames::SERVER_V4,
            frames::IPPROTO_TCP,
            &Default::default(),
            &frames::tcp_syn(40000, 80),
        ),
    );
    println!("| program | path | ns/packet, fresh frame each run | ns/packet, {REPEATS} repeats | vs. empty program |");
    println!("|---|---|---|---|---|");
    // Everything runs inside the lab's server namespace: tc_pingpong's
    // bpf_clone_redirect really transmits, on that namespace's loopback.
    in_namespace(&lab.server.ns, || -> Result<()> {
        let xdp_floor = return_only_program(
            libbpf_sys::BPF_PROG_TYPE_XDP,
            libbpf_sys::XDP_PASS as i32,
            c"floor_xdp",
        )?;
        let tc_floor = return_only_program(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS, 0, c"floor_tc")?;
        let floors = [("xdp", cost(&xdp_floor, &tcp)?), ("tc", cost(&tc_floor, &tcp)?)];
        let mut s1 = std::mem::MaybeUninit::uninit();
        let xdp = skel::xdp::XdpSkelBuilder::default().open(&mut s1)?.load()?;
        let mut s2 = std::mem::MaybeUninit::uninit();
        let xpp = skel::xdp_pingpong::XdpPingpongSkelBuilder::default()
            .open(&mut s2)?
            .load()?;
        let mut s3 = std::mem::MaybeUninit::uninit();
        let tc = skel::tc::TcSkelBuilder::default().open(&mut s3)?.load()?;
        let mut s4 = std::mem::MaybeUninit::uninit();
        let tpp = skel::tc_pingpong::TcPingpongSkelBuilder::default()
            .open(&mut s4)?
            .load()?;
        let rows: [(&str, &str, &libbpf_rs::ProgramMut, &[u8], bool); 8] = [
            ("xdp_inspect", "xdp", &xdp.progs.xdp_inspect, &echo, true),
            ("xdp_inspect", "xdp", &xdp.progs.xdp_inspect, &tcp, true),
            ("xdp_pingpong", "xdp", &xpp.progs.xdp_pingpong, &echo, false),
            ("xdp_pingpong", "xdp", &xpp.progs.xdp_pingpong, &tcp, true),
            ("tc_ingress", "tc", &tc.progs.tc_ingress, &echo, true),
            ("tc_ingress", "tc", &tc.progs.tc_ingress, &tcp, true),
            ("tc_pingpong", "tc", &tpp.progs.tc_pingpong, &echo, false),
            ("tc_pingpong", "tc", &tpp.progs.tc_pingpong, &tcp, true),
        ];
        for (kind, (single, repeated)) in &floors {
            println!(
                "| empty {kind} program (floor) | return | {single:.0} | {repeated:.0} | 1.0x |"
            );
            record(json, &format!("cost_floor_{kind}_ns"), *repeated);
        }
        for (name, kind, prog, frame, repeat_valid) in rows {
            let path = if frame.len() == echo.len() && frame == &echo[..] {
                "echo request"
            } else {
                "TCP (passed)"
            };
            let (single, repeated) = cost(prog, frame)?;
            let floor = floors.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f).unwrap();
            // Compare like with like: single runs with single runs.
            let (shown, ratio) = if repeat_valid {
                (format!("{repeated:.0}"), repeated / floor.1)
            } else {
                ("n/a (rewrites the frame)".to_string(), single / floor.0)
            };
            println!("| {name} | {path} | {single:.0} | {shown} | {ratio:.1}x |");
            let key =
                format!("cost_{name}_{}_ns", if path == "echo request" { "echo" } else { "tcp" });
            record(json, &key, if repeat_valid { repeated } else { single });
        }
        Ok(())
    })??;
    println!("\nSingle runs include the kernel's per-call overhead (the floor shows it); the");
    println!("repeated figure is the program alone. Rewriting programs are measured only with");
    println!("single runs on a fresh request, because a repetition would see the reply.");
    Ok(())
}

// ---- 2 -----------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Kernel,
    Tc,
    Xdp,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::Tc => "tc_pingpong",
            Mode::Xdp => "xdp_pingpong",
        }
    }
}

/// Start the answering program for `mode` on the server (kernel replies off for
/// the eBPF ones); None for the kernel.
fn answerer(mode: Mode, server: &Host, examples: &std::path::Path) -> Result<Option<Child>> {
    server.kernel_echo_reply(mode == Mode::Kernel)?;
    if mode == Mode::Kernel {
        return Ok(None);
    }
    let mut child = server
        .cmd(examples.join(mode.name()))
        .args([server.iface, "--quiet"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    wait_attached(&mut child)?;
    Ok(Some(child))
}

fn wait_attached(child: &mut Child) -> Result<()> {
    let stderr = child.stderr.take().context("stderr")?;
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        if line?.starts_with("attached") {
            // Keep draining in the background so the child never blocks on stderr.
            std::thread::spawn(move || lines.for_each(drop));
            return Ok(());
        }
    }
    bail!("the example exited before attaching")
}

fn stop(child: Option<Child>) -> Result<()> {
    if let Some(mut c) = child {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )?;
        c.wait()?;
    }
    Ok(())
}

/// Busy CPU time of the whole machine so far (user, system, irq, softirq), in
/// clock ticks, from /proc/stat.
fn busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().context("/proc/stat")?;
    let n: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    Ok(n[0] + n[1] + n[2] + n[5] + n[6])
}

fn ping_three_ways(
    lab: &Lab,
    examples: &std::path::Path,
    json: &mut Vec<String>,
) -> Result<Vec<Mode>> {
    let (client, server) = (&lab.client, &lab.server);
    let target = server.ipv4.to_string();
    let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    println!("| answered by | answers/s (flood) | loss | mean RTT µs | p99 RTT µs | machine CPU µs/answer |");
    println!("|---|---|---|---|---|---|");
    let modes = [Mode::Kernel, Mode::Tc, Mode::Xdp];
    for mode in modes {
        let child = answerer(mode, server, examples)?;
        let (before, start) = (busy_ticks()?, Instant::now());
        let out =
            client.cmd("ping").args(["-f", "-q", "-c", &FLOOD.to_string(), &target]).output()?;
        let (elapsed, busy) = (start.elapsed(), busy_ticks()? - before);
        let text = String::from_utf8_lossy(&out.stdout);
        let received: f64 = text
            .lines()
            .find_map(|l| l.split(", ").find_map(|p| p.strip_suffix(" received")))
            .and_then(|n| n.trim().parse().ok())
            .context("ping output")?;
        let rate = received / elapsed.as_secs_f64();
        let loss = 100.0 * (FLOOD as f64 - received) / FLOOD as f64;
        let cpu_us = busy as f64 / ticks_per_s * 1e6 / received.max(1.0);
        // Latency: paced pings, each RTT printed by ping itself.
        let out = client
            .cmd("ping")
            .args(["-i", "0.001", "-c", &LATENCY_PINGS.to_string(), "-n", &target])
            .output()?;
        let mut rtts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("time=").nth(1)?.split(' ').next()?.parse::<f64>().ok())
            .map(|ms| ms * 1000.0)
            .collect();
        rtts.sort_by(f64::total_cmp);
        let mean = rtts.iter().sum::<f64>() / rtts.len().max(1) as f64;
        let p99 = rtts.get(rtts.len() * 99 / 100).copied().unwrap_or(f64::NAN);
        stop(child)?;
        println!(
            "| {} | {rate:.0} | {loss:.2}% | {mean:.1} | {p99:.1} | {cpu_us:.2} |",
            mode.name()
        );
        let n = mode.name();
        record(json, &format!("ping_{n}_answers_per_s"), rate);
        record(json, &format!("ping_{n}_loss_pct"), loss);
        record(json, &format!("ping_{n}_rtt_mean_us"), mean);
        record(json, &format!("ping_{n}_rtt_p99_us"), p99);
        record(json, &format!("ping_{n}_cpu_us_per_answer"), cpu_us);
    }
    server.kernel_echo_reply(true)?;
    println!("\nCPU is the whole machine's (client and ping included; those are the same in all");
    println!("three rows), from /proc/stat at clock-tick resolution.");
    Ok(modes.to_vec())
}

// ---- 3 -----------------------------------------------------------------------

fn net_events_per_ping(
    lab: &Lab,
    examples: &std::path::Path,
    modes: &[Mode],
    json: &mut Vec<String>,
) -> Result<()> {
    let (client, server) = (&lab.client, &lab.server);
    println!("| answered by | net events per ping | vs. kernel |");
    println!("|---|---|---|");
    let mut kernel = 0.0;
    for &mode in modes {
        let child = answerer(mode, server, examples)?;
        let out = Command::new(examples.join("net_events"))
            .args([
                "--interval",
                "0",
                "--netns",
                &server.ns,
                "--",
                "ip",
                "netns",
                "exec",
                &client.ns,
            ])
            .args([
                "ping",
                "-q",
                "-i",
                "0.01",
                "-c",
                &EVENT_PINGS.to_string(),
                &server.ipv4.to_string(),
            ])
            .output()?;
        stop(child)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let all: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("all"))
            .context("net_events totals")?
            .trim()
            .parse()?;
        let per_ping = all / EVENT_PINGS as f64;
        if mode == Mode::Kernel {
            kernel = per_ping;
        }
        println!(
            "| {} | {per_ping:.2} | {:.2}x |",
            mode.name(),
            per_ping / kernel.max(f64::MIN_POSITIVE)
        );
        record(json, &format!("net_events_per_ping_{}", mode.name()), per_ping);
    }
    server.kernel_echo_reply(true)?;
    Ok(())
}

// ---- 4 -----------------------------------------------------------------------

/// Run `cmd` until it prints "attached", then SIGINT it; time to attach and max RSS.
fn start_once(mut cmd: Command) -> Result<(Duration, u64)> {
    let start = Instant::now();
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    wait_attached(&mut child)?;
    let attached = start.elapsed();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )?;
    let (_, rss_kib) = wait_with_rusage(child)?;
    Ok((attached, rss_kib))
}

/// Wait for `child` and return its exit status and peak resident memory (KiB).
fn wait_with_rusage(child: Child) -> Result<(i32, u64)> {
    let (status, usage) = wait4(child)?;
    Ok((status, usage.ru_maxrss as u64))
}

fn wait4(child: Child) -> Result<(i32, nix::libc::rusage)> {
    let mut status = 0;
    let mut usage: nix::libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { nix::libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    if rc < 0 {
        bail!("wait4: {}", std::io::Error::last_os_error());
    }
    std::mem::forget(child); // already reaped
    Ok((status, usage))
}

fn startup(lab: &Lab, examples: &std::path::Path, json: &mut Vec<String>) -> Result<()> {
    let server = &lab.server;
    println!("| example | start to attached (ms) | peak RSS (MiB) |");
    println!("|---|---|---|");
    let runs: [(&str, &[&str], bool); 8] = [
        ("hello", &[], false),
        ("tcpconnect", &[], false),
        ("net_events", &[], false),
        ("socket_filter", &["veth-server"], true),
        ("xdp", &["veth-server"], true),
        ("xdp_pingpong", &["veth-server"], true),
        ("tc", &["veth-server"], true),
        ("tc_pingpong", &["veth-server"], true),
    ];
    for (name, args, in_lab) in runs {
        let mut samples = Vec::new();
        for _ in 0..3 {
            let mut cmd = if in_lab {
                server.cmd(examples.join(name))
            } else {
                Command::new(examples.join(name))
            };
            cmd.args(args);
            samples.push(start_once(cmd)?);
        }
        samples.sort();
        let (t, rss) = samples[1];
        println!("| {name} | {:.1} | {:.1} |", t.as_secs_f64() * 1e3, rss as f64 / 1024.0);
        record(json, &format!("startup_{name}_ms"), t.as_secs_f64() * 1e3);
        record(json, &format!("startup_{name}_rss_mib"), rss as f64 / 1024.0);
    }
    println!("\nFor scale: a BCC/Python loader of a one-line tracepoint program takes about");
    println!("0.5 s and 128 MB on this kind of machine (figure from the benchmark issue, not");
    println!("measured here: BCC is not installed).");
    Ok(())
}

// ---- 5 -----------------------------------------------------------------------

/// Make `n` execs of /bin/true as fast as two threads can.
fn burst(n: u32) {
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..n / 2 {
                    let _ = Command::new("/bin/true").status();
                }
            });
        }
    });
}

/// hello's exit summary: (events seen, events lost).
fn hello_summary(stderr: &str) -> Result<(f64, f64)> {
    let line = stderr.lines().find(|l| l.contains("execs seen")).context("hello summary")?;
    let n: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    Ok((n[0], n[1]))
}

fn event_delivery(examples: &std::path::Path, json: &mut Vec<String>) -> Result<()> {
    println!("| reader | execs made | events received | events lost | user-space CPU µs/event |");
    println!("|---|---|---|---|---|");
    for paused in [false, true] {
        let mut child = Command::new(examples.join("hello"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("stderr")?;
        let mut lines = BufReader::new(stderr).lines();
        for line in lines.by_ref() {
            if line?.starts_with("attached") {
                break;
            }
        }
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        if paused {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP)?;
        }
        burst(EXECS);
        if paused {
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT)?;
        }
        std::thread::sleep(Duration::from_millis(500)); // let it drain
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
        let rest: String = lines.map_while(|l| l.ok()).map(|l| l + "\n").collect();
        let (_, usage) = wait4(child)?;
        let (seen, lost) = hello_summary(&rest)?;
        let cpu_us = (tv_us(usage.ru_utime) + tv_us(usage.ru_stime)) / seen.max(1.0);
        let reader = if paused { "paused during the burst" } else { "running" };
        println!("| {reader} | {EXECS} | {seen:.0} | {lost:.0} | {cpu_us:.1} |");
        let key = if paused { "paused" } else { "running" };
        record(json, &format!("hello_{key}_events"), seen);
        record(json, &format!("hello_{key}_lost"), lost);
        record(json, &format!("hello_{key}_cpu_us_per_event"), cpu_us);
    }
    println!("\nOther processes' execs during the run are counted too. With the reader paused,");
    println!("\"received\" is what the 1 MiB ring buffer holds: past that, events are lost and");
    println!("counted (see bpf/include/events.h to size it).");
    Ok(())
}

fn tv_us(t: nix::libc::timeval) -> f64 {
    t.tv_sec as f64 * 1e6 + t.tv_usec as f64
}
