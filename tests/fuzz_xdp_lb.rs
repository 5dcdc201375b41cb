//! Fuzzing xdp_lb (examples/xdp_lb.rs) against a model with state, written here,
//! in both modes: client -> VIP frames go to a backend (picked from the Maglev
//! table for a new connection, remembered for a known one; in nat from a free
//! source port, the reply's way recorded), backend -> balancer frames of a known
//! nat connection go back to the client, everything else passes untouched.
//! While frames run, backends are removed and added again (a known connection
//! keeps its backend, a SYN picks again) and the connection tables are
//! emptied now and then, so that both paths run with and without an entry. Frames
//! from `gen::lb_frame`: TCP with any flags and options, IPv4 options and
//! fragments, lying lengths, cut short; IPv6 with extension-header chains. Every
//! output byte is compared, both checksums included (RFC 1624 updates, which
//! keep a valid checksum valid), and the counters at the end.
//! `FUZZ_SEED=<n> cargo test --test fuzz_xdp_lb` replays a run.

mod common;
mod fuzzing;

use std::collections::HashMap;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use common::skel::xdp_lb::types::lb_counts;
use common::skel::xdp_lb::XdpLbSkelBuilder;
use common::test_run;
use ebpf_workshop::maps::per_cpu_sum;
use fuzzing::model::{self, be16, Net};
use fuzzing::{fuzz_with, gen, Expect, Hook, XDP_DROP, XDP_PASS, XDP_TX};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};

// SAFETY: a plain C struct of integers.
unsafe impl plain::Plain for lb_counts {}

const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 100);
const LB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const BACKENDS: [Ipv4Addr; 3] =
    [Ipv4Addr::new(10, 0, 0, 11), Ipv4Addr::new(10, 0, 0, 12), Ipv4Addr::new(10, 0, 0, 13)];
const MAX_BACKENDS: usize = 16;
/// Which backends are live, in turn, every `RESHUFFLE` frames.
const LIVE_SETS: [&[usize]; 5] = [&[0, 1, 2], &[0, 2], &[], &[1], &[2, 0, 1]];
const RESHUFFLE: usize = 2_500;
/// The connection tables are emptied (program and model) every `FORGET` frames.
const FORGET: usize = 10_000;
/// The nat port search starts again from `NAT_START` every `REWIND` frames, so
/// that nat ports are the generator's client ports (replies then find their
/// connection), and so that the search meets ports other clients hold (16 in a
/// row: the connection is dropped, a "collision").
const NAT_START: u32 = 40000 - FIRST_PORT;
const REWIND: usize = 500;

fn backend_mac(slot: usize) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, 0x11 + slot as u8]
}

/// A TCP connection as a frame names it: addresses and ports, as in the packet.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Flow {
    saddr: [u8; 4],
    daddr: [u8; 4],
    sport: [u8; 2],
    dport: [u8; 2],
}

struct ReplyTo {
    client: [u8; 4],
    vip: [u8; 4],
    client_port: [u8; 2],
    client_mac: [u8; 6],
}

#[derive(Default, Debug, PartialEq, Eq)]
struct Counts {
    forwarded: u64,
    returned: u64,
    passed: u64,
    no_backend: u64,
    collisions: u64,
}

/// The balancer as documented in bpf/xdp_lb.bpf.c.
#[derive(Default)]
struct Model {
    dsr: bool,
    maglev: Vec<usize>,                     // the Maglev table: a slot per entry
    conns: HashMap<Flow, (usize, [u8; 2])>, // backend slot, nat port
    replies: HashMap<Flow, ReplyTo>,
    cursor: u32, // port_cursor, on the one CPU this test runs on
    counts: Counts,
}

/// The first nat port tried, and how many (FIRST_PORT, PORT_TRIES in the program).
const FIRST_PORT: u32 = 1024;
const PORT_TRIES: usize = 16;

/// MurmurHash3's finaliser, and the connection's hash: on the values as they
/// lie in memory (a little-endian load of network-order bytes on this machine).
fn mix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

fn flow_hash(f: &Flow) -> u32 {
    let ports =
        (u32::from(u16::from_ne_bytes(f.sport)) << 16) | u32::from(u16::from_ne_bytes(f.dport));
    let (s, d) = (u32::from_ne_bytes(f.saddr), u32::from_ne_bytes(f.daddr));
    mix32(s ^ mix32(d ^ mix32(ports ^ 6)))
}

/// RFC 1624, equation 3, for one 16-bit word (big-endian here; one's complement
/// sums do not depend on the byte order).
fn csum_update(sum: u16, old: u16, new: u16) -> u16 {
    let mut s = u32::from(!sum) + u32::from(!old) + u32::from(new);
    s = (s & 0xFFFF) + (s >> 16);
    s = (s & 0xFFFF) + (s >> 16);
    !(s as u16)
}

/// Rewrite the addresses of the IPv4+TCP frame `r` and update both checksums.
fn set_addrs(r: &mut [u8], l3: usize, l4: usize, saddr: [u8; 4], daddr: [u8; 4]) {
    let new = [saddr, daddr].concat();
    for at in [l3 + 10, l4 + 16] {
        let mut sum = be16(r, at);
        for w in 0..4 {
            let old = be16(r, l3 + 12 + 2 * w);
            let new = u16::from_be_bytes([new[2 * w], new[2 * w + 1]]);
            sum = csum_update(sum, old, new);
        }
        r[at..at + 2].copy_from_slice(&sum.to_be_bytes());
    }
    r[l3 + 12..l3 + 20].copy_from_slice(&new);
}

/// Rewrite the TCP port at `at` (source or destination) and update its checksum.
fn set_port(r: &mut [u8], l4: usize, at: usize, port: [u8; 2]) {
    let sum = csum_update(be16(r, l4 + 16), be16(r, at), u16::from_be_bytes(port));
    r[l4 + 16..l4 + 18].copy_from_slice(&sum.to_be_bytes());
    r[at..at + 2].copy_from_slice(&port);
}

impl Model {
    fn expect(&mut self, f: &[u8]) -> Expect {
        let Some((l3, l4)) = whole_tcp(f) else {
            self.counts.passed += 1;
            return Expect::Unchanged(XDP_PASS);
        };
        let a = |at: usize| -> [u8; 4] { f[at..at + 4].try_into().unwrap() };
        let flow = Flow {
            saddr: a(l3 + 12),
            daddr: a(l3 + 16),
            sport: [f[l4], f[l4 + 1]],
            dport: [f[l4 + 2], f[l4 + 3]],
        };
        if flow.daddr == VIP.octets() {
            self.forward(f, l3, l4, flow)
        } else if !self.dsr && flow.daddr == LB.octets() {
            self.reply(f, l3, l4, flow)
        } else {
            self.counts.passed += 1;
            Expect::Unchanged(XDP_PASS)
        }
    }

    fn forward(&mut self, f: &[u8], l3: usize, l4: usize, flow: Flow) -> Expect {
        let syn = f[l4 + 13] & 0x12 == 0x02;
        let known = self.conns.get(&flow).copied();
        let (mut slot, mut nat_port) = known.unwrap_or((MAX_BACKENDS, [0, 0]));
        // Every slot below MAX_BACKENDS is an entry of the backends array.
        if known.is_none() || syn {
            slot = self.maglev[flow_hash(&flow) as usize % self.maglev.len()];
            if slot >= MAX_BACKENDS {
                self.counts.no_backend += 1;
                return Expect::Unchanged(XDP_DROP);
            }
            if !self.dsr {
                let same = known.filter(|k| k.0 == slot);
                let Some(port) = self.pick_port(slot, &flow, same) else {
                    self.counts.collisions += 1;
                    return Expect::Unchanged(XDP_DROP);
                };
                nat_port = port;
                let back = self.back(slot, &flow, port);
                let client_mac = f[6..12].try_into().unwrap();
                let (client, vip, client_port) = (flow.saddr, flow.daddr, flow.sport);
                self.replies.insert(back, ReplyTo { client, vip, client_port, client_mac });
            }
            self.conns.insert(flow, (slot, nat_port));
        }
        let mut r = f.to_vec();
        r.copy_within(0..6, 6); // we send it: our MAC becomes the source
        r[0..6].copy_from_slice(&backend_mac(slot));
        if !self.dsr {
            set_addrs(&mut r, l3, l4, LB.octets(), BACKENDS[slot].octets());
            set_port(&mut r, l4, l4, nat_port);
        }
        self.counts.forwarded += 1;
        Expect::Reply(XDP_TX, model::Reply { frame: r, loose_csum_at: None })
    }

    /// The reply key of a nat connection: backend -> balancer, to the nat port.
    fn back(&self, slot: usize, flow: &Flow, port: [u8; 2]) -> Flow {
        Flow { saddr: BACKENDS[slot].octets(), daddr: LB.octets(), sport: flow.dport, dport: port }
    }

    fn pick_port(
        &mut self,
        slot: usize,
        flow: &Flow,
        known: Option<(usize, [u8; 2])>,
    ) -> Option<[u8; 2]> {
        let free = |m: &Model, port: [u8; 2]| {
            m.replies
                .get(&m.back(slot, flow, port))
                .is_none_or(|r| r.client == flow.saddr && r.client_port == flow.sport)
        };
        if let Some((_, port)) = known.filter(|k| k.1 != [0, 0]) {
            if free(self, port) {
                return Some(port);
            }
        }
        for _ in 0..PORT_TRIES {
            let port = (FIRST_PORT + self.cursor % (65536 - FIRST_PORT)) as u16;
            self.cursor = self.cursor.wrapping_add(1);
            if free(self, port.to_be_bytes()) {
                return Some(port.to_be_bytes());
            }
        }
        None
    }

    fn reply(&mut self, f: &[u8], l3: usize, l4: usize, flow: Flow) -> Expect {
        let Some(to) = self.replies.get(&flow) else {
            self.counts.passed += 1;
            return Expect::Unchanged(XDP_PASS);
        };
        let mut r = f.to_vec();
        r.copy_within(0..6, 6);
        r[0..6].copy_from_slice(&to.client_mac);
        set_addrs(&mut r, l3, l4, to.vip, to.client);
        set_port(&mut r, l4, l4 + 2, to.client_port);
        self.counts.returned += 1;
        Expect::Reply(XDP_TX, model::Reply { frame: r, loose_csum_at: None })
    }
}

/// Where the IPv4 and TCP headers are, when the frame is what the balancer
/// handles: Ethernet (one tag at most), IPv4 (options included, ihl >= 5) that is
/// no fragment at all (neither MF nor an offset), TCP with its whole header
/// (data offset >= 5 words, options included) inside the frame.
fn whole_tcp(f: &[u8]) -> Option<(usize, usize)> {
    let p = model::parse(f)?;
    if p.net != Net::V4 || p.l4proto != 6 || be16(f, p.l3 + 6) & 0x3FFF != 0 {
        return None;
    }
    let doff = usize::from(*f.get(p.l4 + 12)? >> 4) * 4;
    (f.len() >= p.l4 + 20 && doff >= 20 && f.len() >= p.l4 + doff).then_some((p.l3, p.l4))
}

type LbSkel<'a> = common::skel::xdp_lb::XdpLbSkel<'a>;

/// Write the backends' `live` flags, then the Maglev table over the live ones (the
/// entries that change), as examples/xdp_lb.rs does.
fn set_live(skel: &LbSkel, model: &mut Model, live: &[usize]) {
    for (slot, addr) in BACKENDS.iter().enumerate() {
        let on = live.contains(&slot);
        let mut value = addr.octets().to_vec();
        value.extend_from_slice(&backend_mac(slot));
        value.extend_from_slice(&[on as u8, 0]);
        skel.maps.backends.update(&(slot as u32).to_ne_bytes(), &value, MapFlags::ANY).unwrap();
    }
    let size = skel.maps.maglev.max_entries() as usize;
    let names: Vec<u32> = live.iter().map(|&s| u32::from_ne_bytes(BACKENDS[s].octets())).collect();
    let table = ebpf_workshop::maglev::table(&names, size);
    let new: Vec<usize> =
        (0..size).map(|i| table.get(i).map_or(MAX_BACKENDS, |&b| live[b])).collect();
    for (i, &slot) in new.iter().enumerate() {
        if model.maglev.get(i) != Some(&slot) {
            let (key, value) = ((i as u32).to_ne_bytes(), (slot as u32).to_ne_bytes());
            skel.maps.maglev.update(&key, &value, MapFlags::ANY).unwrap();
        }
    }
    model.maglev = new;
}

/// Every CPU's nat port search starts at NAT_START again. With `block`, another
/// client holds the first PORT_TRIES ports towards every backend first.
fn rewind(skel: &LbSkel, model: &mut Model, block: bool) {
    model.cursor = NAT_START;
    for (port, backend, vip_port) in (0..PORT_TRIES as u16)
        .flat_map(|p| BACKENDS.iter().map(move |b| (40000 + p, b)))
        .flat_map(|(p, b)| [80u16, 443].map(|v| (p, b, v)))
        .filter(|_| block)
    {
        let (other, client_port) = ([192, 0, 2, 1], [0, 9]);
        let back = Flow {
            saddr: backend.octets(),
            daddr: LB.octets(),
            sport: vip_port.to_be_bytes(),
            dport: port.to_be_bytes(),
        };
        let key = [back.saddr, back.daddr].concat();
        let key = [&key[..], &back.sport, &back.dport].concat();
        // struct reply { client, vip, client_port, client_mac[6], slot }
        let value =
            [&other[..], &VIP.octets(), &client_port, &[0x02, 0, 0, 0, 0, 9], &[0; 4]].concat();
        skel.maps.replies.update(&key, &value, MapFlags::ANY).unwrap();
        let client_mac = [0x02, 0, 0, 0, 0, 9];
        model
            .replies
            .insert(back, ReplyTo { client: other, vip: VIP.octets(), client_port, client_mac });
    }
    let cpus = libbpf_rs::num_possible_cpus().unwrap();
    let cursors = vec![NAT_START.to_ne_bytes().to_vec(); cpus];
    skel.maps.port_cursor.update_percpu(&0u32.to_ne_bytes(), &cursors, MapFlags::ANY).unwrap();
}

fn forget(skel: &LbSkel, model: &mut Model) {
    for map in [&skel.maps.conns, &skel.maps.replies] {
        let keys: Vec<Vec<u8>> = map.keys().collect();
        for k in keys {
            map.delete(&k).unwrap();
        }
    }
    model.conns.clear();
    model.replies.clear();
}

#[test]
fn xdp_lb_nat_matches_the_model() {
    matches_the_model(false);
}

#[test]
fn xdp_lb_dsr_matches_the_model() {
    matches_the_model(true);
}

fn matches_the_model(dsr: bool) {
    // The nat port search walks a per-CPU cursor: on one CPU, with the cursor set
    // here, the model knows where it is.
    let mut one = nix::sched::CpuSet::new();
    one.set(0).unwrap();
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &one).unwrap();
    let mut storage = MaybeUninit::uninit();
    let mut open = XdpLbSkelBuilder::default().open(&mut storage).unwrap();
    let rodata = open.maps.rodata_data.as_mut().unwrap();
    rodata.vip = u32::from_ne_bytes(VIP.octets());
    rodata.lb_addr = u32::from_ne_bytes(LB.octets());
    rodata.report_connections = false; // nobody reads them here
    rodata.dsr = dsr;
    let skel = open.load().unwrap();
    let mut model = Model { dsr, ..Default::default() };
    rewind(&skel, &mut model, false);
    set_live(&skel, &mut model, LIVE_SETS[0]);

    let pools = gen::LbPools {
        clients: vec![
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(10, 0, 0, 3),
            Ipv4Addr::new(192, 168, 1, 7),
        ],
        client_ports: vec![40000, 40001, 40002, 51000, 51001],
        vip: VIP,
        vip_ports: vec![80, 443],
        lb: LB,
        backends: BACKENDS.to_vec(),
    };
    let mut n = 0usize;
    let report = {
        let model = &mut model;
        let skel = &skel;
        fuzz_with(
            "xdp_lb",
            Hook::Xdp,
            |r| gen::lb_frame(r, &pools),
            |f| test_run(&skel.progs.xdp_lb, f),
            |f| {
                n += 1;
                if n % RESHUFFLE == 0 {
                    set_live(skel, model, LIVE_SETS[(n / RESHUFFLE) % LIVE_SETS.len()]);
                }
                if n % REWIND == 0 {
                    rewind(skel, model, n / REWIND % 10 == 3);
                }
                if n % FORGET == FORGET / 2 {
                    forget(skel, model);
                }
                // The kernel refuses frames shorter than Ethernet: no state changes.
                if f.len() < 14 {
                    return Expect::Unchanged(XDP_PASS);
                }
                model.expect(f)
            },
            |_, _| None,
        )
    };
    report.assert_clean();
    eprintln!("xdp_lb: the model's totals: {:?}", model.counts);
    let got: lb_counts = per_cpu_sum(&skel.maps.counts, 0).unwrap();
    let got = Counts {
        forwarded: got.forwarded,
        returned: got.returned,
        passed: got.passed,
        no_backend: got.no_backend,
        collisions: got.collisions,
    };
    assert_eq!(got, model.counts, "the program's counters against the model's");
    assert!(model.counts.forwarded > 0 && model.counts.no_backend > 0);
    assert_eq!(model.counts.returned > 0, !dsr, "replies come back in nat only");
    assert_eq!(model.counts.collisions > 0, !dsr, "no free port: in nat only");
}
