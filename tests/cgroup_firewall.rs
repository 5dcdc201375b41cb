//! cgroup_firewall in the lab: processes in the cgroup (started with `--run`, inside
//! the client namespace) lose what is denied; the same traffic from outside the
//! cgroup goes through. The life cycle: nothing attached and the created cgroup gone
//! after Ctrl-C, nothing attached after SIGKILL and `--cleanup` for its cgroup. The
//! verdicts on hand-made packets (BPF_PROG_TEST_RUN), and bad input.

mod common;

use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::skel::cgroup_firewall::types::{drop_event, drop_reason};
use common::skel::cgroup_firewall::CgroupFirewallSkelBuilder;
use common::*;
use ebpf_workshop::cgroup::record_path;
use ebpf_workshop_dev::frames::*;
use ebpf_workshop_dev::lab::Host;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use nix::sys::signal::Signal;

const EXAMPLE: &str = "cgroup_firewall";
const PASS: u32 = 1;
const DROP: u32 = 0;

/// How many programs are attached to the cgroup at `path` for `attach_type`.
fn attached(path: &Path, attach_type: libbpf_sys::bpf_attach_type) -> u32 {
    let dir = std::fs::File::open(path).unwrap();
    let mut opts: libbpf_sys::bpf_prog_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    let rc = unsafe { libbpf_sys::bpf_prog_query_opts(dir.as_raw_fd(), attach_type, &mut opts) };
    assert_eq!(rc, 0, "querying the programs on {}", path.display());
    unsafe { opts.__bindgen_anon_1.prog_cnt }
}

/// Start the example for `cg` with `args`, then `--run -- ip netns exec <client>
/// <command>`: the command runs inside the cgroup and the client's namespace.
fn run_inside(cg: &TestCgroup, client: &Host, args: &[&str], command: &[&str]) -> Running {
    let mut all = vec![cg.name.as_str()];
    all.extend(args);
    all.extend(["--run", "--", "ip", "netns", "exec", &client.ns]);
    all.extend(command);
    run_example(EXAMPLE, &all)
}

#[test]
fn a_denied_address_gets_no_answer_inside_the_cgroup_and_does_outside() {
    let lab = lab();
    for addr in [IpAddr::from(lab.server.ipv4), IpAddr::from(lab.server.ipv6)] {
        let cg = TestCgroup::new("cgfw");
        let to = addr.to_string();
        let ping = ["ping", "-c", "3", "-i", "0.3", "-W", "1", "-n", &to];
        let mut ex = run_inside(&cg, &lab.client, &["--deny", &to], &ping);
        ex.wait_attached();
        // While the cgroup's ping is refused, the same ping from outside it works.
        assert_eq!(common::ping(&lab.client, addr, 2), 2, "{addr}: from outside the cgroup");
        let end = ex.wait(Duration::from_secs(15));
        assert_eq!(end.status.code(), Some(1), "ping's exit code is the example's\n{end:?}");
        assert!(end.stdout.contains(" 0 received"), "{addr}: answered inside\n{end:?}");
        assert!(end.stderr.contains("dropped 3 (address 3, port 0, unreadable 0)"), "{end:?}");
        let rows = end.stdout.lines().filter(|l| l.contains(&format!("{to}/"))).count();
        assert_eq!(rows, 3, "one report per dropped ping\n{}", end.stdout);
        assert!(!cg.path.exists(), "the created cgroup was not removed");
    }
}

/// A TCP listener in the server namespace that answers "hi" to each connection.
fn listener(server: &Host, addr: IpAddr) -> SocketAddr {
    let l = ebpf_workshop::netns::in_namespace(&server.ns, || {
        TcpListener::bind(SocketAddr::new(addr, 0))
    })
    .unwrap()
    .unwrap();
    let bound = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in l.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut conn, b"hi");
        }
    });
    bound
}

#[test]
fn a_denied_port_refuses_tcp_inside_the_cgroup_and_allows_it_outside() {
    let lab = lab();
    for addr in [IpAddr::from(lab.server.ipv4), IpAddr::from(lab.server.ipv6)] {
        let cg = TestCgroup::new("cgfw");
        let to = listener(&lab.server, addr);
        let port = to.port().to_string();
        // bash's /dev/tcp connects; it prints only when the connection was made.
        let script = format!("exec 3<>/dev/tcp/{addr}/{port} && echo connected");
        let client = ["timeout", "3", "bash", "-c", &script];
        let mut ex = run_inside(&cg, &lab.client, &["--deny-port", &port], &client);
        ex.wait_attached();
        let outside = tcp_exchange_v(&lab.client, to);
        let end = ex.wait(Duration::from_secs(15));
        assert_eq!(outside.as_deref(), Some(&b"hi"[..]), "{to}: from outside the cgroup");
        assert!(!end.stdout.contains("connected"), "{to}: connected inside\n{end:?}");
        // The SYN is dropped and retransmitted: connect() waits, timeout ends it.
        assert_eq!(end.status.code(), Some(124), "{end:?}");
        let row = end.stdout.lines().find(|l| l.ends_with(&format!("port {port}")));
        let row = row.unwrap_or_else(|| panic!("no report of the drop\n{}", end.stdout));
        assert!(row.contains(&to.to_string()) && row.contains("tcp"), "{row}");
    }
}

/// Connect from `client`'s namespace and read what the listener says.
fn tcp_exchange_v(client: &Host, to: SocketAddr) -> Option<Vec<u8>> {
    use std::io::Read;
    ebpf_workshop::netns::in_namespace(&client.ns, || {
        let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut back = vec![0u8; 2];
        s.read_exact(&mut back).ok()?;
        Some(back)
    })
    .unwrap()
}

#[test]
fn ingress_drops_what_comes_from_a_denied_address() {
    let lab = lab();
    let cg = TestCgroup::new("cgfw");
    let to = lab.server.ipv4.to_string();
    let ping = ["ping", "-c", "2", "-i", "0.3", "-W", "1", "-n", &to];
    let args = ["--ingress", "--deny", &to];
    let end = run_inside(&cg, &lab.client, &args, &ping).wait(Duration::from_secs(15));
    assert!(end.stdout.contains(" 0 received"), "{end:?}");
    // The replies are dropped: they come from the denied address.
    let rows: Vec<&str> = end.stdout.lines().filter(|l| l.contains("icmp")).collect();
    assert_eq!(rows.len(), 2, "{}", end.stdout);
    assert!(rows[0].contains(&format!("{to} ")), "source first: {}", rows[0]);
}

#[test]
fn ctrl_c_detaches_and_removes_the_created_cgroup_but_keeps_an_existing_one() {
    // Created by the example: removed on exit, with the command it started.
    for run in [&[][..], &["--run", "--", "sleep", "30"][..]] {
        let cg = TestCgroup::new("cgfw");
        let mut args = vec![cg.name.as_str(), "--deny", "10.77.0.2"];
        args.extend(run);
        let mut ex = run_example(EXAMPLE, &args);
        ex.wait_attached();
        let ids = bpf_prog_ids(ex.pid());
        assert!(cg.path.is_dir() && record_path(&cg.path).exists());
        assert_eq!(attached(&cg.path, libbpf_sys::BPF_CGROUP_INET_EGRESS), 1);
        let end = ex.stop(Signal::SIGINT, Duration::from_secs(5));
        assert!(end.status.success() || !run.is_empty(), "{end:?}");
        assert!(end.stderr.contains("removed cgroup"), "{end:?}");
        assert!(!cg.path.exists(), "{} is still there", cg.path.display());
        assert!(!record_path(&cg.path).exists(), "the record of the cgroup stayed");
        assert_unloaded(&ids);
    }
    // Made by someone else (here, the test): used, and left as it was.
    let cg = TestCgroup::new("cgfw");
    std::fs::create_dir(&cg.path).unwrap();
    let path = cg.path.to_str().unwrap();
    let mut ex = run_example(EXAMPLE, &[path, "--ingress", "--deny-port", "53"]);
    ex.wait_attached();
    assert_eq!(attached(&cg.path, libbpf_sys::BPF_CGROUP_INET_INGRESS), 1);
    let end = ex.stop(Signal::SIGINT, Duration::from_secs(5));
    assert!(end.status.success() && end.stderr.contains("(existing;"), "{end:?}");
    assert!(cg.path.is_dir(), "an existing cgroup was removed");
    assert_eq!(attached(&cg.path, libbpf_sys::BPF_CGROUP_INET_INGRESS), 0);
}

#[test]
fn a_killed_run_leaves_nothing_attached_and_cleanup_removes_its_cgroup() {
    let cg = TestCgroup::new("cgfw");
    let name = cg.name.as_str();
    // With a command in the cgroup, which outlives the killed example (and must not
    // hold the test's pipes open).
    let sleep = ["sh", "-c", "exec sleep 60 >/dev/null 2>&1"];
    let mut args = vec![name, "--deny", "10.77.0.2", "--run", "--"];
    args.extend(sleep);
    let mut ex = run_example(EXAMPLE, &args);
    ex.wait_attached();
    let procs = cg.path.join("cgroup.procs");
    eventually("sleep is in the cgroup", || std::fs::read(&procs).is_ok_and(|p| !p.is_empty()));
    let ids = bpf_prog_ids(ex.pid());
    ex.stop(Signal::SIGKILL, Duration::from_secs(5));
    assert_unloaded(&ids);
    assert_eq!(attached(&cg.path, libbpf_sys::BPF_CGROUP_INET_EGRESS), 0, "a bpf_link stayed");
    assert!(cg.path.is_dir(), "nobody removed the killed run's cgroup");

    // A new run says what happened, and what to do.
    let again = run_to_end(EXAMPLE, &[name, "--deny", "10.77.0.2"]);
    assert!(!again.status.success() && again.stderr.contains("killed: remove it with --cleanup"));
    // --cleanup names the processes still in it, and removes it once they are gone.
    let busy = run_to_end(EXAMPLE, &[name, "--cleanup"]);
    let sleep = std::fs::read_to_string(cg.path.join("cgroup.procs")).unwrap();
    let sleep = sleep.trim();
    assert!(!busy.status.success(), "{busy:?}");
    assert!(busy.stderr.contains(&format!("still has processes in it (pids {sleep})")), "{busy:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(sleep.parse().unwrap()), Signal::SIGKILL)
        .unwrap();
    let done = run_to_end(EXAMPLE, &[name, "--cleanup"]);
    assert!(done.status.success() && done.stdout.contains("removed cgroup"), "{done:?}");
    assert!(!cg.path.exists() && !record_path(&cg.path).exists());
    let nothing = run_to_end(EXAMPLE, &[name, "--cleanup"]);
    assert!(nothing.status.success() && nothing.stdout.contains("nothing to clean up"));
}

// ---- the bypasses: extension headers, fragments, mapped addresses ---------------

/// Run from inside the cgroup: TCP connects and UDP sends to `port` at the server,
/// over IPv6 with a Hop-by-Hop options header, with a Destination options header
/// (8 bytes of padding each: what IPV6_HOPOPTS / IPV6_DSTOPTS add), as one UDP
/// datagram twice the MTU (sent in fragments), and to the IPv4-mapped IPv6
/// address (the kernel sends IPv4). One line per attempt: "NAME: RESULT".
const BYPASSES: &str = r#"
import errno, socket, sys
v6, v4, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
pad = bytes([0, 0, 1, 4, 0, 0, 0, 0])  # next header (the kernel's), length 0, PadN
kinds = {"hop": getattr(socket, "IPV6_HOPOPTS", 54), "dst": getattr(socket, "IPV6_DSTOPTS", 59)}
def sock(kind, type):
    s = socket.socket(socket.AF_INET6, type)
    if kind in kinds:
        s.setsockopt(socket.IPPROTO_IPV6, kinds[kind], pad)
    return s
def failed(e):
    return errno.errorcode.get(e.errno, type(e).__name__) if e.errno else type(e).__name__
def tcp(kind, host):
    s = sock(kind, socket.SOCK_STREAM)
    s.settimeout(2.5)
    try:
        s.connect((host, port))
        return "connected"
    except OSError as e:
        return failed(e)
def udp(kind, host, size):
    s = sock(kind, socket.SOCK_DGRAM)
    try:
        s.sendto(("udp-" + kind).encode().ljust(size, b"."), (host, port))
        return "sent"
    except OSError as e:
        return failed(e)
mapped = "::ffff:" + v4
for name, attempt in [
    ("tcp-hop", lambda: tcp("hop", v6)), ("tcp-dst", lambda: tcp("dst", v6)),
    ("tcp-mapped", lambda: tcp("mapped", mapped)),
    ("udp-hop", lambda: udp("hop", v6, 64)), ("udp-dst", lambda: udp("dst", v6, 64)),
    ("udp-frag", lambda: udp("frag", v6, 3000)), ("udp-mapped", lambda: udp("mapped", mapped, 64)),
]:
    print(name + ": " + attempt(), flush=True)
"#;

/// A dual-stack TCP listener and UDP socket on one port in the server's namespace:
/// the port, and what reached them (connections accepted, UDP datagrams by the
/// name at their start and their size).
fn servers(server: &Host) -> (u16, Arc<Mutex<Vec<String>>>) {
    use std::net::UdpSocket;
    let (tcp, udp) = ebpf_workshop::netns::in_namespace(&server.ns, || {
        let any = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0);
        let tcp = TcpListener::bind(any).unwrap();
        let port = tcp.local_addr().unwrap().port();
        let udp = UdpSocket::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port)).unwrap();
        (tcp, udp)
    })
    .unwrap();
    let port = tcp.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let got = seen.clone();
    std::thread::spawn(move || {
        for conn in tcp.incoming().flatten() {
            got.lock().unwrap().push(format!("tcp from {}", conn.peer_addr().unwrap()));
        }
    });
    let got = seen.clone();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n) = udp.recv(&mut buf) {
            let name = String::from_utf8_lossy(&buf[..n]).split('.').next().unwrap().to_string();
            got.lock().unwrap().push(format!("{name} {n} bytes"));
        }
    });
    (port, seen)
}

#[test]
fn extension_headers_fragments_and_mapped_addresses_do_not_get_past_a_denied_port() {
    let lab = lab();
    for denied in [true, false] {
        let cg = TestCgroup::new("cgfw");
        let (port, seen) = servers(&lab.server);
        let p = port.to_string();
        let (v6, v4) = (lab.server.ipv6.to_string(), lab.server.ipv4.to_string());
        let client = ["python3", "-c", BYPASSES, &v6, &v4, &p];
        // Without the port rule, a rule for an address nobody uses.
        let rules: &[&str] = if denied { &["--deny-port", &p] } else { &["--deny", "10.99.0.1"] };
        let end = run_inside(&cg, &lab.client, rules, &client).wait(Duration::from_secs(40));
        let results: Vec<&str> = end.stdout.lines().filter(|l| l.contains("-")).collect();
        let result = |name: &str| {
            let prefix = format!("{name}: ");
            let line = results.iter().find(|l| l.starts_with(&prefix));
            line.unwrap_or_else(|| panic!("no {name} in\n{end:?}"))[prefix.len()..].to_string()
        };
        std::thread::sleep(Duration::from_millis(300)); // the last datagram's way
        let seen = seen.lock().unwrap().clone();
        let udp_seen = |name: &str| seen.iter().any(|s| s.starts_with(&format!("{name} ")));
        for name in ["tcp-hop", "tcp-dst", "tcp-mapped"] {
            assert_eq!(result(name) == "connected", !denied, "{name}: {}\n{end:?}", result(name));
        }
        for name in ["udp-hop", "udp-dst", "udp-frag", "udp-mapped"] {
            assert_eq!(udp_seen(name), !denied, "{name}: the server saw {seen:?}\n{end:?}");
        }
        if !denied {
            assert!(seen.iter().any(|s| s == "udp-frag 3000 bytes"), "{seen:?}");
            assert!(end.stderr.contains("dropped 0 (address 0, port 0, unreadable 0)"), "{end:?}");
            continue;
        }
        assert_eq!(seen.iter().filter(|s| s.starts_with("tcp")).count(), 0, "{seen:?}");
        // Each attempt was reported as a port drop: v6 (behind its extension header,
        // or fragmented later) and v4 (the mapped address).
        let rows: Vec<&str> =
            end.stdout.lines().filter(|l| l.ends_with(&format!("port {p}"))).collect();
        for (proto, to) in [
            ("tcp", format!("[{v6}]:{p}")),
            ("udp", format!("[{v6}]:{p}")),
            ("tcp", format!("{v4}:{p}")),
            ("udp", format!("{v4}:{p}")),
        ] {
            assert!(
                rows.iter().any(|r| r.contains(&format!(" {proto} ")) && r.contains(&to)),
                "no {proto} drop to {to} reported\n{}",
                end.stdout
            );
        }
        assert!(end.stderr.contains("unreadable 0)"), "all were readable: {end:?}");
    }
}

// ---- the verdicts, on hand-made packets ------------------------------------------

/// Add `addr/len` as rule `rule` to the deny list of its family.
fn deny(
    skel: &common::skel::cgroup_firewall::CgroupFirewallSkel,
    addr: IpAddr,
    len: u32,
    rule: u32,
) {
    let (map, octets) = match addr {
        IpAddr::V4(a) => (&skel.maps.denied_v4, a.octets().to_vec()),
        IpAddr::V6(a) => (&skel.maps.denied_v6, a.octets().to_vec()),
    };
    let key = [len.to_ne_bytes().as_slice(), &octets].concat();
    map.update(&key, &rule.to_ne_bytes(), MapFlags::ANY).unwrap();
}

fn v4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let opts = Ipv4Opts { options: vec![], frag };
    ethernet(SERVER_MAC, CLIENT_MAC, None, ETH_P_IP, &ipv4(src, dst, proto, &opts, l4))
}

fn v6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, l4: &[u8]) -> Vec<u8> {
    ethernet(SERVER_MAC, CLIENT_MAC, None, ETH_P_IPV6, &ipv6(src, dst, next, l4))
}

#[test]
fn verdicts_on_hand_made_packets() {
    let mut storage = MaybeUninit::uninit();
    let skel = CgroupFirewallSkelBuilder::default().open(&mut storage).unwrap().load().unwrap();
    let ip4 = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    let ip6 = |s: &str| s.parse::<Ipv6Addr>().unwrap();
    deny(&skel, SERVER_V4.into(), 32, 0);
    deny(&skel, ip4("10.99.0.0").into(), 16, 1);
    deny(&skel, SERVER_V6.into(), 128, 2);
    deny(&skel, ip6("fd99::").into(), 32, 3);
    skel.maps.denied_ports.update(&8080u16.to_ne_bytes(), &[1], MapFlags::ANY).unwrap();

    let echo = icmp4_echo(ICMP_ECHO, 1, 1, &[0; 8]);
    let echo6 = |s, d| icmp6_echo(ICMPV6_ECHO_REQUEST, 1, 1, &[0; 8], s, d);
    let (c4, s4, c6, s6) = (CLIENT_V4, SERVER_V4, CLIENT_V6, SERVER_V6);
    let syn = tcp_syn(40000, 8080);
    let from_8080 = tcp_syn(8080, 40000);
    // (what, frame, egress verdict, ingress verdict): egress judges the
    // destination, ingress the source.
    let cases: Vec<(&str, Vec<u8>, u32, u32)> = vec![
        ("ping to a denied address", v4(c4, s4, IPPROTO_ICMP, 0, &echo), DROP, PASS),
        ("ping from a denied address", v4(s4, c4, IPPROTO_ICMP, 0, &echo), PASS, DROP),
        ("ping elsewhere", v4(c4, ip4("10.77.0.3"), IPPROTO_ICMP, 0, &echo), PASS, PASS),
        ("in a denied /16", v4(c4, ip4("10.99.200.1"), IPPROTO_ICMP, 0, &echo), DROP, PASS),
        ("next to the /16", v4(c4, ip4("10.98.255.255"), IPPROTO_ICMP, 0, &echo), PASS, PASS),
        ("TCP to a denied port", v4(c4, ip4("10.1.1.1"), IPPROTO_TCP, 0, &syn), DROP, PASS),
        ("TCP from it", v4(ip4("10.1.1.1"), c4, IPPROTO_TCP, 0, &from_8080), PASS, DROP),
        ("UDP to it", v4(c4, ip4("10.1.1.1"), IPPROTO_UDP, 0, &udp(5, 8080, b"x")), DROP, PASS),
        ("TCP to port 80", v4(c4, ip4("10.1.1.1"), IPPROTO_TCP, 0, &tcp_syn(1, 80)), PASS, PASS),
        // The first fragment has the ports; a later one has none to check.
        ("first fragment", v4(c4, ip4("10.1.1.1"), IPPROTO_TCP, 0x2000, &syn), DROP, PASS),
        ("later fragment", v4(c4, ip4("10.1.1.1"), IPPROTO_TCP, 0x0010, &syn), PASS, PASS),
        ("ping6 to a denied address", v6(c6, s6, IPPROTO_ICMPV6, &echo6(c6, s6)), DROP, PASS),
        ("ping6 from it", v6(s6, c6, IPPROTO_ICMPV6, &echo6(s6, c6)), PASS, DROP),
        ("in a denied /32", v6(c6, ip6("fd99:0:1::1"), IPPROTO_ICMPV6, &echo), DROP, PASS),
        ("ping6 elsewhere", v6(c6, ip6("fd77::3"), IPPROTO_ICMPV6, &echo), PASS, PASS),
        ("TCP6 to a denied port", v6(c6, ip6("fd00::1"), IPPROTO_TCP, &syn), DROP, PASS),
        ("TCP6 from it", v6(ip6("fd00::1"), c6, IPPROTO_TCP, &from_8080), PASS, DROP),
        ("not IP (ARP)", ethernet(BROADCAST_MAC, CLIENT_MAC, None, 0x0806, &[0; 28]), PASS, PASS),
    ];
    let mut drops = 0;
    for (what, frame, egress, ingress) in &cases {
        for (prog, expected, way) in [
            (&skel.progs.cgroup_egress, egress, "egress"),
            (&skel.progs.cgroup_ingress, ingress, "ingress"),
        ] {
            let run = test_run(prog, frame).unwrap_or_else(|e| panic!("{what} ({way}): {e}"));
            assert_eq!(run.action, *expected, "{what} ({way})");
            drops += u64::from(run.action == DROP);
        }
    }

    // Each drop was counted and reported, with the rule that matched.
    let mut events = Vec::new();
    let mut builder = libbpf_rs::RingBufferBuilder::new();
    builder
        .add(&skel.maps.events, |data: &[u8]| {
            let mut e = drop_event::default();
            plain::copy_from_bytes(&mut e, data).unwrap();
            events.push(e);
            0
        })
        .unwrap();
    builder.build().unwrap().consume().unwrap();
    assert_eq!(events.len() as u64, drops);
    let first = &events[0]; // the ping to 10.77.0.2, egress
    assert_eq!((first.reason, first.rule, first.egress), (drop_reason::DROP_ADDRESS, 0, 1));
    assert_eq!((first.protocol, first.family), (IPPROTO_ICMP, 2));
    let port = events.iter().find(|e| e.reason == drop_reason::DROP_PORT).unwrap();
    assert_eq!((port.rule, port.sport, port.dport), (8080, 40000, 8080));
    let slash32 = events.iter().find(|e| e.family == 10 && e.rule == 3);
    assert!(slash32.is_some(), "fd99::/32 is rule 3");
}

/// IPv6 with extension headers before TCP: the walk finds the port behind a chain,
/// a later fragment has none, and with port rules what cannot be walked (cut
/// short, or longer than the walk goes) is dropped as unreadable.
#[test]
fn extension_header_chains_on_hand_made_packets() {
    // One extension header: next header, length (8-byte words after the first 8).
    let ext = |next: u8, words: u8| {
        let mut h = vec![next, words, 1, 4 + 8 * words];
        h.resize(8 + 8 * usize::from(words), 0);
        h
    };
    let fragment = |next: u8, offset: u16| {
        let mut h = vec![next, 0];
        h.extend_from_slice(&(offset << 3).to_be_bytes());
        h.extend_from_slice(&[0, 0, 0, 1]);
        h
    };
    let syn = tcp_syn(40000, 8080);
    let (c6, s6) = (CLIENT_V6, SERVER_V6);
    let chain =
        |first: u8, hdrs: Vec<Vec<u8>>| v6(c6, s6, first, &[hdrs.concat(), syn.clone()].concat());
    let (hop, dst, frag, auth) = (0u8, 60u8, 44u8, 51u8);
    let mut ah = vec![IPPROTO_TCP, 2]; // AH: (2 + 2) * 4 = 16 bytes
    ah.resize(16, 0);
    let nine: Vec<Vec<u8>> =
        (0..9).map(|i| ext(if i == 8 { IPPROTO_TCP } else { dst }, 0)).collect();
    let mut cut = chain(hop, vec![ext(dst, 0), ext(IPPROTO_TCP, 3)]);
    cut.truncate(14 + 40 + 8 + 10); // inside the second header
                                    // (what, frame, the drop reason with port rules, with address rules only)
    type Case = (&'static str, Vec<u8>, Option<u32>, Option<u32>);
    let cases: Vec<Case> = vec![
        ("hop-by-hop, TCP", chain(hop, vec![ext(IPPROTO_TCP, 0)]), Some(2), None),
        ("dst opts x2", chain(dst, vec![ext(dst, 1), ext(IPPROTO_TCP, 0)]), Some(2), None),
        ("AH", chain(auth, vec![ah]), Some(2), None),
        ("first fragment", chain(frag, vec![fragment(IPPROTO_TCP, 0)]), Some(2), None),
        ("later fragment", chain(frag, vec![fragment(IPPROTO_TCP, 185)]), None, None),
        ("nine headers", chain(dst, nine), Some(3), None),
        ("cut inside the chain", cut, Some(3), None),
        (
            "TCP to port 80",
            v6(c6, s6, hop, &[ext(IPPROTO_TCP, 0), tcp_syn(1, 80)].concat()),
            None,
            None,
        ),
    ];
    for port_rules in [true, false] {
        let mut storage = MaybeUninit::uninit();
        let mut open = CgroupFirewallSkelBuilder::default().open(&mut storage).unwrap();
        open.maps.rodata_data.as_mut().unwrap().port_rules = port_rules;
        let skel = open.load().unwrap();
        if port_rules {
            skel.maps.denied_ports.update(&8080u16.to_ne_bytes(), &[1], MapFlags::ANY).unwrap();
        }
        let reasons = std::cell::RefCell::new(Vec::new());
        let mut builder = libbpf_rs::RingBufferBuilder::new();
        builder
            .add(&skel.maps.events, |data: &[u8]| {
                let mut e = drop_event::default();
                plain::copy_from_bytes(&mut e, data).unwrap();
                reasons.borrow_mut().push(e.reason.0);
                0
            })
            .unwrap();
        let ring = builder.build().unwrap();
        for (what, frame, with_ports, without) in &cases {
            let want = if port_rules { with_ports } else { without };
            let run = test_run(&skel.progs.cgroup_egress, frame).unwrap();
            ring.consume().unwrap();
            let got: Vec<u32> = reasons.borrow_mut().drain(..).collect();
            let verdict = if want.is_some() { DROP } else { PASS };
            assert_eq!(run.action, verdict, "{what} (port rules: {port_rules})");
            assert_eq!(got, want.iter().copied().collect::<Vec<_>>(), "{what}: reported reasons");
        }
    }
}

// SAFETY: a plain C struct of integers.
unsafe impl plain::Plain for drop_event {}

// ---- bad input -------------------------------------------------------------------

#[test]
fn bad_input_gets_one_clear_sentence_and_creates_nothing() {
    let cg = TestCgroup::new("cgfw");
    let name = cg.name.as_str();
    let mount = cg.path.parent().unwrap().to_str().unwrap().to_string();
    let outside = format!("/tmp/{name}");
    let mut cases: Vec<(Vec<&str>, String)> = vec![
        (vec![name, "--deny", "10.77.0.300"], "10.77.0.300 is not an IPv4 or IPv6 address".into()),
        (vec![name, "--deny", "fd77::2/129"], "/129 is not a prefix length for fd77::2".into()),
        (vec![name, "--deny-port", "0"], "0 is not in 1..=65535".into()),
        (vec![name], "nothing to deny: add --deny".into()),
        (vec![&outside, "--deny", "10.77.0.2"], "is not inside the cgroup v2 hierarchy".into()),
        (vec![&mount, "--deny", "10.77.0.2"], "is the root cgroup".into()),
        (vec!["../x", "--deny", "10.77.0.2"], "is not a cgroup name".into()),
        (vec![name, "--deny", "10.77.0.2", "--run", "--", "no-such-command"], "cannot run".into()),
        (vec![name, "--run"], "required arguments were not provided".into()),
        (vec![name, "--cleanup"], "nothing to clean up".into()), // not an error
    ];
    // A cgroup v1 hierarchy, where the machine has one (systemd's hybrid layout).
    let v1 = "/sys/fs/cgroup/pids";
    let is_v1 = nix::sys::statfs::statfs(v1)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::CGROUP_SUPER_MAGIC);
    let in_v1 = format!("{v1}/{name}");
    if is_v1 {
        cases.push((vec![&in_v1, "--deny", "10.77.0.2"], "is in a cgroup v1 hierarchy".into()));
    }
    let mut failures = Vec::new();
    for (args, says) in &cases {
        let end = run_to_end(EXAMPLE, args);
        let cleanup = args.contains(&"--cleanup");
        let ok = end.status.success() == cleanup
            && format!("{}{}", end.stdout, end.stderr).contains(says.as_str())
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
}

#[test]
fn without_cgroup_v2_and_without_root_it_says_so() {
    // A private mount namespace with every cgroup v2 mount taken away.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let cgroup2: Vec<&str> = mounts
        .lines()
        .filter(|l| l.split(" - ").nth(1).is_some_and(|f| f.starts_with("cgroup2 ")))
        .filter_map(|l| l.split(' ').nth(4))
        .collect();
    let script = format!("umount -l {} && exec \"$0\" \"$@\"", cgroup2.join(" "));
    let mut cmd = std::process::Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c", &script]);
    cmd.arg(example_path(EXAMPLE)).args(["demo", "--deny", "10.77.0.2"]);
    let end = spawn(cmd).wait(Duration::from_secs(20));
    assert!(!end.status.success(), "{end:?}");
    assert!(end.stderr.contains("no cgroup v2 hierarchy mounted"), "{end:?}");

    let mut cmd = as_nobody(&example_path(EXAMPLE));
    cmd.args(["demo", "--deny", "10.77.0.2"]);
    let end = spawn(cmd).wait(Duration::from_secs(20));
    assert!(!end.status.success() && end.stderr.contains("needs root"), "{end:?}");
}
