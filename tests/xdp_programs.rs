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
            // Newer kernels refuse to test-run less than an Ethernet header; 5.10
            // runs it, and then the program must pass it unchanged like the rest.
            if len < ETH_HLEN
                && PINGPONG.with(|skel| test_run(&skel.progs.xdp_pingpong, cut).is_err())
            {
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
