//! # hello — your first eBPF program (talk step 1)
//!
//! Runs a tiny program in the kernel every time any process calls `execve()`, the
//! syscall that starts a new program. It says "I'm alive!" with `bpf_printk`, as in
//! the talk, and sends one event per exec to user space through a ring buffer: who
//! called execve (pid, parent, uid, command) and what it asked to run.
//!
//! Hook: a kprobe on the execve syscall (`SEC("ksyscall/execve")`); on kernels
//! without kprobes, the `syscalls:sys_enter_execve` tracepoint. One line says which.
//!
//! Try it: `cargo run --example hello`, then run any command in another terminal.
//! Add `--printk` to see the talk's trace_pipe output too.
//!
//! Needs: root (or CAP_BPF + CAP_PERFMON), a kernel with BTF, ring buffers (5.8+).

use std::io::{BufRead, BufReader};
use std::mem::MaybeUninit;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::attach::{attach_with_fallback, AttachMode, Hook};
use ebpf_workshop::format::{c_str, monotonic_ns, seconds, Table};
use ebpf_workshop::preflight::{self, Needs, TRACEFS};
use ebpf_workshop::ring::RingReader;
use ebpf_workshop::skel::hello::{types::exec_event, HelloSkelBuilder};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// Say "I'm alive!" from the kernel on every execve, and show who ran what.
#[derive(Parser)]
#[command(after_help = "Example: cargo run --example hello -- --printk")]
struct Args {
    /// Which hook to use: the talk's kprobe, or the tracepoint that works without
    /// kprobes.
    #[arg(long, value_enum, default_value = "auto")]
    attach: AttachMode,
    /// Also print the bpf_printk lines ("I'm alive!") from the kernel trace pipe.
    #[arg(long)]
    printk: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::Tracing)?;

    // open → load: libbpf parses the object, fixes up CO-RE offsets for this
    // kernel, and the verifier checks every program.
    let mut storage = MaybeUninit::uninit();
    let open = HelloSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let skel = open.load().context("loading the BPF programs into the kernel")?;

    // attach: the kprobe from the talk if this kernel has kprobes, else the tracepoint.
    let progs = &skel.progs;
    let _attached = attach_with_fallback(
        args.attach,
        Hook::kprobe("kprobe on the execve syscall", || {
            Ok(vec![progs.hello_ksyscall.attach_ksyscall(false, "execve")?])
        }),
        Hook::tracepoint("tracepoint syscalls:sys_enter_execve", || {
            Ok(vec![progs
                .hello_tracepoint
                .attach_tracepoint(libbpf_rs::TracepointCategory::Syscalls, "sys_enter_execve")?])
        }),
    )?;

    if args.printk {
        stream_printk();
    }

    // print events until Ctrl-C; dropping the skeleton and links detaches everything.
    let start = monotonic_ns();
    let table = Table::new(&[
        ("TIME(s)", 9),
        ("PID", 7),
        ("PPID", 7),
        ("UID", 6),
        ("COMM", 16),
        ("FILENAME", 0),
    ]);
    let summary = RingReader::new(&skel.maps.events, &skel.maps.lost_events, |e: &exec_event| {
        table.row(&[
            seconds(Duration::from_nanos(e.ts_ns.saturating_sub(start))),
            e.pid.to_string(),
            e.ppid.to_string(),
            e.uid.to_string(),
            c_str(&e.comm),
            c_str(&e.filename),
        ]);
    })?
    .run()?;
    summary.print("execs");
    Ok(())
}

/// Copy the "I'm alive!" lines from the kernel's trace pipe to our stdout. The
/// pipe is shared by every bpf_printk on the system, and reading consumes it. It
/// may still hold lines from earlier runs: skip those older than this one (trace
/// timestamps are seconds since boot, like CLOCK_MONOTONIC).
fn stream_printk() {
    let path = format!("{TRACEFS}/trace_pipe");
    let since = monotonic_ns() as f64 / 1e9 - 0.5;
    let timestamp = |line: &str| -> Option<f64> {
        line.split(": bpf_trace_printk")
            .next()?
            .split_whitespace()
            .last()?
            .trim_end_matches(':')
            .parse()
            .ok()
    };
    std::thread::spawn(move || {
        let Ok(pipe) = std::fs::File::open(&path) else {
            eprintln!("cannot open {path}: no bpf_printk output");
            return;
        };
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if line.contains("I'm alive!") && timestamp(&line).is_some_and(|t| t >= since) {
                println!("printk: {}", line.trim());
            }
        }
    });
}
