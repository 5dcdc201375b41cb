//! What the packet programs must do, from the rules documented in
//! bpf/include/packet.h (parsing, which pings are answerable) and the echo reply
//! they build, written independently of the C: plain slices and offsets, no cursor.
//! `expect` functions in each tests/fuzz_<program>.rs say what that program does
//! with these facts.

use ebpf_workshop_dev::frames::{
    ETH_P_8021AD, ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_ICMP, IPPROTO_ICMPV6,
};

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
        Net::V6 => p.l4proto == IPPROTO_ICMPV6 && header_here && f[p.l4] == 128 && f[p.l4 + 1] == 0,
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
        Net::V6 => f[p.l3 + 24] != 0xFF && be16(f, p.l3 + 4) >= 8 && declared_end(f, p) <= f.len(),
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

/// What walking an IPv6 packet's extension headers finds (bpf/include/ipv6_ext.h),
/// from the RFCs' rules: Hop-by-Hop (0), Routing (43) and Destination options (60)
/// are (hdrlen + 1) * 8 bytes, Fragment (44) 8, AH (51) (hdrlen + 2) * 4; any other
/// next header ends the chain. A walker reads the first 4 bytes of each header
/// (next header, length, and for Fragment its offset), and gives up after
/// `IPV6_EXT_MAX` headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Walk {
    /// The first header that is not an extension header: its protocol and offset
    /// (which may lie beyond the frame, if the last extension header says so).
    Found { proto: u8, at: usize },
    /// A fragment with a non-zero offset: no transport header here. `proto` is
    /// the Fragment header's next header.
    LaterFragment { proto: u8 },
    /// The frame ends inside the chain (fewer than 4 bytes of a header left), or
    /// the chain is longer than the bound. `proto`: the last header reached.
    Unreadable { proto: u8 },
}

pub const IPV6_EXT_MAX: usize = 8;

pub fn ext_len(proto: u8, hdrlen: u8) -> Option<usize> {
    match proto {
        0 | 43 | 60 => Some((usize::from(hdrlen) + 1) * 8),
        44 => Some(8),
        51 => Some((usize::from(hdrlen) + 2) * 4),
        _ => None,
    }
}

/// Walk the chain of the IPv6 packet whose fixed header starts at `l3`.
pub fn ipv6_walk(f: &[u8], l3: usize) -> Walk {
    let (mut proto, mut at) = (f[l3 + 6], l3 + 40);
    for _ in 0..IPV6_EXT_MAX {
        if ext_len(proto, 0).is_none() {
            return Walk::Found { proto, at };
        }
        if at + 4 > f.len() {
            return Walk::Unreadable { proto };
        }
        if proto == 44 && be16(f, at + 2) & 0xFFF8 != 0 {
            return Walk::LaterFragment { proto: f[at] };
        }
        let len = ext_len(proto, f[at + 1]).unwrap();
        proto = f[at];
        at += len;
    }
    match ext_len(proto, 0) {
        Some(_) => Walk::Unreadable { proto },
        None => Walk::Found { proto, at },
    }
}
