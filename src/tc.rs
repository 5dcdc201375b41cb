//! Attach a TC (traffic control) program to an interface's ingress.
//!
//! Two kernel interfaces exist:
//! - TCX (Linux 6.6+): a bpf_link, like XDP's. The kernel removes the program when
//!   the link's last file descriptor closes, so even `kill -9` leaves nothing.
//! - netlink (older kernels): a `clsact` qdisc with a BPF filter in it. It stays
//!   until removed, so we remove on exit what we added, and `--cleanup` removes what
//!   a killed run left behind.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{bail, Result};
use libbpf_rs::{TcHook, TcHookBuilder, TC_EGRESS, TC_INGRESS};

use crate::net::Interface;

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

/// The TC options every TC example takes (flattened into its own arguments).
#[derive(Clone, Debug, clap::Args)]
pub struct TcOptions {
    /// How to attach: TCX link (Linux 6.6+) or the classic netlink clsact filter.
    #[arg(long, value_enum, default_value = "auto")]
    pub attach: TcApi,
    /// Remove the netlink filter that a killed earlier run left, then exit.
    #[arg(long)]
    pub cleanup: bool,
}

/// A TC program attached to an interface's ingress; dropping it detaches.
pub enum TcAttachment {
    Tcx(OwnedFd),
    Netlink { hook: TcHook, created_qdisc: bool, name: String },
}

impl TcAttachment {
    /// "TCX link" or "netlink clsact filter", for the one line that says which.
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
pub fn attach_tc_ingress(
    prog: &libbpf_rs::ProgramMut,
    iface: &Interface,
    api: TcApi,
) -> Result<TcAttachment> {
    if let Some(id) = leftover_filter(prog, iface) {
        bail!(
            "{} still has the TC filter of an earlier run (program id {id}), probably one that \
             was killed: remove it with --cleanup",
            iface.name
        );
    }
    if api != TcApi::Netlink {
        match crate::net::link_create(prog, iface, libbpf_sys::BPF_TCX_INGRESS, 0) {
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

fn hook(prog: &libbpf_rs::ProgramMut, iface: &Interface) -> TcHook {
    TcHookBuilder::new(prog.as_fd())
        .ifindex(iface.index as i32)
        .handle(NETLINK_HANDLE)
        .priority(NETLINK_PRIORITY)
        .hook(TC_INGRESS)
}

fn attach_netlink(prog: &libbpf_rs::ProgramMut, iface: &Interface) -> Result<TcAttachment> {
    let mut hook = hook(prog, iface);
    // libbpf-rs's create() hides "already exists"; ask libbpf directly so we know
    // whether the qdisc is ours to remove later.
    let mut raw: libbpf_sys::bpf_tc_hook = unsafe { std::mem::zeroed() };
    raw.sz = std::mem::size_of_val(&raw) as _;
    raw.ifindex = iface.index as i32;
    raw.attach_point = TC_INGRESS;
    let rc = unsafe { libbpf_sys::bpf_tc_hook_create(&mut raw) };
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

/// The program id of our netlink filter on `iface`, if an earlier run left one.
fn leftover_filter(prog: &libbpf_rs::ProgramMut, iface: &Interface) -> Option<u32> {
    crate::preflight::libbpf_muted(|| hook(prog, iface).query().ok())
}

/// `--cleanup`: remove the netlink filter an earlier (killed) run left on `iface`.
/// The clsact qdisc stays: other tools may have filters in it
/// (`sudo tc qdisc del dev IFACE clsact` removes it and all of them).
pub fn cleanup_netlink(prog: &libbpf_rs::ProgramMut, iface: &Interface) -> Result<bool> {
    let mut hook = hook(prog, iface);
    if leftover_filter(prog, iface).is_none() {
        return Ok(false);
    }
    hook.detach()
        .map_err(|e| anyhow::anyhow!("removing the TC filter from {}: {e}", iface.name))?;
    Ok(true)
}

/// What TC examples do with `--cleanup` and `--attach`: either remove an earlier
/// run's leftover filter (and return `None`: the example then exits), or attach
/// and print the one line that says how.
pub fn cleanup_or_attach(
    prog: &libbpf_rs::ProgramMut,
    iface: &Interface,
    options: &TcOptions,
) -> Result<Option<TcAttachment>> {
    if options.cleanup {
        if cleanup_netlink(prog, iface)? {
            println!("removed the TC filter an earlier run left on {}", iface.name);
        } else {
            println!("nothing to clean up on {}", iface.name);
        }
        return Ok(None);
    }
    let attachment = attach_tc_ingress(prog, iface, options.attach)?;
    eprintln!(
        "attached: TC ingress program {} on {} ({})",
        prog.name().to_string_lossy(),
        iface.name,
        attachment.describe()
    );
    Ok(Some(attachment))
}
