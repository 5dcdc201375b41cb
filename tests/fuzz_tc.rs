//! Fuzzing tc_ingress (examples/tc.rs) against the model in tests/fuzzing/: it
//! drops every ping and passes the rest untouched; with `drop_all` it drops all.
//! `FUZZ_SEED=<n> cargo test --test fuzz_tc` replays a run (tests/fuzzing/mod.rs).

mod common;
mod fuzzing;

use std::mem::MaybeUninit;

use common::skel::tc::TcSkelBuilder;
use common::test_run;
use fuzzing::{fuzz, model, Expect, Hook, TC_ACT_OK, TC_ACT_SHOT};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

fn expect_tc_ingress(f: &[u8], drop_all: bool) -> Expect {
    Expect::Unchanged(if drop_all || model::is_ping(f) { TC_ACT_SHOT } else { TC_ACT_OK })
}

fn fuzz_tc_ingress(name: &'static str, drop_all: bool) {
    let mut storage = MaybeUninit::uninit();
    let mut open = TcSkelBuilder::default().open(&mut storage).unwrap();
    open.maps.rodata_data.as_mut().unwrap().drop_all = drop_all;
    let skel = open.load().unwrap();
    fuzz(
        name,
        Hook::Tc,
        |f| test_run(&skel.progs.tc_ingress, f),
        |f| expect_tc_ingress(f, drop_all),
    )
    .assert_clean();
}

#[test]
fn tc_ingress_matches_the_model() {
    fuzz_tc_ingress("tc_ingress", false);
}

#[test]
fn tc_ingress_drop_all_matches_the_model() {
    fuzz_tc_ingress("tc_ingress_drop_all", true);
}
