//! The tc example in the lab: pings dropped at ingress, TCP untouched; TCX and the
//! netlink fallback both clean up, and the fallback spares a qdisc it did not make.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

#[test]
fn drops_pings_but_not_tcp_and_detaches_on_exit() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    let tcp = echo_server(server);
    let mut example = run_in(server, "tc", &[server.iface]);
    let line = example.wait_for("attached", Duration::from_secs(20));
    if tcx_supported() {
        assert!(line.contains("TCX link"), "this kernel has TCX: {line}");
        assert_eq!(tc_ingress_on(server).0, 1);
    } else {
        assert!(line.contains("netlink filter"), "no TCX here: the fallback must say so: {line}");
    }
    assert_eq!(ping(client, server.ipv4, 2), 0, "IPv4 pings must be dropped");
    assert_eq!(ping(client, server.ipv6, 2), 0, "IPv6 pings must be dropped");
    assert_eq!(
        tcp_exchange(client, tcp, b"hello").as_deref(),
        Some(&b"hello"[..]),
        "TCP must pass"
    );
    let end = example.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    assert!(end.took < scaled(Duration::from_secs(1)), "Ctrl-C took {:?}", end.took);
    assert_eq!(end.stdout.lines().filter(|l| l.contains(" dropped ")).count(), 4, "{}", end.stdout);
    assert_eq!(tc_ingress_on(server), (0, String::new()), "left attached");
    assert_eq!(ping(client, server.ipv4, 1), 1);
}

#[test]
fn drop_all_stops_tcp_too() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    let tcp = echo_server(server);
    let mut example = run_in(server, "tc", &[server.iface, "--drop-all"]);
    example.wait_attached();
    assert_eq!(ping(client, server.ipv4, 1), 0);
    assert_eq!(tcp_exchange(client, tcp, b"hello"), None, "TCP must be dropped too");
    example.stop(Signal::SIGKILL, Duration::from_secs(2));
    if !tcx_supported() {
        return; // the netlink fallback's SIGKILL story is the --cleanup test's
    }
    // TCX is a bpf_link: the kernel detaches it when the killed process's fds close.
    eventually("TCX program gone after SIGKILL", || tc_ingress_on(server).0 == 0);
    // Neighbour entries may have gone stale while everything was dropped: allow a retry.
    eventually("TCP works again", || tcp_exchange(client, tcp, b"again").is_some());
}

#[test]
fn netlink_fallback_keeps_a_clsact_qdisc_that_was_there_before() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    std::process::Command::new("tc")
        .args(["-n", &server.ns, "qdisc", "add", "dev", server.iface, "clsact"])
        .status()
        .unwrap();
    let mut example = run_in(server, "tc", &[server.iface, "--attach", "netlink"]);
    let line = example.wait_for("attached", Duration::from_secs(20));
    assert!(line.contains("netlink filter"), "{line}");
    assert!(tc_ingress_on(server).1.contains("tc_ingress"), "filter not visible to tc");
    assert_eq!(ping(client, server.ipv4, 1), 0);
    let end = example.stop(Signal::SIGTERM, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    assert_eq!(tc_ingress_on(server).1, "", "our filter must be gone");
    assert!(qdiscs_on(server).contains("clsact"), "the qdisc we did not create must stay");
}

#[test]
fn netlink_fallback_removes_its_own_qdisc_and_cleanup_mends_a_killed_run() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    let mut example = run_in(server, "tc", &[server.iface, "--attach", "netlink"]);
    example.wait_attached();
    example.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(!qdiscs_on(server).contains("clsact"), "the qdisc we created must go");

    // A killed netlink run leaves its filter: the next run says so, --cleanup mends it.
    let mut example = run_in(server, "tc", &[server.iface, "--attach", "netlink"]);
    example.wait_attached();
    example.stop(Signal::SIGKILL, Duration::from_secs(2));
    assert!(tc_ingress_on(server).1.contains("tc_ingress"));
    assert_eq!(ping(client, server.ipv4, 1), 0, "the leftover still drops pings");
    let end = run_in(server, "tc", &[server.iface]).wait(Duration::from_secs(20));
    assert!(!end.status.success());
    assert!(end.stderr.contains("--cleanup"), "{}", end.stderr);
    let end = run_in(server, "tc", &[server.iface, "--cleanup"]).wait(Duration::from_secs(20));
    assert!(end.status.success(), "{end:?}");
    assert!(end.stdout.contains("removed"), "{}", end.stdout);
    assert_eq!(tc_ingress_on(server).1, "");
    assert_eq!(ping(client, server.ipv4, 1), 1);
}

/// Two TC programs on one interface: the second is refused with the first named
/// (TCX or netlink), unless --stack; then it runs after the first.
#[test]
fn a_second_tc_program_is_refused_unless_stacked() {
    let lab = lab();
    let server = &lab.server;
    let apis: &[&str] = if tcx_supported() { &["tcx", "netlink"] } else { &["netlink"] };
    for api in apis {
        let mut first = run_in(server, "tc", &[server.iface, "--attach", api]);
        first.wait_attached();
        let end = run_in(server, "tc_pingpong", &[server.iface]).wait(Duration::from_secs(20));
        assert!(!end.status.success(), "the second program was not refused ({api})");
        let kind = if *api == "tcx" { "TCX link" } else { "netlink filter" };
        assert!(
            end.stderr.contains("already has TC ingress programs: tc_ingress (id "),
            "{}",
            end.stderr
        );
        assert!(end.stderr.contains(kind), "{api}: {}", end.stderr);
        if *api == "netlink" {
            // Both would need the workshop's one netlink filter handle: no --stack.
            first.stop(Signal::SIGINT, Duration::from_secs(2));
            continue;
        }
        assert!(end.stderr.contains("--stack"), "{}", end.stderr);

        let mut second = run_in(server, "tc_pingpong", &[server.iface, "--stack"]);
        second.wait_attached();
        second.stop(Signal::SIGINT, Duration::from_secs(2));
        first.stop(Signal::SIGINT, Duration::from_secs(2));
        assert_eq!(tc_ingress_on(server), (0, String::new()), "{api}: left attached");
    }
}

/// --cleanup is for a killed run's filter: it leaves a running example's alone.
#[test]
fn cleanup_leaves_a_running_examples_filter_alone() {
    let lab = lab();
    let server = &lab.server;
    let mut running = run_in(server, "tc", &[server.iface, "--attach", "netlink"]);
    running.wait_attached();
    let end = run_in(server, "tc", &[server.iface, "--cleanup"]).wait(Duration::from_secs(20));
    assert!(!end.status.success(), "{end:?}");
    assert!(end.stderr.contains("belongs to a running example"), "{}", end.stderr);
    assert!(tc_ingress_on(server).1.contains("tc_ingress"), "the running filter was removed");
    let end = running.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    assert_eq!(tc_ingress_on(server), (0, String::new()));
}
