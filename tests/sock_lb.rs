//! sock_lb in the load-balancer lab: clients in the cgroup (and in the lab's client
//! namespace) connect to a service address that no host owns and are answered by
//! the backends; getpeername() says the service; `remove` on stdin moves new
//! connections; a process outside the cgroup is not balanced; nothing stays
//! attached after Ctrl-C or SIGKILL; bad input gets one sentence. The hooks cannot
//! run under BPF_PROG_TEST_RUN: every test is end to end.
//!
//! The clients are this test binary again (the `client` test below, which does
//! nothing unless SOCK_LB_CLIENT is set), started inside the cgroup.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::*;
use ebpf_workshop::netns::in_namespace;
use ebpf_workshop_dev::lab::{answered_by, serve_name, LbLab, LB_PORT, LB_SERVICE, LB_SERVICE6};
use nix::sys::signal::Signal;

const EXAMPLE: &str = "sock_lb";

/// A fresh load-balancer lab, each backend answering "served by b1"/"b2" on IPv4
/// and IPv6 (one dual-stack listener bound inside the backend's namespace).
fn lb_lab() -> LbLab {
    let lab = LbLab::up(&unique("ebpflb-t")).expect("building the load-balancer lab");
    for (b, name) in lab.backends.iter().zip(["b1", "b2"]) {
        let listener =
            in_namespace(&b.ns, || std::net::TcpListener::bind(("::", LB_PORT))).unwrap().unwrap();
        std::thread::spawn(move || serve_name(listener, name));
    }
    lab
}

fn service() -> SocketAddr {
    SocketAddr::new(LB_SERVICE.into(), LB_PORT)
}

/// sock_lb's arguments for `vip` and the lab's two backends (of the same family).
fn args(lab: &LbLab, vip: SocketAddr, cg: &str) -> Vec<String> {
    let mut args = vec!["--vip".to_string(), vip.to_string(), "--cgroup".into(), cg.into()];
    for b in &lab.backends {
        let ip: IpAddr = if vip.is_ipv4() { b.ipv4.into() } else { b.ipv6.into() };
        args.extend(["--backend".to_string(), SocketAddr::new(ip, LB_PORT).to_string()]);
    }
    args
}

/// The command that runs `n` connections to `to` from namespace `ns`: this test
/// binary, as the `client` test.
fn client_cmd(ns: &str, to: SocketAddr, n: usize) -> Vec<String> {
    let exe = std::env::current_exe().unwrap().to_string_lossy().to_string();
    ["ip", "netns", "exec", ns, &exe, "client", "--exact", "--nocapture", "--test-threads=1"]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("SOCK_LB_CLIENT={to},{n}")])
        .collect()
}

/// `n` connections from a process inside the cgroup at `cg` (which must exist),
/// in `ns`: for each, who answered and what getpeername() said.
fn connect_from(cg: &Path, ns: &str, to: SocketAddr, n: usize) -> Vec<String> {
    let argv = client_cmd(ns, to, n);
    let (env, argv) = argv.split_last().unwrap();
    let (k, v) = env.split_once('=').unwrap();
    let procs = std::fs::OpenOptions::new().write(true).open(cg.join("cgroup.procs")).unwrap();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..]).env(k, v);
    // SAFETY: write(2) between fork and exec, on a file opened before the fork.
    unsafe {
        cmd.pre_exec(move || nix::unistd::write(&procs, b"0").map(drop).map_err(Into::into));
    }
    let out = spawn(cmd).wait(scaled(Duration::from_secs(30)));
    assert!(out.status.success(), "the client failed: {out:?}");
    client_lines(&out.stdout)
}

/// The client's lines: "b1 10.78.0.100:8080" (backend, peer) or "error ...".
fn client_lines(stdout: &str) -> Vec<String> {
    stdout.lines().filter_map(|l| l.strip_prefix("client: ")).map(str::to_string).collect()
}

/// The client (run by the tests above inside the cgroup; a no-op otherwise).
#[test]
fn client() {
    let Ok(spec) = std::env::var("SOCK_LB_CLIENT") else { return };
    let (to, n) = spec.split_once(',').unwrap();
    let (to, n): (SocketAddr, usize) = (to.parse().unwrap(), n.parse().unwrap());
    println!(); // after libtest's "test client ... "
    for _ in 0..n {
        let once = || -> Result<String, String> {
            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
                .map_err(|e| format!("connect: {e}"))?;
            let peer = s.peer_addr().map_err(|e| format!("getpeername: {e}"))?;
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            s.write_all(b"hi\n").map_err(|e| format!("write: {e}"))?;
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).map_err(|e| format!("read: {e}"))?;
            let name = answered_by(&answer).ok_or("an incomplete answer")?;
            Ok(format!("{name} {peer}"))
        };
        match once() {
            Ok(line) => println!("client: {line}"),
            Err(e) => println!("client: error {e}"),
        }
    }
}

fn count(lines: &[String], what: &str) -> usize {
    lines.iter().filter(|l| l.as_str() == what).count()
}

#[test]
fn two_hundred_connections_all_answered_balanced_and_the_service_seen() {
    let lab = lb_lab();
    let cg = TestCgroup::new("socklb");
    let mut argv = args(&lab, service(), &cg.name);
    argv.push("--run".into());
    argv.push("--".into());
    let client = client_cmd(&lab.client.ns, service(), 200);
    let (env, client) = client.split_last().unwrap();
    argv.extend(client.iter().cloned());
    let mut cmd = Command::new(example_path(EXAMPLE));
    cmd.args(&argv).env(env.split_once('=').unwrap().0, env.split_once('=').unwrap().1);
    let end = spawn(cmd).wait(scaled(Duration::from_secs(40)));
    assert!(end.status.success(), "{end:?}");
    let lines = client_lines(&end.stdout);
    let (b1, b2) = (count(&lines, "b1 10.78.0.100:8080"), count(&lines, "b2 10.78.0.100:8080"));
    let other: Vec<_> = lines.iter().filter(|l| !l.ends_with(" 10.78.0.100:8080")).collect();
    assert_eq!(b1 + b2, 200, "answered, getpeername the service; not: {other:?}\n{}", end.stderr);
    assert!((70..=130).contains(&b1), "unbalanced: b1 {b1}, b2 {b2}");
    // One report per connection, by the client's process (its pid where the
    // kernel gives the hook one, 6.1+), and the summary agrees with the clients.
    let reports = end.stdout.lines().filter(|l| l.ends_with(":8080") && !l.starts_with("client"));
    assert_eq!(reports.count(), 200, "one report per connection");
    assert!(
        end.stderr.contains(&format!("connections: 10.78.0.11:8080 {b1} "))
            && end.stderr.contains(&format!("10.78.0.12:8080 {b2} ")),
        "{}",
        end.stderr
    );
    assert!(end.stderr.contains("removed cgroup"), "{}", end.stderr);
    assert!(!cg.path.exists());
}

#[test]
fn ipv6_is_balanced_too_and_getpeername_says_the_service() {
    let lab = lb_lab();
    let cg = TestCgroup::new("socklb");
    std::fs::create_dir(&cg.path).unwrap(); // an existing cgroup: used, not removed
    let vip = SocketAddr::new(LB_SERVICE6.into(), LB_PORT);
    let argv = args(&lab, vip, cg.path.to_str().unwrap());
    let mut lb = run_example(EXAMPLE, &argv.iter().map(String::as_str).collect::<Vec<_>>());
    lb.wait_attached();
    let lines = connect_from(&cg.path, &lab.client.ns, vip, 20);
    let peer = format!("{vip}");
    let (b1, b2) = (count(&lines, &format!("b1 {peer}")), count(&lines, &format!("b2 {peer}")));
    assert!(b1 + b2 == 20 && b1 > 0 && b2 > 0, "{lines:?}");
    // A connection straight to a backend is the application's own: untouched.
    let direct = SocketAddr::new(lab.backends[0].ipv6.into(), LB_PORT);
    let lines = connect_from(&cg.path, &lab.client.ns, direct, 1);
    assert_eq!(lines, [format!("b1 {direct}")]);
    let end = lb.stop(Signal::SIGINT, Duration::from_secs(5));
    assert!(end.status.success() && end.stderr.contains("(existing)"), "{end:?}");
    assert!(cg.path.is_dir(), "an existing cgroup was removed");
}

#[test]
fn removing_a_backend_sends_new_connections_to_the_others() {
    let lab = lb_lab();
    let cg = TestCgroup::new("socklb");
    std::fs::create_dir(&cg.path).unwrap();
    let fifo = std::env::temp_dir().join(format!("{}.stdin", cg.name));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut cmd = Command::new("sh");
    let script = format!("exec \"$0\" \"$@\" < '{}'", fifo.display());
    cmd.args(["-c", &script]).arg(example_path(EXAMPLE)).args(args(
        &lab,
        service(),
        cg.path.to_str().unwrap(),
    ));
    let mut lb = spawn(cmd);
    let mut commands = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
    std::fs::remove_file(&fifo).unwrap();
    lb.wait_attached();

    let before = connect_from(&cg.path, &lab.client.ns, service(), 20);
    assert!(count(&before, "b2 10.78.0.100:8080") > 0, "{before:?}");
    writeln!(commands, "remove 10.78.0.12:8080").unwrap();
    lb.wait_for("remove 10.78.0.12:8080", Duration::from_secs(5));
    let after = connect_from(&cg.path, &lab.client.ns, service(), 40);
    assert_eq!(count(&after, "b1 10.78.0.100:8080"), 40, "{after:?}");

    // No backend left: connect() is refused at once (EPERM), and counted.
    writeln!(commands, "remove 10.78.0.11:8080").unwrap();
    lb.wait_for("remove 10.78.0.11:8080", Duration::from_secs(5));
    let none = connect_from(&cg.path, &lab.client.ns, service(), 1);
    assert!(none[0].contains("Operation not permitted"), "{none:?}");
    writeln!(commands, "add 10.78.0.12:8080").unwrap();
    lb.wait_for("add 10.78.0.12:8080", Duration::from_secs(5));
    let back = connect_from(&cg.path, &lab.client.ns, service(), 4);
    assert_eq!(count(&back, "b2 10.78.0.100:8080"), 4, "{back:?}");
    let end = lb.stop(Signal::SIGINT, Duration::from_secs(5));
    assert!(end.stderr.contains("refused (no live backend): 1;"), "{}", end.stderr);
}

#[test]
fn a_process_outside_the_cgroup_is_not_balanced_and_nothing_stays_attached() {
    let lab = lb_lab();
    for sig in [Signal::SIGINT, Signal::SIGKILL] {
        let cg = TestCgroup::new("socklb");
        let argv = args(&lab, service(), &cg.name);
        let mut lb = run_example(EXAMPLE, &argv.iter().map(String::as_str).collect::<Vec<_>>());
        lb.wait_attached();
        let ids = bpf_prog_ids(lb.pid());
        let inside = connect_from(&cg.path, &lab.client.ns, service(), 2);
        assert!(inside.iter().all(|l| l.ends_with(" 10.78.0.100:8080")), "{inside:?}");
        // This test process is in another cgroup, in the same namespace: its
        // connect() goes to the service address as asked, which no host answers.
        let outside = in_namespace(&lab.client.ns, || {
            TcpStream::connect_timeout(&service(), Duration::from_millis(1500))
        })
        .unwrap();
        assert!(outside.is_err(), "an unbalanced connect() to nobody's address succeeded");
        let end = lb.stop(sig, Duration::from_secs(5));
        assert_unloaded(&ids);
        if sig == Signal::SIGINT {
            assert!(end.status.success() && !cg.path.exists(), "{end:?}");
        } else {
            // Killed: the links went with the process, the created cgroup stayed.
            assert!(cg.path.is_dir());
            let again = run_to_end(EXAMPLE, &argv.iter().map(String::as_str).collect::<Vec<_>>());
            assert!(again.stderr.contains("remove it with --cleanup"), "{again:?}");
            let clean = run_to_end(EXAMPLE, &["--cgroup", &cg.name, "--cleanup"]);
            assert!(clean.status.success() && !cg.path.exists(), "{clean:?}");
        }
    }
}

#[test]
fn bad_input_gets_one_clear_sentence_and_creates_nothing() {
    let cg = TestCgroup::new("socklb");
    let name = cg.name.as_str();
    let v1 = "/sys/fs/cgroup/pids";
    let in_v1 = format!("{v1}/{name}");
    let b = ["--backend", "10.78.0.11:8080"];
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--vip", "10.78.0.100:8080", "--cgroup", name],
            "required arguments were not provided",
        ),
        (vec!["--vip", "10.78.0.300:8080", b[0], b[1]], "10.78.0.300:8080 is not ADDR:PORT"),
        (vec!["--vip", "10.78.0.100", b[0], b[1]], "10.78.0.100 is not ADDR:PORT"),
        (
            vec!["--vip", "[fd78::100]:8080", b[0], b[1], "--cgroup", name],
            "different address families",
        ),
        (vec!["--vip", "10.78.0.100:8080", b[0], b[1], "--cgroup", "../x"], "is not a cgroup name"),
    ];
    let is_v1 = nix::sys::statfs::statfs(v1)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP_SUPER_MAGIC);
    if is_v1 {
        cases.push((
            vec!["--vip", "10.78.0.100:8080", b[0], b[1], "--cgroup", &in_v1],
            "is in a cgroup v1 hierarchy",
        ));
    }
    let mut failures = Vec::new();
    for (args, says) in &cases {
        let end = run_to_end(EXAMPLE, args);
        let ok = !end.status.success()
            && end.stderr.contains(says)
            && !end.stderr.contains("panicked")
            && !end.stderr.starts_with("libbpf:");
        if !ok {
            failures.push(format!("{args:?}: {end:?}"));
        }
        if cg.path.exists() || Path::new(&in_v1).exists() {
            failures.push(format!("{args:?} left a cgroup"));
        }
    }
    assert!(failures.is_empty(), "{} cases failed:\n{}", failures.len(), failures.join("\n"));

    let mut cmd = as_nobody(&example_path(EXAMPLE));
    cmd.args(["--vip", "10.78.0.100:8080", b[0], b[1], "--cgroup", name]);
    let end = spawn(cmd).wait(Duration::from_secs(20));
    assert!(!end.status.success() && end.stderr.contains("needs root"), "{end:?}");
    assert!(!cg.path.exists());
}
