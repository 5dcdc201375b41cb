//! Every example, fed bad input or run where it cannot work: one clear sentence on
//! stderr (no stack trace, even with RUST_BACKTRACE=1), a non-zero exit, no panic,
//! no libbpf noise first, and nothing attached.

mod common;

use std::time::Duration;

use common::*;
use ebpf_workshop::kprobe_fallback::kprobes_missing;

/// How a case is run: as root in the lab's server namespace, as root in the root
/// namespace (the lab interface is then elsewhere), or as an unprivileged user.
#[derive(Clone, Copy, Debug)]
enum Where {
    Server,
    Root,
    Nobody,
}

struct Case {
    example: &'static str,
    args: &'static [&'static str],
    run: Where,
    /// A phrase the one sentence must contain.
    says: &'static str,
}

const fn case(
    example: &'static str,
    args: &'static [&'static str],
    run: Where,
    says: &'static str,
) -> Case {
    Case { example, args, run, says }
}

const PACKET_EXAMPLES: [&str; 5] = ["xdp", "xdp_pingpong", "tc", "tc_pingpong", "socket_filter"];

fn cases() -> Vec<Case> {
    use Where::*;
    let mut v = vec![
        case("hello", &["--attach", "uprobe"], Root, "possible values: auto, kprobe, tracepoint"),
        case("hello", &["--bogus"], Root, "unexpected argument '--bogus'"),
        case("tcpconnect", &["--port", "0"], Root, "--port"),
        case("tcpconnect", &["--port", "http"], Root, "invalid value 'http'"),
        case("tcpconnect", &["--pid", "0"], Root, "--pid"),
        case(
            "net_events",
            &["--netns", "no-such-ns"],
            Root,
            "network namespace no-such-ns not found",
        ),
        case("net_events", &["--iface", "eth9"], Root, "interface eth9 not found"),
        case("net_events", &["--interval", "soon"], Root, "invalid value 'soon'"),
        case(
            "tc",
            &["veth-server", "--attach", "bpfilter"],
            Server,
            "possible values: auto, tcx, netlink",
        ),
        // The lab's server end carries the default route in these cases (see below):
        // what could cut the connection is refused (tests/guard.rs: the rest runs).
        case("tc", &["veth-server", "--drop-all"], Server, "default route"),
        case("solution_tc_drop_port", &["veth-server", "--port", "22"], Server, "--force"),
    ];
    if kprobes_missing().is_some() {
        v.push(case("hello", &["--attach", "kprobe"], Root, "CONFIG_KPROBES"));
        v.push(case("tcpconnect", &["--attach", "kprobe"], Root, "CONFIG_KPROBES"));
    }
    for ex in PACKET_EXAMPLES {
        v.push(case(ex, &["eth9"], Server, "interface eth9 not found: `ip link`"));
        v.push(case(ex, &["lo"], Server, "loopback"));
        v.push(case(ex, &["down0"], Server, "is down: bring it up"));
        v.push(case(ex, &["veth-server"], Root, "sudo ip netns exec"));
        v.push(case(ex, &[], Server, "required arguments were not provided"));
        v.push(case(ex, &["veth-server"], Nobody, "needs root"));
    }
    for ex in ["hello", "tcpconnect", "net_events"] {
        v.push(case(ex, &[], Nobody, "needs root"));
    }
    v
}

#[test]
fn bad_input_gets_one_clear_sentence_a_nonzero_exit_and_leaves_nothing() {
    let lab = lab();
    let server = &lab.server;
    // A second veth pair inside the server namespace, left down.
    server.run(&["ip", "link", "add", "down0", "type", "veth", "peer", "name", "down1"]).unwrap();
    // A default route through the lab's server end: for the --force cases. It lives
    // in the lab namespace only.
    server.run(&["ip", "route", "add", "default", "via", &lab.client.ipv4.to_string()]).unwrap();

    let mut failures = Vec::new();
    for c in cases() {
        let path = example_path(c.example);
        let mut cmd = match c.run {
            Where::Server => {
                let mut cmd = server.cmd(&path);
                cmd.args(c.args);
                cmd
            }
            Where::Root => {
                let mut cmd = std::process::Command::new(&path);
                cmd.args(c.args);
                cmd
            }
            Where::Nobody => {
                let mut cmd = as_nobody(&path);
                cmd.args(c.args);
                cmd
            }
        };
        // As many Rust users have it exported: still one sentence, no stack trace.
        cmd.env("RUST_BACKTRACE", "1");
        let end = spawn(cmd).wait(Duration::from_secs(20));
        let first_line = end.stderr.lines().next().unwrap_or("");
        let ok = !end.status.success()
            && end.stderr.contains(c.says)
            && !end.stderr.contains("panicked")
            && !end.stderr.to_lowercase().contains("backtrace")
            && end.stderr.lines().count() <= 6 // clap's: error, usage, a hint
            && !first_line.starts_with("libbpf:");
        if !ok {
            failures.push(format!(
                "{} {:?} ({:?}): {:?}\n{}",
                c.example, c.args, c.run, end.status, end.stderr
            ));
        }
        if xdp_on(server).is_some() || tc_ingress_on(server) != (0, String::new()) {
            failures.push(format!("{} {:?} left a program attached", c.example, c.args));
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn force_overrides_the_default_route_guard() {
    let lab = lab();
    let server = &lab.server;
    server.run(&["ip", "route", "add", "default", "via", &lab.client.ipv4.to_string()]).unwrap();
    let mut example = run_in(server, "tc", &[server.iface, "--drop-all", "--force"]);
    example.wait_attached();
    assert_eq!(ping(&lab.client, server.ipv4, 1), 0);
}

#[test]
fn a_killed_tracing_example_leaves_no_program_loaded() {
    let mut hello = run_example("hello", &[]);
    hello.wait_attached();
    let ids = bpf_prog_ids(hello.pid());
    hello.stop(nix::sys::signal::Signal::SIGKILL, Duration::from_secs(2));
    assert_unloaded(&ids);
}
