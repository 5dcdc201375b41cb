//! Section 2: The packet programs' cost alone, with BPF_PROG_TEST_RUN: each example
//! runs as a user runs it (reports on), paused so that nobody reads its ring buffer,
//! and its own loaded program, found by id, runs on hand-built frames.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use ebpf_workshop::netns::in_namespace;
use ebpf_workshop_dev::frames::{self, Ping};
use ebpf_workshop_dev::lab::Lab;
use ebpf_workshop_dev::progs::{prog_of, return_only_program, test_run_repeated};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::figures::Figures;
use crate::stats::BpfStats;
use crate::{start, stop_cleanly};

pub fn title() -> String {
    "Program cost per packet alone (BPF_PROG_TEST_RUN: no ring-buffer reader, so no wake-ups)"
        .to_string()
}

/// Single runs per figure, and repetitions in one call.
const SINGLE_RUNS: u32 = 20_000;
const REPEATS: u32 = 100_000;

/// Mean ns per run over `SINGLE_RUNS` separate runs, each on a fresh copy of the
/// frame (a rewriting program must see the request every time), and the kernel's
/// mean over `REPEATS` repetitions in one call (valid only for programs that leave
/// the frame as it is: later repetitions see what earlier ones wrote).
fn cost(prog: &impl std::os::fd::AsFd, frame: &[u8]) -> Result<(f64, f64)> {
    let mut total = Duration::ZERO;
    for _ in 0..SINGLE_RUNS {
        total += test_run_repeated(prog, frame, 1)?.duration;
    }
    let single = total.as_nanos() as f64 / SINGLE_RUNS as f64;
    let repeated = test_run_repeated(prog, frame, REPEATS)?.duration.as_nanos() as f64;
    Ok((single, repeated))
}

/// The examples and their programs: (example, program, hook kind, rewrites pings).
const PROGRAMS: [(&str, &str, &str, bool); 4] = [
    ("xdp", "xdp_inspect", "xdp", false),
    ("xdp_pingpong", "xdp_pingpong", "xdp", true),
    ("tc", "tc_ingress", "tc", false),
    ("tc_pingpong", "tc_pingpong", "tc", true),
];

pub fn run(lab: &Lab, examples: &Path, json: &mut Figures) -> Result<()> {
    // The statistics' clock reads would be counted in these figures too.
    let _stats = BpfStats::set(false)?;
    let server = &lab.server;
    let echo = Ping::new(false).request();
    let tcp = frames::ethernet(
        frames::SERVER_MAC,
        frames::CLIENT_MAC,
        None,
        frames::ETH_P_IP,
        &frames::ipv4(
            frames::CLIENT_V4,
            frames::SERVER_V4,
            frames::IPPROTO_TCP,
            &Default::default(),
            &frames::tcp_syn(40000, 80),
        ),
    );
    println!("| program | path | ns/packet, fresh frame each run | ns/packet, {REPEATS} repeats | vs. empty program |");
    println!("|---|---|---|---|---|");
    // Everything runs inside the lab's server namespace: tc_pingpong's
    // bpf_clone_redirect really transmits, on that namespace's loopback.
    let floors = in_namespace(&server.ns, || -> Result<_> {
        let xdp = return_only_program(
            libbpf_sys::BPF_PROG_TYPE_XDP,
            libbpf_sys::XDP_PASS as i32,
            c"floor_xdp",
        )?;
        let tc = return_only_program(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS, 0, c"floor_tc")?;
        Ok([("xdp", cost(&xdp, &tcp)?), ("tc", cost(&tc, &tcp)?)])
    })??;
    for (kind, (single, repeated)) in &floors {
        println!("| empty {kind} program (floor) | return | {single:.0} | {repeated:.0} | 1.0x |");
        json.record(&format!("cost_floor_{kind}_ns"), *repeated);
    }
    for (example, name, kind, rewrites) in PROGRAMS {
        // The example as a user starts it, then stopped (SIGSTOP): its program
        // stays loaded and attached, and its reports wait in the ring buffer.
        let mut cmd = server.cmd(examples.join(example));
        cmd.arg(server.iface);
        let running = start(cmd)?;
        let prog = prog_of(running.pid(), name)?;
        let pid = Pid::from_raw(running.pid() as i32);
        kill(pid, Signal::SIGSTOP)?;
        let measured = in_namespace(&server.ns, || -> Result<_> {
            Ok([(&echo, "echo request", "echo", !rewrites), (&tcp, "TCP (passed)", "tcp", true)]
                .map(|(frame, path, key, repeat_valid)| {
                    cost(&prog, frame).map(|c| (path, key, repeat_valid, c))
                }))
        })??;
        kill(pid, Signal::SIGCONT)?;
        drop(prog);
        stop_cleanly(running)?;
        let floor = floors.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f).unwrap();
        for result in measured {
            let (path, key, repeat_valid, (single, repeated)) = result?;
            // Compare like with like: single runs with single runs.
            let (shown, ratio) = if repeat_valid {
                (format!("{repeated:.0}"), repeated / floor.1)
            } else {
                ("n/a (rewrites the frame)".to_string(), single / floor.0)
            };
            println!("| {name} | {path} | {single:.0} | {shown} | {ratio:.1}x |");
            json.record(
                &format!("cost_{name}_{key}_ns"),
                if repeat_valid { repeated } else { single },
            );
        }
    }
    println!("\nA second figure, not the cost in place: BPF_PROG_TEST_RUN runs the program on a");
    println!("frame from user space. Each program is the one its example loaded, found by id");
    println!("while the example runs in the lab's server namespace, stopped (SIGSTOP) so that");
    println!("nobody reads its ring buffer: a report never wakes a reader (section 1 has the");
    println!("cost in place). kernel.bpf_stats_enabled is 0 here. Single runs include the");
    println!("kernel's per-call overhead (the floor shows it); the repeated figure is the");
    println!("program alone. Rewriting programs are measured only with single runs on a fresh");
    println!("request, because a repetition would see the reply.");
    Ok(())
}
