//! The TC programs on hand-made frames with BPF_PROG_TEST_RUN. Runs happen inside a
//! lab namespace: tc_pingpong's bpf_clone_redirect really sends its copy, and in a
//! test run that goes to the loopback device of the caller's namespace.

mod common;

use std::mem::MaybeUninit;

use common::skel::tc::TcSkelBuilder;
use common::skel::tc_pingpong::TcPingpongSkelBuilder;
use common::{lab, test_run};
use ebpf_workshop::netns::in_namespace;
use ebpf_workshop_dev::frames::*;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

fn tcp_frame() -> Vec<u8> {
    ethernet(
        SERVER_MAC,
        CLIENT_MAC,
        None,
        ETH_P_IP,
        &ipv4(CLIENT_V4, SERVER_V4, IPPROTO_TCP, &Ipv4Opts::default(), &tcp_syn(1234, 80)),
    )
}

#[test]
fn tc_pingpong_rewrites_requests_into_exact_replies_and_passes_the_rest() {
    let lab = lab();
    in_namespace(&lab.server.ns, || {
        let mut storage = MaybeUninit::uninit();
        let skel = TcPingpongSkelBuilder::default().open(&mut storage).unwrap().load().unwrap();
        let prog = &skel.progs.tc_pingpong;
        for v6 in [false, true] {
            for (len, id) in [(56usize, 0x4242u16), (0, 0xffff), (1, 1), (1400, 0xf7ff)] {
                let ping = Ping { data: vec![0xa5; len], id, ..Ping::new(v6) };
                let run = test_run(prog, &ping.request()).unwrap();
                // The original is dropped; the rewritten copy went out via clone_redirect.
                assert_eq!(run.action, TC_ACT_SHOT, "v6={v6} len={len}");
                assert_eq!(
                    run.frame,
                    ping.expected_reply(),
                    "v6={v6} len={len} id={id:#x}: reply bytes"
                );
            }
        }
        let not_ours = [
            ("TCP", tcp_frame()),
            ("broadcast", Ping { dst_mac: BROADCAST_MAC, ..Ping::new(false) }.request()),
            (
                "fragment",
                Ping { ipv4: Ipv4Opts { options: vec![], frag: 0x2000 }, ..Ping::new(false) }
                    .request(),
            ),
            (
                "options",
                Ping { ipv4: Ipv4Opts { options: vec![1, 1, 1, 0], frag: 0 }, ..Ping::new(false) }
                    .request(),
            ),
        ];
        for (what, frame) in not_ours {
            let run = test_run(prog, &frame).unwrap();
            assert_eq!(run.action, TC_ACT_OK, "{what}");
            assert_eq!(run.frame, frame, "{what}: must pass unchanged");
        }
        // Every truncation passes unchanged. The kernel refuses skb test runs shorter
        // than the Ethernet header plus the IP header the frame announces (it reads
        // it to fake a socket): only that prefix of lengths may be refused. The XDP
        // tests cover the shorter ones for the same parser.
        for (v6, ip_header) in [(false, 20), (true, 40)] {
            let full = Ping::new(v6).request();
            let mut refused = 0;
            for len in 0..full.len() {
                match test_run(prog, &full[..len]) {
                    Err(_) => {
                        assert_eq!(len, refused, "refused {len} bytes after accepting fewer");
                        refused += 1;
                    }
                    Ok(run) => assert_eq!(
                        (run.action, &run.frame[..]),
                        (TC_ACT_OK, &full[..len]),
                        "truncated to {len}"
                    ),
                }
            }
            assert!(
                refused <= 14 + ip_header,
                "v6={v6}: the kernel refused frames of up to {refused} bytes"
            );
        }
    })
    .unwrap();
}

#[test]
fn tc_ingress_drops_pings_and_with_drop_all_everything() {
    for drop_all in [false, true] {
        let mut storage = MaybeUninit::uninit();
        let mut open = TcSkelBuilder::default().open(&mut storage).unwrap();
        open.maps.rodata_data.as_mut().unwrap().drop_all = drop_all;
        let skel = open.load().unwrap();
        let prog = &skel.progs.tc_ingress;
        for v6 in [false, true] {
            let ping = Ping::new(v6).request();
            let run = test_run(prog, &ping).unwrap();
            assert_eq!(run.action, TC_ACT_SHOT, "ping v6={v6} drop_all={drop_all}");
            assert_eq!(run.frame, ping, "tc never rewrites");
        }
        let expected = if drop_all { TC_ACT_SHOT } else { TC_ACT_OK };
        assert_eq!(
            test_run(prog, &tcp_frame()).unwrap().action,
            expected,
            "TCP drop_all={drop_all}"
        );
    }
}
