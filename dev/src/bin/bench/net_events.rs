//! Section 4: Kernel net events per ping on the server, counted by the net_events
//! example, for each way of answering: what the kernel's stack does per ping.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use ebpf_workshop_dev::lab::Lab;

use crate::figures::Figures;
use crate::ping::{answerer, stop, Mode};

/// Pings per row.
const EVENT_PINGS: u32 = 100;

pub fn title() -> String {
    format!("Kernel net events per ping on the server ({EVENT_PINGS} pings)")
}

pub fn run(lab: &Lab, examples: &Path, modes: Option<&[Mode]>, json: &mut Figures) -> Result<()> {
    let modes = modes.unwrap_or(&[Mode::Kernel, Mode::Tc, Mode::Xdp]);
    let (client, server) = (&lab.client, &lab.server);
    println!("| answered by | net events per ping | vs. kernel |");
    println!("|---|---|---|");
    let mut kernel = 0.0;
    for &mode in modes {
        let child = answerer(mode, true, server, examples)?;
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
        json.record(&format!("net_events_per_ping_{}", mode.name()), per_ping);
    }
    server.kernel_echo_reply(true)?;
    Ok(())
}
