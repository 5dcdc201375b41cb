//! xdp_pingpong_batched (the batching chapter): reports travel in per-CPU batches
//! of 64 and a timer sends the rest, run on hand-made pings with BPF_PROG_TEST_RUN
//! on one CPU, reading the real ring buffer; and on a real interface, every ping
//! answered and reported once, the last partial batch included.

mod common;

use std::mem::MaybeUninit;
use std::time::Duration;

use common::*;
use ebpf_workshop_dev::frames::Ping;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use nix::sys::signal::Signal;

mod skel {
    #![allow(clippy::all, unused)]
    include!(concat!(env!("OUT_DIR"), "/xdp_pingpong_batched.skel.rs"));
}
use skel::types::{batch_timer, echo_batch, echo_event};
use skel::XdpPingpongBatchedSkelBuilder;

// SAFETY: a plain C struct of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for echo_event {}

const XDP_TX: u32 = 3;

/// Pinned bpf_timers (BPF_F_TIMER_CPU_PIN) came in Linux 6.7: from there on (or
/// where a distribution backported them), ping reports travel in batches
/// (bpf/include/batch.h); before, one record each.
fn kernel_is_at_least(want: (u32, u32)) -> bool {
    let release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>());
    (parts.next().unwrap().unwrap(), parts.next().unwrap().unwrap()) >= want
}

#[test]
fn reports_travel_in_batches_of_64_and_a_timer_sends_the_rest() {
    const PINGS: u16 = 100;
    const BATCH: usize = 64; // ECHO_BATCH in bpf/include/batch.h
    if !ebpf_workshop::preflight::has_bpf_timer() {
        eprintln!("skipped: this kernel has no bpf_timer (the other test checks the message)");
        return;
    }
    // src/batches.rs wait_for_batches() reads these two fields by offset.
    assert_eq!(std::mem::offset_of!(echo_batch, n), 0);
    assert_eq!(std::mem::offset_of!(echo_batch, timer), 4);
    assert_eq!(batch_timer::TIMER_ARMED.0, 2);

    // All runs on one CPU, so that all reports go into one CPU's batch.
    let allowed = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
    let cpu = (0..nix::sched::CpuSet::count()).find(|&c| allowed.is_set(c).unwrap()).unwrap();
    let mut one = nix::sched::CpuSet::new();
    one.set(cpu).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();

    let mut storage = MaybeUninit::uninit();
    let mut open = XdpPingpongBatchedSkelBuilder::default().open(&mut storage).unwrap();
    let cpus = libbpf_rs::num_possible_cpus().unwrap() as u32;
    open.maps.batches.set_max_entries(cpus).unwrap();
    let skel = open.load().unwrap();

    // Each record the ring buffer delivers: the sequence numbers in it.
    let records = std::cell::RefCell::new(Vec::<Vec<u16>>::new());
    let mut builder = libbpf_rs::RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, |data: &[u8]| {
            let size = std::mem::size_of::<echo_event>();
            assert_eq!(data.len() % size, 0, "a record is whole reports");
            let reports =
                data.chunks_exact(size).map(|r| plain::from_bytes::<echo_event>(r).unwrap());
            records.borrow_mut().push(reports.map(|e| e.seq).collect());
            0
        })
        .unwrap();
    let ring = builder.build().unwrap();
    let timer_of_this_cpu = || {
        let value = skel.maps.batches.lookup(&(cpu as u32).to_ne_bytes(), MapFlags::ANY);
        u32::from_ne_bytes(value.unwrap().unwrap()[4..8].try_into().unwrap())
    };

    let started = std::time::Instant::now();
    let mut pinned = None;
    for seq in 0..PINGS {
        let mut ping = Ping::new(false);
        ping.seq = seq;
        assert_eq!(
            test_run(&skel.progs.xdp_pingpong_batched, &ping.request()).unwrap().action,
            XDP_TX
        );
        // After the first report: did this kernel pin the batch's timer? Armed, or
        // idle again when it already fired (a slow, emulated run can take its 20 ms
        // between two lines): anything but "cannot".
        pinned.get_or_insert_with(|| timer_of_this_cpu() != batch_timer::TIMER_CANNOT.0);
    }
    let pinned = pinned.unwrap();
    if kernel_is_at_least((6, 7)) {
        assert!(pinned, "Linux 6.7 and later pin timers (BPF_F_TIMER_CPU_PIN)");
    }
    ring.consume().unwrap();
    let at_once = records.borrow().clone();
    // Faster than the timer (the usual case): nothing was sent but full batches.
    // (Before 6.11, BPF_PROG_TEST_RUN ran programs with softirqs on: a timer
    // could fire inside a run. The runs take about a millisecond, the timer 20.)
    let before_the_timer = started.elapsed() < std::time::Duration::from_millis(15);
    // The timer sends the last, partial batch 20 ms after its first report: what
    // the example waits for before its last read (no wake-up for a record this
    // small, so one consume() after the wait must find it).
    ebpf_workshop::batches::wait_for_batches(&skel.maps.batches).unwrap();
    ring.consume().unwrap();
    let all = records.borrow().clone();

    let seqs: Vec<u16> = all.iter().flatten().copied().collect();
    // (Before 6.11 a timer firing in the middle of a run can send a report twice.)
    if before_the_timer || kernel_is_at_least((6, 11)) {
        assert_eq!(seqs, (0..PINGS).collect::<Vec<_>>(), "every report, in order, once");
    }
    let sizes: Vec<usize> = all.iter().map(Vec::len).collect();
    if pinned && before_the_timer {
        assert_eq!(
            at_once.iter().map(Vec::len).collect::<Vec<_>>(),
            [BATCH],
            "a full batch at once"
        );
        assert_eq!(sizes, [BATCH, PINGS as usize - BATCH], "then the rest, by the timer");
    } else if pinned {
        // A slow machine: the timer may have cut a batch short on the way.
        assert!(sizes.iter().all(|&n| n <= BATCH) && sizes.len() < PINGS as usize, "{sizes:?}");
    } else {
        assert_eq!(sizes, vec![1; PINGS as usize], "no pinned timers: a record per report");
    }
    let (idle, cannot) = (batch_timer::TIMER_IDLE.0, batch_timer::TIMER_CANNOT.0);
    assert_eq!(timer_of_this_cpu(), if pinned { idle } else { cannot });
}

/// In the lab, as a user runs it: 70 pings (a full batch of 64, then 6 that only
/// the timer or the exit sends) are all answered by the program, and each is
/// shown once; with --wake-each too. Nothing stays attached. On a kernel without
/// bpf_timer the example says so in one sentence.
#[test]
fn answers_and_reports_every_ping_in_batches_and_one_by_one() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    server.kernel_echo_reply(false).unwrap();
    for flags in [&[][..], &["--wake-each"][..]] {
        let mut args = vec![server.iface];
        args.extend_from_slice(flags);
        let mut example = run_in(server, "xdp_pingpong_batched", &args);
        if !preflight_has_timer() {
            let end = example.wait(Duration::from_secs(20));
            assert!(!end.status.success() && end.stderr.contains("no bpf_timer"), "{end:?}");
            return;
        }
        example.wait_attached();
        let out = client
            .cmd("ping")
            .args(["-f", "-c", "70", "-W", "1", "-n"])
            .arg(server.ipv4.to_string())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("70 received"), "{flags:?}: answers from XDP\n{text}");
        let ids = bpf_prog_ids(example.pid());
        let end = example.stop(Signal::SIGINT, Duration::from_secs(5));
        assert!(end.status.success(), "{end:?}");
        let rows = end.stdout.lines().filter(|l| l.contains(" answered ")).count();
        assert_eq!(rows, 70, "{flags:?}: each ping shown once\n{}", end.stdout);
        assert!(end.stderr.contains("replied 70"), "{}", end.stderr);
        assert!(end.stderr.contains("70 pings seen, 0 events lost"), "{}", end.stderr);
        assert_eq!(xdp_on(server), None, "XDP program left on {}", server.iface);
        assert_unloaded(&ids);
    }
}

fn preflight_has_timer() -> bool {
    ebpf_workshop::preflight::has_bpf_timer()
}
