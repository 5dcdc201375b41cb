//! The packet lab: two network namespaces, a client and a server, joined by one
//! veth pair. Lab traffic flows only between them, so a program that drops or
//! rewrites packets can never disturb this machine's real network.
//!
//! ```text
//!   namespace <name>-client                 namespace <name>-server
//!   veth-client 10.77.0.1/24  <── veth ──>  veth-server 10.77.0.2/24
//!               fd77::1/64                              fd77::2/64
//! ```
//!
//! `make lab` builds one named `ebpfws` that stays until `make lab-down`; tests
//! build their own with unique names and remove them on drop, even on panic.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

use crate::netns::{in_namespace, NETNS_DIR};

/// The interface names inside the two namespaces.
pub const CLIENT_IF: &str = "veth-client";
pub const SERVER_IF: &str = "veth-server";

/// One end of the lab.
#[derive(Clone, Debug)]
pub struct Host {
    /// Network namespace name (`ip netns exec <ns> ...`).
    pub ns: String,
    /// Its veth end.
    pub iface: &'static str,
    pub ipv4: Ipv4Addr,
    pub ipv6: Ipv6Addr,
}

impl Host {
    /// A command that runs `program` inside this host's namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }

    /// Run `args` inside the namespace and fail with its stderr if it fails.
    pub fn run(&self, args: &[&str]) -> Result<Output> {
        run_checked(self.cmd(args[0]).args(&args[1..]))
    }

    /// Switch the kernel's own ping replies on or off (IPv4 and IPv6), so that a
    /// test can tell an answer from our program from one by the kernel.
    pub fn kernel_echo_reply(&self, on: bool) -> Result<()> {
        let ignore = if on { "0" } else { "1" };
        for key in ["net/ipv4/icmp_echo_ignore_all", "net/ipv6/icmp/echo_ignore_all"] {
            self.sysctl(key, ignore)?;
        }
        Ok(())
    }

    /// Set /proc/sys/`key` inside this namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{key}");
        // /proc/sys/net shows the namespace of the thread that opens it.
        in_namespace(&self.ns, || std::fs::write(&path, value))?
            .with_context(|| format!("writing {path} in {}", self.ns))
    }
}

/// A client and a server namespace joined by a veth pair.
pub struct Lab {
    pub name: String,
    pub client: Host,
    pub server: Host,
    keep: bool,
}

impl Lab {
    /// Build lab `name` (namespaces `<name>-client` and `<name>-server`).
    pub fn up(name: &str) -> Result<Lab> {
        let lab = Lab {
            name: name.to_string(),
            client: Host {
                ns: format!("{name}-client"),
                iface: CLIENT_IF,
                ipv4: Ipv4Addr::new(10, 77, 0, 1),
                ipv6: "fd77::1".parse().unwrap(),
            },
            server: Host {
                ns: format!("{name}-server"),
                iface: SERVER_IF,
                ipv4: Ipv4Addr::new(10, 77, 0, 2),
                ipv6: "fd77::2".parse().unwrap(),
            },
            // Until we have created something, there is nothing of ours to remove:
            // an existing lab of the same name must survive this failed attempt.
            keep: true,
        };
        for host in [&lab.client, &lab.server] {
            if std::path::Path::new(NETNS_DIR).join(&host.ns).exists() {
                bail!("network namespace {} already exists: remove the old lab first (`make lab-down`)", host.ns);
            }
        }
        // From here on, dropping `lab` removes whatever was built, also on error.
        let mut lab = lab;
        lab.keep = false;
        for host in [&lab.client, &lab.server] {
            run_checked(Command::new("ip").args(["netns", "add", &host.ns]))?;
            // No IPv6 duplicate address detection: addresses (the link-local ones
            // neighbour discovery uses too) work the moment the link is up.
            host.sysctl("net/ipv6/conf/default/accept_dad", "0")?;
        }
        // Both ends are created inside the namespaces: nothing appears in the root one.
        run_checked(Command::new("ip").args([
            "-n",
            &lab.client.ns,
            "link",
            "add",
            CLIENT_IF,
            "type",
            "veth",
            "peer",
            "name",
            SERVER_IF,
            "netns",
            &lab.server.ns,
        ]))?;
        // veth hands a frame sent with XDP_TX to its peer's XDP receive path, which
        // only exists while the peer has an XDP program of its own (or, since 5.13,
        // GRO turned on). Without this
        // pass-everything program on the client end, xdp_pingpong's replies would
        // be dropped silently. Your own veth setups need the same.
        // Attached before the links go up: attaching reconfigures the veth queues.
        in_namespace(&lab.client.ns, || attach_xdp_pass(CLIENT_IF))??;
        for host in [&lab.client, &lab.server] {
            let ip =
                |args: &[&str]| run_checked(Command::new("ip").args(["-n", &host.ns]).args(args));
            ip(&["addr", "add", &format!("{}/24", host.ipv4), "dev", host.iface])?;
            // nodad: skip IPv6 duplicate address detection so the address works at once.
            ip(&["addr", "add", &format!("{}/64", host.ipv6), "dev", host.iface, "nodad"])?;
            ip(&["link", "set", "lo", "up"])?;
            ip(&["link", "set", host.iface, "up"])?;
        }
        // Both links report "UP" only once both ends are up; until then the first
        // packets (neighbour discovery, say) can vanish.
        for host in [&lab.client, &lab.server] {
            wait_until_up(host)?;
        }
        Ok(lab)
    }

    /// Remove lab `name`: deleting the namespaces deletes the veth pair and every
    /// program attached to it. Missing parts are fine.
    pub fn down(name: &str) -> Result<()> {
        for ns in [format!("{name}-client"), format!("{name}-server")] {
            if std::path::Path::new(NETNS_DIR).join(&ns).exists() {
                run_checked(Command::new("ip").args(["netns", "del", &ns]))?;
            }
        }
        Ok(())
    }

    /// Leave the lab in place when this value is dropped (for `make lab`).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = Lab::down(&self.name) {
                eprintln!("removing lab {}: {e:#}", self.name);
            }
        }
    }
}

fn wait_until_up(host: &Host) -> Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let out = run_checked(
            Command::new("ip").args(["-n", &host.ns, "-o", "link", "show", "dev", host.iface]),
        )?;
        if String::from_utf8_lossy(&out.stdout).contains("state UP") {
            return Ok(());
        }
        if std::time::Instant::now() > deadline {
            bail!("{} in {} did not come up", host.iface, host.ns);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

fn run_checked(cmd: &mut Command) -> Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("running {cmd:?} (is iproute2 installed? `make deps`)"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(out)
}

/// The smallest program of a type: `return value;`, two instructions, loaded
/// straight from bytecode. The lab's XDP pass program, and the benchmark's floor.
pub fn return_only_program(
    prog_type: libbpf_sys::bpf_prog_type,
    value: i32,
    name: &std::ffi::CStr,
) -> Result<OwnedFd> {
    use libbpf_sys::{bpf_insn, BPF_ALU64, BPF_EXIT, BPF_JMP, BPF_K, BPF_MOV};
    let insn = |code: u32, imm: i32| bpf_insn {
        code: code as u8,
        _bitfield_align_1: [],
        _bitfield_1: bpf_insn::new_bitfield_1(0, 0), // dst r0, src r0
        off: 0,
        imm,
    };
    // r0 = value; exit (r0 is the return value)
    let prog = [insn(BPF_ALU64 | BPF_MOV | BPF_K, value), insn(BPF_JMP | BPF_EXIT, 0)];
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            prog_type,
            name.as_ptr(),
            c"Dual BSD/GPL".as_ptr(),
            prog.as_ptr(),
            prog.len() as _,
            std::ptr::null_mut(),
        )
    };
    if fd < 0 {
        bail!("loading {name:?}: {}", std::io::Error::from_raw_os_error(-fd));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Attach `return XDP_PASS;` to `iface` in the current namespace. It is attached
/// through netlink, not a bpf_link, so it stays after this process exits, until
/// the interface goes.
fn attach_xdp_pass(iface: &str) -> Result<()> {
    // The attachment keeps its own reference; our fd may close.
    let fd = return_only_program(
        libbpf_sys::BPF_PROG_TYPE_XDP,
        libbpf_sys::XDP_PASS as i32,
        c"lab_xdp_pass",
    )?;
    let ifindex = nix::net::if_::if_nametoindex(iface)? as i32;
    let rc = unsafe {
        libbpf_sys::bpf_xdp_attach(
            ifindex,
            fd.as_raw_fd(),
            libbpf_sys::XDP_FLAGS_DRV_MODE,
            std::ptr::null(),
        )
    };
    if rc < 0 {
        bail!(
            "attaching the XDP pass program to {iface}: {}",
            std::io::Error::from_raw_os_error(-rc)
        );
    }
    Ok(())
}
