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
//!
//! [`LbLab`] is the second layout, for xdp_lb: a client, a load balancer and two
//! backends on one bridge (`make lab-lb`; picture below, at its code).
//! [`RouterLab`] is the third, for xdp_router: a client and a server on two
//! subnets with a router between them (`make lab-router`).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};

use ebpf_workshop::netns::{in_namespace, NETNS_DIR};

use crate::progs::return_only_program;

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

    /// Run `ping -n ARGS` inside the namespace; what its summary line says.
    pub fn ping(&self, args: &[&str]) -> Result<PingSummary> {
        let out = self
            .cmd("ping")
            .arg("-n")
            .args(args)
            .output()
            .context("running ping (iputils-ping: `make deps`)")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().find(|l| l.contains("packets transmitted")).with_context(|| {
            format!("unexpected ping output:\n{text}{}", String::from_utf8_lossy(&out.stderr))
        })?;
        // "20000 packets transmitted, 20000 received, 0% packet loss, time 812ms"
        let field = |suffix: &str| -> Result<f64> {
            line.split(", ")
                .find_map(|p| p.strip_suffix(suffix))
                .map(|v| v.trim_start_matches("time ").trim())
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no \"{suffix}\" in ping's summary: {line}"))
        };
        Ok(PingSummary {
            sent: field(" packets transmitted")? as u32,
            received: field(" received")? as u32,
            time_ms: field("ms")?,
        })
    }

    /// Set /proc/sys/`key` inside this namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        let path = format!("/proc/sys/{key}");
        // /proc/sys/net shows the namespace of the thread that opens it.
        in_namespace(&self.ns, || std::fs::write(&path, value))?
            .with_context(|| format!("writing {path} in {}", self.ns))
    }
}

/// What `ping`'s summary says.
#[derive(Clone, Copy, Debug)]
pub struct PingSummary {
    pub sent: u32,
    pub received: u32,
    /// ping's own "time Nms": from the first request to the end.
    pub time_ms: f64,
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
        delete_namespaces(&[format!("{name}-client"), format!("{name}-server")])
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
    // Longer under emulation (`make test-kernels` sets EBPF_WORKSHOP_TIME_SCALE).
    let scale = std::env::var("EBPF_WORKSHOP_TIME_SCALE").ok().and_then(|s| s.parse().ok());
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_secs(3) * scale.unwrap_or(1u32);
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

// ---- the load-balancer lab --------------------------------------------------------
//
// Four hosts on one Ethernet segment: a bridge inside a namespace of its own, and a
// veth pair from it to each host. Same rule as above: everything lives in
// namespaces this code creates, nothing in the root namespace.
//
// ```text
//                          namespace <name>-br: bridge br0
//            ┌──────────────┬──────────────┴──┬─────────────────┐
//          p-client        p-lb (XDP pass)   p-b1              p-b2
//            │ veth          │ veth            │ veth            │ veth
//   <name>-client        <name>-lb          <name>-b1          <name>-b2
//   veth-client          veth-lb            veth-b1            veth-b2
//   10.78.0.1            10.78.0.2          10.78.0.11         10.78.0.12
//                        + VIP 10.78.0.10   "served by b1"     "served by b2"
// ```

/// The load-balancer lab's subnet is 10.78.0.0/24 (fd78::/64), apart from the
/// packet lab's 10.77.0.0/24, so both labs can be up at once.
pub const LB_VIP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 10);
pub const LB_VIP6: Ipv6Addr = Ipv6Addr::new(0xfd78, 0, 0, 0, 0, 0, 0, 0x10);
/// sock_lb's service address: one that no host of the lab owns (nobody answers its ARP).
pub const LB_SERVICE: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 100);
pub const LB_SERVICE6: Ipv6Addr = Ipv6Addr::new(0xfd78, 0, 0, 0, 0, 0, 0, 0x100);
/// The port the backends' service listens on (connections to VIP:port keep it).
pub const LB_PORT: u16 = 8080;
/// The bridge-side end of the balancer's veth: it receives the XDP_TX frames.
pub const LB_BRIDGE_PORT: &str = "p-lb";
/// Lines in a backend's answer: several TCP segments, all of which must come
/// from the same backend for the answer to read right.
const ANSWER_LINES: usize = 400;

/// A client, a load balancer and two backends on one bridge.
pub struct LbLab {
    pub name: String,
    pub client: Host,
    pub lb: Host,
    pub backends: [Host; 2],
    /// The virtual address clients connect to; an address of `lb`.
    pub vip: Ipv4Addr,
    keep: bool,
}

impl LbLab {
    /// The namespace names of lab `name`; the bridge's last.
    pub fn namespaces(name: &str) -> Vec<String> {
        ["client", "lb", "b1", "b2", "br"].iter().map(|h| format!("{name}-{h}")).collect()
    }

    /// Build lab `name`: namespaces `<name>-client`, `-lb`, `-b1`, `-b2` and `-br`.
    /// The backends have no service yet: see [`serve_name`].
    pub fn up(name: &str) -> Result<LbLab> {
        let host = |h: &str, iface: &'static str, last: u8| Host {
            ns: format!("{name}-{h}"),
            iface,
            ipv4: Ipv4Addr::new(10, 78, 0, last),
            ipv6: Ipv6Addr::new(0xfd78, 0, 0, 0, 0, 0, 0, last.into()),
        };
        let mut lab = LbLab {
            name: name.to_string(),
            client: host("client", "veth-client", 1),
            lb: host("lb", "veth-lb", 2),
            backends: [host("b1", "veth-b1", 11), host("b2", "veth-b2", 12)],
            vip: LB_VIP,
            keep: true, // an existing lab of the same name must survive a failed attempt
        };
        let all = LbLab::namespaces(name);
        for ns in &all {
            if std::path::Path::new(NETNS_DIR).join(ns).exists() {
                bail!("network namespace {ns} already exists: remove the old lab first (`make lab-down`)");
            }
        }
        lab.keep = false; // from here on, dropping `lab` removes what was built
        for ns in &all {
            run_checked(Command::new("ip").args(["netns", "add", ns]))?;
            in_namespace(ns, || {
                std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0")
            })??;
        }
        let br = format!("{name}-br");
        let br_ip = |args: &[&str]| run_checked(Command::new("ip").args(["-n", &br]).args(args));
        br_ip(&["link", "add", "br0", "type", "bridge"])?;
        let hosts: Vec<Host> = [&lab.client, &lab.lb, &lab.backends[0], &lab.backends[1]]
            .into_iter()
            .cloned()
            .collect();
        for h in &hosts {
            let port = h.iface.replace("veth-", "p-");
            // Both ends are created inside namespaces: nothing appears in the root one.
            run_checked(Command::new("ip").args([
                "-n", &h.ns, "link", "add", h.iface, "type", "veth", "peer", "name", &port,
                "netns", &br,
            ]))?;
            br_ip(&["link", "set", &port, "master", "br0"])?;
        }
        // The balancer answers with XDP_TX: its frames go to the peer of veth-lb,
        // the bridge port p-lb, whose XDP receive path exists only while it has an
        // XDP program of its own (see Lab::up). Without this pass-everything
        // program every balanced frame would vanish. The other ports never receive
        // XDP_TX frames and need nothing.
        in_namespace(&br, || attach_xdp_pass(LB_BRIDGE_PORT))??;
        // XDP sees a frame as its sender wrote it. veth, like most NICs, lets the
        // sender's kernel leave the TCP checksum unfinished (the "checksum offload"
        // that hardware would complete); XDP_TX then sends it on unfinished, and the
        // receiver drops it (TcpInCsumErrors in `nstat`). With checksum offload off
        // on p-lb, the kernel finishes every checksum before a frame goes to the
        // balancer, so xdp_lb's incremental updates start from a correct sum.
        // (`ethtool -K p-lb tx off` does the same.)
        in_namespace(&br, || tx_checksum_off(LB_BRIDGE_PORT))??;
        for h in &hosts {
            let ip = |args: &[&str]| run_checked(Command::new("ip").args(["-n", &h.ns]).args(args));
            ip(&["addr", "add", &format!("{}/24", h.ipv4), "dev", h.iface])?;
            ip(&["addr", "add", &format!("{}/64", h.ipv6), "dev", h.iface, "nodad"])?;
            ip(&["link", "set", "lo", "up"])?;
            ip(&["link", "set", h.iface, "up"])?;
            br_ip(&["link", "set", &h.iface.replace("veth-", "p-"), "up"])?;
        }
        // The VIP is a second address of the balancer's veth: the client's ARP
        // (and NDP) for it then reaches the balancer's kernel, which answers with
        // its own MAC, so the client's packets for the VIP arrive where xdp_lb
        // runs. /32 (/128): it adds no route, the /24 one is already there.
        // Without xdp_lb, the balancer's kernel refuses connections to it (RST).
        let lb_ip =
            |args: &[&str]| run_checked(Command::new("ip").args(["-n", &lab.lb.ns]).args(args));
        lb_ip(&["addr", "add", &format!("{LB_VIP}/32"), "dev", lab.lb.iface])?;
        lb_ip(&["addr", "add", &format!("{LB_VIP6}/128"), "dev", lab.lb.iface, "nodad"])?;
        // xdp_lb --mode dsr: each backend owns the VIP too, on lo, so that its kernel
        // takes the client's packets as its own and answers from the VIP. It must not
        // answer ARP for the VIP (arp_ignore=1: only for addresses of the asking
        // interface), nor use the VIP as the source of its own ARP requests
        // (arp_announce=2): only the balancer may look like the VIP on the wire. For
        // IPv6 nothing to set: neighbour solicitations are answered only for
        // addresses of the interface asked.
        for b in &lab.backends {
            b.run(&["ip", "addr", "add", &format!("{LB_VIP}/32"), "dev", "lo"])?;
            b.run(&["ip", "addr", "add", &format!("{LB_VIP6}/128"), "dev", "lo"])?;
            b.sysctl("net/ipv4/conf/all/arp_ignore", "1")?;
            b.sysctl("net/ipv4/conf/all/arp_announce", "2")?;
        }
        br_ip(&["link", "set", "br0", "up"])?;
        for h in &hosts {
            wait_until_up(h)?;
        }
        // xdp_lb takes the backends' MACs from the balancer's neighbour table: one
        // ping each fills it (the entries stay, going "STALE", which still has the MAC).
        for b in &lab.backends {
            lab.lb
                .run(&["ping", "-c", "1", "-W", "2", "-q", &b.ipv4.to_string()])
                .with_context(|| format!("the balancer cannot reach backend {}", b.ipv4))?;
        }
        Ok(lab)
    }

    /// Remove lab `name`: stop the processes inside its namespaces (the backends'
    /// services of `lab up-lb`), then delete the namespaces, which deletes the veth
    /// pairs, the bridge and every program attached. Missing parts are fine.
    pub fn down(name: &str) -> Result<()> {
        for ns in LbLab::namespaces(name) {
            if !std::path::Path::new(NETNS_DIR).join(&ns).exists() {
                continue;
            }
            let pids = run_checked(Command::new("ip").args(["netns", "pids", &ns]))?;
            for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
            run_checked(Command::new("ip").args(["netns", "del", &ns]))?;
        }
        Ok(())
    }

    /// Leave the lab in place when this value is dropped (for `make lab-lb`).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for LbLab {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = LbLab::down(&self.name) {
                eprintln!("removing lab {}: {e:#}", self.name);
            }
        }
    }
}

/// The backends' service: for each connection, read the request (one line), answer
/// "served by NAME" on [`ANSWER_LINES`] lines, close. Runs until the listener
/// fails; one thread per connection. Bind `listener` inside the backend's namespace
/// (a socket stays in the namespace it was made in).
pub fn serve_name(listener: std::net::TcpListener, name: &str) {
    let answer = answer(name);
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        let answer = answer.clone();
        std::thread::spawn(move || {
            use std::io::{BufRead, Write};
            let mut request = String::new();
            let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            if std::io::BufReader::new(&conn).read_line(&mut request).is_ok() {
                let _ = conn.write_all(&answer);
            }
        });
    }
}

/// What backend `name` answers.
pub fn answer(name: &str) -> Vec<u8> {
    format!("served by {name}\n").repeat(ANSWER_LINES).into_bytes()
}

/// The backend that sent `answer`, if it is complete and every line names the same one.
pub fn answered_by(answer: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(answer).ok()?;
    let name = text.lines().next()?.strip_prefix("served by ")?;
    (text.as_bytes() == self::answer(name).as_slice()).then(|| name.to_string())
}

/// `ethtool -K iface tx off` in the current namespace: the kernel computes
/// checksums before handing frames to `iface`, instead of leaving them to it.
fn tx_checksum_off(iface: &str) -> Result<()> {
    use nix::libc;
    const ETHTOOL_STXCSUM: u32 = 0x17; // <linux/ethtool.h>: set TX checksum offload
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue { cmd: ETHTOOL_STXCSUM, data: 0 };
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut value as *mut EthtoolValue).cast();
    let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Datagram,
        nix::sys::socket::SockFlag::empty(),
        None,
    )?;
    // SAFETY: SIOCETHTOOL reads `req`, and through it `value`; both outlive the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCETHTOOL, &mut req) };
    if rc < 0 {
        bail!("turning TX checksum offload off on {iface}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

// ---- the router lab ------------------------------------------------------------
//
// Three hosts: a client and a server on two subnets, and a router between them,
// each in a namespace of its own, joined by two veth pairs. IPv4 and IPv6 on both
// sides; the client's and the server's default routes point at the router.
//
// ```text
//   <name>-client            <name>-router                   <name>-server
//   veth-client   <─ veth ─> veth-rc         veth-rs <─ veth ─> veth-server
//   10.79.1.2/24             10.79.1.1/24    10.79.2.1/24       10.79.2.2/24
//   fd79:1::2/64             fd79:1::1/64    fd79:2::1/64       fd79:2::2/64
//   (XDP pass)               ip_forward=1, IPv6 forwarding=1    (XDP pass)
// ```

/// The router's interfaces: towards the client, towards the server.
pub const ROUTER_CLIENT_IF: &str = "veth-rc";
pub const ROUTER_SERVER_IF: &str = "veth-rs";

/// A client and a server on two subnets, and a router between them.
pub struct RouterLab {
    pub name: String,
    pub client: Host,
    /// The router, as the client sees it (veth-rc, 10.79.1.1, fd79:1::1).
    pub router: Host,
    /// The router, as the server sees it (veth-rs, 10.79.2.1, fd79:2::1).
    pub router_server_side: Host,
    pub server: Host,
    keep: bool,
}

impl RouterLab {
    /// The namespace names of lab `name`.
    pub fn namespaces(name: &str) -> Vec<String> {
        ["client", "router", "server"].iter().map(|h| format!("{name}-{h}")).collect()
    }

    /// Build lab `name`: namespaces `<name>-client`, `-router` and `-server`.
    pub fn up(name: &str) -> Result<RouterLab> {
        let host = |h: &str, iface: &'static str, net: u16, last: u16| Host {
            ns: format!("{name}-{h}"),
            iface,
            ipv4: Ipv4Addr::new(10, 79, net as u8, last as u8),
            ipv6: Ipv6Addr::new(0xfd79, net, 0, 0, 0, 0, 0, last),
        };
        let mut lab = RouterLab {
            name: name.to_string(),
            client: host("client", CLIENT_IF, 1, 2),
            router: host("router", ROUTER_CLIENT_IF, 1, 1),
            router_server_side: host("router", ROUTER_SERVER_IF, 2, 1),
            server: host("server", SERVER_IF, 2, 2),
            keep: true, // an existing lab of the same name must survive a failed attempt
        };
        let all = RouterLab::namespaces(name);
        for ns in &all {
            if std::path::Path::new(NETNS_DIR).join(ns).exists() {
                bail!("network namespace {ns} already exists: remove the old lab first (`make lab-down`)");
            }
        }
        lab.keep = false; // from here on, dropping `lab` removes what was built
        for ns in &all {
            run_checked(Command::new("ip").args(["netns", "add", ns]))?;
            in_namespace(ns, || {
                std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0")
            })??;
        }
        // Both pairs are created inside the namespaces: nothing appears in the root one.
        for (a, b) in [(&lab.client, &lab.router), (&lab.router_server_side, &lab.server)] {
            run_checked(Command::new("ip").args([
                "-n", &a.ns, "link", "add", a.iface, "type", "veth", "peer", "name", b.iface,
                "netns", &b.ns,
            ]))?;
        }
        for end in [&lab.client, &lab.server] {
            // xdp_router's frames leave the router by XDP_REDIRECT and land in the
            // XDP receive path of the veth peer, which (as for XDP_TX, see Lab::up)
            // exists only while that end has an XDP program of its own: this
            // pass-everything one. Without it every forwarded frame vanishes.
            in_namespace(&end.ns, || attach_xdp_pass(end.iface))??;
            // XDP forwards a frame as its sender wrote it: a TCP or UDP checksum
            // that the sender's kernel left to "hardware" (veth's checksum offload)
            // would reach the other side unfinished and be dropped there. With TX
            // checksum offload off, the client and the server finish their own.
            in_namespace(&end.ns, || tx_checksum_off(end.iface))??;
        }
        let hosts = [&lab.client, &lab.router, &lab.router_server_side, &lab.server];
        for h in hosts {
            let ip = |args: &[&str]| run_checked(Command::new("ip").args(["-n", &h.ns]).args(args));
            ip(&["addr", "add", &format!("{}/24", h.ipv4), "dev", h.iface])?;
            ip(&["addr", "add", &format!("{}/64", h.ipv6), "dev", h.iface, "nodad"])?;
            ip(&["link", "set", "lo", "up"])?;
            ip(&["link", "set", h.iface, "up"])?;
        }
        for (h, via) in [(&lab.client, &lab.router), (&lab.server, &lab.router_server_side)] {
            let ip = |args: &[&str]| run_checked(Command::new("ip").args(["-n", &h.ns]).args(args));
            ip(&["route", "add", "default", "via", &via.ipv4.to_string()])?;
            ip(&["-6", "route", "add", "default", "via", &via.ipv6.to_string()])?;
        }
        // The router forwards: the kernel's switch, which bpf_fib_lookup() obeys too.
        lab.router.sysctl("net/ipv4/ip_forward", "1")?;
        lab.router.sysctl("net/ipv6/conf/all/forwarding", "1")?;
        for h in hosts {
            wait_until_up(h)?;
        }
        // The router's neighbour table, filled now: one ping each way. Without an
        // entry bpf_fib_lookup() answers NO_NEIGH and the packet goes to the kernel,
        // which resolves the neighbour only on its own forwarding path (a firewall
        // that drops forwarded packets stops that too).
        for to in [&lab.client, &lab.server] {
            for addr in [to.ipv4.to_string(), to.ipv6.to_string()] {
                lab.router
                    .run(&["ping", "-c", "1", "-W", "2", "-q", &addr])
                    .with_context(|| format!("the router cannot reach {addr}"))?;
            }
        }
        Ok(lab)
    }

    /// The kernel's forwarding off in the firewall (or back on): an nftables
    /// forward chain on the router that drops every packet. Only XDP, which runs
    /// before netfilter, can then get a packet across.
    pub fn drop_forwarded(&self, drop: bool) -> Result<()> {
        let script = if drop {
            "table inet ebpfws_router { chain forward { type filter hook forward priority 0; policy drop; }; }"
        } else {
            "delete table inet ebpfws_router"
        };
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.router.ns, "nft", script]);
        run_checked(&mut cmd).context("nftables (`nft`, package nftables) is needed")?;
        Ok(())
    }

    /// Remove lab `name`: deleting the namespaces deletes the veth pairs and every
    /// program attached. Missing parts are fine.
    pub fn down(name: &str) -> Result<()> {
        delete_namespaces(&RouterLab::namespaces(name))
    }

    /// Leave the lab in place when this value is dropped (for `make lab-router`).
    pub fn keep(mut self) {
        self.keep = true;
    }
}

impl Drop for RouterLab {
    fn drop(&mut self) {
        if !self.keep {
            if let Err(e) = RouterLab::down(&self.name) {
                eprintln!("removing lab {}: {e:#}", self.name);
            }
        }
    }
}

/// Delete these namespaces, those that exist: their veth ends and every program
/// attached to them go with them.
fn delete_namespaces(names: &[String]) -> Result<()> {
    for ns in names {
        if std::path::Path::new(NETNS_DIR).join(ns).exists() {
            run_checked(Command::new("ip").args(["netns", "del", ns]))?;
        }
    }
    Ok(())
}
