//! Attach a TC (traffic control) program to an interface's ingress: what
//! libbpf-rs does not do for us.
//!
//! Two kernel interfaces exist:
//! - TCX (Linux 6.6+): a bpf_link, like XDP's. The kernel removes the program when
//!   the link's last file descriptor closes, so even `kill -9` leaves nothing.
//!   libbpf-rs 0.27 has no call for it, so we make the link with libbpf's
//!   `bpf_link_create()`.
//! - netlink (older kernels): a `clsact` qdisc with a BPF filter in it (libbpf-rs's
//!   `TcHook`). It stays until removed, so we remove on exit what we added, and
//!   `--cleanup` removes what a killed run left behind.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use anyhow::{bail, Result};
use libbpf_rs::{TcHook, TcHookBuilder, TC_EGRESS, TC_INGRESS};

use crate::iface::Interface;
use crate::libbpf_output::muted;

/// The netlink filter's handle and priority: fixed, so that a later run can find
/// (and `--cleanup` can remove) the filter of an earlier one that was killed.
pub const NETLINK_HANDLE: u32 = 0xEB5;
pub const NETLINK_PRIORITY: u32 = 0xEB5;

/// `--attach` for TC examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TcApi {
    /// TCX when the kernel has it (6.6+), netlink otherwise
    Auto,
    /// a TCX bpf_link (removed by the kernel when the process ends)
    Tcx,
    /// a clsact qdisc and filter through netlink (kernels before 6.6)
    Netlink,
}

/// A TC program attached to an interface's ingress; dropping it detaches.
pub enum TcAttachment {
    Tcx(OwnedFd),
    Netlink { hook: TcHook, created_qdisc: bool, name: String },
}

impl TcAttachment {
    /// "TCX link" or "clsact qdisc + netlink filter", for the line that says which.
    pub fn describe(&self) -> &'static str {
        match self {
            TcAttachment::Tcx(_) => "TCX link",
            TcAttachment::Netlink { .. } => "clsact qdisc + netlink filter",
        }
    }
}

impl Drop for TcAttachment {
    fn drop(&mut self) {
        if let TcAttachment::Netlink { hook, created_qdisc, name } = self {
            if let Err(e) = hook.detach() {
                eprintln!("removing the TC filter from {name}: {e}; try `--cleanup`");
            }
            // Only a qdisc we created goes: someone else's may carry their filters.
            if *created_qdisc {
                destroy_qdisc(*hook);
            }
        }
    }
}

/// Attach `prog` at ingress of `iface` the way `api` says, refusing to start when
/// a killed run left its netlink filter behind.
pub fn attach_ingress(
    prog: &libbpf_rs::ProgramMut,
    iface: &Interface,
    api: TcApi,
) -> Result<TcAttachment> {
    if let Some(id) = leftover_filter(iface) {
        bail!(
            "{} still has the TC filter of an earlier run (program id {id}), probably one that \
             was killed: remove it with --cleanup",
            iface.name
        );
    }
    if api != TcApi::Netlink {
        match tcx_link(prog, iface) {
            Ok(fd) => return Ok(TcAttachment::Tcx(fd)),
            Err(e) if api == TcApi::Tcx => bail!(
                "TCX attach to {} failed ({e}): TCX needs Linux 6.6+; try --attach netlink",
                iface.name
            ),
            Err(e) => eprintln!(
                "note: no TCX on this kernel ({e}); using a clsact qdisc and netlink filter"
            ),
        }
    }
    attach_netlink(prog, iface)
}

/// A TCX ingress link: `bpf_link_create(prog, ifindex, BPF_TCX_INGRESS)`. The
/// returned fd is the link: closing it detaches.
fn tcx_link(prog: &libbpf_rs::ProgramMut, iface: &Interface) -> std::io::Result<OwnedFd> {
    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    let fd = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_fd().as_raw_fd(),
            iface.index as i32,
            libbpf_sys::BPF_TCX_INGRESS,
            &opts,
        )
    };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Our netlink filter's hook on `iface` (prog_fd only matters for attach()).
fn hook(prog_fd: std::os::fd::BorrowedFd, iface: &Interface) -> TcHook {
    TcHookBuilder::new(prog_fd)
        .ifindex(iface.index as i32)
        .handle(NETLINK_HANDLE)
        .priority(NETLINK_PRIORITY)
        .hook(TC_INGRESS)
}

fn attach_netlink(prog: &libbpf_rs::ProgramMut, iface: &Interface) -> Result<TcAttachment> {
    let mut hook = hook(prog.as_fd(), iface);
    // libbpf-rs's create() hides "already exists"; ask libbpf directly so we know
    // whether the qdisc is ours to remove later. EEXIST is expected: no message.
    let mut raw: libbpf_sys::bpf_tc_hook = unsafe { std::mem::zeroed() };
    raw.sz = std::mem::size_of_val(&raw) as _;
    raw.ifindex = iface.index as i32;
    raw.attach_point = TC_INGRESS;
    let rc = muted(|| unsafe { libbpf_sys::bpf_tc_hook_create(&mut raw) });
    let created_qdisc = match rc {
        0 => true,
        rc if -rc == nix::libc::EEXIST => false,
        rc => bail!(
            "creating a clsact qdisc on {}: {}",
            iface.name,
            std::io::Error::from_raw_os_error(-rc)
        ),
    };
    let name = iface.name.clone();
    if let Err(e) = hook.attach() {
        if created_qdisc {
            destroy_qdisc(hook);
        }
        bail!("attaching the TC filter to {name}: {e}");
    }
    Ok(TcAttachment::Netlink { hook, created_qdisc, name })
}

/// Delete the whole clsact qdisc (libbpf deletes it only when asked for both
/// directions; for one direction it just flushes that direction's filters).
fn destroy_qdisc(mut hook: TcHook) {
    let _ = hook.attach_point(TC_INGRESS | TC_EGRESS).destroy();
}

/// Any open fd will do for hooks we only query or detach.
fn any_fd() -> std::io::Result<std::fs::File> {
    std::fs::File::open("/dev/null")
}

/// The program id of our netlink filter on `iface`, if an earlier run left one.
fn leftover_filter(iface: &Interface) -> Option<u32> {
    let fd = any_fd().ok()?;
    muted(|| hook(fd.as_fd(), iface).query().ok())
}

/// `--cleanup`: remove the netlink filter an earlier (killed) run left on `iface`
/// and say what happened. The clsact qdisc stays: other tools may have filters in
/// it (`sudo tc qdisc del dev IFACE clsact` removes it and all of them).
pub fn cleanup(iface: &Interface) -> Result<()> {
    if leftover_filter(iface).is_none() {
        println!("nothing to clean up on {}", iface.name);
        return Ok(());
    }
    let fd = any_fd()?;
    hook(fd.as_fd(), iface)
        .detach()
        .map_err(|e| anyhow::anyhow!("removing the TC filter from {}: {e}", iface.name))?;
    println!("removed the TC filter an earlier run left on {}", iface.name);
    Ok(())
}
