//! The XDP programs on hand-made frames with BPF_PROG_TEST_RUN: the real verifier
//! and the real program in the kernel, no interface needed. Every expected reply is
//! built by `ebpf_workshop_dev::frames` with checksums computed from scratch.

mod common;

use std::mem::MaybeUninit;

use common::skel::xdp::XdpSkelBuilder;
use common::skel::xdp_pingpong::XdpPingpongSkelBuilder;
use common::{test_run, TestRun};
use ebpf_workshop_dev::frames::*;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
/// The kernel refuses XDP test runs on less than an Ethernet header.
const ETH_HLEN: usize = 14;

type PingpongSkel = common::skel::xdp_pingpong::XdpPingpongSkel<'static>;

thread_local! {
    /// One loaded xdp_pingpong per test thread: loading (verifying) takes far
    /// longer than a run. The program keeps no state between packets that
    /// matters here (only counters).
    static PINGPONG: PingpongSkel = {
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        XdpPingpongSkelBuilder::default().open(storage).unwrap().load().unwrap()
    };
}

/// Run xdp_pingpong on `frame`.
fn pingpong(frame: &[u8]) -> TestRun {
    PINGPONG.with(|skel| test_run(&skel.progs.xdp_pingpong, frame).unwrap())
}

fn assert_passed_unchanged(frame: &[u8], what: &str) {
    let run = pingpong(frame);
    assert_eq!(run.action, XDP_PASS, "{what}: expected XDP_PASS");
    assert_eq!(run.frame, frame, "{what}: a passed frame must not change");
}

#[test]
fn echo_requests_become_exact_replies() {
    for v6 in [false, true] {
        for vlan in [None, Some(42)] {
            let ping = Ping { vlan, ..Ping::new(v6) };
            let run = pingpong(&ping.request());
            assert_eq!(run.action, XDP_TX, "v6={v6} vlan={vlan:?}");
            assert_eq!(run.frame, ping.expected_reply(), "v6={v6} vlan={vlan:?}: reply bytes");
        }
    }
}

#[test]
fn odd_payloads_and_ids_keep_checksums_right() {
    // Odd lengths and ids whose checksum words carry: where incremental updates go wrong.
    for (len, id, seq) in
        [(0usize, 0u16, 1u16), (1, 0xffff, 0xffff), (7, 0x0800, 1), (1400, 0xfff7, 0x8000)]
    {
        for v6 in [false, true] {
            let ping = Ping { data: vec![0xff; len], id, seq, ..Ping::new(v6) };
            let run = pingpong(&ping.request());
            assert_eq!(run.action, XDP_TX);
            assert_eq!(run.frame, ping.expected_reply(), "v6={v6} len={len} id={id:#x}");
        }
    }
}

#[test]
fn the_one_ambiguous_checksum_is_left_to_the_kernel() {
    // An all-zero echo (id 0, seq 0, no payload): its reply must carry checksum 0xFFFF,
    // but an incremental update yields 0x0000 (RFC 1624 section 3). The program
    // passes it to the kernel instead of answering wrongly.
    let ping = Ping { data: vec![], id: 0, seq: 0, ..Ping::new(false) };
    assert_eq!(&ping.expected_reply()[36..38], &[0xff, 0xff]);
    assert_passed_unchanged(&ping.request(), "all-zero echo");
    // The same with a payload is answered, and right.
    let ping = Ping { data: vec![0, 1], id: 0, seq: 0, ..Ping::new(false) };
    assert_eq!(pingpong(&ping.request()).frame, ping.expected_reply());
}

#[test]
fn every_truncation_passes_unchanged() {
    for v6 in [false, true] {
        let full = Ping::new(v6).request();
        for len in 0..full.len() {
            let cut = &full[..len];
            if len < ETH_HLEN {
                let refused =
                    PINGPONG.with(|skel| test_run(&skel.progs.xdp_pingpong, cut).is_err());
                assert!(refused, "kernel accepted a {len}-byte XDP frame");
                continue;
            }
            assert_passed_unchanged(cut, &format!("v6={v6} truncated to {len} bytes"));
        }
    }
}

#[test]
fn frames_we_must_not_answer_pass_unchanged() {
    let reply = {
        let p = Ping::new(false);
        // An echo reply arriving (someone answering us): not ours to answer.
        let icmp = icmp4_echo(ICMP_ECHOREPLY, 1, 1, &[0; 8]);
        ethernet(
            SERVER_MAC,
            CLIENT_MAC,
            None,
            ETH_P_IP,
            &ipv4(CLIENT_V4, SERVER_V4, IPPROTO_ICMP, &p.ipv4, &icmp),
        )
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("echo reply", reply),
        (
            "IPv4 with options",
            Ping { ipv4: Ipv4Opts { options: vec![1, 1, 1, 0], frag: 0 }, ..Ping::new(false) }
                .request(),
        ),
        (
            "first fragment",
            Ping { ipv4: Ipv4Opts { options: vec![], frag: 0x2000 }, ..Ping::new(false) }.request(),
        ),
        (
            "later fragment",
            Ping { ipv4: Ipv4Opts { options: vec![], frag: 0x0010 }, ..Ping::new(false) }.request(),
        ),
        ("broadcast", Ping { dst_mac: BROADCAST_MAC, ..Ping::new(false) }.request()),
        ("multicast v6", Ping { dst_mac: [0x33, 0x33, 0, 0, 0, 1], ..Ping::new(true) }.request()),
        (
            "TCP",
            ethernet(
                SERVER_MAC,
                CLIENT_MAC,
                None,
                ETH_P_IP,
                &ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, &Ipv4Opts::default(), &tcp_syn(1234, 80)),
            ),
        ),
        (
            "UDP",
            ethernet(
                SERVER_MAC,
                CLIENT_MAC,
                None,
                ETH_P_IP,
                &ipv4(
                    CLIENT_V4,
                    SERVER_V4,
                    IPPROTO_UDP,
                    &Ipv4Opts::default(),
                    &udp(1234, 53, b"hi"),
                ),
            ),
        ),
        ("ARP", ethernet(BROADCAST_MAC, CLIENT_MAC, None, 0x0806, &[0; 28])),
    ];
    for (what, frame) in cases {
        assert_passed_unchanged(&frame, what);
    }
}

#[test]
fn xdp_inspect_passes_everything_unless_told_to_drop_pings() {
    let ping = Ping::new(false).request();
    let tcp = ethernet(
        SERVER_MAC,
        CLIENT_MAC,
        None,
        ETH_P_IP,
        &ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, &Ipv4Opts::default(), &tcp_syn(1, 2)),
    );
    for drop_pings in [false, true] {
        let mut storage = MaybeUninit::uninit();
        let mut open = XdpSkelBuilder::default().open(&mut storage).unwrap();
        open.maps.rodata_data.as_mut().unwrap().drop_pings = drop_pings;
        let skel = open.load().unwrap();
        let run = test_run(&skel.progs.xdp_inspect, &ping).unwrap();
        assert_eq!(
            run.action,
            if drop_pings { XDP_DROP } else { XDP_PASS },
            "drop_pings={drop_pings}"
        );
        assert_eq!(run.frame, ping, "xdp_inspect never rewrites");
        for v6 in [false, true] {
            let run = test_run(&skel.progs.xdp_inspect, &Ping::new(v6).request()).unwrap();
            assert_eq!(run.action, if drop_pings { XDP_DROP } else { XDP_PASS });
        }
        assert_eq!(test_run(&skel.progs.xdp_inspect, &tcp).unwrap().action, XDP_PASS);
    }
}

use common::skel::xdp::types::echo_event;
// SAFETY: a plain C struct of integers: any bytes of the right length are a value.
unsafe impl plain::Plain for echo_event {}

/// Pinned bpf_timers (BPF_F_TIMER_CPU_PIN) came in Linux 6.7: from there on (or
/// where a distribution backported them), ping reports travel in batches
/// (bpf/include/echo.h); before, one record each.
fn kernel_is_at_least(want: (u32, u32)) -> bool {
    let release = nix::sys::utsname::uname().unwrap().release().to_string_lossy().into_owned();
    let mut parts = release.split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>());
    (parts.next().unwrap().unwrap(), parts.next().unwrap().unwrap()) >= want
}

#[test]
fn reports_travel_in_batches_of_64_and_a_timer_sends_the_rest() {
    use common::skel::xdp::types::{batch_timer, echo_batch};
    const PINGS: u16 = 100;
    const BATCH: usize = 64; // ECHO_BATCH in bpf/include/echo.h
                             // src/maps.rs wait_for_batches() reads these two fields by offset.
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
    let mut open = XdpSkelBuilder::default().open(&mut storage).unwrap();
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
        assert_eq!(test_run(&skel.progs.xdp_inspect, &ping.request()).unwrap().action, XDP_PASS);
        // After the first report: did this kernel pin the batch's timer?
        pinned.get_or_insert_with(|| timer_of_this_cpu() == batch_timer::TIMER_ARMED.0);
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
    // The timer sends the last, partial batch 20 ms after its first report.
    let deadline = std::time::Instant::now() + common::scaled(std::time::Duration::from_secs(2));
    while records.borrow().iter().map(Vec::len).sum::<usize>() < PINGS as usize
        && std::time::Instant::now() < deadline
    {
        // No wake-up for a record this small: poll times out, consume reads it.
        ring.poll(std::time::Duration::from_millis(10)).unwrap();
        ring.consume().unwrap();
    }
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
