//! Checks that run before anything is loaded, so a user sees one sentence that says
//! what to do instead of a page of libbpf errors.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use libbpf_rs::PrintLevel;

/// Capability numbers from `<linux/capability.h>`.
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// What an example is about to do; each needs different privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// kprobes and tracepoints: CAP_BPF + CAP_PERFMON, BTF, tracefs.
    Tracing,
    /// XDP and TC: CAP_BPF + CAP_NET_ADMIN, BTF.
    Networking,
    /// A socket filter on a raw packet socket: CAP_BPF + CAP_NET_RAW, BTF.
    PacketSocket,
}

/// Everything an example checks before it opens its skeleton.
pub fn check(needs: Needs) -> Result<()> {
    // Errors here are sentences for a person, not crashes: no backtrace under them
    // even when RUST_BACKTRACE is set (EBPF_WORKSHOP_DEBUG=1 brings them back).
    if std::env::var_os("EBPF_WORKSHOP_DEBUG").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    quiet_libbpf_debug();
    privileges(needs)?;
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): CO-RE programs \
             need a kernel built with CONFIG_DEBUG_INFO_BTF=y, as most distribution \
             kernels since 2020 are"
        );
    }
    if needs == Needs::Tracing {
        tracefs()?;
    }
    Ok(())
}

fn privileges(needs: Needs) -> Result<()> {
    let have = effective_caps()?;
    let has = |cap: u32| have & (1u64 << cap) != 0;
    let (second, name) = match needs {
        Needs::Tracing => (CAP_PERFMON, "CAP_PERFMON"),
        Needs::Networking => (CAP_NET_ADMIN, "CAP_NET_ADMIN"),
        Needs::PacketSocket => (CAP_NET_RAW, "CAP_NET_RAW"),
    };
    // Before 5.8 there was no CAP_BPF/CAP_PERFMON and CAP_SYS_ADMIN covered both.
    let ok = (has(CAP_BPF) || has(CAP_SYS_ADMIN)) && (has(second) || has(CAP_SYS_ADMIN));
    if !ok {
        bail!(
            "loading eBPF programs needs root (or CAP_BPF and {name}): run it with sudo, \
             e.g. `sudo {}` (`cargo run --example ...` does that for you)",
            std::env::args().next().unwrap_or_default()
        );
    }
    Ok(())
}

/// The effective capability set of this process, from /proc/self/status.
fn effective_caps() -> Result<u64> {
    let status = fs::read_to_string("/proc/self/status").context("reading /proc/self/status")?;
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .context("no CapEff line in /proc/self/status")?;
    u64::from_str_radix(hex.trim(), 16).context("parsing CapEff")
}

/// The directory where the kernel's trace files live (trace_pipe, events/).
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Tracepoints and bpf_printk need tracefs; mount it when the system has not.
fn tracefs() -> Result<()> {
    if Path::new(TRACEFS).join("trace_pipe").exists() {
        return Ok(());
    }
    use nix::mount::{mount, MsFlags};
    mount(
        Some("tracefs"),
        TRACEFS,
        Some("tracefs"),
        MsFlags::empty(),
        None::<&str>,
    )
    .with_context(|| {
        format!("tracefs is not mounted and mounting it on {TRACEFS} failed: try `sudo mount -t tracefs tracefs {TRACEFS}`")
    })?;
    eprintln!("mounted tracefs on {TRACEFS} (tracepoints and bpf_printk need it)");
    Ok(())
}

static LIBBPF_MUTED: AtomicBool = AtomicBool::new(false);

/// Show libbpf's warnings (verifier logs, attach errors) unless muted, and hide its
/// debug chatter. `EBPF_WORKSHOP_DEBUG=1` shows everything.
fn quiet_libbpf_debug() {
    // libbpf only calls this for messages at or above the level given below.
    fn print(_level: PrintLevel, msg: String) {
        if !LIBBPF_MUTED.load(Ordering::Relaxed)
            || std::env::var_os("EBPF_WORKSHOP_DEBUG").is_some()
        {
            eprint!("{msg}");
        }
    }
    let level = if std::env::var_os("EBPF_WORKSHOP_DEBUG").is_some() {
        PrintLevel::Debug
    } else {
        PrintLevel::Warn
    };
    libbpf_rs::set_print(Some((level, print)));
}

/// Run `f` with libbpf's messages muted: for attempts whose failure we expect and
/// explain ourselves (a kprobe on a kernel without kprobes).
pub fn libbpf_muted<T>(f: impl FnOnce() -> T) -> T {
    let before = LIBBPF_MUTED.swap(true, Ordering::Relaxed);
    let out = f();
    LIBBPF_MUTED.store(before, Ordering::Relaxed);
    out
}
