//! net_events in the lab: kernel events per ping, answered three ways.

mod common;

use std::time::Duration;

use common::*;
use ebpf_workshop_dev::lab::Lab;
use nix::sys::signal::Signal;

const PINGS: u32 = 5;

/// Count the server's net events while the client pings it PINGS times.
fn server_events_for_pings(lab: &Lab) -> u64 {
    let (client, server) = (&lab.client, &lab.server);
    let ping_cmd = [
        "ip",
        "netns",
        "exec",
        &client.ns,
        "ping",
        "-c",
        "5",
        "-i",
        "0.2",
        "-W",
        "1",
        "-q",
        &server.ipv4.to_string(),
    ];
    let mut args = vec!["--interval", "0", "--netns", &server.ns, "--"];
    args.extend(ping_cmd);
    let end = run_to_end("net_events", &args);
    assert!(end.status.success(), "{end:?}");
    assert!(end.stdout.contains(&format!("{PINGS} received")), "ping failed:\n{}", end.stdout);
    let all = end.stdout.lines().find_map(|l| l.strip_prefix("all")).expect("totals row");
    all.trim().parse().unwrap()
}

#[test]
fn a_ping_answered_by_xdp_costs_the_server_fewer_kernel_events() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    // Neighbour entries pinned, so that no ARP probe is counted as ping traffic
    // (under emulation, test-kernels, an entry can go stale between the runs).
    pin_neighbours(client, server);
    pin_neighbours(server, client);
    assert_eq!(ping(client, server.ipv4, 1), 1);

    let by_kernel = server_events_for_pings(&lab);
    // Each ping is received and its reply sent: at least one event each way.
    assert!(by_kernel >= 2 * PINGS as u64, "kernel reply: {by_kernel} events");

    server.kernel_echo_reply(false).unwrap();
    let mut example = run_in(server, "xdp_pingpong", &[server.iface]);
    example.wait_attached();
    let by_xdp = server_events_for_pings(&lab);
    example.stop(Signal::SIGINT, Duration::from_secs(2));

    let mut example = run_in(server, "tc_pingpong", &[server.iface]);
    example.wait_attached();
    let by_tc = server_events_for_pings(&lab);
    example.stop(Signal::SIGINT, Duration::from_secs(2));

    eprintln!("server net events for {PINGS} pings: kernel {by_kernel}, tc {by_tc}, xdp {by_xdp}");
    assert!(by_xdp < by_kernel, "xdp {by_xdp} vs kernel {by_kernel}");
    // The kernel never builds a packet for a ping XDP answers: less than one event
    // per ping (a neighbour probe could still show up).
    assert!(by_xdp < PINGS as u64, "xdp: {by_xdp} events for {PINGS} pings");
    assert!(by_xdp < by_tc, "xdp {by_xdp} vs tc {by_tc}");
}

/// A permanent neighbour entry on `host` for `peer`'s IPv4 address.
fn pin_neighbours(host: &ebpf_workshop_dev::lab::Host, peer: &ebpf_workshop_dev::lab::Host) {
    let mac = peer.run(&["cat", &format!("/sys/class/net/{}/address", peer.iface)]).unwrap();
    let mac = String::from_utf8_lossy(&mac.stdout).trim().to_string();
    let ip = peer.ipv4.to_string();
    host.run(&[
        "ip",
        "neigh",
        "replace",
        &ip,
        "lladdr",
        &mac,
        "dev",
        host.iface,
        "nud",
        "permanent",
    ])
    .unwrap();
}

#[test]
fn the_interface_filter_sees_only_its_interface() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    // A second, idle veth pair in the server namespace, up.
    server.run(&["ip", "link", "add", "idle0", "type", "veth", "peer", "name", "idle1"]).unwrap();
    server.run(&["ip", "link", "set", "idle0", "up"]).unwrap();
    let ping_cmd = [
        "ip",
        "netns",
        "exec",
        &client.ns,
        "ping",
        "-c",
        "2",
        "-i",
        "0.2",
        "-q",
        &server.ipv4.to_string(),
    ];
    for (iface, expect_events) in [(server.iface, true), ("idle0", false)] {
        let mut args = vec!["--interval", "0", "--netns", &server.ns, "--iface", iface, "--"];
        args.extend(ping_cmd);
        let end = run_to_end("net_events", &args);
        assert!(end.status.success(), "{end:?}");
        let all: u64 =
            end.stdout.lines().find_map(|l| l.strip_prefix("all")).unwrap().trim().parse().unwrap();
        assert_eq!(all > 0, expect_events, "{iface}: {all} events\n{}", end.stdout);
    }
}

/// An interface of another namespace: the message names both flags, and the
/// command it suggests works.
#[test]
fn an_interface_in_another_namespace_gets_a_command_that_works() {
    let lab = common::lab();
    let server = &lab.server;
    let end = run_to_end("net_events", &["--iface", server.iface, "--interval", "0"]);
    assert!(!end.status.success());
    // Other labs may exist meanwhile: then the message lists every namespace.
    let hint = format!("--netns {} --iface {}", server.ns, server.iface);
    let named = end.stderr.contains(&format!("add `{hint}`"))
        || (end.stderr.contains(&server.ns)
            && end.stderr.contains(&format!("add `--netns NAME --iface {}`", server.iface)));
    assert!(named, "{}", end.stderr);

    let mut args: Vec<&str> = hint.split(' ').collect();
    args.extend(["--interval", "0", "--", "ip", "netns", "exec", &lab.client.ns, "ping"]);
    let target = server.ipv4.to_string();
    args.extend(["-c", "1", "-q", &target]);
    let end = run_to_end("net_events", &args);
    assert!(end.status.success(), "the suggested command failed: {end:?}");
    assert!(end.stdout.contains("totals:"), "{}", end.stdout);
}
