//! The kernel's own per-program statistics: kernel.bpf_stats_enabled, and the
//! run_time_ns / run_cnt totals of one program.

use std::os::fd::BorrowedFd;

use anyhow::{Context, Result};
use ebpf_workshop_dev::progs::prog_info;

use crate::undo;

pub const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// kernel.bpf_stats_enabled set for a while: the old value comes back when this
/// is dropped, also on error or panic. While it is 1, the kernel times every run
/// of every BPF program (run_time_ns, run_cnt in bpf_prog_info).
pub struct BpfStats {
    old: String,
}

impl BpfStats {
    pub fn set(on: bool) -> Result<BpfStats> {
        let old =
            std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, if on { "1" } else { "0" })
            .with_context(|| format!("writing {BPF_STATS}"))?;
        let old = old.trim().to_string();
        undo().stats = Some(old.clone());
        Ok(BpfStats { old })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        undo().stats = None;
        if let Err(e) = std::fs::write(BPF_STATS, &self.old) {
            eprintln!("restoring {BPF_STATS} to {}: {e}", self.old);
        }
    }
}

/// The kernel's totals for one program: time spent in it and runs.
#[derive(Clone, Copy, Default)]
pub struct RunStats {
    pub ns: u64,
    pub runs: u64,
}

impl RunStats {
    pub fn of(prog: BorrowedFd) -> Result<RunStats> {
        let info = prog_info(prog).context("BPF_OBJ_GET_INFO_BY_FD")?;
        Ok(RunStats { ns: info.run_time_ns, runs: info.run_cnt })
    }
    pub fn since(self, before: RunStats) -> RunStats {
        RunStats { ns: self.ns - before.ns, runs: self.runs - before.runs }
    }
    pub fn add(&mut self, more: RunStats) {
        self.ns += more.ns;
        self.runs += more.runs;
    }
    pub fn per_run(self) -> f64 {
        self.ns as f64 / self.runs.max(1) as f64
    }
}
