//! xdp_lb, the load balancer: in its own four-host lab (a client, the balancer and
//! two backends on one bridge) with real TCP connections, and under
//! BPF_PROG_TEST_RUN against frames built from scratch, checksums included.

mod common;

use std::io::{Read, Write};
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::skel::xdp_lb::XdpLbSkelBuilder;
use common::{assert_unloaded, bpf_prog_ids, scaled, spawn, test_run, unique, xdp_on, Running};
use ebpf_workshop::netns::in_namespace;
use ebpf_workshop_dev::frames::{
    checksum, ethernet, ipv4, ipv6, udp, Ipv4Opts, ETH_P_IP, IPPROTO_TCP,
};
use ebpf_workshop_dev::lab::{answered_by, serve_name, Host, LbLab, LB_PORT, LB_VIP6};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use nix::sys::signal::Signal;

// ---- the lab ---------------------------------------------------------------------

/// A fresh load-balancer lab, with each backend answering "served by b1"/"b2" from
/// a thread of this test (its listener bound inside the backend's namespace).
fn lb_lab() -> LbLab {
    let lab = LbLab::up(&unique("ebpflb-t")).expect("building the load-balancer lab");
    for (b, name) in lab.backends.iter().zip(["b1", "b2"]) {
        // [::] takes IPv4 connections too (bindv6only is 0).
        let listener =
            in_namespace(&b.ns, || std::net::TcpListener::bind(("::", LB_PORT))).unwrap().unwrap();
        thread::spawn(move || serve_name(listener, name));
    }
    lab
}

fn backend_args(lab: &LbLab) -> Vec<String> {
    let mut args = vec![lab.lb.iface.to_string(), "--vip".into(), lab.vip.to_string()];
    for b in &lab.backends {
        args.extend(["--backend".to_string(), b.ipv4.to_string()]);
    }
    args
}

/// xdp_lb on the balancer, as the lab's instructions run it, in `mode` (dsr,
/// nat); its stdin reads `fifo` when given (for `add`/`remove` lines), else nothing.
fn run_lb(lab: &LbLab, mode: &str, fifo: Option<&std::path::Path>) -> Running {
    let exe = common::example_path("xdp_lb");
    let mut cmd = lab.lb.cmd("sh");
    // sh opens the FIFO as stdin, then becomes xdp_lb (same pid).
    let redirect = fifo.map(|f| format!(" < '{}'", f.display())).unwrap_or_default();
    cmd.args(["-c", &format!("exec \"$0\" \"$@\"{redirect}")]).arg(exe).args(backend_args(lab));
    cmd.args(["--mode", mode]);
    let mut lb = spawn(cmd);
    if fifo.is_none() {
        lb.wait_attached();
    }
    lb
}

/// One connection from the client to the VIP: send a request line, read the
/// answer to the end. The backend that answered, if the answer is complete and
/// every line of it names the same backend.
fn fetch(vip: SocketAddr) -> Result<String, String> {
    let mut s = TcpStream::connect_timeout(&vip, Duration::from_secs(3))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"hi\n").map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| format!("read: {e}"))?;
    answered_by(&answer).ok_or_else(|| format!("bad answer of {} bytes", answer.len()))
}

/// `total` connections from `client`, `threads` at a time: who answered each.
fn fetch_many(
    client: &Host,
    vip: SocketAddr,
    total: usize,
    threads: usize,
) -> Vec<Result<String, String>> {
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let ns = client.ns.clone();
            let n = total / threads + usize::from(t < total % threads);
            thread::spawn(move || {
                in_namespace(&ns, || (0..n).map(|_| fetch(vip)).collect::<Vec<_>>()).unwrap()
            })
        })
        .collect();
    workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
}

fn vip_of(lab: &LbLab) -> SocketAddr {
    SocketAddr::new(lab.vip.into(), LB_PORT)
}

#[test]
fn a_thousand_connections_all_answered_and_balanced_dsr() {
    a_thousand_connections_all_answered_and_balanced("dsr");
}

#[test]
fn a_thousand_connections_all_answered_and_balanced_nat() {
    a_thousand_connections_all_answered_and_balanced("nat");
}

fn a_thousand_connections_all_answered_and_balanced(mode: &str) {
    let lab = lb_lab();
    let mut lb = run_lb(&lab, mode, None);
    let ids = bpf_prog_ids(lb.pid());
    let started = Instant::now();
    let results = fetch_many(&lab.client, vip_of(&lab), 1000, 4);
    let took = started.elapsed();
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 1000 connections failed, e.g. {:?}\n{}",
        failed.len(),
        failed.first(),
        lb.stderr()
    );
    // The whole answer, several TCP segments, named one backend: every reply
    // packet of each connection came from the same backend.
    let b1 = results.iter().filter(|r| r.as_deref() == Ok("b1")).count();
    let b2 = results.iter().filter(|r| r.as_deref() == Ok("b2")).count();
    assert_eq!(b1 + b2, 1000);
    assert!((350..=650).contains(&b1), "unbalanced: b1 {b1}, b2 {b2}");
    eprintln!("{mode}: 1000 connections in {took:?}: b1 {b1}, b2 {b2}");

    // One report per connection, and the summary agrees with the clients.
    // The reader looks every 100 ms; on a loaded machine give it longer than
    // `eventually` does, and say how many arrived if they did not.
    let reports = || lb.stdout().lines().filter(|l| l.contains(" new ")).count();
    let deadline = Instant::now() + scaled(Duration::from_secs(20));
    while reports() < 1000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(reports(), 1000, "one report per connection\n{}", lb.stderr());
    let done = lb.stop(Signal::SIGINT, Duration::from_secs(5));
    assert!(done.status.success(), "{}", done.stderr);
    let summary = done.stderr.lines().find(|l| l.starts_with("connections:")).expect("a summary");
    assert!(
        summary.contains(&format!("10.78.0.11 {b1} "))
            && summary.contains(&format!("10.78.0.12 {b2} ")),
        "{summary}"
    );
    assert!(done.stderr.contains("0 events lost"), "{}", done.stderr);
    assert_unloaded(&ids);
    assert_eq!(xdp_on(&lab.lb), None, "still attached after Ctrl-C");
}

#[test]
fn removing_a_backend_moves_new_connections_and_drains_old_ones() {
    let lab = lb_lab();
    let fifo = std::env::temp_dir().join(format!("{}.stdin", lab.name));
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let mut lb = run_lb(&lab, "dsr", Some(&fifo));
    let mut commands = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap(); // meets sh's open
    std::fs::remove_file(&fifo).unwrap();
    lb.wait_attached();
    let vip = vip_of(&lab);

    // Connections held open across the removal: some of them are on b2.
    let held: Vec<TcpStream> = in_namespace(&lab.client.ns, || {
        (0..16).map(|_| TcpStream::connect_timeout(&vip, Duration::from_secs(3)).unwrap()).collect()
    })
    .unwrap();

    // Clients keep connecting while b2 is removed: none may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (ns, flag) = (lab.client.ns.clone(), stop.clone());
    let steady = thread::spawn(move || {
        in_namespace(&ns, || {
            let mut log = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                log.push((Instant::now(), fetch(vip)));
            }
            log
        })
        .unwrap()
    });
    thread::sleep(Duration::from_millis(300));
    writeln!(commands, "remove 10.78.0.12").unwrap();
    lb.wait_for_line(Duration::from_secs(5), "the removal", |l| {
        l.contains("remove") && l.contains("10.78.0.12")
    });
    let removed = Instant::now();
    let more = fetch_many(&lab.client, vip, 200, 4);
    stop.store(true, Ordering::SeqCst);
    let log = steady.join().unwrap();

    let failed: Vec<_> = log
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .chain(more.iter().filter_map(|r| r.as_ref().err()))
        .collect();
    assert!(failed.is_empty(), "failed connections: {failed:?}");
    assert!(log.iter().any(|(_, r)| r.as_deref() == Ok("b2")), "b2 got nothing before its removal");
    let after: Vec<_> =
        log.iter().filter(|(t, _)| *t > removed).map(|(_, r)| r).chain(more.iter()).collect();
    assert!(after.len() >= 200);
    assert!(
        after.iter().all(|r| r.as_deref() == Ok("b1")),
        "a new connection reached the removed backend"
    );

    // The held connections keep their backend, b2 included: it drains.
    let mut names = Vec::new();
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(b"hi\n").unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).unwrap();
        names.push(answered_by(&answer).expect("a complete answer from one backend"));
    }
    assert!(names.iter().any(|n| n == "b2"), "no held connection was on b2: {names:?}");

    // Added back, b2 takes new connections again.
    writeln!(commands, "add 10.78.0.12").unwrap();
    lb.wait_for_line(Duration::from_secs(5), "the addition", |l| {
        l.contains("add") && l.contains("10.78.0.12")
    });
    let back = fetch_many(&lab.client, vip, 100, 4);
    assert!(back.iter().all(|r| r.is_ok()));
    assert!(
        back.iter().any(|r| r.as_deref() == Ok("b2")),
        "b2 got nothing after it was added back"
    );
}

#[test]
fn nothing_stays_attached_after_sigint_or_sigkill() {
    let lab = lb_lab();
    for sig in [Signal::SIGINT, Signal::SIGKILL] {
        let mut lb = run_lb(&lab, "dsr", None);
        let ids = bpf_prog_ids(lb.pid());
        let ok = in_namespace(&lab.client.ns, || fetch(vip_of(&lab))).unwrap();
        assert!(ok.is_ok(), "{ok:?}");
        lb.stop(sig, Duration::from_secs(5));
        assert_unloaded(&ids);
        assert_eq!(xdp_on(&lab.lb), None, "still attached after {sig}");
        // Without the balancer, the balancer's own kernel refuses the VIP.
        let refused = in_namespace(&lab.client.ns, || fetch(vip_of(&lab))).unwrap();
        assert!(refused.is_err(), "{refused:?}");
    }
}

/// The MAC address of `host`'s veth, from `ip -br link` inside its namespace.
fn mac_of(host: &Host) -> [u8; 6] {
    let out = host.run(&["ip", "-br", "link", "show", "dev", host.iface]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let field = text.split_whitespace().nth(2).expect("a MAC in `ip -br link`");
    let bytes: Vec<u8> = field.split(':').map(|h| u8::from_str_radix(h, 16).unwrap()).collect();
    bytes.try_into().unwrap()
}

/// The source MACs of the VIP's TCP segments that reached the client while
/// `traffic` ran, seen on the client's side by a raw packet socket.
fn reply_source_macs(lab: &LbLab, traffic: impl FnOnce()) -> Vec<[u8; 6]> {
    let (client, vip) = (lab.client.clone(), lab.vip);
    let sock = in_namespace(&client.ns, || {
        let keep_all = ebpf_workshop_dev::progs::return_only_program(
            libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER,
            0xffff,
            c"keep_all",
        )?;
        let iface = ebpf_workshop::iface::interface(client.iface)?;
        ebpf_workshop::packet_socket::PacketSocket::open(&iface, &keep_all)
    })
    .unwrap()
    .unwrap();
    traffic();
    let mut macs = Vec::new();
    let mut buf = [0u8; 2048];
    while let Some(n) = sock.try_recv(&mut buf) {
        let f = &buf[..n];
        // IPv4 (no VLAN), from the VIP, TCP from the service's port.
        if n >= 38 && f[12..14] == [0x08, 0x00] && f[26..30] == vip.octets() && f[23] == IPPROTO_TCP
        {
            let ihl = usize::from(f[14] & 0x0f) * 4;
            if n >= 14 + ihl + 2 && f[14 + ihl..16 + ihl] == LB_PORT.to_be_bytes() {
                macs.push(f[6..12].try_into().unwrap());
            }
        }
    }
    macs
}

#[test]
fn dsr_replies_come_from_the_backend_nat_replies_from_the_balancer() {
    let lab = lb_lab();
    let backends: Vec<[u8; 6]> = lab.backends.iter().map(mac_of).collect();
    let balancer = mac_of(&lab.lb);
    for mode in ["dsr", "nat"] {
        let mut lb = run_lb(&lab, mode, None);
        let macs = reply_source_macs(&lab, || {
            let answers = fetch_many(&lab.client, vip_of(&lab), 20, 2);
            assert!(answers.iter().all(|a| a.is_ok()), "{mode}: {answers:?}");
        });
        assert!(macs.len() >= 20, "{mode}: only {} reply frames seen", macs.len());
        if mode == "dsr" {
            assert!(
                macs.iter().all(|m| backends.contains(m)),
                "{mode}: a reply not from a backend"
            );
            assert!(backends.iter().all(|b| macs.contains(b)), "{mode}: a backend never answered");
        } else {
            assert!(macs.iter().all(|m| *m == balancer), "{mode}: a reply not from the balancer");
        }
        lb.stop(Signal::SIGINT, Duration::from_secs(5));
    }
}

/// A TCP connection from `local` (address and port chosen) to `to`.
fn connect_from(local: std::net::SocketAddrV4, to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    use std::os::fd::AsRawFd;
    let fd = socket(AddressFamily::Inet, SockType::Stream, SockFlag::empty(), None).unwrap();
    bind(fd.as_raw_fd(), &SockaddrIn::from(local)).unwrap();
    let SocketAddr::V4(to) = to else { unreachable!() };
    connect(fd.as_raw_fd(), &SockaddrIn::from(to)).expect("connecting to the VIP");
    TcpStream::from(fd)
}

#[test]
fn two_clients_with_the_same_source_port_are_both_answered() {
    let lab = lb_lab();
    // A second client address on the client's veth: two clients, one port.
    let second = Ipv4Addr::new(10, 78, 0, 3);
    lab.client
        .run(&["ip", "addr", "add", &format!("{second}/24"), "dev", lab.client.iface])
        .unwrap();
    for (mode, port) in [("dsr", 47001), ("nat", 47002)] {
        let mut cmd = lab.lb.cmd(common::example_path("xdp_lb"));
        let (vip, b1) = (lab.vip.to_string(), lab.backends[0].ipv4.to_string());
        cmd.args([lab.lb.iface, "--vip", &vip, "--backend", &b1, "--mode", mode]);
        let mut lb = spawn(cmd);
        lb.wait_attached();
        let answers = in_namespace(&lab.client.ns, || {
            // Both connected before either asks: at the same moment, to one backend.
            let mut conns: Vec<TcpStream> = [lab.client.ipv4, second]
                .iter()
                .map(|&a| connect_from(std::net::SocketAddrV4::new(a, port), vip_of(&lab)))
                .collect();
            conns
                .iter_mut()
                .map(|s| {
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    s.write_all(b"hi\n").unwrap();
                    let mut answer = Vec::new();
                    s.read_to_end(&mut answer).map(|_| answered_by(&answer))
                })
                .collect::<Vec<_>>()
        })
        .unwrap();
        let done = lb.stop(Signal::SIGINT, Duration::from_secs(5));
        for a in &answers {
            assert!(matches!(a, Ok(Some(b)) if b == "b1"), "{mode}: {answers:?}\n{}", done.stderr);
        }
    }
}

#[test]
fn dsr_over_ipv6_answered_and_balanced() {
    let lab = lb_lab();
    let mut cmd = lab.lb.cmd(common::example_path("xdp_lb"));
    cmd.args(backend_args(&lab)).args(["--vip6", &LB_VIP6.to_string()]);
    let mut lb = spawn(cmd);
    lb.wait_attached();
    let vip6 = SocketAddr::new(LB_VIP6.into(), LB_PORT);
    let results = fetch_many(&lab.client, vip6, 400, 4);
    let done = lb.stop(Signal::SIGINT, Duration::from_secs(5));
    let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of 400 failed, e.g. {:?}\n{}",
        failed.len(),
        failed[0],
        done.stderr
    );
    let b1 = results.iter().filter(|r| r.as_deref() == Ok("b1")).count();
    assert!((140..=260).contains(&b1), "unbalanced: b1 {b1} of 400");
    // Counted by the program (IPv6 connections are not reported line by line).
    let summary = done.stderr.lines().find(|l| l.starts_with("connections:")).expect("a summary");
    assert!(summary.contains(&format!("10.78.0.11 {b1} ")), "{summary}");
}

#[test]
fn a_backend_missing_from_the_neighbour_table_is_named() {
    let lab = lb_lab();
    let mut cmd = lab.lb.cmd(common::example_path("xdp_lb"));
    cmd.args([lab.lb.iface, "--vip", &lab.vip.to_string(), "--backend", "10.78.0.99"]);
    let done = spawn(cmd).wait(Duration::from_secs(20));
    assert!(!done.status.success());
    assert!(done.stderr.contains("no MAC address for 10.78.0.99"), "{}", done.stderr);
}

// ---- BPF_PROG_TEST_RUN: frames built from scratch ----------------------------------

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 1);
const CLIENT2: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 3);
const LB: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 10);
const BACKENDS: [Ipv4Addr; 3] =
    [Ipv4Addr::new(10, 78, 0, 11), Ipv4Addr::new(10, 78, 0, 12), Ipv4Addr::new(10, 78, 0, 13)];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const BACKEND_MACS: [[u8; 6]; 3] =
    [[0x02, 0, 0, 0, 0, 0x11], [0x02, 0, 0, 0, 0, 0x12], [0x02, 0, 0, 0, 0, 0x13]];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;
const MAX_BACKENDS: u32 = 16;

type LbSkel = common::skel::xdp_lb::XdpLbSkel<'static>;

/// A loaded xdp_lb for the VIP (`dsr`: direct server return, else full NAT), with
/// the first `live` backends live.
fn loaded(dsr: bool, live: usize) -> LbSkel {
    let storage = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = XdpLbSkelBuilder::default().open(storage).unwrap();
    let rodata = open.maps.rodata_data.as_mut().unwrap();
    rodata.vip = u32::from_ne_bytes(VIP.octets());
    rodata.lb_addr = u32::from_ne_bytes(LB.octets());
    rodata.dsr = dsr;
    let skel = open.load().unwrap();
    for slot in 0..live {
        set_live(&skel, slot, true);
    }
    skel
}

/// struct backend { __be32 addr; __u8 mac[6]; __u8 live; __u8 _pad; }, then the
/// Maglev table over the live ones, as examples/xdp_lb.rs builds it.
fn set_live(skel: &LbSkel, slot: usize, live: bool) {
    let mut value = BACKENDS[slot].octets().to_vec();
    value.extend_from_slice(&BACKEND_MACS[slot]);
    value.extend_from_slice(&[live as u8, 0]);
    skel.maps.backends.update(&(slot as u32).to_ne_bytes(), &value, MapFlags::ANY).unwrap();
    let live: Vec<u32> = (0..BACKENDS.len() as u32)
        .filter(|s| {
            let bytes = skel.maps.backends.lookup(&s.to_ne_bytes(), MapFlags::ANY).unwrap();
            bytes.is_some_and(|b| b[10] == 1)
        })
        .collect();
    let names: Vec<u32> =
        live.iter().map(|&s| u32::from_ne_bytes(BACKENDS[s as usize].octets())).collect();
    let size = skel.maps.maglev.max_entries() as usize;
    let table = ebpf_workshop::maglev::table(&names, size);
    for i in 0..size {
        let slot = table.get(i).map_or(MAX_BACKENDS, |&b| live[b]);
        skel.maps
            .maglev
            .update(&(i as u32).to_ne_bytes(), &slot.to_ne_bytes(), MapFlags::ANY)
            .unwrap();
    }
}

/// A TCP segment with its checksum computed over the IPv4 pseudo-header.
fn tcp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&sport.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes()); // sequence number
    t[12] = 5 << 4; // data offset: 5 words
    t[13] = flags;
    t[14..16].copy_from_slice(&64240u16.to_be_bytes()); // window
    t.extend_from_slice(payload);
    let mut pseudo = Vec::new();
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&dst.octets());
    pseudo.extend_from_slice(&[0, IPPROTO_TCP]);
    pseudo.extend_from_slice(&(t.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(&t);
    let sum = checksum(&pseudo);
    t[16..18].copy_from_slice(&sum.to_be_bytes());
    t
}

/// A whole frame: Ethernet, IPv4, TCP, every checksum from scratch.
#[allow(clippy::too_many_arguments)]
fn frame(
    smac: [u8; 6],
    dmac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let segment = tcp(src, dst, sport, dport, flags, payload);
    ethernet(
        dmac,
        smac,
        None,
        ETH_P_IP,
        &ipv4(src, dst, IPPROTO_TCP, &Ipv4Opts::default(), &segment),
    )
}

/// The client's packet to the VIP.
fn to_vip(sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    frame(CLIENT_MAC, LB_MAC, CLIENT, VIP, sport, LB_PORT, flags, payload)
}

/// Run the program on a client->VIP frame; which backend slot it went to and the
/// source port the backend sees. In dsr, only the MACs may change; in nat the
/// frame is the balancer's, from a port of its choosing, checksums exact.
fn forward(skel: &LbSkel, sport: u16, flags: u8, payload: &[u8]) -> (usize, u16) {
    let dsr = skel.maps.rodata_data.as_ref().unwrap().dsr;
    let run = test_run(&skel.progs.xdp_lb, &to_vip(sport, flags, payload)).unwrap();
    assert_eq!(run.action, XDP_TX, "client -> VIP must go out again");
    let slot = BACKEND_MACS.iter().position(|m| run.frame[0..6] == *m).expect("a backend's MAC");
    if dsr {
        let expected =
            frame(LB_MAC, BACKEND_MACS[slot], CLIENT, VIP, sport, LB_PORT, flags, payload);
        assert_eq!(run.frame, expected, "dsr rewrite, sport {sport}");
        return (slot, sport);
    }
    let nat_port = u16::from_be_bytes([run.frame[34], run.frame[35]]);
    assert!(nat_port >= 1024, "nat port {nat_port}");
    let expected =
        frame(LB_MAC, BACKEND_MACS[slot], LB, BACKENDS[slot], nat_port, LB_PORT, flags, payload);
    assert_eq!(run.frame, expected, "nat rewrite, sport {sport}");
    (slot, nat_port)
}

/// A backend's reply in nat, and what the client must get.
fn reply_frames(
    slot: usize,
    nat_port: u16,
    sport: u16,
    flags: u8,
    payload: &[u8],
) -> (Vec<u8>, Vec<u8>) {
    let from =
        frame(BACKEND_MACS[slot], LB_MAC, BACKENDS[slot], LB, LB_PORT, nat_port, flags, payload);
    (from, frame(LB_MAC, CLIENT_MAC, VIP, CLIENT, LB_PORT, sport, flags, payload))
}

#[test]
fn forward_rewrite_is_byte_exact_and_sticky() {
    for dsr in [true, false] {
        let skel = loaded(dsr, 2);
        let mut seen = [0; 2];
        for sport in 40000..40064u16 {
            let (slot, port) = forward(&skel, sport, SYN, &[]);
            seen[slot] += 1;
            // The rest of the connection goes where its SYN went, from the same port.
            assert_eq!(forward(&skel, sport, ACK, &[]), (slot, port));
            assert_eq!(forward(&skel, sport, PSH_ACK, b"hi\n"), (slot, port));
        }
        assert!(seen[0] > 10 && seen[1] > 10, "64 connections spread {seen:?}");
    }
}

#[test]
fn dsr_leaves_ip_and_tcp_alone_and_keeps_no_reply_state() {
    let skel = loaded(true, 2);
    for sport in 41000..41032u16 {
        forward(&skel, sport, SYN, &[]); // asserts: only the MACs changed
    }
    assert!(skel.maps.replies.keys().next().is_none(), "dsr wrote reply state");
    // Packets to the balancer's own address are not replies in dsr: the kernel's.
    let own = frame(BACKEND_MACS[0], LB_MAC, BACKENDS[0], LB, LB_PORT, 41000, ACK, &[]);
    assert_eq!(test_run(&skel.progs.xdp_lb, &own).unwrap().action, XDP_PASS);
}

#[test]
fn ipv6_dsr_rewrite_changes_only_the_macs() {
    let client6: std::net::Ipv6Addr = "fd78::1".parse().unwrap();
    let other6: std::net::Ipv6Addr = "fd78::99".parse().unwrap();
    let six = |dst, sport: u16, flags| {
        // The checksum is never read nor changed in dsr: any value does.
        let segment = tcp(CLIENT, VIP, sport, LB_PORT, flags, b"hi");
        ethernet(LB_MAC, CLIENT_MAC, None, 0x86DD, &ipv6(client6, dst, IPPROTO_TCP, &segment))
    };
    for dsr in [true, false] {
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = XdpLbSkelBuilder::default().open(storage).unwrap();
        let rodata = open.maps.rodata_data.as_mut().unwrap();
        rodata.vip = u32::from_ne_bytes(VIP.octets());
        rodata.dsr = dsr;
        for (w, b) in rodata.vip6.iter_mut().zip(LB_VIP6.octets().chunks(4)) {
            *w = u32::from_ne_bytes(b.try_into().unwrap());
        }
        rodata.has_vip6 = true;
        let skel = open.load().unwrap();
        set_live(&skel, 0, true);
        set_live(&skel, 1, true);
        let mut seen = [0; 2];
        for sport in 42000..42064u16 {
            for flags in [SYN, PSH_ACK] {
                let f = six(LB_VIP6, sport, flags);
                let run = test_run(&skel.progs.xdp_lb, &f).unwrap();
                if !dsr {
                    assert_eq!((run.action, &run.frame), (XDP_PASS, &f), "nat is IPv4 only");
                    continue;
                }
                assert_eq!(run.action, XDP_TX);
                let slot = BACKEND_MACS.iter().position(|m| run.frame[0..6] == *m).unwrap();
                let mut expected = f.clone();
                expected[0..6].copy_from_slice(&BACKEND_MACS[slot]);
                expected[6..12].copy_from_slice(&LB_MAC);
                assert_eq!(run.frame, expected, "IPv6 dsr rewrite");
                seen[slot] += usize::from(flags == SYN);
            }
        }
        assert!(!dsr || (seen[0] > 10 && seen[1] > 10), "spread {seen:?}");
        // IPv6 to another address passes.
        let f = six(other6, 42000, SYN);
        assert_eq!(test_run(&skel.progs.xdp_lb, &f).unwrap().action, XDP_PASS);
    }
}

#[test]
fn reverse_rewrite_is_byte_exact() {
    let skel = loaded(false, 2);
    for sport in 50000..50016u16 {
        let (slot, nat_port) = forward(&skel, sport, SYN, &[]);
        for (flags, payload) in [(SYN | ACK, &b""[..]), (PSH_ACK, b"served by b1\n")] {
            let (from, expected) = reply_frames(slot, nat_port, sport, flags, payload);
            let run = test_run(&skel.progs.xdp_lb, &from).unwrap();
            assert_eq!(run.action, XDP_TX);
            assert_eq!(run.frame, expected, "reply rewrite, sport {sport}");
        }
    }
}

#[test]
fn two_clients_with_one_source_port_get_two_nat_ports() {
    let skel = loaded(false, 1);
    let (slot, first) = forward(&skel, 40000, SYN, &[]);
    // The second client, same port, same backend: the old design refused it.
    let second = frame(CLIENT_MAC, LB_MAC, CLIENT2, VIP, 40000, LB_PORT, SYN, &[]);
    let run = test_run(&skel.progs.xdp_lb, &second).unwrap();
    assert_eq!(run.action, XDP_TX, "the second client was refused");
    let port2 = u16::from_be_bytes([run.frame[34], run.frame[35]]);
    assert_ne!(port2, first, "two clients behind one port");
    // Each reply finds its own client.
    let (from, expected) = reply_frames(slot, first, 40000, ACK, &[]);
    assert_eq!(test_run(&skel.progs.xdp_lb, &from).unwrap().frame, expected);
    let from = frame(BACKEND_MACS[slot], LB_MAC, BACKENDS[slot], LB, LB_PORT, port2, ACK, &[]);
    let to2 = frame(LB_MAC, CLIENT_MAC, VIP, CLIENT2, LB_PORT, 40000, ACK, &[]);
    assert_eq!(test_run(&skel.progs.xdp_lb, &from).unwrap().frame, to2);
}

/// New connections counted so far, all backends.
fn new_connections(skel: &LbSkel) -> u64 {
    (0..BACKENDS.len() as u32)
        .map(|s| {
            let per_cpu = skel.maps.per_backend.lookup_percpu(&s.to_ne_bytes(), MapFlags::ANY);
            per_cpu
                .unwrap()
                .unwrap()
                .iter()
                .map(|v| u64::from_ne_bytes(v[0..8].try_into().unwrap()))
                .sum::<u64>()
        })
        .sum()
}

#[test]
fn a_syn_on_a_known_tuple_is_a_new_connection() {
    for dsr in [true, false] {
        let skel = loaded(dsr, 2);
        let first = forward(&skel, 45000, SYN, &[]);
        forward(&skel, 45000, PSH_ACK, b"bye");
        // The client reuses the port later: the same backend (the Maglev table has
        // not changed) and, in nat, the same port; counted and reported again.
        assert_eq!(forward(&skel, 45000, SYN, &[]), first);
        assert_eq!(new_connections(&skel), 2, "dsr {dsr}");
    }
}

#[test]
fn removing_one_of_three_moves_few_new_flows_and_no_live_one() {
    let skel = loaded(true, 3);
    let ports = 20000..23000u16;
    let before: Vec<usize> = ports.clone().map(|p| forward(&skel, p, SYN, &[]).0).collect();
    set_live(&skel, 2, false);
    // Live connections keep their backend, the removed one's too (they drain).
    for (p, &slot) in ports.clone().zip(&before) {
        assert_eq!(forward(&skel, p, ACK, &[]).0, slot, "live connection {p} moved");
    }
    // The same tuples as new connections (a SYN re-picks): only the removed
    // backend's flows must move; Maglev moves a few of the others' as well.
    let (mut stayed, mut moved) = (0, 0);
    for (p, &slot) in ports.zip(&before) {
        let now = forward(&skel, p, SYN, &[]).0;
        assert_ne!(now, 2, "a new connection went to the removed backend");
        if slot != 2 {
            stayed += 1;
            moved += usize::from(now != slot);
        }
    }
    let share = moved as f64 / stayed as f64;
    eprintln!(
        "removing one of 3 backends moved {moved} of {stayed} flows that could stay ({:.1}%)",
        share * 100.0
    );
    assert!(share <= 0.40, "{share}");
}

#[test]
fn checksums_stay_exact_for_odd_lengths_and_carries() {
    let skel = loaded(false, 2);
    // Payload lengths odd and even, bytes that make the sums carry, many ports.
    let mut x = 0x2545_f491u32;
    for i in 0..300u32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let len = (x % 1400) as usize;
        let payload: Vec<u8> = (0..len).map(|j| (x >> (j % 24)) as u8 | 0xf0).collect();
        let sport = 1024 + (x % 60000) as u16;
        let (slot, nat_port) =
            forward(&skel, sport, if i % 3 == 0 { SYN } else { PSH_ACK }, &payload);
        let (from, expected) = reply_frames(slot, nat_port, sport, PSH_ACK, &payload);
        let run = test_run(&skel.progs.xdp_lb, &from).unwrap();
        assert_eq!(run.frame, expected, "len {len}");
    }
}

#[test]
fn other_traffic_passes_untouched() {
    let skel = loaded(false, 2);
    let cases = [
        (
            "TCP to the balancer itself, no connection",
            frame(CLIENT_MAC, LB_MAC, CLIENT, LB, 40000, 22, SYN, &[]),
        ),
        (
            "TCP to another host",
            frame(CLIENT_MAC, LB_MAC, CLIENT, BACKENDS[0], 40000, LB_PORT, SYN, &[]),
        ),
        (
            "a backend's packet for no connection",
            frame(BACKEND_MACS[0], LB_MAC, BACKENDS[0], LB, LB_PORT, 41234, ACK, &[]),
        ),
        (
            "UDP to the VIP",
            ethernet(
                LB_MAC,
                CLIENT_MAC,
                None,
                ETH_P_IP,
                &ipv4(CLIENT, VIP, 17, &Ipv4Opts::default(), &udp(40000, LB_PORT, b"x")),
            ),
        ),
        (
            "a TCP fragment to the VIP",
            ethernet(
                LB_MAC,
                CLIENT_MAC,
                None,
                ETH_P_IP,
                &ipv4(
                    CLIENT,
                    VIP,
                    IPPROTO_TCP,
                    &Ipv4Opts { frag: 0x2000, ..Default::default() },
                    &tcp(CLIENT, VIP, 40000, LB_PORT, SYN, &[]),
                ),
            ),
        ),
        ("ARP", ethernet([0xff; 6], CLIENT_MAC, None, 0x0806, &[0u8; 28])),
        ("IPv6", ethernet(LB_MAC, CLIENT_MAC, None, 0x86DD, &[0x60; 60])),
    ];
    for (what, f) in cases {
        let run = test_run(&skel.progs.xdp_lb, &f).unwrap();
        assert_eq!(run.action, XDP_PASS, "{what}");
        assert_eq!(run.frame, f, "{what}: a passed frame must not change");
    }
}

#[test]
fn truncated_frames_pass_untouched() {
    let skel = loaded(false, 2);
    let whole = to_vip(40000, SYN, &[]);
    // The kernel refuses test runs on less than an Ethernet header (14 bytes).
    for len in 14..whole.len() {
        let cut = &whole[..len];
        let run = test_run(&skel.progs.xdp_lb, cut).unwrap();
        assert_eq!((run.action, &run.frame[..]), (XDP_PASS, cut), "cut at {len} bytes");
    }
}

#[test]
fn removed_backends_take_no_new_connections_but_keep_old_ones() {
    for dsr in [true, false] {
        let skel = loaded(dsr, 2);
        let old: Vec<(u16, (usize, u16))> =
            (30000..30032).map(|p| (p, forward(&skel, p, SYN, &[]))).collect();
        set_live(&skel, 1, false);
        for p in 31000..31032 {
            assert_eq!(forward(&skel, p, SYN, &[]).0, 0, "new connection to a removed backend");
        }
        for &(p, to) in &old {
            assert_eq!(forward(&skel, p, PSH_ACK, b"more"), to, "an old connection moved");
        }
        // No live backend at all: new connections are dropped, counted.
        set_live(&skel, 0, false);
        let run = test_run(&skel.progs.xdp_lb, &to_vip(32000, SYN, &[])).unwrap();
        assert_eq!(run.action, XDP_DROP);
    }
}
