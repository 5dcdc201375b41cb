//! A flood of 100,000 pings (IPv4, then 100,000 IPv6) through each pingpong example
//! in the lab: every one answered, the example still running, losses reported.
//! The client's kernel validates each reply's checksum before ping counts it, so
//! "received" means "received and valid".

mod common;

use std::time::Duration;

use common::*;
use ebpf_workshop_dev::lab::Host;
use nix::sys::signal::Signal;

const FLOOD: u32 = 100_000;

/// `ping -f -c FLOOD`: how many valid replies came back.
fn flood(from: &Host, to: impl std::fmt::Display) -> u32 {
    let out = from
        .cmd("ping")
        .args(["-f", "-q", "-c", &FLOOD.to_string(), "-W", "1", &to.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split(", ").find_map(|p| p.strip_suffix(" received")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("unexpected ping output: {text}"))
}

fn flood_through(example: &str) {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    server.kernel_echo_reply(false).unwrap();
    let mut running = run_in(server, example, &[server.iface]);
    running.wait_attached();
    assert_eq!(flood(client, server.ipv4), FLOOD, "{example}: IPv4 flood");
    assert_eq!(flood(client, server.ipv6), FLOOD, "{example}: IPv6 flood");
    let end = running.stop(Signal::SIGINT, Duration::from_secs(30));
    assert!(
        end.status.success(),
        "{example} did not survive the flood: {:?}\n{}",
        end.status,
        end.stderr
    );
    assert!(end.stderr.contains(&format!("replied {}", 2 * FLOOD)), "{}", end.stderr);
    let summary = end.stderr.lines().find(|l| l.contains("events lost")).expect("loss report");
    eprintln!("{example}: {summary}");
}

#[test]
fn xdp_pingpong_answers_a_flood() {
    flood_through("xdp_pingpong");
}

#[test]
fn tc_pingpong_answers_a_flood() {
    flood_through("tc_pingpong");
}
