//! Network namespaces: run code inside one, find which one has an interface, and
//! name a namespace and interface the way tracepoint programs see them.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
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

/// What a program that counts per namespace or interface compares with (0 = no
/// filter): the inode of network namespace `netns` (a name from `ip netns`, or
/// this one when only `iface` is given), and the ifindex of `iface` in it. An
/// interface that is in another namespace is named with the flags that reach it.
pub fn filter_ids(netns: Option<&str>, iface: Option<&str>) -> Result<(u32, u32)> {
    let netns_file = match netns {
        Some(ns) => format!("{NETNS_DIR}/{ns}"),
        None if iface.is_some() => "/proc/self/ns/net".to_string(), // this namespace
        None => return Ok((0, 0)),
    };
    let inode = std::fs::metadata(&netns_file)
        .with_context(|| {
            format!("network namespace {} not found: `ip netns` lists them", netns.unwrap_or(""))
        })?
        .ino() as u32;
    let ifindex = match (iface, netns) {
        (None, _) => 0,
        (Some(i), None) => {
            // An interface of another namespace: say how to name both.
            let here = nix::net::if_::if_nametoindex(i).is_ok();
            let elsewhere = namespaces_with_interface(i);
            match elsewhere.as_slice() {
                [ns] if !here => {
                    bail!("interface {i} is in network namespace {ns}: add `--netns {ns} --iface {i}`")
                }
                [_, _, ..] if !here => bail!(
                    "interface {i} is in the network namespaces {}: add `--netns NAME --iface {i}` \
                     with one of them",
                    elsewhere.join(", ")
                ),
                _ => {}
            }
            nix::net::if_::if_nametoindex(i).with_context(|| {
                format!("interface {i} not found: `ip link` lists the interfaces")
            })?
        }
        (Some(i), Some(ns)) => in_namespace(ns, || nix::net::if_::if_nametoindex(i))?
            .with_context(|| {
                format!("interface {i} is not in namespace {ns}: `ip -n {ns} link` lists its own")
            })?,
    };
    Ok((inode, ifindex))
}
