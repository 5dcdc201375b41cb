//! xdp_pingpong in the lab: the server kernel's own echo replies are off, so every
//! answer the client gets comes from the XDP program.

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

#[test]
fn answers_pings_over_ipv4_and_ipv6_instead_of_the_kernel() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    server.kernel_echo_reply(false).unwrap();
    assert_eq!(
        ping(client, server.ipv4, 1),
        0,
        "the kernel still answers: the test would prove nothing"
    );
    assert_eq!(ping(client, server.ipv6, 1), 0, "the kernel still answers over IPv6");

    let mut example = run_in(server, "xdp_pingpong", &[server.iface]);
    example.wait_attached();
    assert_eq!(ping(client, server.ipv4, 5), 5, "IPv4 answers from XDP");
    assert_eq!(ping(client, server.ipv6, 5), 5, "IPv6 answers from XDP");

    let ids = bpf_prog_ids(example.pid());
    let end = example.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    assert!(end.took < Duration::from_secs(1), "Ctrl-C took {:?}", end.took);
    let answered: Vec<&str> = end.stdout.lines().filter(|l| l.contains(" answered ")).collect();
    assert_eq!(
        answered.iter().filter(|l| l.contains(&format!(" {} ", server.ipv4))).count(),
        5,
        "{}",
        end.stdout
    );
    assert_eq!(
        answered.iter().filter(|l| l.contains(&format!(" {} ", server.ipv6))).count(),
        5,
        "{}",
        end.stdout
    );
    assert!(end.stderr.contains("replied 10"), "{}", end.stderr);

    assert_eq!(xdp_on(server), None, "XDP program left on {}", server.iface);
    assert_unloaded(&ids);
    assert_eq!(ping(client, server.ipv4, 1), 0, "pings answered after the example exited");
}

#[test]
fn sigkill_leaves_nothing_attached() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    server.kernel_echo_reply(false).unwrap();
    let mut example = run_in(server, "xdp_pingpong", &[server.iface]);
    example.wait_attached();
    assert!(xdp_on(server).is_some());
    assert_eq!(ping(client, server.ipv4, 1), 1);
    example.stop(Signal::SIGKILL, Duration::from_secs(2));
    // The bpf_link dies with the process's last file descriptor.
    eventually("XDP program gone after SIGKILL", || xdp_on(server).is_none());
    assert_eq!(ping(client, server.ipv4, 1), 0);
}

#[test]
fn an_interface_with_xdp_already_is_refused_unless_replace() {
    let lab = lab();
    let client = &lab.client; // carries the lab's XDP pass program
    let existing = xdp_on(client).expect("the lab's pass program");
    let end = run_in(client, "xdp_pingpong", &[client.iface]).wait(Duration::from_secs(20));
    assert!(!end.status.success());
    assert!(
        end.stderr.contains(&format!("already has an XDP program (id {existing})")),
        "{}",
        end.stderr
    );
    assert!(end.stderr.contains("--replace"), "{}", end.stderr);
    assert_eq!(xdp_on(client), Some(existing), "the refused run must leave the old program");

    let mut example = run_in(client, "xdp_pingpong", &[client.iface, "--replace"]);
    example.wait_attached();
    assert_ne!(xdp_on(client), Some(existing));
    example.stop(Signal::SIGTERM, Duration::from_secs(2));
}
