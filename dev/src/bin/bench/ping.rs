//! Section 3: Ping answered three ways, by the kernel, tc_pingpong and xdp_pingpong:
//! answers per second under a flood, latency, the machine's CPU per answer, and the
//! time of a whole flood with the reports on and off.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use ebpf_workshop_dev::harness::Running;
use ebpf_workshop_dev::lab::{Host, Lab};

use crate::figures::Figures;
use crate::{median, start, stop_cleanly};

/// Pings per flood, per timed flood, and paced pings for latency.
const FLOOD: u32 = 100_000;
pub const TIMED_FLOOD: u32 = 20_000;
const LATENCY_PINGS: u32 = 2_000;

pub fn title() -> String {
    format!("Ping answered three ways ({FLOOD}-ping flood; {LATENCY_PINGS} pings for latency)")
}

#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Kernel,
    Tc,
    Xdp,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::Tc => "tc_pingpong",
            Mode::Xdp => "xdp_pingpong",
        }
    }
}

/// Start the answering program for `mode` on the server (kernel replies off for
/// the eBPF ones), with its reports switched off when `quiet`; None for the kernel.
pub fn answerer(
    mode: Mode,
    quiet: bool,
    server: &Host,
    examples: &Path,
) -> Result<Option<Running>> {
    server.kernel_echo_reply(mode == Mode::Kernel)?;
    if mode == Mode::Kernel {
        return Ok(None);
    }
    let mut cmd = server.cmd(examples.join(mode.name()));
    cmd.arg(server.iface).args(quiet.then_some("--quiet"));
    Ok(Some(start(cmd)?))
}

pub fn stop(answerer: Option<Running>) -> Result<()> {
    if let Some(running) = answerer {
        stop_cleanly(running)?;
    }
    Ok(())
}

/// Busy CPU time of the whole machine so far (user, system, irq, softirq), in
/// clock ticks, from /proc/stat.
pub fn busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().context("/proc/stat")?;
    let n: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    Ok(n[0] + n[1] + n[2] + n[5] + n[6])
}

pub fn run(lab: &Lab, examples: &Path, json: &mut Figures) -> Result<Vec<Mode>> {
    let (client, server) = (&lab.client, &lab.server);
    let target = server.ipv4.to_string();
    let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    println!("| answered by | answers/s (flood) | loss | mean RTT µs | p99 RTT µs | machine CPU µs/answer |");
    println!("|---|---|---|---|---|---|");
    let modes = [Mode::Kernel, Mode::Tc, Mode::Xdp];
    for mode in modes {
        let child = answerer(mode, true, server, examples)?;
        let (before, start) = (busy_ticks()?, Instant::now());
        let flood = client.ping(&["-q", "-f", "-c", &FLOOD.to_string(), &target])?;
        let (elapsed, busy) = (start.elapsed(), busy_ticks()? - before);
        let received = flood.received as f64;
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
        let shown =
            if mode == Mode::Kernel { "kernel" } else { &format!("{} --quiet", mode.name()) };
        println!("| {shown} | {rate:.0} | {loss:.2}% | {mean:.1} | {p99:.1} | {cpu_us:.2} |");
        let n = mode.name();
        json.record(&format!("ping_{n}_answers_per_s"), rate);
        json.record(&format!("ping_{n}_loss_pct"), loss);
        json.record(&format!("ping_{n}_rtt_mean_us"), mean);
        json.record(&format!("ping_{n}_rtt_p99_us"), p99);
        json.record(&format!("ping_{n}_cpu_us_per_answer"), cpu_us);
    }
    println!("\nCPU is the whole machine's (client and ping included; those are the same in all");
    println!("three rows), from /proc/stat at clock-tick resolution.");

    // The same answerers, reports on and off, timed by ping itself.
    println!(
        "\n`ping -f -c {TIMED_FLOOD}`: ping's own \"time\" for the whole flood, median of 3\n"
    );
    println!(
        "| answered by | per-ping reports | flood time ms (median) | the 3 runs, ms | vs. kernel |"
    );
    println!("|---|---|---|---|---|");
    let mut kernel_ms = f64::NAN;
    let timed = [
        (Mode::Kernel, true),
        (Mode::Tc, true),
        (Mode::Tc, false),
        (Mode::Xdp, true),
        (Mode::Xdp, false),
    ];
    for (mode, quiet) in timed {
        let child = answerer(mode, quiet, server, examples)?;
        let mut runs = Vec::new();
        for _ in 0..3 {
            let flood = client.ping(&["-q", "-f", "-c", &TIMED_FLOOD.to_string(), &target])?;
            if flood.received != flood.sent {
                eprintln!(
                    "note: {} answered {} of {} pings",
                    mode.name(),
                    flood.received,
                    flood.sent
                );
            }
            runs.push(flood.time_ms);
        }
        stop(child)?;
        let ms = median(runs.clone());
        if mode == Mode::Kernel {
            kernel_ms = ms;
        }
        let (shown, reports, key) = match (mode, quiet) {
            (Mode::Kernel, _) => ("kernel".to_string(), "—", "kernel".to_string()),
            (_, true) => {
                (format!("{} --quiet", mode.name()), "off", format!("{}_quiet", mode.name()))
            }
            (_, false) => (
                mode.name().to_string(),
                "on, printed to /dev/null",
                format!("{}_reporting", mode.name()),
            ),
        };
        let all = runs.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
        println!("| {shown} | {reports} | {ms:.0} | {all} | {:.2}x |", ms / kernel_ms);
        json.record(&format!("ping_flood_{TIMED_FLOOD}_{key}_ms"), ms);
    }
    server.kernel_echo_reply(true)?;
    Ok(modes.to_vec())
}
