//! Section 11: sockmap: request/response latency and bulk throughput between two
//! unmodified local programs (dev/src/bin/tcp_echo.rs) in one cgroup, in a network
//! namespace of the bench's own: plain loopback TCP (the anchor), with the sockmap
//! example attached (socket to socket), and attached with the server outside the
//! cgroup (the sk_msg program runs and finds no peer: its cost alone). Then the
//! sk_msg program's cost per message in place (bpf_stats).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use ebpf_workshop::cgroup::resolve;
use ebpf_workshop_dev::harness::{self, Running, Stdout};
use ebpf_workshop_dev::progs::prog_of;

use crate::figures::Figures;
use crate::stats::{BpfStats, RunStats};
use crate::{median, start, stop_cleanly, undo};

pub fn title() -> String {
    "sockmap: local TCP latency and throughput, with and without the stack".to_string()
}

/// Request sizes for the round trips, and write sizes for the bulk transfers.
const RR_SIZES: [usize; 3] = [64, 4096, 65536];
const BULK_SIZES: [usize; 6] = [64, 512, 4096, 16384, 65536, 262144];
const RR_COUNT: &str = "10000";
const BULK_BYTES: u64 = 128 << 20;
const ROUNDS: usize = 3;

/// The namespace and cgroup of the section, removed on drop (and by the Ctrl-C
/// handler, through undo()).
struct Place {
    ns: String,
    cgroup: PathBuf,
}

impl Place {
    fn new() -> Result<Place> {
        let ns = format!("ebpfws-benchsm{}", std::process::id());
        let cgroup = resolve(&ns)?;
        run(Command::new("ip").args(["netns", "add", &ns]))?;
        undo().sockmap = Some((ns.clone(), cgroup.clone()));
        let place = Place { ns, cgroup };
        run(Command::new("ip").args(["-n", &place.ns, "link", "set", "lo", "up"]))?;
        std::fs::create_dir(&place.cgroup).context("creating the bench's cgroup")?;
        Ok(place)
    }

    /// `tcp_echo ARGS` in the namespace; inside the cgroup if `inside`.
    fn tcp_echo(&self, bin: &Path, inside: bool, args: &[&str]) -> Result<Running> {
        let join = if inside {
            format!("echo $$ > {}/cgroup.procs && ", self.cgroup.display())
        } else {
            String::new()
        };
        let script = format!("{join}exec ip netns exec {} \"$0\" \"$@\"", self.ns);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]).arg(bin).args(args);
        Running::start(cmd, Stdout::Collect)
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        undo().sockmap = None;
        remove(&self.ns, &self.cgroup);
    }
}

/// Remove the section's namespace and cgroup (for Drop and the Ctrl-C handler).
pub fn remove(ns: &str, cgroup: &Path) {
    let _ = std::fs::remove_dir(cgroup);
    let _ = Command::new("ip").args(["netns", "del", ns]).status();
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("{cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed: {status}");
    }
    Ok(())
}

/// One configuration's figures: p50/p99 per request size (µs), bytes/s per write size.
struct Row {
    rr: Vec<(f64, f64)>,
    bulk: Vec<f64>,
}

pub fn run_section(examples: &Path, json: &mut Figures) -> Result<()> {
    let bin = harness::examples_dir().parent().context("target dir")?.join("tcp_echo");
    if !bin.exists() {
        bail!("{} not built: `cargo build --release --bins` (make bench does)", bin.display());
    }
    let place = Place::new()?;
    let port_of = |s: &mut Running| -> Result<String> {
        let line = s.try_wait_for_line(std::time::Duration::from_secs(10), "port", |l| {
            l.starts_with("port ")
        })?;
        Ok(line["port ".len()..].trim().to_string())
    };
    let mut inside = place.tcp_echo(&bin, true, &["serve"])?;
    let mut outside = place.tcp_echo(&bin, false, &["serve"])?;
    let (port_in, port_out) = (port_of(&mut inside)?, port_of(&mut outside)?);

    // A client run in the cgroup: its one line of figures.
    let client = |args: &[&str]| -> Result<Vec<f64>> {
        let end =
            place.tcp_echo(&bin, true, args)?.try_wait(std::time::Duration::from_secs(120))?;
        if !end.status.success() {
            bail!("tcp_echo {args:?}: {}", end.stderr);
        }
        Ok(end.stdout.split_whitespace().filter_map(|w| w.parse().ok()).collect())
    };
    // Each figure the median of ROUNDS runs: the machine is shared, and a run that
    // met another program's burst is an outlier.
    let measure = |port: &str| -> Result<Row> {
        let mut row = Row { rr: Vec::new(), bulk: Vec::new() };
        for size in RR_SIZES {
            let mut runs = Vec::new();
            for _ in 0..ROUNDS {
                runs.push(client(&["rr", port, &size.to_string(), RR_COUNT])?);
            }
            let p = |i: usize| median(runs.iter().map(|f| f[i] / 1000.0).collect());
            row.rr.push((p(0), p(1)));
        }
        for size in BULK_SIZES {
            let mut runs = Vec::new();
            for _ in 0..ROUNDS {
                runs.push(client(&["bulk", port, &size.to_string(), &BULK_BYTES.to_string()])?[0]);
            }
            row.bulk.push(median(runs));
        }
        Ok(row)
    };

    let plain = measure(&port_in)?;
    let cgroup = place.cgroup.to_str().context("cgroup path")?;
    let mut cmd = Command::new(examples.join("sockmap"));
    cmd.arg(cgroup); // an existing cgroup: used as it is, left in place
    let sockmap = start(cmd)?;
    let redirected = measure(&port_in)?;
    let passed = measure(&port_out)?;
    // The sk_msg program's own time per message, in place, 64-byte round trips.
    let prog = prog_of(sockmap.pid(), "redirect_msg")?;
    let cost = {
        let _stats = BpfStats::set(true)?;
        let before = RunStats::of(prog.as_fd())?;
        client(&["rr", &port_in, "64", RR_COUNT])?;
        RunStats::of(prog.as_fd())?.since(before).per_run()
    };
    let stderr = stop_cleanly(sockmap)?;
    drop((inside, outside));

    println!("Two tcp_echo processes in one cgroup, in a namespace of their own (loopback);");
    println!(
        "round trips: {RR_COUNT} requests of the size, echoed (TCP_NODELAY); bulk: {} MiB",
        BULK_BYTES >> 20
    );
    println!(
        "in writes of the size, timed until the receiver has them all. Ratios to plain TCP.\n"
    );
    let configs = [
        ("plain loopback TCP", &plain),
        ("sockmap: socket to socket", &redirected),
        ("sockmap: server outside the cgroup", &passed),
    ];
    println!("| path | request | p50 µs | p99 µs | p50 vs. TCP | p99 vs. TCP |");
    println!("|---|---|---|---|---|---|");
    for (name, row) in configs {
        for (i, size) in RR_SIZES.iter().enumerate() {
            let ((p50, p99), (b50, b99)) = (row.rr[i], plain.rr[i]);
            println!(
                "| {name} | {size} B | {p50:.1} | {p99:.1} | {:.2}x | {:.2}x |",
                p50 / b50,
                p99 / b99
            );
            let key = name.split(':').next_back().unwrap().trim().replace(' ', "_");
            json.record(&format!("sockmap_rr_{key}_{size}_p50_us"), p50);
            json.record(&format!("sockmap_rr_{key}_{size}_p99_us"), p99);
        }
    }
    println!("\n| path | write size | MB/s | vs. TCP |");
    println!("|---|---|---|---|");
    for (name, row) in configs {
        for (i, size) in BULK_SIZES.iter().enumerate() {
            let (rate, base) = (row.bulk[i], plain.bulk[i]);
            println!("| {name} | {size} B | {:.0} | {:.2}x |", rate / 1e6, rate / base);
            let key = name.split(':').next_back().unwrap().trim().replace(' ', "_");
            json.record(&format!("sockmap_bulk_{key}_{size}_mb_per_s"), rate / 1e6);
        }
    }
    println!("\nredirect_msg in place (bpf_stats, 64-byte round trips): {cost:.0} ns per message");
    json.record("sockmap_sk_msg_ns_per_message", cost);
    let summary = stderr.lines().find(|l| l.starts_with("redirected:")).unwrap_or("");
    println!("the example's own count: {summary}");
    Ok(())
}
