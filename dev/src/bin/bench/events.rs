//! Section 6: Event delivery: hello's ring buffer under a burst of execs, with its
//! reader running and paused: events received and lost, and the reader's CPU per event.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::figures::Figures;
use crate::{start, stop};

/// Execs per burst.
const EXECS: u32 = 10_000;

pub fn title() -> String {
    format!("Event delivery: hello under a burst of {EXECS} execs")
}

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

pub fn run(examples: &Path, json: &mut Figures) -> Result<()> {
    println!("| reader | execs made | events received | events lost | user-space CPU µs/event |");
    println!("|---|---|---|---|---|");
    for paused in [false, true] {
        let hello = start(Command::new(examples.join("hello")))?;
        let pid = Pid::from_raw(hello.pid() as i32);
        if paused {
            kill(pid, Signal::SIGSTOP)?;
        }
        burst(EXECS);
        if paused {
            kill(pid, Signal::SIGCONT)?;
        }
        std::thread::sleep(Duration::from_millis(500)); // let it drain
        let end = stop(hello)?;
        let (seen, lost) = hello_summary(&end.stderr)?;
        let cpu_us = end.cpu.as_secs_f64() * 1e6 / seen.max(1.0);
        let reader = if paused { "paused during the burst" } else { "running" };
        println!("| {reader} | {EXECS} | {seen:.0} | {lost:.0} | {cpu_us:.1} |");
        let key = if paused { "paused" } else { "running" };
        json.record(&format!("hello_{key}_events"), seen);
        json.record(&format!("hello_{key}_lost"), lost);
        json.record(&format!("hello_{key}_cpu_us_per_event"), cpu_us);
    }
    println!("\nOther processes' execs during the run are counted too. With the reader paused,");
    println!("\"received\" is what the 1 MiB ring buffer holds: past that, events are lost and");
    println!("counted (max_entries of the `events` map in bpf/hello.bpf.c sizes it).");
    Ok(())
}
