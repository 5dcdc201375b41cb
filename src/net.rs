//! Network interfaces: find one by name (with a helpful error), check that a
//! packet program can work on it, and attach XDP programs through a bpf_link.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

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
        if let Some(ns) = elsewhere.first() {
            bail!(
                "interface {name} is not in this network namespace but in `{ns}`: run the \
                 example there, e.g. `sudo ip netns exec {ns} {} {name}`",
                std::env::args().next().unwrap_or_default()
            );
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

/// `--mode` for XDP examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum XdpMode {
    /// native if the driver supports it, generic otherwise
    Auto,
    /// in the driver, before any socket buffer exists (fast; veth, most 10G+ NICs)
    Native,
    /// after the kernel has built a socket buffer (works on every interface, slower)
    Generic,
}

/// The XDP options every XDP example takes (flattened into its own arguments).
#[derive(Clone, Debug, clap::Args)]
pub struct XdpOptions {
    /// Where XDP runs: in the driver (native) or after the kernel built an skb (generic).
    #[arg(long, value_enum, default_value = "auto")]
    pub mode: XdpMode,
    /// Replace an XDP program that is already attached to the interface (it is
    /// removed, and not put back on exit).
    #[arg(long)]
    pub replace: bool,
}

/// An XDP program attached through a bpf_link: the kernel removes it when the link's
/// last file descriptor closes, which includes the process being killed.
pub struct XdpLink {
    _link: OwnedFd,
    /// "native" or "generic".
    pub mode: &'static str,
}

/// Attach `prog` to `iface` as `options` say, and print the one line that says
/// where and how. An interface that already has an XDP program is refused (with its
/// id and how to remove it) unless `--replace`.
pub fn attach_xdp(
    prog: &libbpf_rs::ProgramMut,
    iface: &Interface,
    options: &XdpOptions,
) -> Result<XdpLink> {
    let link = attach_xdp_mode(prog, iface, options.mode, options.replace)?;
    eprintln!(
        "attached: XDP program {} on {} ({} mode)",
        prog.name().to_string_lossy(),
        iface.name,
        link.mode
    );
    Ok(link)
}

fn attach_xdp_mode(
    prog: &libbpf_rs::ProgramMut,
    iface: &Interface,
    mode: XdpMode,
    replace: bool,
) -> Result<XdpLink> {
    let ifindex = iface.index as i32;
    let name = &iface.name;
    if let Some(id) = xdp_prog_id(ifindex) {
        if !replace {
            bail!(
                "{name} already has an XDP program (id {id}): remove it with `sudo ip link set \
                 dev {name} xdp off` (or see `bpftool net show dev {name}`), or run with --replace"
            );
        }
        // Only a netlink attachment can be removed from outside; a bpf_link belongs
        // to the process that holds it.
        // Detach it in the mode it runs in (driver or generic).
        let mode_flags = match xdp_attach_mode(ifindex) {
            m if m == libbpf_sys::XDP_ATTACHED_SKB as u8 => libbpf_sys::XDP_FLAGS_SKB_MODE,
            m if m == libbpf_sys::XDP_ATTACHED_HW as u8 => libbpf_sys::XDP_FLAGS_HW_MODE,
            _ => libbpf_sys::XDP_FLAGS_DRV_MODE,
        };
        let rc = crate::preflight::libbpf_muted(|| unsafe {
            libbpf_sys::bpf_xdp_detach(ifindex, mode_flags, std::ptr::null())
        });

        if rc < 0 || xdp_prog_id(ifindex).is_some() {
            bail!(
                "cannot replace XDP program {id} on {name}: a running process holds it through \
                 a bpf_link (`bpftool link show` names it); stop that process first"
            );
        }
        eprintln!("removed XDP program {id} from {name} (--replace)");
    }
    let try_mode = |flags: u32| link_create(prog, iface, libbpf_sys::BPF_XDP, flags);
    let native = libbpf_sys::XDP_FLAGS_DRV_MODE;
    let generic = libbpf_sys::XDP_FLAGS_SKB_MODE;
    let link = match mode {
        XdpMode::Native => try_mode(native)
            .map(|l| XdpLink { _link: l, mode: "native" })
            .map_err(|e| anyhow::anyhow!("native XDP on {name} failed ({e}): the driver may not support it; try --mode generic"))?,
        XdpMode::Generic => try_mode(generic)
            .map(|l| XdpLink { _link: l, mode: "generic" })
            .map_err(|e| anyhow::anyhow!("generic XDP on {name} failed: {e}"))?,
        XdpMode::Auto => match try_mode(native) {
            Ok(l) => XdpLink { _link: l, mode: "native" },
            Err(e) => {
                eprintln!("note: {name}'s driver has no native XDP ({e}); using generic mode (slower, same results)");
                try_mode(generic)
                    .map(|l| XdpLink { _link: l, mode: "generic" })
                    .map_err(|e| anyhow::anyhow!("attaching XDP to {name} failed: {e}"))?
            }
        },
    };
    Ok(link)
}

/// Attach `prog` to `iface` through a new bpf_link (`attach_type` BPF_XDP or
/// BPF_TCX_INGRESS...). The returned fd is the link: closing it detaches.
pub fn link_create(
    prog: &libbpf_rs::ProgramMut,
    iface: &Interface,
    attach_type: libbpf_sys::bpf_attach_type,
    flags: u32,
) -> std::io::Result<OwnedFd> {
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    opts.flags = flags;
    let fd = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_fd().as_raw_fd(),
            iface.index as i32,
            attach_type,
            &opts,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// How the XDP program on `ifindex` is attached (XDP_ATTACHED_DRV, _SKB, ...).
fn xdp_attach_mode(ifindex: i32) -> u8 {
    let mut opts: libbpf_sys::bpf_xdp_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    let rc = unsafe { libbpf_sys::bpf_xdp_query(ifindex, 0, &mut opts) };
    if rc == 0 {
        opts.attach_mode
    } else {
        0
    }
}

/// The id of the XDP program on `ifindex`, if any.
pub fn xdp_prog_id(ifindex: i32) -> Option<u32> {
    let mut id = 0u32;
    let rc = unsafe { libbpf_sys::bpf_xdp_query_id(ifindex, 0, &mut id) };
    (rc == 0 && id != 0).then_some(id)
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

/// Refuse to `doing` (e.g. "drop every packet") on the interface that carries the
/// default route, unless `force`: it is most likely how the user reaches this
/// machine, and the example could cut them off.
pub fn guard_default_route(iface: &Interface, force: bool, doing: &str) -> Result<()> {
    if !force && default_route_interfaces().contains(&iface.name) {
        bail!(
            "{} carries this machine's default route, probably your own connection to it: \
             this example would {doing} there. Try it in the lab (`make lab`), or add --force \
             if you are sure",
            iface.name
        );
    }
    Ok(())
}
