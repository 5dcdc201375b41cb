//! xdp_router, routing in XDP: in its own three-host lab (client, router, server on
//! two subnets) behind a firewall that drops everything the kernel forwards, so
//! that only XDP can get a packet across; and under BPF_PROG_TEST_RUN against
//! frames built from scratch, run inside the lab's router namespace (bpf_fib_lookup
//! asks the routing table of the namespace that runs the test).

mod common;

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::time::Duration;

use common::skel::xdp_router::XdpRouterSkelBuilder;
use common::{assert_unloaded, bpf_prog_ids, spawn, test_run, unique, xdp_on, Running};
use ebpf_workshop::netns::in_namespace;
use ebpf_workshop_dev::frames::*;
use ebpf_workshop_dev::lab::{Host, RouterLab};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use nix::sys::signal::Signal;

const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

/// A fresh router lab whose kernel forwards nothing: its nftables forward chain
/// drops every packet.
fn router_lab() -> RouterLab {
    let lab = RouterLab::up(&unique("ebpfws-r")).expect("building the router lab");
    lab.drop_forwarded(true).expect("the dropping forward chain");
    lab
}

/// xdp_router on both router interfaces, as the lab's instructions run it.
fn run_router(lab: &RouterLab, extra: &[&str]) -> Running {
    let mut cmd = lab.router.cmd(common::example_path("xdp_router"));
    cmd.args([lab.router.iface, lab.router_server_side.iface]).args(extra);
    let mut router = spawn(cmd);
    router.wait_attached();
    router
}

/// One ping from `from` to `to`: ping's whole output.
fn ping_once(from: &Host, to: IpAddr, ttl: Option<u32>) -> String {
    let mut cmd = from.cmd("ping");
    cmd.args(["-n", "-c", "1", "-W", "1"]);
    if let Some(ttl) = ttl {
        cmd.args(["-t", &ttl.to_string()]);
    }
    let out = cmd.arg(to.to_string()).output().expect("ping (iputils-ping)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn answered(output: &str) -> bool {
    output.contains(" 1 received")
}

/// An echo service on the server, both address families (`[::]` takes IPv4 too).
fn echo_server(server: &Host) -> u16 {
    let listener = in_namespace(&server.ns, || TcpListener::bind("[::]:0")).unwrap().unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = vec![0u8; 4096];
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                if conn.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    port
}

/// Connect from the client, send 3000 bytes (several segments), read them back.
fn tcp_echo(client: &Host, to: SocketAddr) -> Result<(), String> {
    in_namespace(&client.ns, || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2))
            .map_err(|e| format!("connect to {to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let msg: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
        s.write_all(&msg).map_err(|e| format!("write: {e}"))?;
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).map_err(|e| format!("read back from {to}: {e}"))?;
        if back == msg {
            Ok(())
        } else {
            Err("the echo differs".into())
        }
    })
    .unwrap()
}

#[test]
fn forwards_ping_and_tcp_past_a_firewall_that_drops_everything() {
    let lab = router_lab();
    let (server4, server6) = (IpAddr::V4(lab.server.ipv4), IpAddr::V6(lab.server.ipv6));
    let port = echo_server(&lab.server);
    // The kernel alone forwards nothing: the firewall drops it.
    assert!(!answered(&ping_once(&lab.client, server4, None)), "the firewall let a ping through");
    assert!(tcp_echo(&lab.client, SocketAddr::new(server4, port)).is_err());

    let mut router = run_router(&lab, &["--verbose"]);
    for to in [server4, server6] {
        let out = ping_once(&lab.client, to, None);
        assert!(answered(&out), "ping {to} through xdp_router:\n{out}\n{}", router.stderr());
        // The server answered with 64: one router on the way back made it 63.
        assert!(out.contains("ttl=63"), "ping {to}: expected ttl=63:\n{out}");
        tcp_echo(&lab.client, SocketAddr::new(to, port)).unwrap();
        // TTL 1: the router's kernel says "time exceeded", from its own address.
        let out = ping_once(&lab.client, to, Some(1));
        let from =
            if to.is_ipv4() { lab.router.ipv4.to_string() } else { lab.router.ipv6.to_string() };
        assert!(
            out.contains(&format!("From {from}")) && out.contains("exceeded"),
            "a TTL-1 ping to {to} must get \"time exceeded\" from the router:\n{out}"
        );
    }
    // One report per flow, not per packet: TCP's many segments included.
    router.wait_for("tcp fd79:2::2 -> fd79:1::2", Duration::from_secs(5));
    let done = router.stop(Signal::SIGINT, Duration::from_secs(5));
    assert!(done.status.success(), "{}", done.stderr);
    let flows: Vec<&str> = done.stdout.lines().filter(|l| l.contains(" flow ")).collect();
    assert_eq!(flows.len(), 8, "icmp, tcp; v4, v6; both ways:\n{}", done.stdout);
    let summary = done.stderr.lines().find(|l| l.starts_with("forwarded out:")).expect("a summary");
    let count = |iface: &str| -> u64 {
        let rest = &summary[summary.find(&format!("{iface} ")).expect(iface) + iface.len() + 1..];
        rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    assert!(count("veth-rs") >= 6 && count("veth-rc") >= 6, "{summary}");
    assert!(summary.contains("ttl 2"), "the two TTL-1 pings went to the kernel: {summary}");
}

#[test]
fn nothing_forwards_after_sigint_or_sigkill() {
    let lab = router_lab();
    let server = IpAddr::V4(lab.server.ipv4);
    for sig in [Signal::SIGINT, Signal::SIGKILL] {
        let mut router = run_router(&lab, &[]);
        let ids = bpf_prog_ids(router.pid());
        assert!(answered(&ping_once(&lab.client, server, None)), "{}", router.stderr());
        router.stop(sig, Duration::from_secs(5));
        assert_unloaded(&ids);
        assert_eq!(xdp_on(&lab.router), None, "still attached to veth-rc after {sig}");
        assert_eq!(xdp_on(&lab.router_server_side), None, "still attached to veth-rs after {sig}");
        assert!(!answered(&ping_once(&lab.client, server, None)), "forwarded after {sig}");
    }
}

#[test]
fn a_missing_neighbour_goes_to_the_kernel_once_then_the_fast_path() {
    // No firewall here: the kernel must forward the first packet to resolve the MAC.
    let lab = RouterLab::up(&unique("ebpfws-r")).expect("building the router lab");
    let mut router = run_router(&lab, &[]);
    lab.router.run(&["ip", "neigh", "flush", "dev", lab.router_server_side.iface]).unwrap();
    let out = lab
        .client
        .cmd("ping")
        .args(["-n", "-c", "3", "-i", "0.2", "-W", "1"])
        .arg(lab.server.ipv4.to_string())
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains(" 3 received"), "{out}");
    let done = router.stop(Signal::SIGINT, Duration::from_secs(5));
    let summary = done.stderr.lines().find(|l| l.starts_with("forwarded out:")).expect("a summary");
    // The first request went to the kernel (it sent ARP, then the request); the
    // other two took the fast path.
    assert!(summary.contains("veth-rs 2;") && summary.contains("no neighbour 1"), "{summary}");
}

#[test]
fn refuses_to_start_with_forwarding_off() {
    let lab = RouterLab::up(&unique("ebpfws-r")).expect("building the router lab");
    lab.router.sysctl("net/ipv4/ip_forward", "0").unwrap();
    lab.router.sysctl("net/ipv6/conf/all/forwarding", "0").unwrap();
    let mut cmd = lab.router.cmd(common::example_path("xdp_router"));
    cmd.args([lab.router.iface, lab.router_server_side.iface]);
    let done = spawn(cmd).wait(Duration::from_secs(20));
    assert!(!done.status.success());
    assert!(done.stderr.contains("forwarding is off"), "{}", done.stderr);
}

// ---- BPF_PROG_TEST_RUN: frames built from scratch, in the router's namespace ------

type RouterSkel = common::skel::xdp_router::XdpRouterSkel<'static>;

/// The MAC of `iface` in namespace `ns`, as `ip link` shows it.
fn mac(ns: &str, iface: &str) -> [u8; 6] {
    let out = std::process::Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", "dev", iface])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let hex = text.split("link/ether ").nth(1).expect("an Ethernet address");
    let mut mac = [0u8; 6];
    for (b, h) in mac.iter_mut().zip(hex.split(':')) {
        *b = u8::from_str_radix(&h[..2], 16).unwrap();
    }
    mac
}

/// xdp_router loaded in the current namespace (the router's), with both router
/// interfaces as egress, as examples/xdp_router.rs fills its maps.
fn loaded(ifindexes: &[u32]) -> RouterSkel {
    let storage = Box::leak(Box::new(MaybeUninit::uninit()));
    let skel = XdpRouterSkelBuilder::default().open(storage).unwrap().load().unwrap();
    let zeros = vec![vec![0u8; 8]; libbpf_rs::num_possible_cpus().unwrap()];
    for i in ifindexes {
        let key = i.to_ne_bytes();
        skel.maps.egress.update(&key, &key, MapFlags::ANY).unwrap();
        skel.maps.forwarded.update_percpu(&key, &zeros, MapFlags::ANY).unwrap();
    }
    skel
}

/// BPF_PROG_TEST_RUN with an XDP context saying the frame came in on `ifindex`
/// (the kernel takes that from 5.15 on; None when it refuses the context).
fn run_on(prog: &impl AsFd, ifindex: u32, frame: &[u8]) -> Option<(u32, Vec<u8>)> {
    match ebpf_workshop_dev::progs::test_run_on_device(prog, frame, ifindex) {
        Err(e) if e.raw_os_error() == Some(nix::libc::EINVAL) => None,
        run => {
            let run = run.unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"));
            Some((run.action, run.frame))
        }
    }
}

/// An IPv4 frame with `ttl`, its header checksum computed from scratch.
fn frame4(dmac: [u8; 6], smac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, ttl: u8) -> Vec<u8> {
    let mut ip = ipv4(src, dst, IPPROTO_UDP, &Ipv4Opts::default(), &udp(40000, 9, b"routed"));
    ip[8] = ttl;
    ip[10..12].fill(0);
    let sum = checksum(&ip[..20]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ethernet(dmac, smac, None, ETH_P_IP, &ip)
}

fn frame6(dmac: [u8; 6], smac: [u8; 6], src: Ipv6Addr, dst: Ipv6Addr, hops: u8) -> Vec<u8> {
    let mut ip =
        ipv6(src, dst, IPPROTO_ICMPV6, &icmp6_echo(ICMPV6_ECHO_REQUEST, 7, 1, b"x", src, dst));
    ip[7] = hops;
    ethernet(dmac, smac, None, ETH_P_IPV6, &ip)
}

#[test]
fn test_runs_forward_byte_exact_and_pass_the_rest() {
    let lab = RouterLab::up(&unique("ebpfws-r")).expect("building the router lab");
    let (c, r, rs, s) = (&lab.client, &lab.router, &lab.router_server_side, &lab.server);
    let client_mac = mac(&c.ns, c.iface);
    let rc_mac = mac(&r.ns, r.iface);
    let rs_mac = mac(&rs.ns, rs.iface);
    let server_mac = mac(&s.ns, s.iface);
    in_namespace(&r.ns, || {
        let rc = nix::net::if_::if_nametoindex(r.iface).unwrap();
        let rsi = nix::net::if_::if_nametoindex(rs.iface).unwrap();
        let skel = loaded(&[rc, rsi]);
        let prog = &skel.progs.xdp_router;

        // Cases that never reach the lookup: every kernel, no context needed.
        let ttl1 = frame4(rc_mac, client_mac, c.ipv4, s.ipv4, 1);
        let hop1 = frame6(rc_mac, client_mac, c.ipv6, s.ipv6, 1);
        let opts = Ipv4Opts { options: vec![1, 1, 1, 0], ..Default::default() }; // NOP x3, end
        let options = ethernet(
            rc_mac,
            client_mac,
            None,
            ETH_P_IP,
            &ipv4(c.ipv4, s.ipv4, IPPROTO_UDP, &opts, &udp(1, 9, b"x")),
        );
        let hop_by_hop = ethernet(
            rc_mac,
            client_mac,
            None,
            ETH_P_IPV6,
            &ipv6(c.ipv6, s.ipv6, 0, &[58, 0, 1, 4, 0, 0, 0, 0]),
        );
        let arp = ethernet(BROADCAST_MAC, client_mac, None, ETH_P_ARP, &[0u8; 28]);
        let vlan = ethernet(
            rc_mac,
            client_mac,
            Some(5),
            ETH_P_IP,
            &frame4(rc_mac, client_mac, c.ipv4, s.ipv4, 64)[14..],
        );
        for (what, f) in [
            ("TTL 1", &ttl1),
            ("hop limit 1", &hop1),
            ("ARP", &arp),
            ("VLAN-tagged", &vlan),
            ("IPv4 options", &options),
            ("hop-by-hop", &hop_by_hop),
        ] {
            let run = test_run(prog, f).unwrap();
            assert_eq!((run.action, &run.frame), (XDP_PASS, f), "{what}: passed untouched");
        }
        let whole = frame4(rc_mac, client_mac, c.ipv4, s.ipv4, 64);
        for len in 14..34 {
            let cut = &whole[..len];
            let run = test_run(prog, cut).unwrap();
            assert_eq!((run.action, &run.frame[..]), (XDP_PASS, cut), "cut at {len} bytes");
        }

        // The lookup needs the ingress device: a test-run context (5.15+).
        let Some((action, out)) = run_on(prog, rc, &whole) else {
            eprintln!("skipped the lookups: this kernel takes no XDP context in test runs (5.15+)");
            return;
        };
        let why = skel.maps.counts.lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY).unwrap();
        assert_eq!(action, XDP_REDIRECT, "client -> server must be forwarded; counters {why:?}");
        // Out of veth-rs: its MAC as source, the server's as destination, TTL 63,
        // the checksum as if computed from scratch.
        assert_eq!(out, frame4(server_mac, rs_mac, c.ipv4, s.ipv4, 63), "IPv4 rewrite");
        let (action, out) =
            run_on(prog, rc, &frame6(rc_mac, client_mac, c.ipv6, s.ipv6, 64)).unwrap();
        assert_eq!(action, XDP_REDIRECT);
        assert_eq!(out, frame6(server_mac, rs_mac, c.ipv6, s.ipv6, 63), "IPv6 rewrite");
        // The other way, and TTLs whose checksum words carry.
        for ttl in [2u8, 0x80, 0xff] {
            let back = frame4(rs_mac, server_mac, s.ipv4, c.ipv4, ttl);
            let (action, out) = run_on(prog, rsi, &back).unwrap();
            assert_eq!(action, XDP_REDIRECT, "server -> client, TTL {ttl}");
            assert_eq!(out, frame4(client_mac, rc_mac, s.ipv4, c.ipv4, ttl - 1), "TTL {ttl}");
        }
        // For the router itself, and for nowhere (no route): the kernel's.
        let mine = frame4(rc_mac, client_mac, c.ipv4, r.ipv4, 64);
        let nowhere = frame4(rc_mac, client_mac, c.ipv4, Ipv4Addr::new(192, 0, 2, 1), 64);
        for (what, f) in [("for the router", &mine), ("no route", &nowhere)] {
            let (action, out) = run_on(prog, rc, f).unwrap();
            assert_eq!((action, &out), (XDP_PASS, f), "{what}: passed untouched");
        }
    })
    .unwrap();
}
