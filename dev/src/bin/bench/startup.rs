//! Section 5: Start-up: from process start to the example's "attached" line, and its
//! peak memory (from wait4), median of 3.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use ebpf_workshop_dev::lab::Lab;

use crate::figures::Figures;
use crate::stop;

pub fn title() -> String {
    "Start-up: process start to \"attached\", and peak memory (median of 3)".to_string()
}

/// The examples timed, in the table's order.
pub const EXAMPLES: [&str; 8] = [
    "hello",
    "tcpconnect",
    "net_events",
    "socket_filter",
    "xdp",
    "xdp_pingpong",
    "tc",
    "tc_pingpong",
];

pub fn run(lab: &Lab, examples: &Path, json: &mut Figures) -> Result<()> {
    let server = &lab.server;
    println!("| example | start to attached (ms) | peak RSS (MiB) |");
    println!("|---|---|---|");
    for name in EXAMPLES {
        // The packet examples run on the lab's server end, the others anywhere.
        let in_lab = !["hello", "tcpconnect", "net_events"].contains(&name);
        let mut samples = Vec::new();
        for _ in 0..3 {
            let mut cmd = if in_lab {
                server.cmd(examples.join(name))
            } else {
                Command::new(examples.join(name))
            };
            if in_lab {
                cmd.arg(server.iface);
            }
            // Process start to "attached", then Ctrl-C; peak memory from wait4.
            let start = Instant::now();
            let running = crate::start(cmd)?;
            let attached = start.elapsed();
            samples.push((attached, stop(running)?.peak_rss_kib));
        }
        samples.sort();
        let (t, rss) = samples[1];
        println!("| {name} | {:.1} | {:.1} |", t.as_secs_f64() * 1e3, rss as f64 / 1024.0);
        json.record(&format!("startup_{name}_ms"), t.as_secs_f64() * 1e3);
        json.record(&format!("startup_{name}_rss_mib"), rss as f64 / 1024.0);
    }
    println!("\nFor scale: a BCC/Python loader of a one-line tracepoint program takes about");
    println!("0.5 s and 128 MB on this kind of machine (a figure measured elsewhere, not here:");
    println!("BCC is not installed).");
    Ok(())
}
