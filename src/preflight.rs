//! Checks that run before anything is loaded, so a user sees one sentence that says
//! what to do instead of a page of libbpf errors. They only check; they change
//! nothing on the machine.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

/// Capability numbers from `<linux/capability.h>`.
const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// The directory where the kernel's trace files live (trace_pipe, events/).
pub const TRACEFS: &str = "/sys/kernel/tracing";

/// What an example is about to do; each needs different privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Needs {
    /// kprobes and tracepoints: CAP_BPF + CAP_PERFMON, BTF, tracefs.
    Tracing,
    /// XDP and TC: CAP_BPF + CAP_NET_ADMIN, BTF, and CAP_PERFMON: the verifier lets
    /// only a perfmon-capable loader compare or subtract packet pointers.
    Networking,
    /// A socket filter on a raw packet socket: CAP_BPF + CAP_NET_RAW, BTF.
    PacketSocket,
}

/// Everything an example checks before it opens its skeleton.
pub fn check(needs: Needs) -> Result<()> {
    privileges(needs)?;
    if !Path::new("/sys/kernel/btf/vmlinux").exists() {
        bail!(
            "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): CO-RE programs \
             need a kernel built with CONFIG_DEBUG_INFO_BTF=y, as most distribution \
             kernels since 2020 are"
        );
    }
    if needs == Needs::Tracing && !Path::new(TRACEFS).join("trace_pipe").exists() {
        bail!(
            "tracefs is not mounted on {TRACEFS} (tracepoints and bpf_printk need it): \
             mount it with `sudo mount -t tracefs tracefs {TRACEFS}` (`make deps` does)"
        );
    }
    Ok(())
}

fn privileges(needs: Needs) -> Result<()> {
    let have = effective_caps()?;
    let has = |cap: u32| have & (1u64 << cap) != 0;
    let (wanted, names): (&[u32], &str) = match needs {
        Needs::Tracing => (&[CAP_BPF, CAP_PERFMON], "CAP_BPF and CAP_PERFMON"),
        Needs::Networking => {
            (&[CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON], "CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON")
        }
        Needs::PacketSocket => (&[CAP_BPF, CAP_NET_RAW], "CAP_BPF and CAP_NET_RAW"),
    };
    // Before 5.8 there was no CAP_BPF/CAP_PERFMON and CAP_SYS_ADMIN covered both.
    let ok = wanted.iter().all(|&cap| has(cap) || has(CAP_SYS_ADMIN));
    if !ok {
        // The command as the user typed it, so that it can be copied with sudo.
        let command: Vec<String> = std::env::args().collect();
        bail!(
            "loading eBPF programs needs root (or {names}): run it with sudo, \
             e.g. `sudo {}` (`cargo run --example ...` does that for you)",
            command.join(" ")
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

/// Whether this is a PREEMPT_RT kernel (/sys/kernel/realtime reads 1). There,
/// from Linux 6.18 on, softirq work can be preempted on its CPU, so
/// xdp_pingpong_batched sends each ping report at once instead of in per-CPU
/// batches (bpf/include/batch.h explains why the batches need a CPU to themselves).
pub fn realtime_kernel() -> bool {
    fs::read_to_string("/sys/kernel/realtime").is_ok_and(|s| s.trim() == "1")
}

/// Whether XDP programs may use bpf_timer (Linux 5.15+), asked of the kernel itself
/// (libbpf loads a tiny probe program): older kernels refuse a program with a timer
/// callback with a message about BTF ("number of funcs in func_info").
pub fn has_bpf_timer() -> bool {
    let probe = crate::libbpf_output::muted(|| unsafe {
        libbpf_sys::libbpf_probe_bpf_helper(
            libbpf_sys::BPF_PROG_TYPE_XDP,
            libbpf_sys::BPF_FUNC_timer_init,
            std::ptr::null(),
        )
    });
    // 1: yes; 0: no; below 0: the probe itself failed (then let the load say why).
    probe != 0
}

/// Whether cgroup sock_addr programs (connect4/6) may call bpf_get_current_pid_tgid()
/// (Linux 6.1+), asked of the kernel as has_bpf_timer does: before that, sock_lb's
/// reports leave the pid and command columns empty.
pub fn sock_addr_has_pid() -> bool {
    let probe = crate::libbpf_output::muted(|| unsafe {
        libbpf_sys::libbpf_probe_bpf_helper(
            libbpf_sys::BPF_PROG_TYPE_CGROUP_SOCK_ADDR,
            libbpf_sys::BPF_FUNC_get_current_pid_tgid,
            std::ptr::null(),
        )
    });
    probe == 1
}
