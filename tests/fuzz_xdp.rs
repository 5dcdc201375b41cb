//! Fuzzing xdp_inspect (examples/xdp.rs) against the model in tests/fuzzing/:
//! it passes every frame untouched, and with `drop_pings` drops every ping.
//! `FUZZ_SEED=<n> cargo test --test fuzz_xdp` replays a run (tests/fuzzing/mod.rs).

mod common;
mod fuzzing;

use std::mem::MaybeUninit;

use common::skel::xdp::XdpSkelBuilder;
use common::test_run;
use fuzzing::{fuzz, model, Expect, Hook, XDP_DROP, XDP_PASS};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

fn expect_xdp_inspect(f: &[u8], drop_pings: bool) -> Expect {
    Expect::Unchanged(if drop_pings && model::is_ping(f) { XDP_DROP } else { XDP_PASS })
}

fn fuzz_xdp_inspect(name: &'static str, drop_pings: bool) {
    let mut storage = MaybeUninit::uninit();
    let mut open = XdpSkelBuilder::default().open(&mut storage).unwrap();
    open.maps.rodata_data.as_mut().unwrap().drop_pings = drop_pings;
    let skel = open.load().unwrap();
    fuzz(
        name,
        Hook::Xdp,
        |f| test_run(&skel.progs.xdp_inspect, f),
        |f| expect_xdp_inspect(f, drop_pings),
    )
    .assert_clean();
}

#[test]
fn xdp_inspect_matches_the_model() {
    fuzz_xdp_inspect("xdp_inspect", false);
}

#[test]
fn xdp_inspect_drop_pings_matches_the_model() {
    fuzz_xdp_inspect("xdp_inspect_drop_pings", true);
}
