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

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::mem::MaybeUninit;
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::attach::{attach_with_fallback, AttachMode, Hook};
use ebpf_workshop::format::{c_str, Clock, Table};
use ebpf_workshop::preflight::{self, Needs, TRACEFS};
use ebpf_workshop::ring::RingReader;
use ebpf_workshop::skel::hello::{types::exec_event, HelloSkelBuilder};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use nix::fcntl::{fcntl, FcntlArg, OFlag};

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

    // Before anything runs, so that only this run's lines are shown.
    let printk = args.printk.then(open_trace_pipe).transpose()?;

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

    if let Some(pipe) = printk {
        stream_printk(pipe);
    }

    // print events until Ctrl-C; dropping the skeleton and links detaches everything.
    let clock = Clock::start();
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
            clock.at(e.ts_ns),
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

/// Open the kernel's trace pipe, and first throw away what is already in it (lines
/// from earlier runs), so that we show only this run's. It is a pipe shared by
/// every bpf_printk on the system, and reading consumes it.
fn open_trace_pipe() -> Result<File> {
    let path = format!("{TRACEFS}/trace_pipe");
    let mut pipe = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("opening {path} for --printk"))?;
    let mut old = vec![0u8; 1 << 16];
    while matches!(pipe.read(&mut old), Ok(n) if n > 0) {}
    fcntl(&pipe, FcntlArg::F_SETFL(OFlag::empty())).context("making the trace pipe blocking")?;
    Ok(pipe)
}

/// Copy the "I'm alive!" lines from the trace pipe to our stdout, in the background.
fn stream_printk(pipe: File) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if line.contains("I'm alive!") {
                println!("printk: {}", line.trim());
            }
        }
    });
}
