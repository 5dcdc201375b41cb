//! # hello — your first eBPF program (talk step 1)
//!
//! Runs a tiny program in the kernel every time any process calls `execve()`, the
//! syscall that starts a new program. It says "I'm alive!" with `bpf_printk`, as in
//! the talk, and sends one event per exec to user space through a ring buffer: who
//! called execve (pid, parent, uid, command) and what it asked to run.
//!
//! Hook: a kprobe on the execve syscall (`SEC("ksyscall/execve")`); on kernels
//! without kprobes, the `syscalls:sys_enter_execve` tracepoint. One line says which.
//! Try it: `cargo run --example hello -- --printk`, then run any command elsewhere.
//!
//! Needs: root (or CAP_BPF + CAP_PERFMON), a kernel with BTF, ring buffers (5.8+).

use std::cell::Cell;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::{c_str, Clock, Table};
use ebpf_workshop::kprobe_fallback::{attach_with_fallback, AttachMode, Hook};
use ebpf_workshop::maps::per_cpu_sum;
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::trace_pipe;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ErrorKind, RingBufferBuilder};

// The skeleton that build.rs generated from bpf/hello.bpf.c: the programs, their
// maps, and Rust twins of the C types they share with us (bpf/hello.h).
mod skel {
    include!(concat!(env!("OUT_DIR"), "/hello.skel.rs"));
}
use skel::types::{exec_counts, exec_event};
use skel::HelloSkelBuilder;

// SAFETY: plain C structs of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for exec_event {}
unsafe impl plain::Plain for exec_counts {}

/// Say "I'm alive!" from the kernel on every execve, and show who ran what.
#[derive(Parser)]
#[command(after_help = "Example: cargo run --example hello -- --printk")]
struct Args {
    /// The talk's kprobe, or the tracepoint that works without kprobes.
    #[arg(long, value_enum, default_value = "auto")]
    attach: AttachMode,
    /// Also print the bpf_printk lines ("I'm alive!") from the kernel trace pipe.
    #[arg(long)]
    printk: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Tracing)?;

    // Before anything runs, so that only this run's lines are shown.
    let printk = args.printk.then(trace_pipe::open).transpose()?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open → load: libbpf parses the object, fixes up CO-RE offsets for this
    // kernel, and the verifier checks every program.
    let mut storage = MaybeUninit::uninit();
    let open = HelloSkelBuilder::default().open(&mut storage).context("opening the BPF object")?;
    let skel = open.load().context("loading the BPF programs into the kernel")?;

    // attach: the kprobe from the talk if this kernel has kprobes, else the tracepoint.
    let progs = &skel.progs;
    let attached = attach_with_fallback(
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
        trace_pipe::print_lines_with(pipe, "I'm alive!"); // bpf_printk's, as "printk: ..."
    }

    // The ring buffer: one callback per event, with the record's bytes.
    let clock = Clock::start();
    let table = Table::new(&[
        ("TIME(s)", 9),
        ("PID", 7),
        ("PPID", 7),
        ("UID", 6),
        ("COMM", 16),
        ("FILENAME", 0),
    ]);
    let seen = Cell::new(0u64);
    let mut builder = RingBufferBuilder::new();
    builder.add(&skel.maps.events, |data: &[u8]| {
        if let Ok(e) = plain::from_bytes::<exec_event>(data) {
            seen.set(seen.get() + 1);
            table.row(&[
                clock.at(e.ts_ns),
                e.pid.to_string(),
                e.ppid.to_string(),
                e.uid.to_string(),
                c_str(&e.comm),
                c_str(&e.filename),
            ]);
        }
        // A negative return ends this round of reading (as -EINTR): checked
        // between records, so that a stream of events cannot hold off Ctrl-C.
        if stop.load(Ordering::SeqCst) {
            -nix::libc::EINTR
        } else {
            0
        }
    })?;
    let ring = builder.build().context("setting up the ring buffer")?;

    // poll() sleeps until the program wakes us or 100 ms pass: it does not wake us
    // for each record (bpf/include/wakeup.h), so consume() reads what came anyway.
    while !stop.load(Ordering::SeqCst) {
        match ring.poll(Duration::from_millis(100)).and_then(|()| ring.consume()) {
            Err(e) if e.kind() != ErrorKind::Interrupted => {
                Err(e).context("reading the ring buffer")?
            }
            _ => {} // events handled, or interrupted by Ctrl-C
        }
    }

    // Detach, so that nothing new arrives; read what is left (a record a call).
    drop(attached);
    while ring.consume_raw() == -nix::libc::EINTR {}

    // The summary, from the program's per-CPU counters.
    let n: exec_counts = per_cpu_sum(&skel.maps.counts, 0)?;
    eprintln!("{} execs seen, {} events lost", seen.get(), n.lost);
    if n.lost > 0 {
        eprintln!("(the ring buffer was full: we read too slowly; see bpf/hello.bpf.c)");
    }
    Ok(())
}
