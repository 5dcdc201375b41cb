//! Ethernet frames built byte by byte, with every checksum computed from scratch:
//! the input and the reference output for `BPF_PROG_TEST_RUN` tests, fuzzing and
//! benchmarks. Deliberately independent of the C code it checks.

use std::net::{Ipv4Addr, Ipv6Addr};

use nix::libc;

// The numbers are libc's (<linux/if_ether.h>, <netinet/in.h>), in the widths
// the headers carry them: 16-bit EtherTypes, 8-bit IP protocols.
pub const ETH_P_IP: u16 = libc::ETH_P_IP as u16;
pub const ETH_P_IPV6: u16 = libc::ETH_P_IPV6 as u16;
pub const ETH_P_8021Q: u16 = libc::ETH_P_8021Q as u16;
pub const ETH_P_8021AD: u16 = libc::ETH_P_8021AD as u16;
pub const ETH_P_ARP: u16 = libc::ETH_P_ARP as u16;
pub const IPPROTO_ICMP: u8 = libc::IPPROTO_ICMP as u8;
pub const IPPROTO_TCP: u8 = libc::IPPROTO_TCP as u8;
pub const IPPROTO_UDP: u8 = libc::IPPROTO_UDP as u8;
pub const IPPROTO_ICMPV6: u8 = libc::IPPROTO_ICMPV6 as u8;
pub const ICMP_ECHOREPLY: u8 = 0;
pub const ICMP_ECHO: u8 = 8;
pub const ICMPV6_ECHO_REQUEST: u8 = 128;
pub const ICMPV6_ECHO_REPLY: u8 = 129;

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// RFC 1071 Internet checksum of `data` (odd length padded with a zero byte).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet header (with an 802.1Q tag when `vlan` is set) around `payload`.
pub fn ethernet(
    dst: [u8; 6],
    src: [u8; 6],
    vlan: Option<u16>,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(18 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    if let Some(tci) = vlan {
        f.extend_from_slice(&ETH_P_8021Q.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Knobs for the IPv4 header.
#[derive(Clone, Debug, Default)]
pub struct Ipv4Opts {
    /// Raw option bytes (a multiple of 4).
    pub options: Vec<u8>,
    /// The flags+fragment-offset field, host order (0x2000 = more fragments).
    pub frag: u16,
}

/// IPv4 header (checksummed) around `payload`.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, opts: &Ipv4Opts, payload: &[u8]) -> Vec<u8> {
    let hlen = 20 + opts.options.len();
    let mut h = vec![0u8; hlen];
    h[0] = 0x40 | (hlen / 4) as u8;
    h[2..4].copy_from_slice(&((hlen + payload.len()) as u16).to_be_bytes());
    h[4..6].copy_from_slice(&0x1234u16.to_be_bytes()); // identification
    h[6..8].copy_from_slice(&opts.frag.to_be_bytes());
    h[8] = 64; // TTL
    h[9] = proto;
    h[12..16].copy_from_slice(&src.octets());
    h[16..20].copy_from_slice(&dst.octets());
    h[20..].copy_from_slice(&opts.options);
    let sum = checksum(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

/// IPv6 header around `payload`.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0u8; 40];
    h[0] = 0x60;
    h[4..6].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    h[6] = next;
    h[7] = 64; // hop limit
    h[8..24].copy_from_slice(&src.octets());
    h[24..40].copy_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

/// ICMP(v4) echo message with checksum.
pub fn icmp4_echo(kind: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = echo_body(kind, id, seq, data);
    let sum = checksum(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

/// ICMPv6 echo message with checksum over the IPv6 pseudo-header.
pub fn icmp6_echo(
    kind: u8,
    id: u16,
    seq: u16,
    data: &[u8],
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> Vec<u8> {
    let mut m = echo_body(kind, id, seq, data);
    let sum = checksum(&[pseudo6(src, dst, IPPROTO_ICMPV6, m.len()), m.clone()].concat());
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    m
}

fn echo_body(kind: u8, id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![kind, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    m
}

fn pseudo6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    p.extend_from_slice(&src.octets());
    p.extend_from_slice(&dst.octets());
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, next]);
    p
}

/// A minimal TCP SYN segment (checksum left zero: the programs here never check it).
pub fn tcp_syn(sport: u16, dport: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = 5 << 4; // data offset: 5 words
    t[13] = 0x02; // SYN
    t
}

/// A UDP datagram header plus `data` (checksum zero, allowed for IPv4).
pub fn udp(sport: u16, dport: u16, data: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + data.len());
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(data);
    u
}

/// A ping between the lab's two hosts, and the reply it should get.
#[derive(Clone, Debug)]
pub struct Ping {
    pub v6: bool,
    pub id: u16,
    pub seq: u16,
    pub data: Vec<u8>,
    pub vlan: Option<u16>,
    pub dst_mac: [u8; 6],
    pub ipv4: Ipv4Opts,
}

pub const CLIENT_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const SERVER_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const CLIENT_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
pub const SERVER_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);

impl Ping {
    /// A 56-byte-payload ping, like `ping` sends by default.
    pub fn new(v6: bool) -> Self {
        Ping {
            v6,
            id: 0x4242,
            seq: 1,
            data: (0..56u8).collect(),
            vlan: None,
            dst_mac: SERVER_MAC,
            ipv4: Ipv4Opts::default(),
        }
    }

    /// The echo request frame, client → server.
    pub fn request(&self) -> Vec<u8> {
        self.build(false)
    }

    /// The echo reply a correct responder sends back, server → client, with every
    /// checksum computed from scratch.
    pub fn expected_reply(&self) -> Vec<u8> {
        self.build(true)
    }

    fn build(&self, reply: bool) -> Vec<u8> {
        let (smac, dmac) =
            if reply { (self.dst_mac, CLIENT_MAC) } else { (CLIENT_MAC, self.dst_mac) };
        if self.v6 {
            let (s, d) = if reply { (SERVER_V6, CLIENT_V6) } else { (CLIENT_V6, SERVER_V6) };
            let kind = if reply { ICMPV6_ECHO_REPLY } else { ICMPV6_ECHO_REQUEST };
            let icmp = icmp6_echo(kind, self.id, self.seq, &self.data, s, d);
            ethernet(dmac, smac, self.vlan, ETH_P_IPV6, &ipv6(s, d, IPPROTO_ICMPV6, &icmp))
        } else {
            let (s, d) = if reply { (SERVER_V4, CLIENT_V4) } else { (CLIENT_V4, SERVER_V4) };
            let kind = if reply { ICMP_ECHOREPLY } else { ICMP_ECHO };
            let icmp = icmp4_echo(kind, self.id, self.seq, &self.data);
            ethernet(dmac, smac, self.vlan, ETH_P_IP, &ipv4(s, d, IPPROTO_ICMP, &self.ipv4, &icmp))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_checksummed_header_is_zero() {
        let h = ipv4(CLIENT_V4, SERVER_V4, IPPROTO_ICMP, &Ipv4Opts::default(), &[]);
        assert_eq!(checksum(&h), 0);
        // RFC 1071's example words sum to 0xddf2; the checksum is its complement.
        assert_eq!(checksum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), !0xddf2);
    }

    #[test]
    fn reply_differs_from_request_only_where_it_should() {
        let p = Ping::new(false);
        let (q, r) = (p.request(), p.expected_reply());
        assert_eq!(q.len(), r.len());
        assert_eq!(&q[0..6], &r[6..12]); // MACs swapped
        assert_eq!(q[34], ICMP_ECHO);
        assert_eq!(r[34], ICMP_ECHOREPLY);
        assert_eq!(&q[42..], &r[42..]); // payload unchanged
    }
}
