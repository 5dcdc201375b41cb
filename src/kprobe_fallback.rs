//! Attach a tracing program to the talk's hook (a kprobe) when the kernel has
//! kprobes, or to a tracepoint that reports the same facts when it does not, and say
//! which one is live.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use libbpf_rs::Link;

use crate::libbpf_output::muted;
use crate::preflight::TRACEFS;

/// `--attach` for tracing examples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttachMode {
    /// kprobe when the kernel has kprobes, tracepoint otherwise
    Auto,
    /// the talk's kprobe only (fails on a kernel without CONFIG_KPROBES)
    Kprobe,
    /// the stable tracepoint only
    Tracepoint,
}

/// Which kind of hook ended up live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookKind {
    Kprobe,
    Tracepoint,
}

/// One way to attach: a description for the user ("kprobe on tcp_v4_connect") and
/// the code that does it.
pub struct Hook<'a> {
    pub kind: HookKind,
    pub what: &'static str,
    pub attach: Box<dyn FnOnce() -> libbpf_rs::Result<Vec<Link>> + 'a>,
}

impl<'a> Hook<'a> {
    pub fn kprobe(
        what: &'static str,
        f: impl FnOnce() -> libbpf_rs::Result<Vec<Link>> + 'a,
    ) -> Self {
        Hook { kind: HookKind::Kprobe, what, attach: Box::new(f) }
    }
    pub fn tracepoint(
        what: &'static str,
        f: impl FnOnce() -> libbpf_rs::Result<Vec<Link>> + 'a,
    ) -> Self {
        Hook { kind: HookKind::Tracepoint, what, attach: Box::new(f) }
    }
}

/// What is attached; dropping it detaches.
pub struct Attached {
    pub kind: HookKind,
    pub what: &'static str,
    /// Kept alive for as long as the programs should run.
    pub links: Vec<Link>,
}

/// Why kprobes cannot work here, if we can tell.
pub fn kprobes_missing() -> Option<&'static str> {
    // libbpf creates kprobes through the "kprobe" perf PMU (or kprobe_events in
    // tracefs on old kernels); a kernel without CONFIG_KPROBES has neither.
    let pmu = Path::new("/sys/bus/event_source/devices/kprobe").exists();
    let legacy = Path::new(TRACEFS).join("kprobe_events").exists();
    (!pmu && !legacy).then_some(
        "this kernel has no kprobes (CONFIG_KPROBES is off: \
         /sys/bus/event_source/devices/kprobe is missing)",
    )
}

/// Attach `kprobe` or `tracepoint` as `mode` says, print one line naming the live
/// hook (and why, on a fallback), and return the links.
pub fn attach_with_fallback(mode: AttachMode, kprobe: Hook, tracepoint: Hook) -> Result<Attached> {
    let try_hook = |hook: Hook| -> Result<Attached> {
        let Hook { kind, what, attach } = hook;
        let links = muted(attach).map_err(|e| anyhow!("attaching to {what} failed: {e}"))?;
        Ok(Attached { kind, what, links })
    };
    let attached = match mode {
        AttachMode::Tracepoint => try_hook(tracepoint)?,
        AttachMode::Kprobe => {
            if let Some(why) = kprobes_missing() {
                bail!(
                    "cannot attach the {}: {why}. Use --attach tracepoint (or auto)",
                    kprobe.what
                );
            }
            try_hook(kprobe)?
        }
        AttachMode::Auto => {
            let kprobe_what = kprobe.what;
            match try_hook(kprobe) {
                Ok(a) => a,
                Err(e) => {
                    let why =
                        kprobes_missing().map(str::to_string).unwrap_or_else(|| format!("{e:#}"));
                    eprintln!(
                        "note: no {kprobe_what}: {why}; using the {} instead",
                        tracepoint.what
                    );
                    try_hook(tracepoint)?
                }
            }
        }
    };
    eprintln!("attached: {}", attached.what);
    Ok(attached)
}
