//! The exercise solutions, run as a user would: the packet ones in their own lab,
//! connect latency on loopback. Each checks the effect, not just the output.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use common::*;
use ebpf_workshop_dev::lab::Host;
use nix::sys::signal::Signal;

/// The `SOURCE PINGS` rows of the last table printed (the one at exit).
fn final_table(stdout: &str) -> Vec<(String, u64)> {
    let last = stdout.rsplit_once("at exit:").map_or("", |(_, t)| t);
    last.lines()
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            let (source, count) = (cols.next()?, cols.next()?.parse().ok()?);
            Some((source.to_string(), count))
        })
        .collect()
}

#[test]
fn ping_counter_counts_pings_per_source_and_passes_them() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    let mut example = run_in(server, "solution_ping_counter", &[server.iface]);
    example.wait_attached();
    // The kernel still answers: the program only counts.
    assert_eq!(ping(client, server.ipv4, 3), 3, "IPv4 pings must pass");
    assert_eq!(ping(client, server.ipv6, 2), 2, "IPv6 pings must pass");
    // The periodic table shows the counts within about a second.
    let v4 = client.ipv4.to_string();
    example.wait_for_line(Duration::from_secs(3), "a periodic row for the client", |l| {
        l.split_whitespace().collect::<Vec<_>>() == [v4.as_str(), "3"]
    });

    let ids = bpf_prog_ids(example.pid());
    let end = example.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    assert_eq!(final_table(&end.stdout), [(v4, 3), (client.ipv6.to_string(), 2)], "{}", end.stdout);
    assert!(end.stderr.contains("5 pings from 2 sources"), "{}", end.stderr);
    assert_eq!(xdp_on(server), None, "XDP program left on {}", server.iface);
    assert_unloaded(&ids);
}

#[test]
fn pingpong_one_address_answers_only_its_address() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    let other = "10.77.0.3";
    server.run(&["ip", "addr", "add", "10.77.0.3/24", "dev", server.iface]).unwrap();
    server.kernel_echo_reply(false).unwrap();
    let allowed = server.ipv4.to_string();
    let mut example =
        run_in(server, "solution_pingpong_one_address", &[server.iface, "--only", &allowed]);
    example.wait_attached();

    assert_eq!(ping(client, server.ipv4, 3), 3, "answers from XDP");
    assert_eq!(ping(client, other, 1), 0, "another address answered by XDP");
    // That ping went to the kernel: with its replies back on, it answers.
    server.kernel_echo_reply(true).unwrap();
    assert_eq!(ping(client, other, 1), 1, "other pings must reach the kernel");

    let ids = bpf_prog_ids(example.pid());
    let end = example.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    let answered: Vec<&str> = end.stdout.lines().filter(|l| l.contains(" answered ")).collect();
    assert_eq!(answered.len(), 3, "{}", end.stdout);
    assert!(answered.iter().all(|l| l.contains(&format!(" {allowed} "))), "{}", end.stdout);
    assert!(end.stderr.contains("replied 3,"), "{}", end.stderr);
    assert_eq!(xdp_on(server), None, "XDP program left on {}", server.iface);
    assert_unloaded(&ids);
}

/// Like `echo_server`, on a port of our choosing.
fn echo_server_on(server: &Host, port: u16) -> SocketAddr {
    let addr = SocketAddr::new(server.ipv4.into(), port);
    let listener = ebpf_workshop::netns::in_namespace(&server.ns, || TcpListener::bind(addr))
        .unwrap()
        .unwrap_or_else(|e| panic!("binding {addr} in {}: {e}", server.ns));
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 64];
            if let Ok(n) = conn.read(&mut buf) {
                let _ = conn.write_all(&buf[..n]);
            }
        }
    });
    addr
}

#[test]
fn tc_drop_port_drops_tcp_to_its_port_only() {
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    let blocked = echo_server_on(server, 80); // the default --port
    let open = echo_server_on(server, 8081);
    assert!(
        tcp_exchange(client, blocked, b"before").is_some(),
        "port 80 must work before the program runs"
    );

    let mut example = run_in(server, "solution_tc_drop_port", &[server.iface]);
    example.wait_attached();
    assert_eq!(
        tcp_exchange(client, open, b"open").as_deref(),
        Some(&b"open"[..]),
        "another port must still work"
    );
    assert_eq!(tcp_exchange(client, blocked, b"blocked"), None, "port 80 must be dropped");
    assert_eq!(ping(client, server.ipv4, 1), 1, "pings must still pass");

    let ids = bpf_prog_ids(example.pid());
    let end = example.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    let to_blocked = format!(" {blocked} ");
    assert!(
        end.stdout.lines().any(|l| l.contains(&to_blocked) && l.ends_with("SYN")),
        "no dropped SYN to {blocked} listed:\n{}",
        end.stdout
    );
    assert!(!end.stdout.contains(":8081"), "{}", end.stdout);
    assert!(end.stderr.contains("dropped segments seen"), "{}", end.stderr);
    assert_eq!(tc_ingress_on(server).0, 0, "TCX program left");
    assert_unloaded(&ids);
}

#[test]
fn connect_latency_reports_a_positive_latency_per_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = listener.local_addr().unwrap();
    let mut tool =
        run_example("solution_connect_latency", &["--pid", &std::process::id().to_string()]);
    tool.wait_attached();
    let from_port = thread::Builder::new()
        .name("conlat-test".into())
        .spawn(move || TcpStream::connect(to).unwrap().local_addr().unwrap().port())
        .unwrap()
        .join()
        .unwrap();

    let line = tool.wait_for("conlat-test", Duration::from_secs(10));
    // TIME PID COMM IP SOURCE DESTINATION LAT(us) RESULT
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols.len(), 8, "{line}");
    assert_eq!(cols[1], std::process::id().to_string(), "{line}");
    assert_eq!(cols[3], "4", "{line}");
    assert_eq!(cols[4], format!("127.0.0.1:{from_port}"), "{line}");
    assert_eq!(cols[5], to.to_string(), "{line}");
    let latency_us: f64 = cols[6].parse().unwrap();
    assert!(latency_us > 0.0 && latency_us < 1_000_000.0, "{line}");
    assert_eq!(cols[7], "ok", "{line}");

    let ids = bpf_prog_ids(tool.pid());
    let end = tool.stop(Signal::SIGTERM, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    // Exactly one row for our thread. (Other tests in this process may connect
    // too, with the same pid: only the thread name singles ours out.)
    assert_eq!(end.stdout.matches("conlat-test").count(), 1, "{}", end.stdout);
    assert_unloaded(&ids);
}
