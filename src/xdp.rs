//! What libbpf-rs leaves to us around `Program::attach_xdp`: saying clearly when
//! an interface already has an XDP program (and replacing it when asked), and
//! telling which mode the kernel chose.

use anyhow::{bail, Result};

use crate::iface::Interface;

/// The id of the XDP program on `ifindex`, if any.
pub fn prog_id(ifindex: u32) -> Option<u32> {
    let mut id = 0u32;
    let rc = unsafe { libbpf_sys::bpf_xdp_query_id(ifindex as i32, 0, &mut id) };
    (rc == 0 && id != 0).then_some(id)
}

/// Make sure `iface` has no XDP program before we attach ours: one interface
/// runs one XDP program. Refuse with its id and what to do, or with `replace`
/// remove it (only a netlink attachment can be removed from outside; a bpf_link
/// belongs to the process that holds it).
pub fn ensure_free(iface: &Interface, replace: bool) -> Result<()> {
    let name = &iface.name;
    let Some(id) = prog_id(iface.index) else { return Ok(()) };
    if !replace {
        bail!(
            "{name} already has an XDP program (id {id}). If another example runs there, \
             stop it (Ctrl-C); else remove it (`bpftool net show dev {name}` names it), or \
             run with --replace"
        );
    }
    // Detach it in the mode it runs in (driver or generic).
    let flags = match query(iface.index).map(|q| q.attach_mode) {
        Some(m) if m == libbpf_sys::XDP_ATTACHED_SKB as u8 => libbpf_sys::XDP_FLAGS_SKB_MODE,
        Some(m) if m == libbpf_sys::XDP_ATTACHED_HW as u8 => libbpf_sys::XDP_FLAGS_HW_MODE,
        _ => libbpf_sys::XDP_FLAGS_DRV_MODE,
    };
    let rc = crate::libbpf_output::muted(|| unsafe {
        libbpf_sys::bpf_xdp_detach(iface.index as i32, flags, std::ptr::null())
    });
    if rc < 0 || prog_id(iface.index).is_some() {
        bail!(
            "cannot replace XDP program {id} on {name}: a running process holds it through \
             a bpf_link (`bpftool link show` names it); stop that process first"
        );
    }
    eprintln!("removed XDP program {id} from {name} (--replace)");
    Ok(())
}

/// Where the XDP program on `iface` runs: "native" (in the driver) or "generic"
/// (after the kernel built a socket buffer; drivers without XDP support get this).
pub fn mode(iface: &Interface) -> &'static str {
    match query(iface.index).map(|q| q.attach_mode) {
        Some(m) if m == libbpf_sys::XDP_ATTACHED_SKB as u8 => "generic",
        Some(m) if m == libbpf_sys::XDP_ATTACHED_HW as u8 => "offloaded",
        _ => "native",
    }
}

fn query(ifindex: u32) -> Option<libbpf_sys::bpf_xdp_query_opts> {
    let mut opts: libbpf_sys::bpf_xdp_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    let rc = unsafe { libbpf_sys::bpf_xdp_query(ifindex as i32, 0, &mut opts) };
    (rc == 0).then_some(opts)
}
