//! Section 1: Each packet example's program cost per packet in place: the example runs
//! as a user runs it, in the lab's server namespace, and the kernel's own statistics
//! time its program under a lab flood, beside a floor program on the client end.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ebpf_workshop::netns::in_namespace;
use ebpf_workshop_dev::frames;
use ebpf_workshop_dev::lab::{Host, Lab};
use ebpf_workshop_dev::progs::prog_of;
use nix::libc;

use crate::figures::Figures;
use crate::floor::{Floor, Hook};
use crate::stats::{BpfStats, RunStats};
use crate::{start, stop_cleanly};

pub fn title() -> String {
    "Program cost per packet in place (kernel's own stats, under a lab flood)".to_string()
}

/// Pings per in-place run, and the gap between dropped ones (a steady stream:
/// nothing answers them, so there is nothing for a flood to wait for).
pub const IN_PLACE_FLOOD: u32 = 20_000;
const STREAM_GAP: Duration = Duration::from_micros(20);

/// One row of the in-place table.
struct InPlace {
    /// The example, and its flags besides the interface and --quiet.
    example: &'static str,
    flags: &'static [&'static str],
    /// Its program's name in the kernel.
    prog: &'static str,
    hook: Hook,
    /// Who answers the pings: the server's kernel (echo replies on), the example
    /// (kernel replies off), or nobody (the example drops them: paced, not flooded).
    answers: Answers,
}

#[derive(Clone, Copy, PartialEq)]
enum Answers {
    Kernel,
    Example,
    Nobody,
}

const IN_PLACE: [InPlace; 6] = [
    InPlace {
        example: "xdp",
        flags: &[],
        prog: "xdp_inspect",
        hook: Hook::Xdp,
        answers: Answers::Kernel,
    },
    InPlace {
        example: "xdp",
        flags: &["--drop-pings"],
        prog: "xdp_inspect",
        hook: Hook::Xdp,
        answers: Answers::Nobody,
    },
    InPlace {
        example: "xdp_pingpong",
        flags: &[],
        prog: "xdp_pingpong",
        hook: Hook::Xdp,
        answers: Answers::Example,
    },
    InPlace {
        example: "tc",
        flags: &[],
        prog: "tc_ingress",
        hook: Hook::Tc,
        answers: Answers::Nobody,
    },
    InPlace {
        example: "tc_pingpong",
        flags: &[],
        prog: "tc_pingpong",
        hook: Hook::Tc,
        answers: Answers::Example,
    },
    InPlace {
        example: "socket_filter",
        flags: &[],
        prog: "socket_filter",
        hook: Hook::Socket,
        answers: Answers::Kernel,
    },
];

/// Echo requests from `host`'s namespace to `to`: `count` of them, one every
/// `gap`, from a raw ICMP socket. For dropped pings: `ping` keeps no pace when
/// nothing answers (iputils then sends about 100 a second, whatever -i says).
/// Returns how long the sending took.
pub fn ping_stream(
    host: &Host,
    to: std::net::Ipv4Addr,
    count: u32,
    gap: Duration,
) -> Result<Duration> {
    in_namespace(&host.ns, || -> Result<Duration> {
        let raw = unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::IPPROTO_ICMP)
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error()).context("opening a raw ICMP socket");
        }
        let socket = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(to).to_be();
        let id = std::process::id() as u16;
        let start = Instant::now();
        for seq in 0..count {
            // The kernel adds the IP header; 56 bytes of data, as ping sends.
            let request = frames::icmp4_echo(frames::ICMP_ECHO, id, seq as u16, &[0x5a; 56]);
            let sent = unsafe {
                libc::sendto(
                    socket.as_raw_fd(),
                    request.as_ptr().cast(),
                    request.len(),
                    0,
                    (&addr as *const libc::sockaddr_in).cast(),
                    std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
                )
            };
            if sent < 0 {
                return Err(std::io::Error::last_os_error()).context("sending an echo request");
            }
            let next = start + gap * (seq + 1);
            while Instant::now() < next {
                std::hint::spin_loop();
            }
        }
        Ok(start.elapsed())
    })?
}

/// Run a row's traffic: `ping -f` when someone answers (it sends the next request
/// when the reply comes), else a steady stream. Returns (sent, answered); None
/// for a stream, whose answers nobody counts.
fn send_traffic(lab: &Lab, answers: Answers) -> Result<(u32, Option<u32>)> {
    let target = lab.server.ipv4;
    if answers == Answers::Nobody {
        ping_stream(&lab.client, target, IN_PLACE_FLOOD, STREAM_GAP)?;
        Ok((IN_PLACE_FLOOD, None))
    } else {
        let count = IN_PLACE_FLOOD.to_string();
        let ping = lab.client.ping(&["-q", "-f", "-c", &count, &target.to_string()])?;
        Ok((ping.sent, Some(ping.received)))
    }
}

pub fn run(lab: &Lab, examples: &Path, json: &mut Figures) -> Result<()> {
    let _stats = BpfStats::set(true)?; // restored when this ends, also on error
    let (client, server) = (&lab.client, &lab.server);
    println!("| example | traffic | ns/packet reporting on | ns/packet reporting off (--quiet) | floor ns/packet (same run) | on/floor | on/off |");
    println!("|---|---|---|---|---|---|---|");
    let mut notes = Vec::new();
    for row in &IN_PLACE {
        let floor = Floor::up(row.hook, client)?;
        let what = match row.answers {
            Answers::Kernel => format!("`ping -f`, {IN_PLACE_FLOOD} pings, answered by the kernel"),
            Answers::Example => {
                format!("`ping -f`, {IN_PLACE_FLOOD} pings, answered by the example")
            }
            Answers::Nobody => format!(
                "{IN_PLACE_FLOOD} pings at {:.0}k/s, dropped",
                1e-3 / STREAM_GAP.as_secs_f64()
            ),
        };
        let label = [row.example].iter().chain(row.flags).copied().collect::<Vec<_>>().join(" ");
        let key = format!("in_place_{}", label.replace(" --", "_").replace('-', "_"));
        server.kernel_echo_reply(row.answers != Answers::Example)?;
        let mut floor_total = RunStats::default();
        let mut figures = Vec::new();
        for quiet in [false, true] {
            let mut cmd = server.cmd(examples.join(row.example));
            cmd.arg(server.iface).args(row.flags).args(quiet.then_some("--quiet"));
            let example = start(cmd)?;
            let prog = prog_of(example.pid(), row.prog)?;
            let (p0, f0) = (RunStats::of(prog.as_fd())?, floor.stats()?);
            let (sent, answered) = send_traffic(lab, row.answers)?;
            let (p1, f1) = (RunStats::of(prog.as_fd())?, floor.stats()?);
            let said = stop_cleanly(example)?;
            let (ours, theirs) = (p1.since(p0), f1.since(f0));
            floor_total.add(theirs);
            let run = format!("{label}{}", if quiet { " --quiet" } else { "" });
            if let Some(answered) = answered.filter(|&n| n != sent) {
                notes.push(format!("{run}: {answered} of {sent} pings answered"));
            }
            if ours.runs < sent as u64 {
                notes.push(format!("{run}: the program ran {} times for {sent} pings", ours.runs));
            }
            if let Some(lost) =
                said.lines().find(|l| l.contains("events lost") && !l.contains(" 0 events"))
            {
                notes.push(format!("{run}: {lost}"));
            }
            let run_key = format!("{key}_{}", if quiet { "quiet" } else { "reporting" });
            json.record(&format!("{run_key}_ns_per_packet"), ours.per_run());
            json.record(&format!("{run_key}_runs_per_ping"), ours.runs as f64 / sent as f64);
            figures.push(ours.per_run());
        }
        // Dropped pings give the floor no replies to run on: the same stream
        // again, answered by the kernel, with the example stopped.
        if row.answers == Answers::Nobody {
            server.kernel_echo_reply(true)?;
            let f0 = floor.stats()?;
            send_traffic(lab, Answers::Nobody)?;
            floor_total = floor.stats()?.since(f0);
        }
        server.kernel_echo_reply(true)?;
        drop(floor);
        let (on, off, base) = (figures[0], figures[1], floor_total.per_run());
        println!(
            "| {label} | {what} | {on:.0} | {off:.0} | {base:.0} | {:.1}x | {:.1}x |",
            on / base,
            on / off
        );
        json.record(&format!("{key}_floor_ns_per_packet"), base);
    }
    println!("\nns/packet: the kernel's own account of each program (kernel.bpf_stats_enabled=1:");
    println!("run_time_ns / run_cnt from bpf_prog_info, before and after the traffic), with the");
    println!("example running as a user runs it in the lab's server namespace: its reader prints");
    println!("every report (to /dev/null here). --quiet switches the reports off in the program.");
    println!("The floor is a two-instruction program of the same type on the client end, run by");
    println!("the same traffic: for XDP the lab's XDP_PASS program (each reply), for TC");
    println!("`return TC_ACT_OK` at TCX ingress (each reply), for the socket filter `return 0` on");
    println!("a packet socket (each frame, both ways, as the example's: it runs twice per ping).");
    println!("Dropped pings are sent from a raw socket at a steady rate (ping keeps no pace when");
    println!("nothing answers) and give the floor no replies: its figure comes from the same");
    println!("stream again, answered by the kernel, with the example stopped. Every figure");
    println!("includes the statistics' own clock reads; the floor shows that part.");
    for note in &notes {
        println!("\nnote: {note}");
    }
    Ok(())
}
