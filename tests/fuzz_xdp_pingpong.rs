//! Fuzzing xdp_pingpong (examples/xdp_pingpong.rs) against the model in
//! tests/fuzzing/: it turns every answerable ping into its reply with XDP_TX and
//! passes the rest untouched. Also checks the reply model itself.
//! `FUZZ_SEED=<n> cargo test --test fuzz_xdp_pingpong` replays a run.

mod common;
mod fuzzing;

use std::mem::MaybeUninit;

use common::skel::xdp_pingpong::XdpPingpongSkelBuilder;
use common::test_run;
use ebpf_workshop_dev::frames;
use fuzzing::{fuzz, model, Expect, Hook, XDP_PASS, XDP_TX};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

fn expect_xdp_pingpong(f: &[u8]) -> Expect {
    match model::answer(f) {
        Some(r) => Expect::Reply(XDP_TX, r),
        None => Expect::Unchanged(XDP_PASS),
    }
}

#[test]
fn xdp_pingpong_matches_the_model() {
    let mut storage = MaybeUninit::uninit();
    let skel = XdpPingpongSkelBuilder::default().open(&mut storage).unwrap().load().unwrap();
    fuzz("xdp_pingpong", Hook::Xdp, |f| test_run(&skel.progs.xdp_pingpong, f), expect_xdp_pingpong)
        .assert_clean();
}

/// The model itself, on frames whose answers are known from `frames::Ping`.
#[test]
fn the_model_agrees_with_hand_built_replies() {
    for v6 in [false, true] {
        for vlan in [None, Some(7)] {
            for (len, id, seq) in [(56usize, 0x4242u16, 1u16), (0, 0xFFFF, 0), (1, 0, 1)] {
                let ping =
                    frames::Ping { vlan, id, seq, data: vec![0xA5; len], ..frames::Ping::new(v6) };
                let reply = model::answer(&ping.request()).expect("answerable");
                assert_eq!(reply.frame, ping.expected_reply(), "v6={v6} vlan={vlan:?}");
                assert_eq!(reply.loose_csum_at, None);
            }
        }
    }
    // The ambiguous all-zero request is left to the kernel.
    let zero = frames::Ping { id: 0, seq: 0, data: vec![], ..frames::Ping::new(false) };
    assert!(model::is_ping(&zero.request()));
    assert!(model::answer(&zero.request()).is_none());
    // A bad checksum stays exactly as bad in the reply.
    let mut bad = frames::Ping::new(false).request();
    bad[36] ^= 0x12;
    let reply = model::answer(&bad).unwrap();
    assert!(reply.loose_csum_at.is_some());
    let p = model::parse(&bad).unwrap();
    let end = model::declared_end(&bad, &p);
    let q = model::parse(&reply.frame).unwrap();
    assert_eq!(
        model::icmp_sum(&bad, &p, end) % 0xFFFF,
        model::icmp_sum(&reply.frame, &q, end) % 0xFFFF
    );
}
