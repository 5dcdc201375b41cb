//! Turning kernel values into text a person can scan: addresses, ports, times,
//! C strings, and aligned columns under a header row.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// `AF_INET6` as the kernel stores it in `sk_family` (anything else prints as IPv4).
pub const AF_INET6: u16 = 10;

/// An address the BPF side stored in 16 bytes (IPv4 in the first 4), in network
/// byte order, as a printable `IpAddr`.
pub fn ip(family: u16, bytes: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        IpAddr::V6(Ipv6Addr::from(*bytes))
    } else {
        IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]))
    }
}

/// `ip` plus a port in host byte order: `10.0.0.1:80` or `[fd00::1]:80`.
pub fn endpoint(family: u16, bytes: &[u8; 16], port: u16) -> String {
    SocketAddr::new(ip(family, bytes), port).to_string()
}

/// The IP column: "4" or "6".
pub fn ip_version(family: u16) -> String {
    if family == AF_INET6 { "6" } else { "4" }.to_string()
}

/// TCP flags as names joined by commas ("SYN", "SYN,ACK", "RST,ACK"), from the
/// flags byte of the TCP header (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10,
/// URG 0x20, ECE 0x40, CWR 0x80).
pub fn tcp_flags(bits: u8) -> String {
    const NAMES: [(u8, &str); 8] = [
        (0x02, "SYN"),
        (0x01, "FIN"),
        (0x04, "RST"),
        (0x08, "PSH"),
        (0x10, "ACK"),
        (0x20, "URG"),
        (0x40, "ECE"),
        (0x80, "CWR"),
    ];
    let names: Vec<&str> =
        NAMES.iter().filter(|(bit, _)| bits & bit != 0).map(|(_, n)| *n).collect();
    names.join(",")
}

/// The facts of a captured TCP segment, for one printed line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TcpSummary {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// "SYN", "SYN,ACK", "PSH,ACK", ... (see [`tcp_flags`]).
    pub flags: String,
    /// Frame length in bytes.
    pub len: usize,
}

/// Parse an Ethernet frame holding IPv4 or IPv6 TCP (one VLAN tag allowed), as a
/// packet socket receives it.
pub fn tcp_summary(frame: &[u8]) -> Option<TcpSummary> {
    use nix::libc::{ETH_P_8021Q, ETH_P_IP, ETH_P_IPV6, IPPROTO_TCP};
    let be16 = |b: &[u8], at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
    };
    let mut l3 = 14;
    let mut ethertype = be16(frame, 12)?;
    if i32::from(ethertype) == ETH_P_8021Q {
        ethertype = be16(frame, 16)?;
        l3 = 18;
    }
    let ip = frame.get(l3..)?;
    let tcp = |proto: u8| i32::from(proto) == IPPROTO_TCP;
    let (src, dst, l4) = match i32::from(ethertype) {
        ETH_P_IP if ip.len() >= 20 && tcp(ip[9]) => {
            let s: [u8; 4] = ip[12..16].try_into().ok()?;
            let d: [u8; 4] = ip[16..20].try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), usize::from(ip[0] & 0xF) * 4)
        }
        ETH_P_IPV6 if ip.len() >= 40 && tcp(ip[6]) => {
            let s: [u8; 16] = ip[8..24].try_into().ok()?;
            let d: [u8; 16] = ip[24..40].try_into().ok()?;
            (IpAddr::from(s), IpAddr::from(d), 40)
        }
        _ => return None,
    };
    let tcp = ip.get(l4..l4 + 20)?;
    Some(TcpSummary {
        src: SocketAddr::new(src, be16(tcp, 0)?),
        dst: SocketAddr::new(dst, be16(tcp, 2)?),
        flags: tcp_flags(tcp[13]),
        len: frame.len(),
    })
}

/// A kernel `-errno` as its name ("ECONNREFUSED"), the way people search for it.
pub fn errno_name(ret: i32) -> String {
    format!("{:?}", nix::errno::Errno::from_raw(-ret))
}

/// A NUL-terminated C `char[]` from a generated struct as a Rust string.
pub fn c_str(chars: &[i8]) -> String {
    let bytes: Vec<u8> = chars.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The TIME(s) column: seconds (with milliseconds) since the example started, for
/// the `bpf_ktime_get_ns()` stamps events carry, or for now.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start_ns: u64,
}

impl Clock {
    /// Start counting from now.
    pub fn start() -> Self {
        Clock { start_ns: monotonic_ns() }
    }

    /// TIME(s) of an event stamped `ts_ns` by `bpf_ktime_get_ns()`.
    pub fn at(&self, ts_ns: u64) -> String {
        format!("{:.3}", Duration::from_nanos(ts_ns.saturating_sub(self.start_ns)).as_secs_f64())
    }

    /// TIME(s) now, for lines that are not events.
    pub fn now(&self) -> String {
        self.at(monotonic_ns())
    }
}

/// `CLOCK_MONOTONIC` now, in the same unit as `bpf_ktime_get_ns()`.
pub fn monotonic_ns() -> u64 {
    let t = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .expect("CLOCK_MONOTONIC is always available");
    t.tv_sec() as u64 * 1_000_000_000 + t.tv_nsec() as u64
}

/// Aligned columns: a header row once, then rows with the same widths. The last
/// column is never padded, so long file names do not push anything around.
pub struct Table {
    widths: Vec<usize>,
}

impl Table {
    /// Print the header row and remember each column's width.
    pub fn new(columns: &[(&str, usize)]) -> Self {
        let table = Table { widths: columns.iter().map(|(_, w)| *w).collect() };
        let names: Vec<String> = columns.iter().map(|(n, _)| n.to_string()).collect();
        table.row(&names);
        table
    }

    /// Print one row; numbers and text alike are left-aligned.
    pub fn row<S: AsRef<str>>(&self, cells: &[S]) {
        println!("{}", self.line(cells));
    }

    /// The row as text, for callers that print elsewhere.
    pub fn line<S: AsRef<str>>(&self, cells: &[S]) -> String {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let cell = cell.as_ref();
            if i == last {
                out.push_str(cell);
            } else {
                let w = self.widths.get(i).copied().unwrap_or(0);
                out.push_str(&format!("{cell:<w$} "));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_like_ip_does() {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[10, 0, 0, 1]);
        assert_eq!(endpoint(2, &v4, 80), "10.0.0.1:80");
        let v6: [u8; 16] = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(endpoint(AF_INET6, &v6, 443), "[fd00::1]:443");
    }

    #[test]
    fn c_strings_stop_at_nul_and_columns_align() {
        assert_eq!(c_str(&[104, 105, 0, 120]), "hi");
        let t = Table { widths: vec![4, 3] };
        assert_eq!(t.line(&["a", "b", "last one"]), "a    b   last one");
    }

    #[test]
    fn tcp_flags_read_like_tcpdump_words() {
        assert_eq!(tcp_flags(0x02), "SYN");
        assert_eq!(tcp_flags(0x12), "SYN,ACK");
        assert_eq!(tcp_flags(0x14), "RST,ACK");
        assert_eq!(tcp_flags(0), "");
    }
}
