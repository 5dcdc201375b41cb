//! The frames to try: mostly pings (IPv4/IPv6, with or without an 802.1Q/802.1ad
//! tag, random id, sequence and payload), then broken in the ways a parser gets
//! wrong: truncated, lengths that lie, IPv4 options and fragments, other ICMP
//! types, echo replies, IPv6 extension headers, group addresses, other
//! EtherTypes, TCP and UDP, flipped bytes and plain random bytes.

use super::model::be16;
use super::Rng;
use ebpf_workshop_dev::frames::{self, ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6};
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
                let at = if r.chance(70) { r.below(b.len().min(l4 + 8)) } else { r.below(b.len()) };
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

// ---------------------------------------------------------------------------
// Frames for the policy (cgroup_firewall) and the balancer (xdp_lb): TCP, UDP
// and ICMP between addresses the rules know, behind IPv6 extension-header
// chains or IPv4 options, fragmented, cut short, with lengths that lie.
// ---------------------------------------------------------------------------

/// IPv6 extension headers (RFC 8200, RFC 4302 for AH).
pub const NEXTHDR_HOP: u8 = 0;
pub const NEXTHDR_ROUTING: u8 = 43;
pub const NEXTHDR_FRAGMENT: u8 = 44;
pub const NEXTHDR_AUTH: u8 = 51;
pub const NEXTHDR_DEST: u8 = 60;
pub const EXTENSION_HEADERS: [u8; 5] =
    [NEXTHDR_HOP, NEXTHDR_ROUTING, NEXTHDR_FRAGMENT, NEXTHDR_AUTH, NEXTHDR_DEST];

/// Addresses and ports that a test's rules (or balancer) know: picked often, so
/// that rules match and connections repeat; random ones otherwise.
pub struct Pools {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
    pub ports: Vec<u16>,
}

fn pick_v4(r: &mut Rng, pool: &[Ipv4Addr]) -> Ipv4Addr {
    if !pool.is_empty() && r.chance(60) {
        return r.pick(pool);
    }
    let a = r.bytes(4);
    Ipv4Addr::new(a[0], a[1], a[2], a[3])
}

fn pick_v6(r: &mut Rng, pool: &[Ipv6Addr]) -> Ipv6Addr {
    if !pool.is_empty() && r.chance(60) {
        let mut a = r.pick(pool).octets();
        if r.chance(20) {
            a[15] = r.u8(); // a neighbour: inside a prefix rule, not the address
        }
        return a.into();
    }
    v6_unicast(r)
}

fn pick_port(r: &mut Rng, pool: &[u16]) -> u16 {
    if !pool.is_empty() && r.chance(50) {
        r.pick(pool)
    } else {
        r.field16()
    }
}

/// A TCP segment: any flags (SYN more often), sometimes options (doff > 5), a
/// little data; checksum random (the programs here only update it).
pub fn tcp_segment(r: &mut Rng, sport: u16, dport: u16) -> Vec<u8> {
    let options = if r.chance(25) { r.range(1, 10) * 4 } else { 0 };
    let mut t = vec![0u8; 20 + options];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..12].copy_from_slice(&r.bytes(8)); // sequence and acknowledgement numbers
    t[12] = (((20 + options) / 4) as u8) << 4;
    t[13] = match r.below(5) {
        0 => 0x02,     // SYN
        1 => 0x12,     // SYN+ACK
        2 | 3 => 0x10, // ACK
        _ => r.u8(),   // anything
    };
    t[14..16].copy_from_slice(&r.u16().to_be_bytes());
    t[16..18].copy_from_slice(&r.field16().to_be_bytes()); // checksum
    t[20..].copy_from_slice(&r.bytes(options));
    let data = r.range(0, 40);
    t.extend(r.bytes(data));
    t
}

/// One extension header of kind `kind` whose next header is `next`: Hop-by-Hop,
/// Routing and Destination options (hdrlen + 1) * 8 bytes, Fragment 8, AH
/// (hdrlen + 2) * 4. `first_fragment` keeps a Fragment header at offset 0.
fn ext_header(r: &mut Rng, kind: u8, next: u8, first_fragment: bool) -> Vec<u8> {
    let hdrlen = r.pick(&[0u8, 0, 0, 1, 2, 3]);
    let mut h = match kind {
        NEXTHDR_FRAGMENT => {
            let offset: u16 =
                if first_fragment || r.chance(50) { 0 } else { r.range(1, 0x1FFF) as u16 };
            let more = u16::from(r.chance(70));
            let mut h = vec![next, 0];
            h.extend_from_slice(&((offset << 3) | more).to_be_bytes());
            h.extend(r.bytes(4)); // identification
            return h;
        }
        NEXTHDR_AUTH => {
            let hdrlen = r.pick(&[1u8, 2, 4]); // 12, 16, 24 bytes
            let mut h = vec![0u8; (usize::from(hdrlen) + 2) * 4];
            h[1] = hdrlen;
            h
        }
        _ => {
            let mut h = vec![0u8; (usize::from(hdrlen) + 1) * 8];
            h[1] = hdrlen;
            if r.chance(50) {
                // PadN over the rest (what setsockopt(IPV6_HOPOPTS) sends), or junk.
                h[2] = 1;
                h[3] = (h.len() - 4) as u8;
            } else {
                let junk = r.bytes(h.len() - 2);
                h[2..].copy_from_slice(&junk);
            }
            h
        }
    };
    h[0] = next;
    if kind == NEXTHDR_AUTH {
        let spi_seq = r.bytes(h.len() - 4);
        h[4..].copy_from_slice(&spi_seq);
    }
    h
}

/// A chain of extension headers ending in `last`, in any order (the same kind
/// more than once, and more of them than any walk's bound, sometimes): the
/// first header's kind and the bytes.
pub fn ext_chain(r: &mut Rng, last: u8) -> (u8, Vec<u8>) {
    let n = match r.below(10) {
        0..=5 => r.range(1, 3),
        6..=8 => r.range(4, 8),
        _ => r.range(9, 12),
    };
    let kinds: Vec<u8> = (0..n).map(|_| r.pick(&EXTENSION_HEADERS)).collect();
    let mut bytes = Vec::new();
    for (i, &kind) in kinds.iter().enumerate() {
        let next = kinds.get(i + 1).copied().unwrap_or(last);
        let first = r.chance(60);
        bytes.extend(ext_header(r, kind, next, first));
    }
    (kinds[0], bytes)
}

/// A transport payload for `proto` between the ports.
fn l4_bytes(r: &mut Rng, proto: u8, sport: u16, dport: u16) -> Vec<u8> {
    match proto {
        frames::IPPROTO_TCP => tcp_segment(r, sport, dport),
        frames::IPPROTO_UDP => {
            let data = payload(r);
            frames::udp(sport, dport, &data)
        }
        frames::IPPROTO_ICMP => frames::icmp4_echo(frames::ICMP_ECHO, r.u16(), r.u16(), &[0; 8]),
        frames::IPPROTO_ICMPV6 => vec![128, 0, 0, 0, 1, 2, 3, 4],
        _ => {
            let n = r.range(0, 40);
            r.bytes(n)
        }
    }
}

/// An IPv4 packet with options (sometimes) and fragment bits (sometimes).
pub fn ipv4_packet(r: &mut Rng, s: Ipv4Addr, d: Ipv4Addr, proto: u8, l4: &[u8]) -> Frame {
    let mut opts = frames::Ipv4Opts::default();
    if r.chance(25) {
        let words = r.range(1, 10);
        opts.options = if r.chance(50) { vec![1; words * 4] } else { r.bytes(words * 4) };
    }
    if r.chance(25) {
        opts.frag = match r.below(4) {
            0 => 0x2000,                             // first fragment
            1 => r.range(1, 0x1FFF) as u16,          // the last one
            2 => 0x2000 | r.range(1, 0x1FFF) as u16, // one in the middle
            _ => r.pick(&[0x4000, 0x8000]),          // DF, reserved: whole
        };
    }
    let hlen = 20 + opts.options.len();
    let ip = frames::ipv4(s, d, proto, &opts, l4);
    let bytes = ethernet(r, ETH_P_IP, &ip);
    finish(bytes, false, hlen)
}

/// An IPv6 packet, often with an extension-header chain before `proto`.
pub fn ipv6_packet(r: &mut Rng, s: Ipv6Addr, d: Ipv6Addr, proto: u8, l4: &[u8]) -> Frame {
    let (next, chain) = if r.chance(60) { ext_chain(r, proto) } else { (proto, vec![]) };
    let ip = frames::ipv6(s, d, next, &[chain.as_slice(), l4].concat());
    let bytes = ethernet(r, ETH_P_IPV6, &ip);
    finish(bytes, true, 40 + chain.len())
}

/// Lie in the length fields, break a header's length, or cut the frame short
/// anywhere in its headers: the names, for the statistics.
pub fn damage(r: &mut Rng, f: &mut Frame) -> &'static str {
    let l3 = f.l3;
    let b = &mut f.bytes;
    if b.len() < l3 + 20 {
        return "short";
    }
    match r.below(6) {
        0 => {
            // The IP length field: total length (IPv4), payload length (IPv6).
            let at = if f.v6 { l3 + 4 } else { l3 + 2 };
            let any = r.u16();
            let v = r.pick(&[0, 1, 8, 20, 39, 40, 0xFFFF, any]);
            set16(b, at, v);
            "lying ip length"
        }
        1 if f.v6 && b.len() > l3 + 41 => {
            // An extension header's own length (or any byte of the chain).
            let chain = f.l4.saturating_sub(l3 + 40);
            if chain >= 2 {
                let at = l3 + 40 + r.below(chain);
                let any = r.u8();
                b[at] = r.pick(&[0, 1, 0xFF, any]);
                return "ipv6 chain byte";
            }
            b[l3 + 6] = r.pick(&EXTENSION_HEADERS);
            "ipv6 next header"
        }
        2 if !f.v6 => {
            b[l3] = (b[l3] & 0xF0) | r.pick(&[0, 1, 4, 6, 15]);
            "ipv4 bad ihl"
        }
        3 if f.l4 + 13 <= b.len() => {
            b[f.l4 + 12] = r.u8(); // TCP's data offset, if it is TCP
            "l4 byte 12 (tcp doff)"
        }
        4 => {
            let at = r.below(b.len().min(f.l4 + 24));
            b[at] = r.u8();
            "byte flip"
        }
        _ => {
            // Cut short: mostly inside the headers, an extension chain included.
            let cut = r.below((f.l4 + 9).min(b.len()));
            b.truncate(cut.max(l3));
            "truncated"
        }
    }
}

/// A frame for a policy test: TCP, UDP, ICMP or anything, IPv4 or IPv6, between
/// addresses and ports from `pools`, then maybe damaged; some of the ping
/// generator's frames and random bytes too.
pub fn policy_frame(r: &mut Rng, pools: &Pools) -> (Vec<u8>, &'static str) {
    if r.chance(8) {
        return frame(r);
    }
    let v6 = r.chance(50);
    let proto = match r.below(10) {
        0..=3 => frames::IPPROTO_TCP,
        4..=6 => frames::IPPROTO_UDP,
        7 => {
            if v6 {
                frames::IPPROTO_ICMPV6
            } else {
                frames::IPPROTO_ICMP
            }
        }
        8 => r.pick(&[50, 59, 132, 255]), // ESP, no next header, SCTP, reserved
        _ => r.pick(&EXTENSION_HEADERS),  // an extension header announced, nothing behind it
    };
    let (sport, dport) = (pick_port(r, &pools.ports), pick_port(r, &pools.ports));
    let l4 = l4_bytes(r, proto, sport, dport);
    let mut f = if v6 {
        let (s, d) = (pick_v6(r, &pools.v6), pick_v6(r, &pools.v6));
        ipv6_packet(r, s, d, proto, &l4)
    } else {
        let (s, d) = (pick_v4(r, &pools.v4), pick_v4(r, &pools.v4));
        ipv4_packet(r, s, d, proto, &l4)
    };
    if f.l3 == 18 && r.chance(80) {
        // Mostly untagged: a cgroup program sees no tag (the kernel took it off),
        // and a test run of a tagged frame is neither IPv4 nor IPv6 to it.
        f.bytes.drain(12..16);
        (f.l3, f.l4) = (14, f.l4 - 4);
    }
    let chained = f.v6 && f.l4 > f.l3 + 40;
    let what = if r.chance(35) {
        damage(r, &mut f)
    } else if chained {
        "ipv6 extension chain"
    } else if f.v6 {
        "ipv6"
    } else if f.l4 > f.l3 + 20 || be16(&f.bytes, f.l3 + 6) & 0x3FFF != 0 {
        "ipv4 options/fragment"
    } else {
        "ipv4"
    };
    (f.bytes, what)
}

/// The balancer's world: clients and their ports, the VIP and its ports, the
/// balancer's own address, the backends.
pub struct LbPools {
    pub clients: Vec<Ipv4Addr>,
    pub client_ports: Vec<u16>,
    pub vip: Ipv4Addr,
    pub vip_ports: Vec<u16>,
    pub lb: Ipv4Addr,
    pub backends: Vec<Ipv4Addr>,
}

/// A frame for the balancer: client -> VIP (forward), backend -> balancer
/// (replies, for connections it knows or not), anything else, then maybe
/// damaged; IPv6 ones with extension chains, which it must leave alone.
pub fn lb_frame(r: &mut Rng, p: &LbPools) -> (Vec<u8>, &'static str) {
    if r.chance(5) {
        return frame(r);
    }
    let pools = Pools { v4: vec![], v6: vec![], ports: vec![] };
    if r.chance(10) {
        return policy_frame(r, &pools);
    }
    let (what, s, d, sport, dport) = match r.below(10) {
        0..=4 => {
            ("forward", r.pick(&p.clients), p.vip, r.pick(&p.client_ports), r.pick(&p.vip_ports))
        }
        5..=7 => {
            ("reply", r.pick(&p.backends), p.lb, r.pick(&p.vip_ports), r.pick(&p.client_ports))
        }
        8 => ("to the balancer", pick_v4(r, &p.clients), p.lb, r.u16(), r.u16()),
        _ => ("elsewhere", pick_v4(r, &p.clients), pick_v4(r, &p.backends), r.u16(), r.u16()),
    };
    let proto = if r.chance(90) { frames::IPPROTO_TCP } else { frames::IPPROTO_UDP };
    let l4 = l4_bytes(r, proto, sport, dport);
    let mut f = ipv4_packet(r, s, d, proto, &l4);
    let what = if r.chance(25) { damage(r, &mut f) } else { what };
    (f.bytes, what)
}
