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
use ebpf_workshop_dev::frames::{checksum, ethernet, ipv4, udp, Ipv4Opts, ETH_P_IP, IPPROTO_TCP};
use ebpf_workshop_dev::lab::{answered_by, serve_name, Host, LbLab, LB_PORT};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use nix::sys::signal::Signal;

// ---- the lab ---------------------------------------------------------------------

/// A fresh load-balancer lab, with each backend answering "served by b1"/"b2" from
/// a thread of this test (its listener bound inside the backend's namespace).
fn lb_lab() -> LbLab {
    let lab = LbLab::up(&unique("ebpflb-t")).expect("building the load-balancer lab");
    for (b, name) in lab.backends.iter().zip(["b1", "b2"]) {
        let listener = in_namespace(&b.ns, || std::net::TcpListener::bind(("0.0.0.0", LB_PORT)))
            .unwrap()
            .unwrap();
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

/// xdp_lb on the balancer, as the lab's instructions run it; its stdin reads
/// `fifo` when given (for `add`/`remove` lines), else nothing.
fn run_lb(lab: &LbLab, fifo: Option<&std::path::Path>) -> Running {
    let exe = common::example_path("xdp_lb");
    let mut cmd = lab.lb.cmd("sh");
    // sh opens the FIFO as stdin, then becomes xdp_lb (same pid).
    let redirect = fifo.map(|f| format!(" < '{}'", f.display())).unwrap_or_default();
    cmd.args(["-c", &format!("exec \"$0\" \"$@\"{redirect}")]).arg(exe).args(backend_args(lab));
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
fn a_thousand_connections_all_answered_and_balanced() {
    let lab = lb_lab();
    let mut lb = run_lb(&lab, None);
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
    eprintln!("1000 connections in {took:?}: b1 {b1}, b2 {b2}");

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
    let mut lb = run_lb(&lab, Some(&fifo));
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
        let mut lb = run_lb(&lab, None);
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
const LB: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const VIP: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 10);
const BACKENDS: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 78, 0, 11), Ipv4Addr::new(10, 78, 0, 12)];
const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const LB_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const BACKEND_MACS: [[u8; 6]; 2] = [[0x02, 0, 0, 0, 0, 0x11], [0x02, 0, 0, 0, 0, 0x12]];
const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

type LbSkel = common::skel::xdp_lb::XdpLbSkel<'static>;

/// A loaded xdp_lb for the VIP, with both backends live.
fn loaded() -> LbSkel {
    let storage = Box::leak(Box::new(MaybeUninit::uninit()));
    let mut open = XdpLbSkelBuilder::default().open(storage).unwrap();
    let rodata = open.maps.rodata_data.as_mut().unwrap();
    rodata.vip = u32::from_ne_bytes(VIP.octets());
    rodata.lb_addr = u32::from_ne_bytes(LB.octets());
    let skel = open.load().unwrap();
    for slot in 0..2 {
        set_live(&skel, slot, true);
    }
    skel
}

/// struct backend { __be32 addr; __u8 mac[6]; __u8 live; __u8 _pad; }
fn set_live(skel: &LbSkel, slot: usize, live: bool) {
    let mut value = BACKENDS[slot].octets().to_vec();
    value.extend_from_slice(&BACKEND_MACS[slot]);
    value.extend_from_slice(&[live as u8, 0]);
    skel.maps.backends.update(&(slot as u32).to_ne_bytes(), &value, MapFlags::ANY).unwrap();
    // struct live_set { __u32 count; __u32 slot[16]; }: the live slots, as
    // examples/xdp_lb.rs keeps them.
    let mut live: Vec<u32> = Vec::new();
    for s in 0..BACKENDS.len() {
        let bytes = skel.maps.backends.lookup(&(s as u32).to_ne_bytes(), MapFlags::ANY).unwrap();
        if bytes.is_some_and(|b| b[10] == 1) {
            live.push(s as u32);
        }
    }
    let mut set = (live.len() as u32).to_ne_bytes().to_vec();
    for i in 0..16 {
        set.extend_from_slice(&live.get(i).copied().unwrap_or(0).to_ne_bytes());
    }
    skel.maps.live.update(&0u32.to_ne_bytes(), &set, MapFlags::ANY).unwrap();
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

/// The client's packet to the VIP, and the one the backend in `slot` must get.
fn to_vip(sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    frame(CLIENT_MAC, LB_MAC, CLIENT, VIP, sport, LB_PORT, flags, payload)
}
fn expected_forward(slot: usize, sport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
    frame(LB_MAC, BACKEND_MACS[slot], LB, BACKENDS[slot], sport, LB_PORT, flags, payload)
}

/// Run the program on a client->VIP frame; which backend slot it went to.
fn forward(skel: &LbSkel, sport: u16, flags: u8, payload: &[u8]) -> usize {
    let run = test_run(&skel.progs.xdp_lb, &to_vip(sport, flags, payload)).unwrap();
    assert_eq!(run.action, XDP_TX, "client -> VIP must go out again");
    let slot =
        BACKENDS.iter().position(|b| run.frame[30..34] == b.octets()).expect("a backend's address");
    assert_eq!(
        run.frame,
        expected_forward(slot, sport, flags, payload),
        "forward rewrite, sport {sport}"
    );
    slot
}

#[test]
fn forward_rewrite_is_byte_exact_and_sticky() {
    let skel = loaded();
    let mut seen = [0; 2];
    for sport in 40000..40064u16 {
        let slot = forward(&skel, sport, SYN, &[]);
        seen[slot] += 1;
        // The rest of the connection goes where its SYN went.
        assert_eq!(forward(&skel, sport, ACK, &[]), slot);
        assert_eq!(forward(&skel, sport, PSH_ACK, b"hi\n"), slot);
    }
    assert!(seen[0] > 10 && seen[1] > 10, "64 connections spread {seen:?}");
}

#[test]
fn reverse_rewrite_is_byte_exact() {
    let skel = loaded();
    for sport in 50000..50016u16 {
        let slot = forward(&skel, sport, SYN, &[]);
        for (flags, payload) in [(SYN | ACK, &b""[..]), (PSH_ACK, b"served by b1\n")] {
            let reply = frame(
                BACKEND_MACS[slot],
                LB_MAC,
                BACKENDS[slot],
                LB,
                LB_PORT,
                sport,
                flags,
                payload,
            );
            let run = test_run(&skel.progs.xdp_lb, &reply).unwrap();
            assert_eq!(run.action, XDP_TX);
            let expected = frame(LB_MAC, CLIENT_MAC, VIP, CLIENT, LB_PORT, sport, flags, payload);
            assert_eq!(run.frame, expected, "reply rewrite, sport {sport}");
        }
    }
}

#[test]
fn checksums_stay_exact_for_odd_lengths_and_carries() {
    let skel = loaded();
    // Payload lengths odd and even, bytes that make the sums carry, many ports.
    let mut x = 0x2545_f491u32;
    for i in 0..300u32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let len = (x % 1400) as usize;
        let payload: Vec<u8> = (0..len).map(|j| (x >> (j % 24)) as u8 | 0xf0).collect();
        let sport = 1024 + (x % 60000) as u16;
        let slot = forward(&skel, sport, if i % 3 == 0 { SYN } else { PSH_ACK }, &payload);
        let reply = frame(
            BACKEND_MACS[slot],
            LB_MAC,
            BACKENDS[slot],
            LB,
            LB_PORT,
            sport,
            PSH_ACK,
            &payload,
        );
        let run = test_run(&skel.progs.xdp_lb, &reply).unwrap();
        assert_eq!(
            run.frame,
            frame(LB_MAC, CLIENT_MAC, VIP, CLIENT, LB_PORT, sport, PSH_ACK, &payload),
            "len {len}"
        );
    }
}

#[test]
fn other_traffic_passes_untouched() {
    let skel = loaded();
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
    let skel = loaded();
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
    let skel = loaded();
    let old: Vec<(u16, usize)> = (30000..30032).map(|p| (p, forward(&skel, p, SYN, &[]))).collect();
    set_live(&skel, 1, false);
    for p in 31000..31032 {
        assert_eq!(forward(&skel, p, SYN, &[]), 0, "new connection to a removed backend");
    }
    for &(p, slot) in &old {
        assert_eq!(forward(&skel, p, PSH_ACK, b"more"), slot, "an old connection moved");
    }
    // No live backend at all: new connections are dropped, counted.
    set_live(&skel, 0, false);
    let run = test_run(&skel.progs.xdp_lb, &to_vip(32000, SYN, &[])).unwrap();
    assert_eq!(run.action, XDP_DROP);
}
