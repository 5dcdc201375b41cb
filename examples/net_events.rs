//! # net_events — how many kernel events does a packet cost? (talk step 8)
//!
//! Counts hits on the kernel's `net:*` tracepoints — packets queued, sent,
//! received — like the talk's `perf trace -e 'net:*' ping -c1`, in eBPF. Run a
//! command after `--` and it counts while the command runs, then prints the totals.
//!
//! The talk's point: a ping answered by xdp_pingpong costs the server no net
//! events at all, because the kernel never builds a packet for it; answered by the
//! kernel it costs several (see the README's table).
//!
//! Hook: raw tracepoints (`SEC("raw_tracepoint/net_dev_queue")`...), one program
//! per event. `--netns`/`--iface` filter inside the kernel.
//!
//! Try it (lab, see `make lab`):
//! `sudo target/debug/examples/net_events --netns ebpfws-server -- ip netns exec ebpfws-client ping -c1 10.77.0.2`
//!
//! Needs: root (or CAP_BPF + CAP_PERFMON), BTF.

use std::mem::MaybeUninit;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::{c_str, Table};
use ebpf_workshop::libbpf_output::muted;
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::netns::filter_ids;
use ebpf_workshop::preflight::{self, Needs};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};

// The skeleton that build.rs generated from bpf/net_events.bpf.c: ten programs,
// one per tracepoint, and the per-CPU `counts` map they share.
mod skel {
    include!(concat!(env!("OUT_DIR"), "/net_events.skel.rs"));
}
use skel::NetEventsSkelBuilder;

/// Count net:* tracepoint hits, optionally for one namespace or interface.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo target/debug/examples/net_events --netns ebpfws-server -- \\\n    ip netns exec ebpfws-client ping -c1 10.77.0.2"
)]
struct Args {
    /// Only packets on devices in this network namespace (a name from `ip netns`).
    #[arg(long)]
    netns: Option<String>,
    /// Only packets on this interface (in --netns if given, else in this namespace).
    #[arg(long)]
    iface: Option<String>,
    /// Print the counts every this many seconds (0: only at the end).
    #[arg(long, default_value_t = 1)]
    interval: u64,
    /// A command to run while counting (after `--`); counting stops when it exits.
    #[arg(last = true)]
    command: Vec<String>,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Tracing)?;
    let (netns_inode, ifindex) = filter_ids(args.netns.as_deref(), args.iface.as_deref())?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    let mut storage = MaybeUninit::uninit();
    let mut open =
        NetEventsSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let rodata = open.maps.rodata_data.as_mut().context("no read-only data")?;
    rodata.target_netns = netns_inode;
    rodata.target_ifindex = ifindex;
    let names: Vec<String> = rodata.event_names.iter().map(|n| c_str(n)).collect();
    let skel = open.load().context("loading the BPF programs into the kernel")?;

    // Attach each program, on_<event>, to the tracepoint net:<event>, if this
    // kernel has it.
    let mut links = Vec::new();
    for prog in skel.object().progs_mut() {
        let event = prog.name().to_string_lossy().trim_start_matches("on_").to_string();
        match muted(|| prog.attach_raw_tracepoint(&event)) {
            Ok(link) => links.push(link),
            Err(_) => eprintln!("note: this kernel has no tracepoint net:{event}; not counted"),
        }
    }
    let scope = match (&args.netns, &args.iface) {
        (Some(ns), Some(i)) => format!("interface {i} in namespace {ns}"),
        (Some(ns), None) => format!("namespace {ns}"),
        (None, Some(i)) => format!("interface {i}"),
        (None, None) => "every namespace".to_string(),
    };
    eprintln!("attached: {} net:* tracepoints (raw tracepoints), counting in {scope}", links.len());

    let read = || -> Vec<u64> {
        (0..names.len() as u32).map(|i| per_cpu_sum(&skel.maps.counts, i).unwrap_or(0)).collect()
    };
    let mut child = match args.command.split_first() {
        Some((program, rest)) => {
            Some(Command::new(program).args(rest).spawn().map_err(|e| {
                anyhow!("cannot run `{program}`: {e} (is it installed, and on PATH?)")
            })?)
        }
        None => None,
    };
    let columns = [("EVENT", 30), ("COUNT", 0)];
    let table = (args.interval > 0).then(|| Table::new(&columns));
    // Count until Ctrl-C, or until the command exits.
    let mut last_print = Instant::now();
    let status = loop {
        if stop.load(Ordering::SeqCst) {
            break None;
        }
        if let Some(exited) = child.as_mut().map(|c| c.try_wait()).transpose()?.flatten() {
            break Some(exited);
        }
        if let Some(table) =
            table.as_ref().filter(|_| last_print.elapsed() >= Duration::from_secs(args.interval))
        {
            last_print = Instant::now();
            for (name, n) in names.iter().zip(read()).filter(|(_, n)| *n > 0) {
                table.row(&[name.as_str(), &n.to_string()]);
            }
            println!();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!("totals:");
    let table = Table::new(&columns);
    let counts = read();
    for (name, n) in names.iter().zip(&counts) {
        table.row(&[name.as_str(), &n.to_string()]);
    }
    table.row(&["all", &counts.iter().sum::<u64>().to_string()]);
    if let Some(s) = status.filter(|s| !s.success()) {
        match s.code() {
            Some(code) => Err(anyhow!("the command failed (exit code {code})"))?,
            None => Err(anyhow!("the command was killed ({s})"))?,
        }
    }
    Ok(())
}
