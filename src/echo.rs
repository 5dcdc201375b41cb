//! Pings reported by the packet programs (`bpf/include/echo.h`), printed as rows.

use crate::format::{ip, ip_version, Clock, Table};

/// The `struct echo_event` every packet program sends. They all include the same
/// C header, so the type generated for one skeleton (xdp's) reads them all.
pub type EchoEvent = crate::skel::xdp::types::echo_event;
/// What the program did with the ping, with the C enum's names.
pub type EchoAction = crate::skel::xdp::types::echo_action;
/// The pingpong programs' counters (`bpf/include/pingpong.h`), shared the same way.
pub type PingpongCounts = crate::skel::xdp_pingpong::types::pingpong_counts;

/// Prints one aligned row per ping, with times relative to its creation.
pub struct EchoTable {
    /// None with `--quiet`: no header, no rows.
    table: Option<Table>,
    clock: Clock,
}

impl EchoTable {
    /// Print the header row.
    pub fn new() -> Self {
        Self::showing_rows(true)
    }

    /// With `show_rows` false (`--quiet`), print nothing: for floods and benchmarks.
    pub fn showing_rows(show_rows: bool) -> Self {
        if !show_rows {
            return EchoTable { table: None, clock: Clock::start() };
        }
        let table = Table::new(&[
            ("TIME(s)", 9),
            ("ACTION", 9),
            ("IP", 2),
            ("SOURCE", 26),
            ("DESTINATION", 26),
            ("ID", 6),
            ("SEQ", 0),
        ]);
        EchoTable { table: Some(table), clock: Clock::start() }
    }

    /// One ping.
    pub fn row(&self, e: &EchoEvent) {
        let Some(table) = &self.table else { return };
        let action = match e.action {
            EchoAction::ECHO_DROPPED => "dropped",
            EchoAction::ECHO_ANSWERED => "answered",
            _ => "seen",
        };
        table.row(&[
            self.clock.at(e.ts_ns),
            action.to_string(),
            ip_version(e.family),
            ip(e.family, &e.saddr).to_string(),
            ip(e.family, &e.daddr).to_string(),
            e.id.to_string(),
            e.seq.to_string(),
        ]);
    }

    /// The current TIME(s), for rows that are not events (periodic totals).
    pub fn now(&self) -> String {
        self.clock.now()
    }
}

impl Default for EchoTable {
    fn default() -> Self {
        Self::new()
    }
}

/// The pingpong examples' exit lines: what the program answered and passed (its
/// per-CPU `counts`, added up), then the ring buffer's summary.
pub fn print_pingpong_summary(
    counts: &dyn libbpf_rs::MapCore,
    summary: &crate::ring::Summary,
) -> anyhow::Result<()> {
    let counts = crate::ring::per_cpu::<PingpongCounts>(counts, 0)?;
    let replied: u64 = counts.iter().map(|c| c.replied).sum();
    let passed: u64 = counts.iter().map(|c| c.passed).sum();
    eprintln!("\npackets: replied {replied}, passed {passed}");
    summary.print("pings");
    Ok(())
}
