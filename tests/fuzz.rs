//! Fuzzing the packet programs: random and mutated frames through every packet
//! program with BPF_PROG_TEST_RUN, each run compared with a reference model
//! written here in Rust from the rules documented in bpf/include/packet.h: the
//! verdict and every output byte.
//!
//! The frames are mostly pings (IPv4/IPv6, with or without an 802.1Q/802.1ad tag,
//! random id, sequence and payload), then broken in the ways a parser gets wrong:
//! truncated, lengths that lie, IPv4 options and fragments, other ICMP types,
//! echo replies, IPv6 extension headers, group addresses, other EtherTypes, TCP
//! and UDP, flipped bytes and plain random bytes.
//!
//! Reproducible: each test prints its seed; run again with
//! `FUZZ_SEED=<n> cargo test --test fuzz` (and `FUZZ_CASES=<n>`, default 100000,
//! for more or fewer frames per program).

mod common;

use std::collections::BTreeMap;
use std::mem::MaybeUninit;
use std::sync::OnceLock;
use std::time::Instant;

use common::skel::tc::TcSkelBuilder;
use common::skel::tc_pingpong::TcPingpongSkelBuilder;
use common::skel::xdp::XdpSkelBuilder;
use common::skel::xdp_pingpong::XdpPingpongSkelBuilder;
use common::{test_run, TestRun};
use ebpf_workshop::frames;
use ebpf_workshop::netns::in_namespace;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const TC_ACT_OK: u32 = 0;
const TC_ACT_SHOT: u32 = 2;

/// Every test run refuses frames shorter than an Ethernet header.
const ETH_HLEN: usize = 14;

/// skb test runs also refuse frames shorter than the Ethernet header plus the
/// IPv4 or IPv6 header its (outer) EtherType announces: the kernel reads it to
/// fake a socket. Kernel 6.18 refuses exactly those; a kernel that accepts them
/// is fine too (the run is then checked against the model like any other).
fn skb_may_refuse(frame: &[u8]) -> bool {
    let announced = match frame.get(12..14) {
        Some([0x08, 0x00]) => 20,
        Some([0x86, 0xDD]) => 40,
        _ => 0,
    };
    frame.len() < ETH_HLEN + announced
}

// ---------------------------------------------------------------------------
// Seeding and a small PRNG (splitmix64): no extra crates.
// ---------------------------------------------------------------------------

/// One seed for the whole run: FUZZ_SEED, or the clock.
fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("FUZZ_SEED") {
        Ok(s) => {
            s.trim().parse().unwrap_or_else(|_| panic!("FUZZ_SEED={s:?} is not a decimal u64"))
        }
        Err(_) => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
            // Keep it short enough to type: 48 bits.
            (t.as_nanos() as u64 ^ u64::from(std::process::id()) << 20) & 0xFFFF_FFFF_FFFF
        }
    })
}

fn cases() -> usize {
    match std::env::var("FUZZ_CASES") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("FUZZ_CASES={s:?} is not a number")),
        Err(_) => 100_000,
    }
}

fn replay_hint(seed: u64) -> String {
    format!("replay with: FUZZ_SEED={seed} cargo test --test fuzz")
}

struct Rng(u64);

impl Rng {
    /// `salt` gives each test its own stream from the one seed.
    fn new(seed: u64, salt: &str) -> Self {
        let mut s = seed;
        for b in salt.bytes() {
            s = (s ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3); // FNV-1a step
        }
        Rng(s)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in lo..=hi.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn u8(&mut self) -> u8 {
        self.next() as u8
    }

    fn u16(&mut self) -> u16 {
        self.next() as u16
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }

    /// A 16-bit field value, often one of the values where arithmetic goes wrong.
    fn field16(&mut self) -> u16 {
        match self.below(10) {
            0 => 0,
            1 => 0xFFFF,
            2 => self.pick(&[1, 0x0800, 0xF7FF, 0x8000, 0x7FFF, 0x00FF, 0xFF00]),
            _ => self.u16(),
        }
    }
}

// ---------------------------------------------------------------------------
// The reference model.
// ---------------------------------------------------------------------------

/// What the programs must do, from the rules documented in bpf/include/packet.h,
/// written independently of the C: plain slices and offsets, no cursor.
mod model {
    pub const ETH_P_IP: u16 = 0x0800;
    pub const ETH_P_IPV6: u16 = 0x86DD;
    pub const ETH_P_8021Q: u16 = 0x8100;
    pub const ETH_P_8021AD: u16 = 0x88A8;
    const IPPROTO_ICMP: u8 = 1;
    const IPPROTO_ICMPV6: u8 = 58;

    pub fn be16(f: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([f[at], f[at + 1]])
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Net {
        /// Not IP (or an EtherType the programs do not know): parses, layer 4 is 0.
        Other,
        V4,
        V6,
    }

    /// A frame parsed down to layer 4: where each header starts.
    #[derive(Clone, Copy, Debug)]
    pub struct Parsed {
        pub net: Net,
        pub l3: usize,
        pub l4: usize,
        pub l4proto: u8,
    }

    /// parse_packet(): Ethernet with at most one 802.1Q or 802.1ad tag, then the
    /// IPv4 header with its options (ihl words, at least 5) or the fixed IPv6
    /// header. None when the frame is shorter than the headers it announces.
    pub fn parse(f: &[u8]) -> Option<Parsed> {
        if f.len() < 14 {
            return None;
        }
        let (mut proto, mut l3) = (be16(f, 12), 14);
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            if f.len() < 18 {
                return None;
            }
            (proto, l3) = (be16(f, 16), 18);
        }
        match proto {
            ETH_P_IP => {
                if f.len() < l3 + 20 {
                    return None;
                }
                let header = usize::from(f[l3] & 0x0F) * 4;
                if header < 20 || f.len() < l3 + header {
                    return None;
                }
                Some(Parsed { net: Net::V4, l3, l4: l3 + header, l4proto: f[l3 + 9] })
            }
            ETH_P_IPV6 => {
                if f.len() < l3 + 40 {
                    return None;
                }
                Some(Parsed {
                    net: Net::V6,
                    l3,
                    l4: l3 + 40,
                    l4proto: f[l3 + 6], // the first extension header, if any
                })
            }
            _ => Some(Parsed { net: Net::Other, l3, l4: l3, l4proto: 0 }),
        }
    }

    /// is_echo_request(): a whole 8-byte ICMP header, type echo request, code 0.
    /// An IPv4 fragment with a non-zero offset carries no ICMP header at all.
    pub fn is_echo_request(f: &[u8], p: &Parsed) -> bool {
        let header_here = f.len() >= p.l4 + 8;
        match p.net {
            Net::V4 => {
                let offset = be16(f, p.l3 + 6) & 0x1FFF;
                p.l4proto == IPPROTO_ICMP
                    && offset == 0
                    && header_here
                    && f[p.l4] == 8
                    && f[p.l4 + 1] == 0
            }
            Net::V6 => {
                p.l4proto == IPPROTO_ICMPV6 && header_here && f[p.l4] == 128 && f[p.l4 + 1] == 0
            }
            Net::Other => false,
        }
    }

    /// Where the IP header says the packet ends (may lie beyond the frame).
    pub fn declared_end(f: &[u8], p: &Parsed) -> usize {
        match p.net {
            Net::V4 => p.l3 + usize::from(be16(f, p.l3 + 2)),
            Net::V6 => p.l3 + 40 + usize::from(be16(f, p.l3 + 4)),
            Net::Other => p.l3,
        }
    }

    /// echo_answerable() for an echo request: unicast destination MAC; IPv4 with
    /// no options, not a fragment (MF or offset), not the one ambiguous request
    /// (id 0, sequence 0, checksum 0xF7FF); IPv6 to a non-multicast address; and
    /// the whole packet, as its IP length field claims it, inside the frame; and
    /// that length at least the headers the reply is made of (IPv4 header + 8 bytes
    /// of ICMP; 8 bytes of ICMPv6 payload).
    pub fn echo_answerable(f: &[u8], p: &Parsed) -> bool {
        if f[0] & 1 != 0 {
            return false; // broadcast or multicast MAC
        }
        match p.net {
            Net::V4 => {
                let ihl = f[p.l3] & 0x0F;
                let fragment = be16(f, p.l3 + 6) & 0x3FFF != 0;
                let ambiguous =
                    be16(f, p.l4 + 4) == 0 && be16(f, p.l4 + 6) == 0 && be16(f, p.l4 + 2) == 0xF7FF;
                let long_enough = be16(f, p.l3 + 2) >= 20 + 8;
                ihl == 5 && !fragment && !ambiguous && long_enough && declared_end(f, p) <= f.len()
            }
            Net::V6 => {
                f[p.l3 + 24] != 0xFF && be16(f, p.l3 + 4) >= 8 && declared_end(f, p) <= f.len()
            }
            Net::Other => false,
        }
    }

    /// One's complement sum (RFC 1071, carries folded in, not complemented) of
    /// the ICMP message f[l4..end], with the IPv6 pseudo-header for ICMPv6.
    /// 0xFFFF means "zero" for any message that is not all zero bytes.
    pub fn icmp_sum(f: &[u8], p: &Parsed, end: usize) -> u16 {
        let mut bytes = Vec::with_capacity(40 + end - p.l4);
        if p.net == Net::V6 {
            bytes.extend_from_slice(&f[p.l3 + 8..p.l3 + 40]); // source, destination
            bytes.extend_from_slice(&((end - p.l4) as u32).to_be_bytes());
            bytes.extend_from_slice(&[0, 0, 0, IPPROTO_ICMPV6]);
        }
        bytes.extend_from_slice(&f[p.l4..end]);
        let mut sum: u64 = bytes
            .chunks(2)
            .map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
            .sum();
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        sum as u16
    }

    /// One's complement addition of two 16-bit values.
    pub fn ones_add(a: u16, b: u16) -> u16 {
        let s = u32::from(a) + u32::from(b);
        ((s & 0xFFFF) + (s >> 16)) as u16
    }

    /// The expected reply to an answerable echo request.
    #[derive(Clone, Debug)]
    pub struct Reply {
        pub frame: Vec<u8>,
        /// The request's checksum was invalid: the reply's checksum (at this
        /// offset) is only fixed as a one's complement value, 0x0000 == 0xFFFF.
        pub loose_csum_at: Option<usize>,
    }

    /// The reply: MACs swapped, IP addresses swapped, type echo reply, and the
    /// checksum. A request with a valid checksum gets the reply's checksum
    /// computed from scratch. Any other keeps its (in)validity: the reply's
    /// checksum is whatever makes the reply's one's complement sum equal the
    /// request's, found by summing both messages.
    pub fn reply(f: &[u8], p: &Parsed) -> Reply {
        let mut r = f.to_vec();
        for i in 0..6 {
            r.swap(i, 6 + i);
        }
        let (addrs, addr_len, reply_type) = match p.net {
            Net::V4 => (p.l3 + 12, 4, 0u8),
            Net::V6 => (p.l3 + 8, 16, 129u8),
            Net::Other => unreachable!("only IP pings are answered"),
        };
        for i in 0..addr_len {
            r.swap(addrs + i, addrs + addr_len + i);
        }
        r[p.l4] = reply_type;
        let csum_at = p.l4 + 2;
        r[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);

        let end = declared_end(f, p);
        let valid = end >= p.l4 + 8 && icmp_sum(f, p, end) == 0xFFFF;
        if valid {
            let csum = !icmp_sum(&r, p, end);
            r[csum_at..csum_at + 2].copy_from_slice(&csum.to_be_bytes());
            return Reply { frame: r, loose_csum_at: None };
        }
        // sum(reply without checksum) + checksum == sum(request)
        let end = end.max(p.l4 + 8);
        let csum = ones_add(icmp_sum(f, p, end), !icmp_sum(&r, p, end));
        r[csum_at..csum_at + 2].copy_from_slice(&csum.to_be_bytes());
        Reply { frame: r, loose_csum_at: Some(csum_at) }
    }

    /// What any pingpong program must send back for `f`, if anything.
    pub fn answer(f: &[u8]) -> Option<Reply> {
        let p = parse(f)?;
        (is_echo_request(f, &p) && echo_answerable(f, &p)).then(|| reply(f, &p))
    }

    /// Is `f` a ping at all (whether or not a program could answer it)?
    pub fn is_ping(f: &[u8]) -> bool {
        parse(f).is_some_and(|p| is_echo_request(f, &p))
    }
}

/// What one program must do with one frame.
enum Expect {
    /// Return this verdict and leave the frame exactly as it came.
    Unchanged(u32),
    /// Return this verdict with the frame rewritten into this reply.
    Reply(u32, model::Reply),
}

fn expect_xdp_inspect(f: &[u8], drop_pings: bool) -> Expect {
    Expect::Unchanged(if drop_pings && model::is_ping(f) { XDP_DROP } else { XDP_PASS })
}

fn expect_xdp_pingpong(f: &[u8]) -> Expect {
    match model::answer(f) {
        Some(r) => Expect::Reply(XDP_TX, r),
        None => Expect::Unchanged(XDP_PASS),
    }
}

fn expect_tc_ingress(f: &[u8], drop_all: bool) -> Expect {
    Expect::Unchanged(if drop_all || model::is_ping(f) { TC_ACT_SHOT } else { TC_ACT_OK })
}

fn expect_tc_pingpong(f: &[u8]) -> Expect {
    match model::answer(f) {
        // The original is dropped; the test run returns the rewritten frame.
        Some(r) => Expect::Reply(TC_ACT_SHOT, r),
        None => Expect::Unchanged(TC_ACT_OK),
    }
}

// ---------------------------------------------------------------------------
// Frame generation.
// ---------------------------------------------------------------------------

mod gen {
    use super::model::{be16, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6};
    use super::Rng;
    use ebpf_workshop::frames;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// A well-formed IP frame and where its headers are (before any mutation).
    pub struct Frame {
        pub bytes: Vec<u8>,
        pub v6: bool,
        pub l3: usize,
        pub l4: usize,
    }

    fn unicast_mac(r: &mut Rng) -> [u8; 6] {
        let mut m: [u8; 6] = r.bytes(6).try_into().unwrap();
        m[0] &= !1;
        m
    }

    fn group_mac(r: &mut Rng) -> [u8; 6] {
        match r.below(4) {
            0 => [0xFF; 6],
            1 => [0x33, 0x33, 0, 0, 0, r.u8()],
            2 => [0x01, 0x00, 0x5E, r.u8() & 0x7F, r.u8(), r.u8()],
            _ => {
                let mut m = unicast_mac(r);
                m[0] |= 1;
                m
            }
        }
    }

    fn v6_unicast(r: &mut Rng) -> Ipv6Addr {
        let mut a: [u8; 16] = r.bytes(16).try_into().unwrap();
        if a[0] == 0xFF {
            a[0] = r.pick(&[0x20, 0xFD, 0xFE]);
        }
        a.into()
    }

    fn payload(r: &mut Rng) -> Vec<u8> {
        let len = match r.below(10) {
            0..=2 => r.range(0, 16),
            3..=7 => r.range(17, 120),
            _ => r.range(121, 1440),
        };
        match r.below(6) {
            0 => vec![0; len],
            1 => vec![0xFF; len],
            _ => r.bytes(len),
        }
    }

    /// The Ethernet header, maybe with a VLAN tag (802.1Q, or 802.1ad on its own).
    fn ethernet(r: &mut Rng, ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let dst = if r.chance(90) { unicast_mac(r) } else { group_mac(r) };
        let src = unicast_mac(r);
        let vlan = r.chance(25).then(|| r.u16());
        let mut f = frames::ethernet(dst, src, vlan, ethertype, l3);
        if vlan.is_some() && r.chance(30) {
            f[12..14].copy_from_slice(&ETH_P_8021AD.to_be_bytes());
        }
        f
    }

    fn finish(bytes: Vec<u8>, v6: bool, l4_in_l3: usize) -> Frame {
        let l3 = if matches!(be16(&bytes, 12), ETH_P_8021Q | ETH_P_8021AD) { 18 } else { 14 };
        Frame { bytes, v6, l3, l4: l3 + l4_in_l3 }
    }

    /// A valid echo request with a correct checksum.
    pub fn ping(r: &mut Rng) -> Frame {
        let v6 = r.chance(50);
        let (id, seq, data) = if r.chance(3) {
            // id 0, sequence 0: the ambiguous checksum corner lives here.
            let data = match r.below(3) {
                0 => vec![],
                1 => vec![0; r.range(1, 9)],
                _ => vec![0xFF, 0xFF],
            };
            (0, 0, data)
        } else {
            (r.field16(), r.field16(), payload(r))
        };
        if v6 {
            let (s, d) = (v6_unicast(r), v6_unicast(r));
            let icmp = frames::icmp6_echo(frames::ICMPV6_ECHO_REQUEST, id, seq, &data, s, d);
            let ip = frames::ipv6(s, d, frames::IPPROTO_ICMPV6, &icmp);
            finish(ethernet(r, ETH_P_IPV6, &ip), true, 40)
        } else {
            let a = r.bytes(8);
            let s = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            let d = Ipv4Addr::new(a[4], a[5], a[6], a[7]);
            let icmp = frames::icmp4_echo(frames::ICMP_ECHO, id, seq, &data);
            let ip = frames::ipv4(s, d, frames::IPPROTO_ICMP, &frames::Ipv4Opts::default(), &icmp);
            finish(ethernet(r, ETH_P_IP, &ip), false, 20)
        }
    }

    /// A TCP or UDP packet, IPv4 or IPv6.
    pub fn tcp_udp(r: &mut Rng) -> Frame {
        let v6 = r.chance(50);
        let (proto, l4) = if r.chance(50) {
            (frames::IPPROTO_TCP, frames::tcp_syn(r.u16(), r.u16()))
        } else {
            let data = payload(r);
            (frames::IPPROTO_UDP, frames::udp(r.u16(), r.u16(), &data))
        };
        if v6 {
            let ip = frames::ipv6(v6_unicast(r), v6_unicast(r), proto, &l4);
            finish(ethernet(r, ETH_P_IPV6, &ip), true, 40)
        } else {
            let a = r.bytes(8);
            let ip = frames::ipv4(
                Ipv4Addr::new(a[0], a[1], a[2], a[3]),
                Ipv4Addr::new(a[4], a[5], a[6], a[7]),
                proto,
                &frames::Ipv4Opts::default(),
                &l4,
            );
            finish(ethernet(r, ETH_P_IP, &ip), false, 20)
        }
    }

    /// Recompute the ICMP checksum over the message the IP header declares, so
    /// that a mutated request is still a valid one.
    fn fix_icmp_checksum(f: &mut Frame) {
        let b = &mut f.bytes;
        if f.l4 + 8 > b.len() {
            return;
        }
        let end = if f.v6 {
            f.l3 + 40 + usize::from(be16(b, f.l3 + 4))
        } else {
            f.l3 + usize::from(be16(b, f.l3 + 2))
        };
        if end < f.l4 + 8 || end > b.len() {
            return;
        }
        b[f.l4 + 2] = 0;
        b[f.l4 + 3] = 0;
        let mut msg = Vec::new();
        if f.v6 {
            msg.extend_from_slice(&b[f.l3 + 8..f.l3 + 40]);
            msg.extend_from_slice(&((end - f.l4) as u32).to_be_bytes());
            msg.extend_from_slice(&[0, 0, 0, b[f.l3 + 6]]);
        }
        msg.extend_from_slice(&b[f.l4..end]);
        let sum = frames::checksum(&msg);
        b[f.l4 + 2..f.l4 + 4].copy_from_slice(&sum.to_be_bytes());
    }

    fn set16(b: &mut [u8], at: usize, v: u16) {
        if at + 2 <= b.len() {
            b[at..at + 2].copy_from_slice(&v.to_be_bytes());
        }
    }

    fn add_to16(b: &mut [u8], at: usize, delta: usize) {
        let v = be16(b, at).wrapping_add(delta as u16);
        set16(b, at, v);
    }

    /// One mutation of a frame; its name, for the statistics. Mutations that
    /// move headers (options, extension headers, a second tag) update `f.l3` and
    /// `f.l4`, so that a second mutation or a truncation still finds them.
    pub fn mutate(r: &mut Rng, f: &mut Frame) -> &'static str {
        let (l3, l4) = (f.l3, f.l4);
        let b = &mut f.bytes;
        match r.below(17) {
            0 => {
                // Ethernet padding (or junk) after the IP packet.
                let n = r.range(1, 64);
                let pad = if r.chance(50) { vec![0; n] } else { r.bytes(n) };
                b.extend_from_slice(&pad);
                "padded"
            }
            1 => {
                let at = if f.v6 { l3 + 4 } else { l3 + 2 };
                let v = be16(b, at);
                let v = match r.below(4) {
                    0 => r.u16(),
                    1 => v.wrapping_add(r.range(1, 8) as u16),
                    2 => v.wrapping_sub(r.range(1, 8) as u16),
                    _ => r.pick(&[0, 1, 8, 20, 27, 28, 0xFFFF]),
                };
                set16(b, at, v);
                "bad length"
            }
            2 if !f.v6 => {
                // Options: real ones, with lengths to match.
                let words = r.range(1, 10);
                let opts = if r.chance(50) {
                    vec![1; words * 4] // NOPs
                } else {
                    r.bytes(words * 4)
                };
                b.splice(l3 + 20..l3 + 20, opts);
                b[l3] = (b[l3] & 0xF0) | (5 + words) as u8;
                add_to16(b, l3 + 2, words * 4);
                f.l4 += words * 4;
                "ipv4 options"
            }
            3 if !f.v6 => {
                b[l3] = (b[l3] & 0xF0) | r.pick(&[0, 1, 2, 3, 4, 6, 7, 15]);
                "ipv4 bad ihl"
            }
            4 if !f.v6 => {
                let v = match r.below(5) {
                    0 => 0x2000,
                    1 => r.range(1, 0x1FFF) as u16,
                    2 => 0x2000 | r.range(1, 0x1FFF) as u16,
                    3 => r.pick(&[0x4000, 0x8000, 0xC000]), // DF, reserved: not fragments
                    _ => r.u16(),
                };
                set16(b, l3 + 6, v);
                "fragment bits"
            }
            5 => {
                let (t, c) = match r.below(3) {
                    0 => (r.u8(), r.u8()),
                    1 => (r.u8(), 0),
                    _ => (if f.v6 { 128 } else { 8 }, r.range(1, 255) as u8),
                };
                b[l4] = t;
                b[l4 + 1] = c;
                if r.chance(50) {
                    fix_icmp_checksum(f);
                }
                "icmp type/code"
            }
            6 => {
                b[l4] = if f.v6 { 129 } else { 0 };
                if r.chance(50) {
                    fix_icmp_checksum(f);
                }
                "echo reply"
            }
            7 => {
                let c = r.field16();
                set16(b, l4 + 2, c);
                "bad checksum"
            }
            8 if !f.v6 => {
                // Id 0, sequence 0, checksum 0xF7FF: whatever the payload says.
                set16(b, l4 + 4, 0);
                set16(b, l4 + 6, 0);
                if r.chance(50) {
                    set16(b, l4 + 2, 0xF7FF);
                } else {
                    fix_icmp_checksum(f);
                }
                "id 0 seq 0"
            }
            9 if f.v6 => {
                // An extension header before the ICMPv6 message: l4proto is then
                // the extension header, and the ping must be passed.
                let any = r.u8();
                let kind = r.pick(&[0u8, 0, 43, 60, 44, 51, 50, any]);
                let mut ext = vec![58, 0];
                ext.extend(r.bytes(6));
                b.splice(l3 + 40..l3 + 40, ext);
                b[l3 + 6] = kind;
                add_to16(b, l3 + 4, 8);
                f.l4 += 8;
                "ipv6 extension header"
            }
            10 => {
                let m = group_mac(r);
                b[0..6].copy_from_slice(&m);
                "group dst mac"
            }
            11 if f.v6 => {
                b[l3 + 24] = 0xFF;
                b[l3 + 25] = r.u8();
                if r.chance(50) {
                    fix_icmp_checksum(f);
                }
                "ipv6 multicast dst"
            }
            12 => {
                let t = match r.below(3) {
                    0 => r.u16(),
                    1 => r.pick(&[0x0806, 0x0800, 0x86DD, 0x8100, 0x88A8, 0x9100, 0x0600]),
                    _ => {
                        // A second tag (QinQ): only one is skipped.
                        let tci = r.u16();
                        b.splice(12..12, [0x88, 0xA8, (tci >> 8) as u8, tci as u8]);
                        f.l3 += 4;
                        f.l4 += 4;
                        return "double vlan";
                    }
                };
                set16(b, l3 - 2, t);
                "ethertype"
            }
            13 => {
                let at = if f.v6 { l3 + 6 } else { l3 + 9 };
                let any = r.u8();
                b[at] = r.pick(&[1, 6, 17, 58, 0, any]);
                "l4 protocol"
            }
            14 => {
                b[l3] = (b[l3] & 0x0F) | (r.u8() & 0xF0);
                "ip version"
            }
            15 => {
                b[6] |= 1; // a group source address changes nothing
                "group src mac"
            }
            _ => {
                for _ in 0..r.range(1, 4) {
                    let at =
                        if r.chance(70) { r.below(b.len().min(l4 + 8)) } else { r.below(b.len()) };
                    b[at] = r.u8();
                }
                "byte flips"
            }
        }
    }

    /// Cut the frame short, mostly somewhere in its headers.
    pub fn truncate(r: &mut Rng, f: &mut Frame) {
        let len = f.bytes.len();
        let cut = if r.chance(70) { r.below((f.l4 + 9).min(len)) } else { r.below(len) };
        f.bytes.truncate(cut);
    }

    /// Random bytes, sometimes with an interesting EtherType.
    pub fn random_bytes(r: &mut Rng) -> Vec<u8> {
        let len = if r.chance(70) { r.range(0, 100) } else { r.range(0, 1514) };
        let mut b = r.bytes(len);
        if len >= 14 && r.chance(60) {
            let t = r.pick(&[ETH_P_IP, ETH_P_IPV6, ETH_P_8021Q, ETH_P_8021AD, 0x0806]);
            b[12..14].copy_from_slice(&t.to_be_bytes());
            if len >= 18 && matches!(t, ETH_P_8021Q | ETH_P_8021AD) && r.chance(70) {
                let t = r.pick(&[ETH_P_IP, ETH_P_IPV6]);
                b[16..18].copy_from_slice(&t.to_be_bytes());
            }
        }
        if len > 0 && r.chance(50) {
            b[0] &= !1; // mostly unicast, so that more of it gets looked at
        }
        b
    }

    /// One frame to try and the family it belongs to.
    pub fn frame(r: &mut Rng) -> (Vec<u8>, &'static str) {
        match r.below(100) {
            0..=29 => (ping(r).bytes, "valid ping"),
            30..=79 => {
                let mut f = ping(r);
                let mut what = mutate(r, &mut f);
                if r.chance(30) {
                    mutate(r, &mut f);
                    what = "mutated twice";
                }
                if r.chance(15) {
                    truncate(r, &mut f);
                    what = "truncated ping";
                }
                (f.bytes, what)
            }
            80..=89 => {
                let mut f = tcp_udp(r);
                let mut what = "tcp/udp";
                if r.chance(30) {
                    mutate(r, &mut f);
                    what = "mutated tcp/udp";
                }
                if r.chance(10) {
                    truncate(r, &mut f);
                    what = "truncated tcp/udp";
                }
                (f.bytes, what)
            }
            _ => (random_bytes(r), "random bytes"),
        }
    }
}

// ---------------------------------------------------------------------------
// The runner.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Hook {
    Xdp,
    Tc,
}

fn verdict_name(hook: Hook, action: u32) -> String {
    match (hook, action) {
        (Hook::Xdp, XDP_DROP) => "XDP_DROP".into(),
        (Hook::Xdp, XDP_PASS) => "XDP_PASS".into(),
        (Hook::Xdp, XDP_TX) => "XDP_TX".into(),
        (Hook::Tc, TC_ACT_OK) => "TC_ACT_OK".into(),
        (Hook::Tc, TC_ACT_SHOT) => "TC_ACT_SHOT".into(),
        (_, n) => format!("action {n}"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compare one run with the model: None when it matches, else what differs.
fn check(
    hook: Hook,
    frame: &[u8],
    got: &libbpf_rs::Result<TestRun>,
    expect: &Expect,
) -> Option<String> {
    let run = match got {
        Err(_) if frame.len() < ETH_HLEN => return None,
        Err(_) if hook == Hook::Tc && skb_may_refuse(frame) => return None,
        Err(e) => return Some(format!("kernel refused a {}-byte frame: {e}", frame.len())),
        Ok(_) if frame.len() < ETH_HLEN => {
            return Some(format!("kernel accepted a {}-byte frame", frame.len()))
        }
        Ok(run) => run,
    };
    let (action, want, loose) = match expect {
        Expect::Unchanged(a) => (*a, frame, None),
        Expect::Reply(a, r) => (*a, &r.frame[..], r.loose_csum_at),
    };
    let same_bytes = match loose {
        None => run.frame == want,
        Some(at) => {
            // Checksum compared as a one's complement value: 0x0000 == 0xFFFF.
            let canon = |v: u16| if v == 0xFFFF { 0 } else { v };
            run.frame.len() == want.len()
                && run.frame[..at] == want[..at]
                && run.frame[at + 2..] == want[at + 2..]
                && canon(model::be16(&run.frame, at)) == canon(model::be16(want, at))
        }
    };
    if run.action == action && same_bytes {
        return None;
    }
    let first_diff = run
        .frame
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .map_or("none (lengths differ)".to_string(), |i| i.to_string());
    Some(format!(
        "verdict expected {} got {}; bytes {} (first difference at {first_diff}{})\n  \
         frame:    {}\n  expected: {}\n  got:      {}",
        verdict_name(hook, action),
        verdict_name(hook, run.action),
        if same_bytes { "match" } else { "DIFFER" },
        if loose.is_some() { ", checksum compared mod 0xFFFF" } else { "" },
        hex(frame),
        hex(want),
        hex(&run.frame),
    ))
}

/// The result of fuzzing one program; assert on it in the test's own thread.
struct Report {
    name: &'static str,
    seed: u64,
    frames: usize,
    mismatches: usize,
    examples: Vec<String>,
}

impl Report {
    fn assert_clean(&self) {
        assert!(
            self.mismatches == 0,
            "{}: {} of {} frames differ from the model (seed {}; {}). First ones:\n{}",
            self.name,
            self.mismatches,
            self.frames,
            self.seed,
            replay_hint(self.seed),
            self.examples.join("\n"),
        );
    }
}

/// Run `cases()` generated frames through `run` and compare each with `expect`.
fn fuzz(
    name: &'static str,
    hook: Hook,
    mut run: impl FnMut(&[u8]) -> libbpf_rs::Result<TestRun>,
    expect: impl Fn(&[u8]) -> Expect,
) -> Report {
    let (seed, n) = (seed(), cases());
    eprintln!("{name}: FUZZ_SEED={seed} FUZZ_CASES={n} ({})", replay_hint(seed));
    let mut rng = Rng::new(seed, name);
    let start = Instant::now();
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    let mut families: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut refused, mut longest_refused, mut mismatches) = (0, 0, 0);
    let (mut replies, mut loose_replies) = (0, 0);
    let mut examples = Vec::new();
    for case in 0..n {
        let (frame, family) = gen::frame(&mut rng);
        *families.entry(family).or_default() += 1;
        let want = expect(&frame);
        let got = run(&frame);
        match &got {
            Ok(r) => *verdicts.entry(verdict_name(hook, r.action)).or_default() += 1,
            Err(_) => refused += 1,
        }
        match &want {
            Expect::Reply(_, r) if r.loose_csum_at.is_some() => loose_replies += 1,
            Expect::Reply(..) => replies += 1,
            Expect::Unchanged(_) => {}
        }
        if got.is_err() {
            longest_refused = longest_refused.max(frame.len());
        }
        if let Some(diff) = check(hook, &frame, &got, &want) {
            mismatches += 1;
            if examples.len() < 5 {
                examples.push(format!(
                    "case #{case} ({family}, {} bytes, seed {seed}; {}): {diff}",
                    frame.len(),
                    replay_hint(seed)
                ));
            }
        }
    }
    eprintln!(
        "{name}: {n} frames in {:.1?}: {}, refused by the kernel {refused} (longest \
         {longest_refused} bytes); replies expected {} ({loose_replies} to invalid \
         checksums); mismatches {mismatches}",
        start.elapsed(),
        verdicts.iter().map(|(v, c)| format!("{v} {c}")).collect::<Vec<_>>().join(", "),
        replies + loose_replies,
    );
    eprintln!(
        "{name}: families: {}",
        families.iter().map(|(f, c)| format!("{f} {c}")).collect::<Vec<_>>().join(", ")
    );
    Report { name, seed, frames: n, mismatches, examples }
}

// ---------------------------------------------------------------------------
// The tests: one per program (and setting), each skeleton loaded once.
// ---------------------------------------------------------------------------

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

#[test]
fn xdp_pingpong_matches_the_model() {
    let mut storage = MaybeUninit::uninit();
    let skel = XdpPingpongSkelBuilder::default().open(&mut storage).unwrap().load().unwrap();
    fuzz("xdp_pingpong", Hook::Xdp, |f| test_run(&skel.progs.xdp_pingpong, f), expect_xdp_pingpong)
        .assert_clean();
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
