//! socket_filter in the lab: TCP copies reach user space, pings only as reports,
//! and the traffic itself is untouched.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

#[test]
fn tcp_packets_are_copied_pings_are_reported_traffic_is_untouched() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    let tcp = echo_server(server);
    let mut example = run_in(server, "socket_filter", &[server.iface]);
    example.wait_attached();

    assert_eq!(ping(client, server.ipv4, 2), 2, "pings still answered by the kernel");
    assert_eq!(ping(client, server.ipv6, 1), 1);
    assert_eq!(
        tcp_exchange(client, tcp, b"hello").as_deref(),
        Some(&b"hello"[..]),
        "the exchange completes"
    );
    let syn = example.wait_for(&format!("{tcp}"), Duration::from_secs(5));
    assert!(syn.contains(" tcp ") && syn.contains("SYN"), "{syn}");

    let end = example.stop(Signal::SIGINT, Duration::from_secs(2));
    let tcp_lines = end.stdout.lines().filter(|l| l.contains(" tcp ")).count();
    assert!(tcp_lines >= 6, "handshake, data both ways, teardown:\n{}", end.stdout);
    assert!(
        end.stdout.lines().filter(|l| l.contains(" tcp ")).all(|l| l.contains(&tcp.to_string())),
        "{}",
        end.stdout
    );
    // Every frame the socket received was a TCP line: no ICMP copy reached user space.
    assert!(end.stderr.contains(&format!("{tcp_lines} TCP packets copied")), "{}", end.stderr);
    let pings: Vec<&str> = end.stdout.lines().filter(|l| l.contains(" ping ")).collect();
    assert_eq!(pings.len(), 3, "{}", end.stdout);
    assert!(pings.iter().all(|l| l.contains("seq")), "{pings:?}");
}
