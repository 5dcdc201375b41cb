//! The neighbour table: which MAC address answers for an IPv4 address on an
//! interface, as the kernel learned it by ARP. A program that writes MAC addresses
//! into frames (xdp_lb) needs them; the kernel has them already.

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};

/// `ATF_COM` in the Flags column of /proc/net/arp: the entry is complete (has a MAC).
const ATF_COM: u32 = 0x2;

/// The MAC address of `addr` on `iface`, from this namespace's ARP table
/// (/proc/net/arp, what `ip -4 neigh` shows). Fails with what to do when the
/// kernel has not learned it (yet).
pub fn mac_of(addr: Ipv4Addr, iface: &str) -> Result<[u8; 6]> {
    let table = std::fs::read_to_string("/proc/net/arp").context("reading /proc/net/arp")?;
    // IP address, HW type, Flags, HW address, Mask, Device
    for cols in table.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()) {
        let [ip, _, flags, mac, _, dev] = cols[..] else { continue };
        let flags = u32::from_str_radix(flags.trim_start_matches("0x"), 16).unwrap_or(0);
        if ip == addr.to_string() && dev == iface && flags & ATF_COM != 0 {
            if let Some(mac) = parse_mac(mac) {
                return Ok(mac);
            }
        }
    }
    bail!(
        "no MAC address for {addr} in the neighbour table of {iface} (`ip neigh show dev \
         {iface}`): is it on that segment? Reach it once (`ping -c1 {addr}`) and start again"
    )
}

/// "aa:bb:cc:dd:ee:ff" as six bytes.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> =
        text.split(':').map(|b| u8::from_str_radix(b, 16)).collect::<Result<_, _>>().ok()?;
    bytes.try_into().ok()
}

/// Six bytes as "aa:bb:cc:dd:ee:ff".
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_round_trip() {
        let mac = parse_mac("02:00:0a:ff:00:01").unwrap();
        assert_eq!(mac, [2, 0, 10, 255, 0, 1]);
        assert_eq!(mac_string(&mac), "02:00:0a:ff:00:01");
        assert_eq!(parse_mac("02:00"), None);
    }
}
