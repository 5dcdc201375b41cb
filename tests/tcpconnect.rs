//! tcpconnect, run as a user would: real connections on loopback.

mod common;

use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// Connect to `addr` from a thread named `comm`: the kernel reports the thread's
/// name as the command, and this process's id as the pid.
fn connect_as(comm: &str, addr: std::net::SocketAddr) -> u16 {
    thread::Builder::new()
        .name(comm.into())
        .spawn(move || TcpStream::connect(addr).unwrap().local_addr().unwrap().port())
        .unwrap()
        .join()
        .unwrap()
}

/// Both hooks this kernel has: the tracepoint always, the talk's kprobes when the
/// kernel has kprobes. Their RESULT for a completed connection differs.
fn hooks() -> Vec<(&'static str, &'static str)> {
    let mut v = vec![("tracepoint", "ok")];
    if ebpf_workshop::kprobe_fallback::kprobes_missing().is_none() {
        v.push(("kprobe", "sent"));
    }
    v
}

#[test]
fn reports_v4_and_v6_connections_with_ports_addresses_and_comm() {
    for (hook, result) in hooks() {
        reports_connections(hook, result);
    }
}

fn reports_connections(hook: &str, result: &str) {
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let v6 = TcpListener::bind("[::1]:0").unwrap();
    let pid = std::process::id().to_string();
    let mut tool = run_example("tcpconnect", &["--attach", hook, "--pid", &pid]);
    tool.wait_attached();
    for (listener, ip) in [(&v4, "4"), (&v6, "6")] {
        let to = listener.local_addr().unwrap();
        let from_port = connect_as("tcpc-test", to);
        let line = tool.wait_for(&format!(" {to} "), Duration::from_secs(10));
        // TIME PID COMM IP SOURCE DESTINATION RESULT
        let cols: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cols[1], std::process::id().to_string(), "{line}");
        assert_eq!(cols[2], "tcpc-test", "{line}");
        assert_eq!(cols[3], ip, "{line}");
        assert_eq!(cols[4], format!("{}:{from_port}", to.ip()).replace("::1:", "[::1]:"), "{line}");
        assert_eq!(cols[6], result, "{hook}: {line}");
    }
    let ids = bpf_prog_ids(tool.pid());
    let end = tool.stop(Signal::SIGTERM, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    assert_unloaded(&ids);
}

#[test]
fn port_filter_runs_in_the_kernel_and_drops_other_ports() {
    let wanted = TcpListener::bind("127.0.0.1:0").unwrap();
    let other = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = wanted.local_addr().unwrap().port().to_string();
    let mut tool = run_example("tcpconnect", &["--port", &port]);
    // By default: the talk's kprobes where the kernel has them, else the tracepoint.
    let attached = tool.wait_for("attached:", Duration::from_secs(20));
    let expected = match ebpf_workshop::kprobe_fallback::kprobes_missing() {
        None => "attached: kprobes on tcp_v4_connect/tcp_v6_connect",
        Some(_) => "attached: tracepoint sock:inet_sock_set_state",
    };
    assert_eq!(attached, expected);
    connect_as("tcpc-other", other.local_addr().unwrap());
    connect_as("tcpc-wanted", wanted.local_addr().unwrap());
    tool.wait_for("tcpc-wanted", Duration::from_secs(10));
    let end = tool.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(!end.stdout.contains("tcpc-other"), "filtered port shown:\n{}", end.stdout);
    assert!(end.stderr.contains("1 connection seen"), "{}", end.stderr);
}

#[test]
fn refused_connection_is_reported_as_such() {
    // Bind then close: nothing listens on this port now.
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    // The tracepoint sees how the handshake ended (the kprobe only that a SYN went out).
    let mut tool =
        run_example("tcpconnect", &["--attach", "tracepoint", "--port", &addr.port().to_string()]);
    tool.wait_attached();
    thread::Builder::new()
        .name("tcpc-refused".into())
        .spawn(move || assert!(TcpStream::connect(addr).is_err()))
        .unwrap()
        .join()
        .unwrap();
    let line = tool.wait_for("tcpc-refused", Duration::from_secs(10));
    assert!(line.ends_with("ECONNREFUSED"), "{line}");
}

#[test]
fn port_zero_is_refused_with_a_clear_message() {
    let end = run_to_end("tcpconnect", &["--port", "0"]);
    assert_eq!(end.status.code(), Some(2));
    assert!(end.stderr.contains("--port"), "{}", end.stderr);
}
