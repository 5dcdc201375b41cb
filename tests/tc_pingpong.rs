//! tc_pingpong in the lab: with the server kernel's replies off, answers come from TC.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

#[test]
fn answers_pings_over_ipv4_and_ipv6_and_stops_after_exit() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    server.kernel_echo_reply(false).unwrap();
    assert_eq!(ping(client, server.ipv4, 1), 0, "the kernel still answers");

    let mut example = run_in(server, "tc_pingpong", &[server.iface]);
    example.wait_attached();
    assert_eq!(ping(client, server.ipv4, 5), 5, "IPv4 answers from TC");
    assert_eq!(ping(client, server.ipv6, 5), 5, "IPv6 answers from TC");
    let ids = bpf_prog_ids(example.pid());
    let end = example.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    assert_eq!(
        end.stdout.lines().filter(|l| l.contains(" answered ")).count(),
        10,
        "{}",
        end.stdout
    );
    assert!(end.stderr.contains("replied 10"), "{}", end.stderr);
    assert_unloaded(&ids);
    assert_eq!(tc_ingress_on(server), (0, String::new()));
    assert_eq!(ping(client, server.ipv4, 1), 0, "answered after exit");
    assert_eq!(ping(client, server.ipv6, 1), 0, "answered after exit");
}

#[test]
fn works_through_the_netlink_fallback_too() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    server.kernel_echo_reply(false).unwrap();
    let mut example = run_in(server, "tc_pingpong", &[server.iface, "--attach", "netlink"]);
    let attached = example.wait_for("attached:", Duration::from_secs(20));
    assert!(attached.ends_with("(clsact qdisc + netlink filter)"), "{attached}");
    let (tcx, filters) = tc_ingress_on(server);
    assert_eq!(tcx, 0, "a TCX program was attached although netlink was asked for");
    assert!(filters.contains("tc_pingpong"), "no netlink filter: {filters}");
    assert_eq!(ping(client, server.ipv4, 3), 3);
    example.stop(Signal::SIGTERM, Duration::from_secs(2));
    assert_eq!(tc_ingress_on(server), (0, String::new()));
    assert!(!qdiscs_on(server).contains("clsact"));
}
