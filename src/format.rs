//! Turning kernel values into text a person can scan: addresses, ports, times,
//! C strings, and aligned columns under a header row.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// `AF_INET` / `AF_INET6` as the kernel stores them in `sk_family`.
pub const AF_INET: u16 = 2;
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
        assert_eq!(endpoint(AF_INET, &v4, 80), "10.0.0.1:80");
        let v6: [u8; 16] = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        assert_eq!(endpoint(AF_INET6, &v6, 443), "[fd00::1]:443");
    }

    #[test]
    fn c_strings_stop_at_nul_and_columns_align() {
        assert_eq!(c_str(&[104, 105, 0, 120]), "hi");
        let t = Table { widths: vec![4, 3] };
        assert_eq!(t.line(&["a", "b", "last one"]), "a    b   last one");
    }
}
