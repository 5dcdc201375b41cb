//! Fuzzing cgroup_firewall (examples/cgroup_firewall.rs) against a model written
//! here: both programs (egress judges the destination, ingress the source), with
//! address and port rules (so that it must fail closed) and with address rules
//! only, on frames from `gen::policy_frame` (IPv6 extension-header chains of every
//! kind in any order and cut anywhere, IPv4 options and fragments, lying lengths).
//! Each frame's verdict, its unchanged bytes and its drop report (reason, rule,
//! protocol, ports) must be the model's.
//! `FUZZ_SEED=<n> cargo test --test fuzz_cgroup_firewall` replays a run.

mod common;
mod fuzzing;

use std::cell::RefCell;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr};

use common::skel::cgroup_firewall::types::drop_event;
use common::skel::cgroup_firewall::CgroupFirewallSkelBuilder;
use common::test_run;
use fuzzing::model::{be16, ipv6_walk, Walk};
use fuzzing::{fuzz_with, gen, Expect, Hook, CGROUP_SKB_DROP, CGROUP_SKB_PASS};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};

// SAFETY: a plain C struct of integers.
unsafe impl plain::Plain for drop_event {}

const ETH: usize = 14; // the test run's frame starts with Ethernet; the program at IP

/// The rules: prefixes (numbered in order, v4 then v6, as --deny numbers them)
/// and ports.
struct Rules {
    v4: Vec<(Ipv4Addr, u8)>,
    v6: Vec<(Ipv6Addr, u8)>,
    ports: Vec<u16>,
}

fn rules() -> Rules {
    let v4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let v6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    Rules {
        v4: vec![(v4("10.77.0.2"), 32), (v4("10.99.0.0"), 16), (v4("10.99.7.0"), 24)],
        v6: vec![(v6("fd77::2"), 128), (v6("fd99::"), 32), (v6("fd99:0:7::"), 48)],
        ports: vec![53, 443, 8091],
    }
}

/// What the program must report for a dropped frame.
#[derive(Debug, PartialEq, Eq)]
struct Drop {
    reason: u32, // 1 address, 2 port, 3 unreadable (bpf/cgroup_firewall.h)
    rule: u32,
    protocol: u8,
    ports: (u16, u16),
}

fn prefix_match(addr: &[u8], net: &[u8], len: u8) -> bool {
    let bits = usize::from(len);
    (0..bits).all(|i| (addr[i / 8] ^ net[i / 8]) & (0x80 >> (i % 8)) == 0)
}

/// The longest prefix containing `addr`, as its rule number.
fn address_rule(rules: &Rules, addr: &[u8]) -> Option<u32> {
    let all: Vec<(u32, Vec<u8>, u8)> = match addr.len() {
        4 => (0..).zip(&rules.v4).map(|(i, (a, l))| (i, a.octets().to_vec(), *l)).collect(),
        _ => {
            let first = rules.v4.len() as u32;
            (first..).zip(&rules.v6).map(|(i, (a, l))| (i, a.octets().to_vec(), *l)).collect()
        }
    };
    all.iter()
        .filter(|(_, net, len)| prefix_match(addr, net, *len))
        .max_by_key(|r| r.2)
        .map(|r| r.0)
}

/// The policy: the other end's address in a denied prefix drops (rule number);
/// else its TCP/UDP port denied drops (the port). A later fragment has no ports.
/// Fail closed: an IP header too short to read drops; with port rules, ports
/// that cannot be found (an IPv4 header length below 5 words, an IPv6 chain cut
/// short or longer than the walk's bound, a transport header without its first 4
/// bytes) drop as unreadable. Length fields are not trusted nor needed: the
/// program reads what the packet holds. Everything else passes.
fn firewall(f: &[u8], rules: &Rules, port_rules: bool, egress: bool) -> Option<Drop> {
    let unreadable = |protocol| Drop { reason: 3, rule: 0, protocol, ports: (0, 0) };
    if f.len() < ETH {
        return None; // the kernel refuses it: nothing runs
    }
    let (addr_rule, protocol, l4, mut cannot_read) = match be16(f, 12) {
        0x0800 => {
            if f.len() < ETH + 20 {
                return Some(unreadable(0));
            }
            let addr = if egress { &f[30..34] } else { &f[26..30] };
            let ihl = usize::from(f[ETH] & 0x0F);
            let later = be16(f, ETH + 6) & 0x1FFF != 0;
            let l4 = (ihl >= 5 && !later).then_some(ETH + ihl * 4);
            (address_rule(rules, addr), f[ETH + 9], l4, ihl < 5)
        }
        0x86DD => {
            if f.len() < ETH + 40 {
                return Some(unreadable(0));
            }
            let addr = if egress { &f[38..54] } else { &f[22..38] };
            let rule = address_rule(rules, addr);
            match ipv6_walk(f, ETH) {
                Walk::Found { proto, at } => (rule, proto, Some(at), false),
                Walk::LaterFragment { proto } => (rule, proto, None, false),
                Walk::Unreadable { proto } => (rule, proto, None, true),
            }
        }
        _ => return None, // neither IPv4 nor IPv6: not the firewall's business
    };
    let mut ports = (0, 0);
    let mut port_rule = None;
    if let Some(at) = l4.filter(|_| matches!(protocol, 6 | 17)) {
        if at + 4 <= f.len() {
            ports = (be16(f, at), be16(f, at + 2));
            let port = if egress { ports.1 } else { ports.0 };
            port_rule = rules.ports.contains(&port).then_some(u32::from(port));
        } else {
            cannot_read = true;
        }
    }
    let drop = |reason, rule| Some(Drop { reason, rule, protocol, ports });
    match (addr_rule, port_rule) {
        (Some(rule), _) => drop(1, rule),
        (None, Some(port)) => drop(2, port),
        _ if cannot_read && port_rules => drop(3, 0),
        _ => None,
    }
}

fn fuzz_firewall(name: &'static str, egress: bool, port_rules: bool) {
    let rules = rules();
    let mut storage = MaybeUninit::uninit();
    let mut open = CgroupFirewallSkelBuilder::default().open(&mut storage).unwrap();
    open.maps.rodata_data.as_mut().unwrap().port_rules = port_rules;
    let skel = open.load().unwrap();
    let mut rule = 0u32;
    for (a, len) in &rules.v4 {
        let key = [u32::from(*len).to_ne_bytes().as_slice(), &a.octets()].concat();
        skel.maps.denied_v4.update(&key, &rule.to_ne_bytes(), MapFlags::ANY).unwrap();
        rule += 1;
    }
    for (a, len) in &rules.v6 {
        let key = [u32::from(*len).to_ne_bytes().as_slice(), &a.octets()].concat();
        skel.maps.denied_v6.update(&key, &rule.to_ne_bytes(), MapFlags::ANY).unwrap();
        rule += 1;
    }
    let ports = if port_rules { rules.ports.clone() } else { vec![] };
    for p in &ports {
        skel.maps.denied_ports.update(&p.to_ne_bytes(), &[1], MapFlags::ANY).unwrap();
    }
    let model_rules = Rules { ports: ports.clone(), ..rules };

    let reasons = RefCell::new([0usize; 4]);
    // The drop reports, read after each frame.
    let reports = RefCell::new(Vec::<drop_event>::new());
    let mut builder = libbpf_rs::RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, |data: &[u8]| {
            let mut e = drop_event::default();
            plain::copy_from_bytes(&mut e, data).unwrap();
            reports.borrow_mut().push(e);
            0
        })
        .unwrap();
    let ring = builder.build().unwrap();

    let prog = if egress { &skel.progs.cgroup_egress } else { &skel.progs.cgroup_ingress };
    let pools = gen::Pools {
        v4: rules_v4_and_neighbours(&model_rules),
        v6: model_rules.v6.iter().map(|r| r.0).chain(["fd77::1".parse().unwrap()]).collect(),
        ports: [ports.as_slice(), &[80, 40000]].concat(),
    };
    let expect = |f: &[u8]| {
        let verdict = match firewall(f, &model_rules, port_rules, egress) {
            Some(_) => CGROUP_SKB_DROP,
            None => CGROUP_SKB_PASS,
        };
        Expect::Unchanged(verdict)
    };
    let after = |f: &[u8], _: &ebpf_workshop_dev::progs::TestRun| {
        ring.consume().unwrap();
        let got: Vec<Drop> = reports
            .borrow_mut()
            .drain(..)
            .map(|e| Drop {
                reason: e.reason.0,
                rule: e.rule,
                protocol: e.protocol,
                ports: (e.sport, e.dport),
            })
            .collect();
        let want: Vec<Drop> = firewall(f, &model_rules, port_rules, egress).into_iter().collect();
        if let Some(d) = want.first() {
            reasons.borrow_mut()[d.reason as usize] += 1;
        }
        (got != want).then(|| format!("drop reports expected {want:?} got {got:?}"))
    };
    // Mostly frames the kernel runs: it refuses those shorter than the IP header
    // the EtherType announces (fuzzing::skb_may_refuse), a few of which stay.
    let generate = |r: &mut fuzzing::Rng| loop {
        let (f, what) = gen::policy_frame(r, &pools);
        if !fuzzing::skb_may_refuse(&f) || r.chance(10) {
            break (f, what);
        }
    };
    let report = fuzz_with(name, Hook::Cgroup, generate, |f| test_run(prog, f), expect, after);
    let r = reasons.borrow();
    eprintln!("{name}: drops by reason: address {}, port {}, unreadable {}", r[1], r[2], r[3]);
    report.assert_clean();
}

/// The v4 rules' addresses, and addresses inside and next to their prefixes.
fn rules_v4_and_neighbours(rules: &Rules) -> Vec<Ipv4Addr> {
    let mut out = vec![Ipv4Addr::new(10, 77, 0, 1)];
    for (a, _) in &rules.v4 {
        let o = a.octets();
        out.extend([
            *a,
            Ipv4Addr::new(o[0], o[1], o[2], 9),
            Ipv4Addr::new(o[0], o[1] - 1, 255, 255),
        ]);
    }
    out
}

#[test]
fn cgroup_egress_with_port_rules_matches_the_model() {
    fuzz_firewall("cgroup_egress", true, true);
}

#[test]
fn cgroup_ingress_with_port_rules_matches_the_model() {
    fuzz_firewall("cgroup_ingress", false, true);
}

#[test]
fn cgroup_egress_with_address_rules_only_matches_the_model() {
    fuzz_firewall("cgroup_egress_addresses", true, false);
}

#[test]
fn cgroup_ingress_with_address_rules_only_matches_the_model() {
    fuzz_firewall("cgroup_ingress_addresses", false, false);
}
