//! The xdp example in the lab: counting, reporting and dropping pings.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// The numbers of the last "totals" line: icmp, tcp, udp, other.
fn last_totals(stdout: &str) -> Option<[u64; 4]> {
    let line = stdout.lines().rev().find(|l| l.contains(" totals "))?;
    let n: Vec<u64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    n.try_into().ok()
}

#[test]
fn counts_rise_for_icmp_and_tcp_and_pings_are_reported() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    let tcp = echo_server(server);
    let mut example = run_in(server, "xdp", &[server.iface]);
    example.wait_attached();
    assert_eq!(ping(client, server.ipv4, 2), 2, "xdp passes pings by default");
    assert!(tcp_exchange(client, tcp, b"hi").is_some());
    example.wait_for_line(Duration::from_secs(5), "totals with icmp>=2 and tcp>=1", |l| {
        last_totals(&format!("{l}\n")).is_some_and(|[icmp, tcp, ..]| icmp >= 2 && tcp >= 1)
    });
    let end = example.stop(Signal::SIGINT, Duration::from_secs(2));
    let seen = end
        .stdout
        .lines()
        .filter(|l| l.contains(" seen ") && l.contains(&format!(" {} ", client.ipv4)))
        .count();
    assert_eq!(seen, 2, "one report per ping:\n{}", end.stdout);
    assert_eq!(xdp_on(server), None);
}

#[test]
fn drop_pings_stops_pings_but_not_tcp() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    let tcp = echo_server(server);
    let mut example = run_in(server, "xdp", &[server.iface, "--drop-pings"]);
    example.wait_attached();
    assert_eq!(ping(client, server.ipv4, 2), 0, "IPv4 pings must be dropped");
    assert_eq!(ping(client, server.ipv6, 2), 0, "IPv6 pings must be dropped");
    assert_eq!(
        tcp_exchange(client, tcp, b"hi").as_deref(),
        Some(&b"hi"[..]),
        "TCP must still get through"
    );
    let end = example.stop(Signal::SIGTERM, Duration::from_secs(2));
    assert_eq!(end.stdout.lines().filter(|l| l.contains(" dropped ")).count(), 4, "{}", end.stdout);
    assert_eq!(xdp_on(server), None);
    assert_eq!(ping(client, server.ipv4, 1), 1, "pings work again after exit");
}

/// An XDP example run twice on one interface: the second says to stop the first
/// (whose bpf_link nothing else can remove), not to detach it by hand.
#[test]
fn a_second_run_on_the_same_interface_says_to_stop_the_first() {
    let lab = lab();
    let server = &lab.server;
    let mut first = run_in(server, "xdp", &[server.iface]);
    first.wait_attached();
    let end = run_in(server, "xdp_pingpong", &[server.iface]).wait(Duration::from_secs(20));
    assert!(!end.status.success());
    assert!(end.stderr.contains("already has an XDP program"), "{}", end.stderr);
    assert!(end.stderr.contains("stop it (Ctrl-C)"), "{}", end.stderr);
    assert!(!end.stderr.contains("xdp off"), "suggests a command that fails: {}", end.stderr);
    // --replace cannot take a bpf_link either, and says so.
    let end =
        run_in(server, "xdp_pingpong", &[server.iface, "--replace"]).wait(Duration::from_secs(20));
    assert!(!end.status.success());
    assert!(end.stderr.contains("stop that process first"), "{}", end.stderr);
    first.stop(Signal::SIGINT, Duration::from_secs(2));
}
