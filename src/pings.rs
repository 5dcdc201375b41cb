//! The ping reports of the packet examples, printed as aligned rows.

use std::cell::Cell;
use std::net::IpAddr;

use crate::format::{Clock, Table};

/// One row per ping, with times relative to the table's creation, and a count of
/// the rows (the reports that reached user space).
pub struct PingTable {
    /// None with `--quiet`: no header, no rows.
    table: Option<Table>,
    clock: Clock,
    rows: Cell<u64>,
}

impl PingTable {
    /// Print the header row, unless `show_rows` is false (`--quiet`).
    pub fn new(show_rows: bool) -> Self {
        let table = show_rows.then(|| {
            Table::new(&[
                ("TIME(s)", 9),
                ("ACTION", 9),
                ("IP", 2),
                ("SOURCE", 26),
                ("DESTINATION", 26),
                ("ID", 6),
                ("SEQ", 0),
            ])
        });
        PingTable { table, clock: Clock::start(), rows: Cell::new(0) }
    }

    /// One ping: when (a `bpf_ktime_get_ns()` stamp), what the program did with it,
    /// who pinged whom, and the echo id and sequence number.
    pub fn row(&self, ts_ns: u64, action: &str, src: IpAddr, dst: IpAddr, id: u16, seq: u16) {
        self.rows.set(self.rows.get() + 1);
        let Some(table) = &self.table else { return };
        let version = if src.is_ipv6() { "6" } else { "4" };
        table.row(&[
            self.clock.at(ts_ns),
            action.to_string(),
            version.to_string(),
            src.to_string(),
            dst.to_string(),
            id.to_string(),
            seq.to_string(),
        ]);
    }

    /// How many reports arrived.
    pub fn rows(&self) -> u64 {
        self.rows.get()
    }

    /// The current TIME(s), for rows that are not events (periodic totals).
    pub fn now(&self) -> String {
        self.clock.now()
    }
}
