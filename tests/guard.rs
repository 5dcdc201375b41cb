//! The default-route guard refuses only what can cut the user's connection (tc
//! --drop-all, a dropped TCP port), and sees through stacked devices: a bridge
//! port, or the lower device of a macvlan, carries the default route when the
//! device on top of it does. Answering or dropping pings runs there, with a note.
//! Each case is built in a network namespace of its own (nothing here touches this
//! machine's interfaces); bond and VLAN drivers may be missing, a
//! bridge and a macvlan show the same kernel links (`upper_*`, `master`).

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// A network namespace with a veth pair a0/a1 inside; removed on drop.
struct Netns(String);

impl Netns {
    fn new() -> Netns {
        let ns = Netns(unique("ebpfws-g"));
        ns.ip(&["netns", "add", &ns.0]);
        ns.ip(&["-n", &ns.0, "link", "add", "a0", "type", "veth", "peer", "name", "a1"]);
        for dev in ["lo", "a0", "a1"] {
            ns.ip(&["-n", &ns.0, "link", "set", dev, "up"]);
        }
        ns
    }

    /// `ip ARGS`, which must succeed.
    fn ip(&self, args: &[&str]) {
        let out = Command::new("ip").args(args).output().unwrap();
        assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `ip -n <ns> ARGS`.
    fn ip_in(&self, args: &[&str]) {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        self.ip(&all);
    }

    /// Run example `name` in the namespace until it exits or says "attached".
    fn run(&self, name: &str, args: &[&str]) -> Running {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.0]).arg(example_path(name)).args(args);
        spawn(cmd)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// `example args` in `ns` must refuse, naming `device` and --force.
fn assert_refused(ns: &Netns, example: &str, args: &[&str], device: &str) {
    let end = ns.run(example, args).wait(Duration::from_secs(20));
    assert!(!end.status.success(), "{example} {args:?} was not refused:\n{}", end.stderr);
    assert!(end.stderr.contains("default route"), "{}", end.stderr);
    assert!(end.stderr.contains(device), "should name {device}: {}", end.stderr);
    assert!(end.stderr.contains("--force"), "{}", end.stderr);
}

#[test]
fn a_bridge_port_under_the_default_route_is_guarded() {
    let ns = Netns::new();
    ns.ip_in(&["link", "add", "br0", "type", "bridge"]);
    ns.ip_in(&["link", "set", "a0", "master", "br0"]);
    ns.ip_in(&["link", "set", "br0", "up"]);
    ns.ip_in(&["addr", "add", "10.99.0.1/24", "dev", "br0"]);
    ns.ip_in(&["route", "add", "default", "via", "10.99.0.254", "dev", "br0"]);

    // What can cut the connection is refused, on the device and on its port.
    assert_refused(&ns, "tc", &["br0", "--drop-all"], "br0");
    assert_refused(&ns, "tc", &["a0", "--drop-all"], "br0");
    assert_refused(&ns, "solution_tc_drop_port", &["a0", "--port", "2222"], "br0");
    let lb = ["br0", "--vip", "10.99.0.1", "--backend", "10.99.0.2"];
    assert_refused(&ns, "xdp_lb", &lb, "br0");
    assert_refused(&ns, "xdp_router", &["a1", "a0"], "br0"); // it skips the firewall
                                                             // Answering or dropping pings cannot: it runs, and says in one line what it does.
    for (example, args) in [
        ("xdp_pingpong", &["a0"][..]),
        ("tc_pingpong", &["a0"][..]),
        ("xdp", &["a0", "--drop-pings"][..]),
        ("xdp", &["a0"][..]),
        ("tc", &["a0"][..]),
    ] {
        let mut run = ns.run(example, args);
        run.wait_attached();
        let end = run.stop(Signal::SIGINT, Duration::from_secs(2));
        assert!(end.status.success(), "{example} {args:?}: {end:?}");
        assert!(
            end.stderr.contains("note: br0 carries this machine's default route"),
            "{example} {args:?} should say what it does there: {}",
            end.stderr
        );
    }
    // An interface outside the stack has no note, and --force is the way to mean it.
    let mut other = ns.run("tc", &["a1", "--drop-all"]);
    other.wait_attached();
    assert!(!other.stop(Signal::SIGINT, Duration::from_secs(2)).stderr.contains("default route"));
    let mut forced = ns.run("tc", &["a0", "--drop-all", "--force"]);
    forced.wait_attached();
    let end = forced.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
}

#[test]
fn the_lower_device_of_a_macvlan_with_the_ipv6_default_route_is_guarded() {
    let ns = Netns::new();
    ns.ip_in(&["link", "add", "m0", "link", "a1", "type", "macvlan", "mode", "bridge"]);
    ns.ip_in(&["link", "set", "m0", "up"]);
    ns.ip_in(&["addr", "add", "fd99::1/64", "dev", "m0", "nodad"]);
    ns.ip_in(&["-6", "route", "add", "default", "via", "fd99::fe", "dev", "m0"]);

    assert_refused(&ns, "tc", &["a1", "--drop-all"], "m0");
    assert_refused(&ns, "tc", &["m0", "--drop-all"], "m0");
}

/// The design card's command, as on a VM: `xdp_pingpong eth0` where eth0 carries
/// the default route. It answers the pings that come in over eth0 (the kernel's
/// own replies off), says so in one line, and leaves nothing attached.
#[test]
fn xdp_pingpong_answers_pings_on_a_default_route_eth0() {
    // "vm" has eth0 with the default route; "peer" pings it over the veth pair.
    let vm = Netns(unique("ebpfws-vm"));
    let peer = Netns(unique("ebpfws-pe"));
    for ns in [&vm, &peer] {
        ns.ip(&["netns", "add", &ns.0]);
    }
    vm.ip(&["-n", &vm.0, "link", "add", "eth0", "type", "veth", "peer", "name", "up0"]);
    vm.ip(&["-n", &vm.0, "link", "set", "up0", "netns", &peer.0]);
    vm.ip_in(&["addr", "add", "10.98.0.2/24", "dev", "eth0"]);
    peer.ip_in(&["addr", "add", "10.98.0.1/24", "dev", "up0"]);
    for (ns, dev) in [(&vm, "eth0"), (&vm, "lo"), (&peer, "up0"), (&peer, "lo")] {
        ns.ip_in(&["link", "set", dev, "up"]);
    }
    vm.ip_in(&["route", "add", "default", "via", "10.98.0.1", "dev", "eth0"]);
    // On veth, XDP_TX frames reach a peer that has an XDP program of its own.
    let mut pass = peer.run("xdp", &["up0", "--quiet"]);
    pass.wait_attached();
    let sysctl = |v: &str| {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &vm.0,
                "sysctl",
                "-q",
                &format!("net.ipv4.icmp_echo_ignore_all={v}"),
            ])
            .output()
            .unwrap();
        assert!(out.status.success());
    };
    sysctl("1");
    let pings = || {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &peer.0,
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                "10.98.0.2",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("3 received")
    };
    assert!(!pings(), "the vm's kernel still answers: the test would prove nothing");

    let mut example = vm.run("xdp_pingpong", &["eth0"]);
    example.wait_attached();
    assert!(pings(), "xdp_pingpong should answer on eth0");
    let end = example.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    assert!(
        end.stderr.contains("note: eth0 carries this machine's default route"),
        "{}",
        end.stderr
    );
    assert!(end.stderr.contains("replied 3"), "{}", end.stderr);
    assert!(!pings(), "answers after the example exited");
    // tc --drop-all there is still refused.
    assert_refused(&vm, "tc", &["eth0", "--drop-all"], "eth0");
    pass.stop(Signal::SIGINT, Duration::from_secs(2));
}
