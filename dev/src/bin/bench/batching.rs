//! Section 8: The batching chapter: what a ping report costs in place, sent three ways
//! (a record with a wake-up each, a record without, per-CPU batches) and not at all,
//! beside the two-instruction XDP floor, in one run; and what a user sees of it, the
//! time of a whole `ping -f`, against the kernel answering.

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Result;
use ebpf_workshop_dev::lab::Lab;
use ebpf_workshop_dev::progs::prog_of;

use crate::figures::Figures;
use crate::floor::{Floor, Hook};
use crate::stats::{BpfStats, RunStats};
use crate::{median, start, stop_cleanly};

/// Pings per flood (each row: one timed by bpf_stats, then three by ping).
const FLOOD: u32 = 20_000;

pub fn title() -> String {
    format!("Batching ping reports: cost in place and a {FLOOD}-ping flood, one run")
}

/// One row: the example and its flags (besides the interface), its program's
/// name as the kernel shows it (15 characters at most), what it sends per ping.
struct Row {
    example: &'static str,
    flags: &'static [&'static str],
    prog: &'static str,
    sends: &'static str,
}

const ROWS: [Row; 4] = [
    Row {
        example: "xdp_pingpong_batched",
        flags: &["--wake-each"],
        prog: "xdp_pingpong_ba",
        sends: "a record per ping, a wake-up each",
    },
    Row {
        example: "xdp_pingpong",
        flags: &[],
        prog: "xdp_pingpong",
        sends: "a record per ping, no wake-up",
    },
    Row {
        example: "xdp_pingpong_batched",
        flags: &[],
        prog: "xdp_pingpong_ba",
        sends: "per-CPU batches",
    },
    Row { example: "xdp_pingpong", flags: &["--quiet"], prog: "xdp_pingpong", sends: "no reports" },
];

/// What one row measured.
struct Measured {
    label: String,
    sends: &'static str,
    ns: f64,
    flood_ms: f64,
    runs: Vec<f64>,
}

/// Three floods timed by ping itself, with bpf_stats off: their median, and all three.
fn timed_floods(lab: &Lab, who: &str, notes: &mut Vec<String>) -> Result<(f64, Vec<f64>)> {
    let target = lab.server.ipv4.to_string();
    let mut runs = Vec::new();
    for _ in 0..3 {
        let flood = lab.client.ping(&["-q", "-f", "-c", &FLOOD.to_string(), &target])?;
        if flood.received != flood.sent {
            notes.push(format!("{who}: {} of {} pings answered", flood.received, flood.sent));
        }
        runs.push(flood.time_ms);
    }
    Ok((median(runs.clone()), runs))
}

pub fn run(lab: &Lab, examples: &Path, json: &mut Figures) -> Result<()> {
    let (client, server) = (&lab.client, &lab.server);
    let target = server.ipv4.to_string();
    let mut notes = Vec::new();

    server.kernel_echo_reply(true)?;
    let (kernel_ms, kernel_runs) = timed_floods(lab, "kernel", &mut notes)?;

    let floor = Floor::up(Hook::Xdp, client)?;
    let mut floor_total = RunStats::default();
    let mut rows = Vec::new();
    server.kernel_echo_reply(false)?; // the example answers every ping
    for row in &ROWS {
        let label = [row.example].iter().chain(row.flags).copied().collect::<Vec<_>>().join(" ");
        let mut cmd = server.cmd(examples.join(row.example));
        cmd.arg(server.iface).args(row.flags);
        let example = start(cmd)?;
        let prog = prog_of(example.pid(), row.prog)?;
        let stats = BpfStats::set(true)?;
        let (p0, f0) = (RunStats::of(prog.as_fd())?, floor.stats()?);
        let flood = client.ping(&["-q", "-f", "-c", &FLOOD.to_string(), &target])?;
        let (ours, theirs) = (RunStats::of(prog.as_fd())?.since(p0), floor.stats()?.since(f0));
        drop(stats); // the timed floods run without the statistics' clock reads
        floor_total.add(theirs);
        if flood.received != flood.sent {
            notes.push(format!("{label}: {} of {} pings answered", flood.received, flood.sent));
        }
        if ours.runs < flood.sent as u64 {
            notes.push(format!(
                "{label}: the program ran {} times for {} pings",
                ours.runs, flood.sent
            ));
        }
        let (flood_ms, runs) = timed_floods(lab, &label, &mut notes)?;
        let said = stop_cleanly(example)?;
        if let Some(lost) =
            said.lines().find(|l| l.contains("events lost") && !l.contains(" 0 events"))
        {
            notes.push(format!("{label}: {lost}"));
        }
        rows.push(Measured { label, sends: row.sends, ns: ours.per_run(), flood_ms, runs });
    }
    server.kernel_echo_reply(true)?;
    drop(floor);

    let base = floor_total.per_run();
    let quiet = rows.last().map_or(f64::NAN, |r| r.ns);
    let all = |runs: &[f64]| runs.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
    println!("| answered by | reports | ns/packet in place | vs. floor | vs. --quiet | flood ms (median of 3) | the 3 floods, ms | flood vs. kernel |");
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {:.0} | {:.1}x | {:.1}x | {:.0} | {} | {:.2}x |",
            r.label,
            r.sends,
            r.ns,
            r.ns / base,
            r.ns / quiet,
            r.flood_ms,
            all(&r.runs),
            r.flood_ms / kernel_ms
        );
        let key = format!("batching_{}", r.label.replace(" --", "_").replace('-', "_"));
        json.record(&format!("{key}_ns_per_packet"), r.ns);
        json.record(&format!("{key}_flood_{FLOOD}_ms"), r.flood_ms);
    }
    println!("| two-instruction XDP program (floor) | — | {base:.0} | 1.0x | | | | |");
    println!(
        "| kernel (echo replies on) | — | | | | {kernel_ms:.0} | {} | 1.00x |",
        all(&kernel_runs)
    );
    json.record("batching_floor_ns_per_packet", base);
    json.record(&format!("batching_kernel_flood_{FLOOD}_ms"), kernel_ms);

    println!("\nEach row: the example runs on the lab's server end as a user runs it (its reader");
    println!("prints every report, to /dev/null here) and answers a `ping -f -c {FLOOD}` from the");
    println!("client; ns/packet is the kernel's own account of its program over that flood");
    println!("(kernel.bpf_stats_enabled=1), the floor the lab's XDP_PASS program on the client");
    println!("end over the same floods. Then three more floods, with the statistics off, timed");
    println!("by ping itself (\"time\" in its summary): what a user sees.");
    for note in &notes {
        println!("\nnote: {note}");
    }
    Ok(())
}
