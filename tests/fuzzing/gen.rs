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
