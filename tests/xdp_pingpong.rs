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
    assert!(end.took < scaled(Duration::from_secs(1)), "Ctrl-C took {:?}", end.took);
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

/// The program submits reports without waking the reader (bpf/include/wakeup.h);
/// the reader still shows each ping within a second of it being sent.
#[test]
fn reports_arrive_promptly_without_a_wakeup_per_packet() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    server.kernel_echo_reply(false).unwrap();
    let mut example = run_in(server, "xdp_pingpong", &[server.iface]);
    example.wait_attached();
    let sent = std::time::Instant::now();
    let mut pinger = client
        .cmd("ping")
        .args(["-c", "5", "-i", "0.2", "-n", &server.ipv4.to_string()])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for seq in 1..=5u32 {
        // ping sends request `seq` about 0.2 s after the one before it.
        let due = Duration::from_millis(200) * (seq - 1) + scaled(Duration::from_secs(1));
        let left = due.saturating_sub(sent.elapsed());
        let row = example.wait_for_line(left, &format!("answered row for seq {seq}"), |l| {
            l.contains(" answered ") && l.split_whitespace().last() == Some(&seq.to_string())
        });
        assert!(sent.elapsed() <= due, "seq {seq} shown after {:?}: {row}", sent.elapsed());
    }
    pinger.wait().unwrap();
    example.stop(Signal::SIGINT, Duration::from_secs(2));
}

/// A burst larger than the ring buffer while the reader is stopped: every answered
/// ping is either shown or counted as lost, exactly.
#[test]
fn a_burst_that_fills_the_ring_reports_the_exact_loss() {
    const BURST: u64 = 30_000; // the 1 MiB ring holds 16,384 reports
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    server.kernel_echo_reply(false).unwrap();
    let mut example = run_in(server, "xdp_pingpong", &[server.iface]);
    example.wait_attached();
    let pid = nix::unistd::Pid::from_raw(example.pid() as i32);
    nix::sys::signal::kill(pid, Signal::SIGSTOP).unwrap(); // the reader reads nothing
    let out = client
        .cmd("ping")
        .args(["-f", "-c", &BURST.to_string(), "-n", &server.ipv4.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    nix::sys::signal::kill(pid, Signal::SIGCONT).unwrap();
    let end = example.stop(Signal::SIGINT, Duration::from_secs(10));
    assert!(end.status.success(), "{end:?}");
    let rows = end.stdout.lines().filter(|l| l.contains(" answered ")).count() as u64;
    let summary = end.stderr.lines().find(|l| l.contains("events lost")).expect("summary");
    let lost: u64 = summary.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert!(end.stderr.contains(&format!("replied {BURST}")), "{}", end.stderr);
    assert!(lost > 0, "the burst should overflow the ring: {summary}");
    assert_eq!(rows + lost, BURST, "shown {rows} + lost {lost}: {summary}");
    assert!(summary.starts_with(&format!("{rows} pings seen")), "{summary}");
}
