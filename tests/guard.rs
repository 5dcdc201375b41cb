//! The default-route guard sees through stacked devices: a bridge port, or the lower
//! device of a macvlan, carries the default route when the device on top of it
//! does. Each case is built in a network namespace of its own (nothing here
//! touches this machine's interfaces); bond and VLAN drivers may be missing, a
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

    assert_refused(&ns, "xdp_pingpong", &["br0"], "br0");
    assert_refused(&ns, "xdp_pingpong", &["a0"], "br0");
    assert_refused(&ns, "tc", &["a0"], "br0");
    assert_refused(&ns, "tc_pingpong", &["a0"], "br0");
    assert_refused(&ns, "xdp", &["a0", "--drop-pings"], "br0");
    // Watching is harmless, and so is an interface outside the stack.
    let mut watch = ns.run("xdp", &["a0"]);
    watch.wait_attached();
    watch.stop(Signal::SIGINT, Duration::from_secs(2));
    let mut other = ns.run("tc", &["a1"]);
    other.wait_attached();
    other.stop(Signal::SIGINT, Duration::from_secs(2));
    // --force is the way to mean it.
    let mut forced = ns.run("xdp_pingpong", &["a0", "--force"]);
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
    assert_refused(&ns, "xdp_pingpong", &["a1"], "m0");
    assert_refused(&ns, "tc_pingpong", &["m0"], "m0");
}
