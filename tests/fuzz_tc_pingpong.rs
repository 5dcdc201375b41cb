//! Fuzzing tc_pingpong (examples/tc_pingpong.rs) against the model in
//! tests/fuzzing/: it turns every answerable ping into its reply (the original is
//! dropped, the test run returns the rewritten frame) and passes the rest.
//! `FUZZ_SEED=<n> cargo test --test fuzz_tc_pingpong` replays a run.

mod common;
mod fuzzing;

use std::mem::MaybeUninit;

use common::skel::tc_pingpong::TcPingpongSkelBuilder;
use common::test_run;
use ebpf_workshop::netns::in_namespace;
use fuzzing::{fuzz, model, Expect, Hook, TC_ACT_OK, TC_ACT_SHOT};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

fn expect_tc_pingpong(f: &[u8]) -> Expect {
    match model::answer(f) {
        // The original is dropped; the test run returns the rewritten frame.
        Some(r) => Expect::Reply(TC_ACT_SHOT, r),
        None => Expect::Unchanged(TC_ACT_OK),
    }
}

#[test]
fn tc_pingpong_matches_the_model() {
    // bpf_clone_redirect really transmits, on the loopback device of the caller's
    // namespace: keep that inside a lab namespace.
    let lab = common::lab();
    let report = in_namespace(&lab.server.ns, || {
        let mut storage = MaybeUninit::uninit();
        let skel = TcPingpongSkelBuilder::default().open(&mut storage).unwrap().load().unwrap();
        fuzz("tc_pingpong", Hook::Tc, |f| test_run(&skel.progs.tc_pingpong, f), expect_tc_pingpong)
    })
    .unwrap();
    report.assert_clean();
}
