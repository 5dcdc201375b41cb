//! `make bench`: measure the talk's claim — "eBPF networking enables efficiency and
//! high performance" — on this machine, in the lab. Prints markdown tables and
//! writes the figures to target/bench.json. Run the release build as root:
//! `cargo build --release --examples --bins && sudo target/release/bench`.
//!
//! One module per section. Section 1 measures each packet example in place, as a
//! user runs it, from the kernel's own per-program statistics; section 2 measures
//! the same programs alone with BPF_PROG_TEST_RUN, where nobody reads their
//! reports; section 8 is the batching chapter's table.

mod events;
mod figures;
mod floor;
mod in_place;
mod net_events;
mod ping;
mod program_cost;
mod router;
mod sockmap;
mod startup;
mod stats;
mod xdp_lb;

mod batching;
mod sock_lb;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ebpf_workshop_dev::harness::{self, Finished, Running, Stdout};
use ebpf_workshop_dev::lab::{Lab, LbLab, RouterLab};
use nix::sys::signal::Signal;

use figures::Figures;

/// How long an example may take to say "attached", and to exit after Ctrl-C.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(20);
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// A section: its number, its heading, the examples it runs.
type Section = (u32, fn() -> String, &'static [&'static str]);

const SECTIONS: [Section; 11] = [
    (1, in_place::title, &["xdp", "xdp_pingpong", "tc", "tc_pingpong", "socket_filter"]),
    (2, program_cost::title, &["xdp", "xdp_pingpong", "tc", "tc_pingpong"]),
    (3, ping::title, &["xdp_pingpong", "tc_pingpong"]),
    (4, net_events::title, &["xdp_pingpong", "tc_pingpong", "net_events"]),
    (5, startup::title, &startup::EXAMPLES),
    (6, events::title, &["hello"]),
    (7, xdp_lb::title, &["xdp_lb"]),
    (8, batching::title, &["xdp_pingpong", "xdp_pingpong_batched"]),
    (9, router::title, &["xdp_router"]),
    (10, sock_lb::title, &["sock_lb", "xdp_lb"]),
    (11, sockmap::title, &["sockmap"]),
];

fn main() -> Result<()> {
    // `bench 1 3` runs sections 1 and 3 only; no arguments, all of them.
    let mut only = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.parse::<u32>() {
            Ok(n) if SECTIONS.iter().any(|s| s.0 == n) => only.push(n),
            _ => bail!("usage: bench [SECTION...]  (sections 1 to {}; none: all)", SECTIONS.len()),
        }
    }
    let run = |section: u32| only.is_empty() || only.contains(&section);
    ebpf_workshop::preflight::check(ebpf_workshop::preflight::Needs::Tracing)?;
    let examples = harness::examples_dir();
    for (n, _, names) in SECTIONS.iter().filter(|s| run(s.0)) {
        if let Some(name) = names.iter().find(|name| !examples.join(name).exists()) {
            bail!(
                "{} has no {name} (section {n} runs it): run `cargo build --release \
                 --examples` (or `make bench`)",
                examples.display()
            );
        }
    }
    let mut json = Figures::default();
    // Set first: a Ctrl-C from now on removes whatever the bench has made so far.
    ctrlc::set_handler(interrupted).context("Ctrl-C handler")?;
    let lab = Lab::up(&format!("ebpfws-bench{}", std::process::id()))?;
    undo().lab = Some(lab.name.clone());

    let mut modes = None;
    for (n, title, _) in SECTIONS.iter().filter(|s| run(s.0)) {
        println!("{}## {n}. {}\n", if *n == SECTIONS[0].0 { "" } else { "\n" }, title());
        let ex = examples.as_path();
        match n {
            1 => in_place::run(&lab, ex, &mut json)?,
            2 => program_cost::run(&lab, ex, &mut json)?,
            3 => modes = Some(ping::run(&lab, ex, &mut json)?),
            4 => net_events::run(&lab, ex, modes.as_deref(), &mut json)?,
            5 => startup::run(&lab, ex, &mut json)?,
            6 => events::run(ex, &mut json)?,
            7 => xdp_lb::run(ex, &mut json)?,
            8 => batching::run(&lab, ex, &mut json)?,
            9 => router::run(ex, &mut json)?,
            10 => sock_lb::run(ex, &mut json)?,
            11 => sockmap::run_section(ex, &mut json)?,
            _ => unreachable!("SECTIONS lists {n}"),
        }
    }

    let path = target_dir()?.join("bench.json");
    std::fs::write(&path, json.to_string())?;
    println!("\nfigures written to {}", path.display());
    Ok(())
}

/// target/: this program runs from target/release/.
fn target_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().and_then(Path::parent).context("target directory")?.to_path_buf())
}

// ---- running examples ---------------------------------------------------------

/// Start `cmd` (stdout to /dev/null: the reader still reads and prints every
/// report) and wait for its "attached" line on stderr. Dropping the result kills
/// the process, so an error anywhere leaves nothing running (nor attached: the
/// examples use bpf_links).
fn start(cmd: Command) -> Result<Running> {
    let mut running = Running::start(cmd, Stdout::Discard)?;
    running.try_wait_for_line(ATTACH_TIMEOUT, "\"attached\"", |l| l.starts_with("attached"))?;
    Ok(running)
}

/// Ctrl-C it and wait for the exit: status, stderr, peak memory, CPU time.
fn stop(mut running: Running) -> Result<Finished> {
    running.try_stop(Signal::SIGINT, EXIT_TIMEOUT)
}

/// Ctrl-C it and fail unless it exits cleanly; return its stderr.
fn stop_cleanly(running: Running) -> Result<String> {
    let end = stop(running)?;
    if !end.status.success() {
        bail!("the example exited with {}:\n{}", end.status, end.stderr);
    }
    Ok(end.stderr)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---- Ctrl-C -------------------------------------------------------------------

/// What a Ctrl-C or SIGTERM must undo: the process then ends without running the
/// Drop guards (Running, BpfStats, Lab), so the handler does their work.
struct Undo {
    lab: Option<String>,
    /// The load-balancer lab of section 7, while it exists.
    lb_lab: Option<String>,
    /// The router lab of section 9, while it exists.
    router_lab: Option<String>,
    /// kernel.bpf_stats_enabled's value before the bench changed it.
    stats: Option<String>,
    /// Section 11's namespace and cgroup, while they exist.
    sockmap: Option<(String, PathBuf)>,
}

static UNDO: std::sync::Mutex<Undo> = std::sync::Mutex::new(Undo {
    lab: None,
    lb_lab: None,
    router_lab: None,
    stats: None,
    sockmap: None,
});

fn undo() -> std::sync::MutexGuard<'static, Undo> {
    UNDO.lock().unwrap_or_else(|e| e.into_inner())
}

fn interrupted() {
    harness::kill_started();
    let undo = undo();
    if let Some(old) = &undo.stats {
        let _ = std::fs::write(stats::BPF_STATS, old);
    }
    if let Some(lab) = &undo.lab {
        let _ = Lab::down(lab);
    }
    if let Some(lab) = &undo.lb_lab {
        let _ = LbLab::down(lab);
    }
    if let Some(lab) = &undo.router_lab {
        let _ = RouterLab::down(lab);
    }
    if let Some((ns, cgroup)) = &undo.sockmap {
        sockmap::remove(ns, cgroup);
    }
    eprintln!("interrupted: examples stopped, lab removed, {} restored", stats::BPF_STATS);
    std::process::exit(130);
}
