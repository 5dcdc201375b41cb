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
    Netlink { hook: TcHook, created_qdisc: bool, iface: Interface },
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
        if let TcAttachment::Netlink { hook, created_qdisc, iface } = self {
            if let Err(e) = hook.detach() {
                eprintln!("removing the TC filter from {}: {e}; try `--cleanup`", iface.name);
            }
            // Only a qdisc we created goes, and only when no one else's filter
            // (added since, say with --stack) is left in it.
            let others = ingress_programs(iface);
            if *created_qdisc && !others.iter().any(|p| p.ends_with("netlink filter)")) {
                destroy_qdisc(*hook);
            }
        }
    }
}

/// Attach `prog` at ingress of `iface` the way `api` says. Refuses to start when a
/// killed run left its netlink filter behind, and, unless `stack`, when other TC
/// programs are attached there already: they run first, and one that passes the
/// packet on (TC_ACT_OK) ends the chain before ours sees it.
pub fn attach_ingress(
    prog: &libbpf_rs::ProgramMut,
    iface: &Interface,
    api: TcApi,
    stack: bool,
) -> Result<TcAttachment> {
    if let Some(id) = leftover_filter(iface) {
        if let Some(pid) = holder(id) {
            bail!(
                "{} already has TC ingress programs: {} (id {id}, netlink filter, run by \
                 process {pid}). Two workshop examples cannot share the netlink filter's \
                 place: stop the other one first (Ctrl-C)",
                iface.name,
                prog_name(id)
            );
        }
        bail!(
            "{} still has the TC filter of an earlier run (program id {id}), probably one that \
             was killed: remove it with --cleanup",
            iface.name
        );
    }
    let others = ingress_programs(iface);
    if !others.is_empty() && !stack {
        bail!(
            "{} already has TC ingress programs: {}. Ours would run after them, and the first \
             that passes or drops a packet ends the chain, so ours might never see one. Stop \
             the other example (Ctrl-C), or add --stack to attach after them anyway",
            iface.name,
            others.join(", ")
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

/// The TC programs at ingress of `iface`, as "name (id N, TCX link)" or
/// "name (id N, netlink filter)": what `bpftool net` shows, also on bpftool
/// versions that do not list TCX links yet.
pub fn ingress_programs(iface: &Interface) -> Vec<String> {
    let mut found: Vec<String> = tcx_ingress_ids(iface.index)
        .into_iter()
        .map(|id| format!("{} (id {id}, TCX link)", prog_name(id)))
        .collect();
    // Netlink filters: iproute2's `tc` lists them ("... bpf ... id 42 ...").
    let shown = std::process::Command::new("tc")
        .args(["filter", "show", "dev", &iface.name, "ingress"])
        .output();
    let text = shown.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    for line in text.lines().filter(|l| l.contains(" bpf ")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let id = words.iter().position(|w| *w == "id").and_then(|i| words.get(i + 1));
        if let Some(id) = id.and_then(|id| id.parse::<u32>().ok()) {
            found.push(format!("{} (id {id}, netlink filter)", prog_name(id)));
        }
    }
    found
}

/// The ids of the programs attached to `ifindex` through TCX ingress links (none
/// on kernels before 6.6).
fn tcx_ingress_ids(ifindex: u32) -> Vec<u32> {
    let mut ids = [0u32; 64];
    let mut opts: libbpf_sys::bpf_prog_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    opts.prog_ids = ids.as_mut_ptr();
    opts.__bindgen_anon_1.prog_cnt = ids.len() as u32;
    let rc = muted(|| unsafe {
        libbpf_sys::bpf_prog_query_opts(ifindex as i32, libbpf_sys::BPF_TCX_INGRESS, &mut opts)
    });
    if rc != 0 {
        return Vec::new();
    }
    let count = unsafe { opts.__bindgen_anon_1.prog_cnt } as usize;
    ids[..count.min(ids.len())].to_vec()
}

/// A process that holds program `id` open (the example that attached it), if any:
/// a filter whose program nobody holds was left by a run that was killed.
fn holder(id: u32) -> Option<u32> {
    let wanted = id.to_string();
    let procs = std::fs::read_dir("/proc").ok()?;
    procs.flatten().find_map(|p| {
        let pid: u32 = p.file_name().to_str()?.parse().ok()?;
        let fds = std::fs::read_dir(p.path().join("fdinfo")).ok()?;
        let holds = fds.flatten().any(|fd| {
            std::fs::read_to_string(fd.path()).is_ok_and(|info| {
                info.lines().any(|l| l.strip_prefix("prog_id:").is_some_and(|v| v.trim() == wanted))
            })
        });
        holds.then_some(pid)
    })
}

/// A loaded program's name, from its id ("?" if it is gone meanwhile).
fn prog_name(id: u32) -> String {
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return "?".to_string();
    }
    // SAFETY: a new fd that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&info) as u32;
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(fd.as_raw_fd(), &mut info, &mut len) };
    if rc != 0 {
        return "?".to_string();
    }
    let name: Vec<u8> = info.name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&name).into_owned()
}

/// A TCX ingress link: `bpf_link_create(prog, ifindex, BPF_TCX_INGRESS)`. The
/// returned fd is the link: closing it detaches.
pub fn tcx_link(prog: &impl AsFd, iface: &Interface) -> std::io::Result<OwnedFd> {
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
    if let Err(e) = hook.attach() {
        if created_qdisc {
            destroy_qdisc(hook);
        }
        bail!("attaching the TC filter to {}: {e}", iface.name);
    }
    Ok(TcAttachment::Netlink { hook, created_qdisc, iface: iface.clone() })
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
    let Some(id) = leftover_filter(iface) else {
        println!("nothing to clean up on {}", iface.name);
        return Ok(());
    };
    if let Some(pid) = holder(id) {
        bail!(
            "the TC filter on {} belongs to a running example (process {pid}), not to a killed \
             one: stop that example (Ctrl-C) and it removes its filter itself",
            iface.name
        );
    }
    let fd = any_fd()?;
    hook(fd.as_fd(), iface)
        .detach()
        .map_err(|e| anyhow::anyhow!("removing the TC filter from {}: {e}", iface.name))?;
    println!("removed the TC filter an earlier run left on {}", iface.name);
    Ok(())
}
