//! Network namespaces: run code inside one, and find which one has an interface.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use nix::sched::{setns, CloneFlags};

/// Where `ip netns add NAME` keeps its namespaces.
pub const NETNS_DIR: &str = "/run/netns";

/// Run `f` on a thread that has joined namespace `ns` (a name from `ip netns`).
/// Only that thread moves, so the caller stays where it was.
pub fn in_namespace<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
    let path = Path::new(NETNS_DIR).join(ns);
    let file = File::open(&path)
        .with_context(|| format!("network namespace {ns} not found ({})", path.display()))?;
    std::thread::scope(|s| {
        s.spawn(|| -> Result<T> {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("entering network namespace {ns}"))?;
            Ok(f())
        })
        .join()
        .expect("namespace thread panicked")
    })
}

/// Named namespaces (from `ip netns`) that have an interface called `name`.
pub fn namespaces_with_interface(name: &str) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|ns| {
            in_namespace(ns, || nix::net::if_::if_nametoindex(name).is_ok()).unwrap_or(false)
        })
        .collect()
}
