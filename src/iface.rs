//! Network interfaces: find one by name with a helpful error, and refuse to disturb
//! the one this machine's own connection runs through.

use anyhow::{bail, Result};
use nix::net::if_::InterfaceFlags;

/// An interface of this network namespace, checked for packet programs.
#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    pub index: u32,
}

/// Look up `name` and refuse interfaces where a packet example cannot work: one
/// clear sentence that says what to do instead.
pub fn interface(name: &str) -> Result<Interface> {
    let Ok(index) = nix::net::if_::if_nametoindex(name) else {
        let elsewhere = crate::netns::namespaces_with_interface(name);
        let program = std::env::args().next().unwrap_or_default();
        match elsewhere.as_slice() {
            [] => {}
            [ns] => bail!(
                "interface {name} is not in this network namespace but in `{ns}`: run the \
                 example there, e.g. `sudo ip netns exec {ns} {program} {name}`"
            ),
            _ => bail!(
                "interface {name} is not in this network namespace but in {}: run the example \
                 in one of them, e.g. `sudo ip netns exec {} {program} {name}`",
                elsewhere.join(", "),
                elsewhere[0]
            ),
        }
        bail!("interface {name} not found: `ip link` lists the interfaces");
    };
    let flags = interface_flags(name);
    if flags.contains(InterfaceFlags::IFF_LOOPBACK) {
        bail!(
            "{name} is the loopback interface: its packets never pass through a driver, so \
             the packet examples do nothing useful there. Use a real or veth interface \
             (`make lab` builds a veth pair in two namespaces)"
        );
    }
    if !flags.contains(InterfaceFlags::IFF_UP) {
        bail!("interface {name} is down: bring it up with `sudo ip link set {name} up`");
    }
    Ok(Interface { name: name.to_string(), index })
}

fn interface_flags(name: &str) -> InterfaceFlags {
    nix::ifaddrs::getifaddrs()
        .into_iter()
        .flatten()
        .find(|i| i.interface_name == name)
        .map(|i| i.flags)
        .unwrap_or(InterfaceFlags::empty())
}

/// Interfaces that carry a default route (IPv4 or IPv6) in this network namespace.
pub fn default_route_interfaces() -> Vec<String> {
    let mut found = Vec::new();
    // /proc/net/route: Iface Destination Gateway Flags ... Mask; all in hex.
    if let Ok(text) = std::fs::read_to_string("/proc/net/route") {
        for cols in text.lines().skip(1).map(|l| l.split_whitespace().collect::<Vec<_>>()) {
            if cols.len() > 7 && cols[1] == "00000000" && cols[7] == "00000000" {
                found.push(cols[0].to_string());
            }
        }
    }
    // /proc/net/ipv6_route: destination, prefix length, ..., interface last.
    if let Ok(text) = std::fs::read_to_string("/proc/net/ipv6_route") {
        for cols in text.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()) {
            if cols.len() == 10
                && cols[0].bytes().all(|b| b == b'0')
                && cols[1] == "00"
                && cols[9] != "lo"
            {
                found.push(cols[9].to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

/// The devices stacked on `name`, transitively: the bridge or bond it is a port
/// of, and VLAN or macvlan devices on top of it. The kernel lists each in
/// /sys/class/net/<dev>/ as `upper_<name>` (and a bridge or bond also as `master`).
pub fn stacked_on(name: &str) -> Vec<String> {
    let mut found: Vec<String> = Vec::new();
    let mut todo = vec![name.to_string()];
    while let Some(dev) = todo.pop() {
        let entries = std::fs::read_dir(format!("/sys/class/net/{dev}")).into_iter().flatten();
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let upper = match file.strip_prefix("upper_") {
                Some(upper) => upper.to_string(),
                None if file == "master" => match std::fs::read_link(entry.path()) {
                    Ok(target) => target.file_name().unwrap_or_default().to_string_lossy().into(),
                    Err(_) => continue,
                },
                None => continue,
            };
            if upper != name && !found.contains(&upper) {
                found.push(upper.clone());
                todo.push(upper);
            }
        }
    }
    found
}

/// The device that carries this namespace's default route through `iface`: the
/// interface itself, or a device stacked on it (a bridge or bond it belongs to, a
/// VLAN or macvlan on top of it). Most likely how the user reaches this machine.
pub fn default_route_through(iface: &Interface) -> Option<String> {
    let routes = default_route_interfaces();
    if routes.contains(&iface.name) {
        return Some(iface.name.clone());
    }
    stacked_on(&iface.name).into_iter().find(|u| routes.contains(u))
}

/// Refuse to `doing` (e.g. "drop every incoming packet") where it could cut the
/// user's own connection: on an interface that carries the default route, itself
/// or through a device stacked on it, unless `force`.
pub fn guard_default_route(iface: &Interface, force: bool, doing: &str) -> Result<()> {
    let name = &iface.name;
    match default_route_through(iface) {
        None => Ok(()),
        _ if force => Ok(()),
        Some(dev) if &dev == name => bail!(
            "{name} carries this machine's default route, probably your own connection to it: \
             this example would {doing} there. Try it in the lab (`make lab`), or add --force \
             if you are sure"
        ),
        Some(dev) => bail!(
            "{dev} carries this machine's default route, and its packets pass through {name} \
             ({dev} is stacked on it), probably your own connection: this example would \
             {doing} there. Try it in the lab (`make lab`), or add --force if you are sure"
        ),
    }
}

/// Say in one line what an example that cannot cut the connection will do on the
/// interface that carries the default route (`doing`, e.g. "answers pings in place
/// of the kernel"), so that nobody is surprised.
pub fn note_default_route(iface: &Interface, doing: &str) {
    if let Some(dev) = default_route_through(iface) {
        eprintln!("note: {dev} carries this machine's default route: this example {doing}");
    }
}

/// The IPv4 addresses of interface `name` in this network namespace.
pub fn ipv4_addresses(name: &str) -> Vec<std::net::Ipv4Addr> {
    nix::ifaddrs::getifaddrs()
        .into_iter()
        .flatten()
        .filter(|a| a.interface_name == name)
        .filter_map(|a| Some(a.address?.as_sockaddr_in()?.ip()))
        .collect()
}
