//! `make bench`: measure the talk's claim — "eBPF networking enables efficiency and
//! high performance" — on this machine, in the lab. Prints markdown tables and
//! writes the figures to target/bench.json. Run the release build as root:
//! `cargo build --release --examples --bins && sudo target/release/bench`.
//!
//! Section 1 measures each packet example in place, as a user runs it, from the
//! kernel's own per-program statistics; section 2 measures the same programs alone
//! with BPF_PROG_TEST_RUN, where nobody reads their reports.

use std::io::{BufRead, BufReader};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ebpf_workshop::frames::{self, Ping};
use ebpf_workshop::lab::{return_only_program, Host, Lab};
use ebpf_workshop::netns::in_namespace;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The packet examples' skeletons (build.rs writes them to OUT_DIR).
mod skel {
    macro_rules! skeletons {
        ($($name:ident),*) => {$(
            #[allow(clippy::all, unused)]
            pub mod $name {
                include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".skel.rs"));
            }
        )*};
    }
    skeletons!(xdp, xdp_pingpong, tc, tc_pingpong);
}

/// Pings per in-place run, and the gap between dropped ones (a steady stream:
/// nothing answers them, so there is nothing for a flood to wait for).
const IN_PLACE_FLOOD: u32 = 20_000;
const STREAM_GAP: Duration = Duration::from_micros(20);
/// Single runs per program-cost figure, and pings per lab figure.
const SINGLE_RUNS: u32 = 20_000;
const REPEATS: u32 = 100_000;
const FLOOD: u32 = 100_000;
const TIMED_FLOOD: u32 = 20_000;
const LATENCY_PINGS: u32 = 2_000;
const EVENT_PINGS: u32 = 100;
const EXECS: u32 = 10_000;
/// How long an example may take to say "attached".
const ATTACH_TIMEOUT: Duration = Duration::from_secs(20);

fn main() -> Result<()> {
    // `bench 1 3` runs sections 1 and 3 only; no arguments, all of them.
    let mut only = Vec::new();
    for arg in std::env::args().skip(1) {
        match arg.parse::<u32>() {
            Ok(n @ 1..=7) => only.push(n),
            _ => bail!("usage: bench [SECTION...]  (sections 1 to 7; none: all)"),
        }
    }
    let run = |section: u32| only.is_empty() || only.contains(&section);
    ebpf_workshop::preflight::check(ebpf_workshop::preflight::Needs::Tracing)?;
    let examples = std::env::current_exe()?.parent().context("bin dir")?.join("examples");
    for name in [
        "xdp",
        "xdp_pingpong",
        "tc",
        "tc_pingpong",
        "socket_filter",
        "net_events",
        "hello",
        "xdp_lb",
    ] {
        if !examples.join(name).exists() {
            bail!(
                "{} has no {name}: run `cargo build --release --examples` (or `make bench`)",
                examples.display()
            );
        }
    }
    let mut json = Vec::new();
    // Set first: a Ctrl-C from now on removes whatever the bench has made so far.
    ctrlc::set_handler(interrupted).context("Ctrl-C handler")?;
    let lab = Lab::up(&format!("ebpfws-bench{}", std::process::id()))?;
    undo().lab = Some(lab.name.clone());

    if run(1) {
        println!(
            "## 1. Program cost per packet in place (kernel's own stats, under a lab flood)\n"
        );
        let _stats = BpfStats::set(true)?; // restored when this block ends, also on error
        in_place(&lab, &examples, &mut json)?;
    }
    if run(2) {
        println!("\n## 2. Program cost per packet alone (BPF_PROG_TEST_RUN: no ring-buffer reader, so no wake-ups)\n");
        // The statistics' clock reads would be counted in these figures too.
        let _stats = BpfStats::set(false)?;
        program_cost(&lab, &mut json)?;
    }
    let mut modes = None;
    if run(3) {
        println!("\n## 3. Ping answered three ways ({FLOOD}-ping flood; {LATENCY_PINGS} pings for latency)\n");
        modes = Some(ping_three_ways(&lab, &examples, &mut json)?);
    }
    if run(4) {
        println!("\n## 4. Kernel net events per ping on the server ({EVENT_PINGS} pings)\n");
        let all = [Mode::Kernel, Mode::Tc, Mode::Xdp];
        net_events_per_ping(&lab, &examples, modes.as_deref().unwrap_or(&all), &mut json)?;
    }
    if run(5) {
        println!(
            "\n## 5. Start-up: process start to \"attached\", and peak memory (median of 3)\n"
        );
        startup(&lab, &examples, &mut json)?;
    }
    if run(6) {
        println!("\n## 6. Event delivery: hello under a burst of {EXECS} execs\n");
        event_delivery(&examples, &mut json)?;
    }
    if run(7) {
        println!("\n## 7. xdp_lb: connections per second, and its cost in place\n");
        xdp_lb_rows(&examples, &mut json)?;
    }

    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench.json");
    std::fs::write(&path, format!("{{\n{}\n}}\n", json.join(",\n")))?;
    println!("\nfigures written to {}", path.display());
    Ok(())
}

fn record(json: &mut Vec<String>, key: &str, value: f64) {
    json.push(format!("  \"{key}\": {value:.3}"));
}

// ---- Ctrl-C -------------------------------------------------------------------

/// What a Ctrl-C or SIGTERM must undo: the process then ends without running the
/// Drop guards (Running, BpfStats, Lab), so the handler does their work.
struct Undo {
    lab: Option<String>,
    /// The load-balancer lab of section 7, while it exists.
    lb_lab: Option<String>,
    /// kernel.bpf_stats_enabled's value before the bench changed it.
    stats: Option<String>,
    children: Vec<Pid>,
}

static UNDO: std::sync::Mutex<Undo> =
    std::sync::Mutex::new(Undo { lab: None, lb_lab: None, stats: None, children: Vec::new() });

fn undo() -> std::sync::MutexGuard<'static, Undo> {
    UNDO.lock().unwrap_or_else(|e| e.into_inner())
}

fn forget_child(child: &Child) {
    undo().children.retain(|&p| p != Pid::from_raw(child.id() as i32));
}

fn interrupted() {
    let undo = undo();
    for &pid in &undo.children {
        let _ = kill(pid, Signal::SIGKILL);
    }
    if let Some(old) = &undo.stats {
        let _ = std::fs::write(BPF_STATS, old);
    }
    if let Some(lab) = &undo.lab {
        let _ = Lab::down(lab);
    }
    if let Some(lab) = &undo.lb_lab {
        let _ = ebpf_workshop::lab::LbLab::down(lab);
    }
    eprintln!("interrupted: examples stopped, lab removed, {BPF_STATS} restored");
    std::process::exit(130);
}

// ---- running examples ---------------------------------------------------------

/// A started example. Dropping it kills the process, so that an error anywhere in
/// the bench leaves nothing running (nor attached: the examples use bpf_links).
struct Running {
    child: Option<Child>,
    /// Its stderr, line by line, read by a thread until the process exits.
    stderr: mpsc::Receiver<String>,
}

impl Running {
    /// Start `cmd` (stdout to /dev/null: the reader still reads and prints every
    /// report) and wait for its "attached" line on stderr.
    fn start(mut cmd: Command) -> Result<Running> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let pipe = child.stderr.take().context("stderr")?;
        let (tx, rx) = mpsc::channel();
        // Drained to the end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        undo().children.push(Pid::from_raw(child.id() as i32));
        let running = Running { child: Some(child), stderr: rx };
        let deadline = Instant::now() + ATTACH_TIMEOUT;
        let mut said = String::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match running.stderr.recv_timeout(left) {
                Ok(line) if line.starts_with("attached") => return Ok(running),
                Ok(line) => said += &(line + "\n"),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!("{cmd:?} exited before attaching:\n{said}")
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!("{cmd:?} did not attach within {ATTACH_TIMEOUT:?}:\n{said}")
                }
            }
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().expect("running").id() as i32)
    }

    /// Ctrl-C it, wait for it, and return its exit status, peak memory and use of
    /// CPU, and what it wrote to stderr after "attached".
    #[allow(clippy::zombie_processes)] // reaped by wait4, which also gives the rusage
    fn stop(mut self) -> Result<(i32, libc::rusage, String)> {
        kill(self.pid(), Signal::SIGINT)?;
        let child = self.child.take().expect("running");
        forget_child(&child);
        let mut status = 0;
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
        if rc < 0 {
            bail!("wait4: {}", std::io::Error::last_os_error());
        }
        // The process is gone: the reader thread ends, and with it the channel.
        let said = self.stderr.iter().map(|l| l + "\n").collect();
        Ok((status, usage, said))
    }

    /// Ctrl-C it and fail unless it exits cleanly; return its stderr.
    fn stop_cleanly(self) -> Result<String> {
        let (status, _, said) = self.stop()?;
        if status != 0 {
            bail!("the example exited with status {status:#x}:\n{said}");
        }
        Ok(said)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            forget_child(&child);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `ping` from `host`'s namespace, and what its summary says.
struct PingSummary {
    sent: u32,
    received: u32,
    /// ping's own "time Nms": from the first request to the end.
    time_ms: f64,
}

fn lab_ping(host: &Host, args: &[&str]) -> Result<PingSummary> {
    let out = host.cmd("ping").args(["-q", "-n"]).args(args).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .with_context(|| format!("no summary from ping {args:?}: {text}"))?;
    // "20000 packets transmitted, 20000 received, 0% packet loss, time 812ms"
    let field = |suffix: &str| -> Result<f64> {
        line.split(", ")
            .find_map(|p| p.strip_suffix(suffix))
            .map(|v| v.trim_start_matches("time ").trim())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no \"{suffix}\" in ping's summary: {line}"))
    };
    Ok(PingSummary {
        sent: field(" packets transmitted")? as u32,
        received: field(" received")? as u32,
        time_ms: field("ms")?,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

// ---- 1 -----------------------------------------------------------------------

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// kernel.bpf_stats_enabled set for a while: the old value comes back when this
/// is dropped, also on error or panic. While it is 1, the kernel times every run
/// of every BPF program (run_time_ns, run_cnt in bpf_prog_info).
struct BpfStats {
    old: String,
}

impl BpfStats {
    fn set(on: bool) -> Result<BpfStats> {
        let old =
            std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, if on { "1" } else { "0" })
            .with_context(|| format!("writing {BPF_STATS}"))?;
        let old = old.trim().to_string();
        undo().stats = Some(old.clone());
        Ok(BpfStats { old })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        undo().stats = None;
        if let Err(e) = std::fs::write(BPF_STATS, &self.old) {
            eprintln!("restoring {BPF_STATS} to {}: {e}", self.old);
        }
    }
}

/// The kernel's totals for one program: time spent in it and runs.
#[derive(Clone, Copy, Default)]
struct RunStats {
    ns: u64,
    runs: u64,
}

impl RunStats {
    fn of(prog: BorrowedFd) -> Result<RunStats> {
        let info = prog_info(prog)?;
        Ok(RunStats { ns: info.run_time_ns, runs: info.run_cnt })
    }
    fn since(self, before: RunStats) -> RunStats {
        RunStats { ns: self.ns - before.ns, runs: self.runs - before.runs }
    }
    fn add(&mut self, more: RunStats) {
        self.ns += more.ns;
        self.runs += more.runs;
    }
    fn per_run(self) -> f64 {
        self.ns as f64 / self.runs.max(1) as f64
    }
}

fn prog_info(prog: BorrowedFd) -> Result<libbpf_sys::bpf_prog_info> {
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&info) as u32;
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) };
    if rc < 0 {
        bail!("BPF_OBJ_GET_INFO_BY_FD: {}", std::io::Error::from_raw_os_error(-rc));
    }
    Ok(info)
}

fn prog_by_id(id: u32) -> Result<OwnedFd> {
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        bail!("BPF program {id}: {}", std::io::Error::from_raw_os_error(-fd));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Program `name` of process `pid`: the ids on its fds' "prog_id:" lines in
/// /proc/<pid>/fdinfo (programs and links both have one), then the one so named.
fn example_prog(pid: Pid, name: &str) -> Result<OwnedFd> {
    let dir = format!("/proc/{pid}/fdinfo");
    let mut ids: Vec<u32> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {dir}"))?
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:")?.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    ids.sort();
    ids.dedup();
    for &id in &ids {
        let fd = prog_by_id(id)?;
        let info = prog_info(fd.as_fd())?;
        let own = unsafe { std::ffi::CStr::from_ptr(info.name.as_ptr()) };
        if own.to_bytes() == name.as_bytes() {
            return Ok(fd);
        }
    }
    bail!("process {pid} has no BPF program named {name} (program ids {ids:?})")
}

/// Where a packet example's program runs, and so which floor it is compared with.
#[derive(Clone, Copy, PartialEq)]
enum Hook {
    Xdp,
    Tc,
    Socket,
}

/// A two-instruction program of a hook's type on the client end of the lab, run
/// by the same traffic as the example: the cost of running any program there.
struct Floor {
    prog: OwnedFd,
    /// What keeps it attached (a TCX link, a packet socket); None for the lab's
    /// own XDP program, which stays until the lab goes.
    _attachment: Option<OwnedFd>,
}

impl Floor {
    fn up(hook: Hook, client: &Host) -> Result<Floor> {
        let iface = client.iface;
        in_namespace(&client.ns, || -> Result<Floor> {
            let ifindex = nix::net::if_::if_nametoindex(iface)?;
            match hook {
                // The lab's XDP_PASS program on veth-client: it runs on every reply.
                Hook::Xdp => {
                    let id = ebpf_workshop::xdp::prog_id(ifindex)
                        .with_context(|| format!("{iface} has no XDP program"))?;
                    Ok(Floor { prog: prog_by_id(id)?, _attachment: None })
                }
                // return TC_ACT_OK, at TCX ingress: it runs on every reply.
                Hook::Tc => {
                    let prog =
                        return_only_program(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS, 0, c"floor_tc")?;
                    let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
                    opts.sz = std::mem::size_of_val(&opts) as _;
                    let link = unsafe {
                        libbpf_sys::bpf_link_create(
                            prog.as_raw_fd(),
                            ifindex as i32,
                            libbpf_sys::BPF_TCX_INGRESS,
                            &opts,
                        )
                    };
                    if link < 0 {
                        bail!(
                            "attaching the TC floor to {iface}: {}",
                            std::io::Error::from_raw_os_error(-link)
                        );
                    }
                    let link = unsafe { OwnedFd::from_raw_fd(link) };
                    Ok(Floor { prog, _attachment: Some(link) })
                }
                // return 0 (copy nothing), on a packet socket bound to veth-client:
                // like the example's, it runs on every frame, both ways.
                Hook::Socket => {
                    let prog = return_only_program(
                        libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER,
                        0,
                        c"floor_socket",
                    )?;
                    let socket = packet_socket(prog.as_fd(), ifindex)?;
                    Ok(Floor { prog, _attachment: Some(socket) })
                }
            }
        })?
    }

    fn stats(&self) -> Result<RunStats> {
        RunStats::of(self.prog.as_fd())
    }
}

/// An AF_PACKET socket on `ifindex` with `prog` as its filter (attached before the
/// socket is bound, as in src/packet_socket.rs).
fn packet_socket(prog: BorrowedFd, ifindex: u32) -> Result<OwnedFd> {
    const ETH_P_ALL: u16 = 0x0003;
    let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error()).context("opening an AF_PACKET socket");
    }
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let prog_fd = prog.as_raw_fd();
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_BPF,
            (&prog_fd as *const i32).cast(),
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("SO_ATTACH_BPF");
    }
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = ETH_P_ALL.to_be();
    addr.sll_ifindex = ifindex as i32;
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error()).context("binding the packet socket");
    }
    Ok(fd)
}

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
fn ping_stream(host: &Host, to: std::net::Ipv4Addr, count: u32, gap: Duration) -> Result<Duration> {
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
        let ping = lab_ping(&lab.client, &["-f", "-c", &count, &target.to_string()])?;
        Ok((ping.sent, Some(ping.received)))
    }
}

fn in_place(lab: &Lab, examples: &std::path::Path, json: &mut Vec<String>) -> Result<()> {
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
            let example = Running::start(cmd)?;
            let prog = example_prog(example.pid(), row.prog)?;
            let (p0, f0) = (RunStats::of(prog.as_fd())?, floor.stats()?);
            let (sent, answered) = send_traffic(lab, row.answers)?;
            let (p1, f1) = (RunStats::of(prog.as_fd())?, floor.stats()?);
            let said = example.stop_cleanly()?;
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
            record(json, &format!("{run_key}_ns_per_packet"), ours.per_run());
            record(json, &format!("{run_key}_runs_per_ping"), ours.runs as f64 / sent as f64);
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
        record(json, &format!("{key}_floor_ns_per_packet"), base);
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

// ---- 2 -----------------------------------------------------------------------

/// Mean ns per run over `SINGLE_RUNS` separate runs, each on a fresh copy of the
/// frame (a rewriting program must see the request every time), and the kernel's
/// mean over `REPEATS` repetitions in one call (valid only for programs that leave
/// the frame as it is: later repetitions see what earlier ones wrote).
fn cost(prog: &impl std::os::fd::AsFd, frame: &[u8]) -> Result<(f64, f64)> {
    let mut total = Duration::ZERO;
    for _ in 0..SINGLE_RUNS {
        total += test_run(prog, frame, 1)?;
    }
    let single = total.as_nanos() as f64 / SINGLE_RUNS as f64;
    let repeated = test_run(prog, frame, REPEATS)?.as_nanos() as f64;
    Ok((single, repeated))
}

/// The kernel's mean time per run of `prog` on `frame`, `repeat` times over
/// (BPF_PROG_TEST_RUN). By fd, not libbpf-rs's `Program::test_run`: the floors
/// are bare program fds, not skeleton programs.
fn test_run(prog: &impl std::os::fd::AsFd, frame: &[u8], repeat: u32) -> Result<Duration> {
    use std::os::fd::AsRawFd;
    let mut out = vec![0u8; frame.len() + 256];
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    opts.data_in = frame.as_ptr().cast();
    opts.data_size_in = frame.len() as u32;
    opts.data_out = out.as_mut_ptr().cast();
    opts.data_size_out = out.len() as u32;
    opts.repeat = repeat as i32;
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_fd().as_raw_fd(), &mut opts) };
    if rc < 0 {
        bail!("BPF_PROG_TEST_RUN: {}", std::io::Error::from_raw_os_error(-rc));
    }
    Ok(Duration::from_nanos(opts.duration.into()))
}

fn program_cost(lab: &Lab, json: &mut Vec<String>) -> Result<()> {
    let echo = Ping::new(false).request();
    let tcp = frames::ethernet(
        frames::SERVER_MAC,
        frames::CLIENT_MAC,
        None,
        frames::ETH_P_IP,
        &frames::ipv4(
            frames::CLIENT_V4,
            frames::SERVER_V4,
            frames::IPPROTO_TCP,
            &Default::default(),
            &frames::tcp_syn(40000, 80),
        ),
    );
    println!("| program | path | ns/packet, fresh frame each run | ns/packet, {REPEATS} repeats | vs. empty program |");
    println!("|---|---|---|---|---|");
    // Everything runs inside the lab's server namespace: tc_pingpong's
    // bpf_clone_redirect really transmits, on that namespace's loopback.
    in_namespace(&lab.server.ns, || -> Result<()> {
        let xdp_floor = return_only_program(
            libbpf_sys::BPF_PROG_TYPE_XDP,
            libbpf_sys::XDP_PASS as i32,
            c"floor_xdp",
        )?;
        let tc_floor = return_only_program(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS, 0, c"floor_tc")?;
        let floors = [("xdp", cost(&xdp_floor, &tcp)?), ("tc", cost(&tc_floor, &tcp)?)];
        macro_rules! load {
            ($builder:expr, $storage:ident) => {{
                let open = $builder.open(&mut $storage)?;
                open.load()?
            }};
        }
        let (mut s1, mut s2, mut s3, mut s4) = (
            std::mem::MaybeUninit::uninit(),
            std::mem::MaybeUninit::uninit(),
            std::mem::MaybeUninit::uninit(),
            std::mem::MaybeUninit::uninit(),
        );
        let xdp = load!(skel::xdp::XdpSkelBuilder::default(), s1);
        let xpp = load!(skel::xdp_pingpong::XdpPingpongSkelBuilder::default(), s2);
        let tc = load!(skel::tc::TcSkelBuilder::default(), s3);
        let tpp = load!(skel::tc_pingpong::TcPingpongSkelBuilder::default(), s4);
        let rows: [(&str, &str, &libbpf_rs::ProgramMut, &[u8], bool); 8] = [
            ("xdp_inspect", "xdp", &xdp.progs.xdp_inspect, &echo, true),
            ("xdp_inspect", "xdp", &xdp.progs.xdp_inspect, &tcp, true),
            ("xdp_pingpong", "xdp", &xpp.progs.xdp_pingpong, &echo, false),
            ("xdp_pingpong", "xdp", &xpp.progs.xdp_pingpong, &tcp, true),
            ("tc_ingress", "tc", &tc.progs.tc_ingress, &echo, true),
            ("tc_ingress", "tc", &tc.progs.tc_ingress, &tcp, true),
            ("tc_pingpong", "tc", &tpp.progs.tc_pingpong, &echo, false),
            ("tc_pingpong", "tc", &tpp.progs.tc_pingpong, &tcp, true),
        ];
        for (kind, (single, repeated)) in &floors {
            println!(
                "| empty {kind} program (floor) | return | {single:.0} | {repeated:.0} | 1.0x |"
            );
            record(json, &format!("cost_floor_{kind}_ns"), *repeated);
        }
        for (name, kind, prog, frame, repeat_valid) in rows {
            let path = if frame.len() == echo.len() && frame == &echo[..] {
                "echo request"
            } else {
                "TCP (passed)"
            };
            let (single, repeated) = cost(prog, frame)?;
            let floor = floors.iter().find(|(k, _)| *k == kind).map(|(_, f)| *f).unwrap();
            // Compare like with like: single runs with single runs.
            let (shown, ratio) = if repeat_valid {
                (format!("{repeated:.0}"), repeated / floor.1)
            } else {
                ("n/a (rewrites the frame)".to_string(), single / floor.0)
            };
            println!("| {name} | {path} | {single:.0} | {shown} | {ratio:.1}x |");
            let key =
                format!("cost_{name}_{}_ns", if path == "echo request" { "echo" } else { "tcp" });
            record(json, &key, if repeat_valid { repeated } else { single });
        }
        Ok(())
    })??;
    println!("\nA second figure, not the cost in place: BPF_PROG_TEST_RUN runs the program on a");
    println!("frame from user space, and nobody reads its ring buffer, so a report never wakes");
    println!("a reader (section 1 has the cost in place). kernel.bpf_stats_enabled is 0 here.");
    println!("Single runs include the kernel's per-call overhead (the floor shows it); the");
    println!("repeated figure is the program alone. Rewriting programs are measured only with");
    println!("single runs on a fresh request, because a repetition would see the reply.");
    Ok(())
}

// ---- 3 -----------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Kernel,
    Tc,
    Xdp,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Kernel => "kernel",
            Mode::Tc => "tc_pingpong",
            Mode::Xdp => "xdp_pingpong",
        }
    }
}

/// Start the answering program for `mode` on the server (kernel replies off for
/// the eBPF ones), with its reports switched off when `quiet`; None for the kernel.
fn answerer(
    mode: Mode,
    quiet: bool,
    server: &Host,
    examples: &std::path::Path,
) -> Result<Option<Running>> {
    server.kernel_echo_reply(mode == Mode::Kernel)?;
    if mode == Mode::Kernel {
        return Ok(None);
    }
    let mut cmd = server.cmd(examples.join(mode.name()));
    cmd.arg(server.iface).args(quiet.then_some("--quiet"));
    Ok(Some(Running::start(cmd)?))
}

fn stop(answerer: Option<Running>) -> Result<()> {
    if let Some(running) = answerer {
        running.stop_cleanly()?;
    }
    Ok(())
}

/// Busy CPU time of the whole machine so far (user, system, irq, softirq), in
/// clock ticks, from /proc/stat.
fn busy_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let cpu = stat.lines().next().context("/proc/stat")?;
    let n: Vec<u64> = cpu.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...
    Ok(n[0] + n[1] + n[2] + n[5] + n[6])
}

fn ping_three_ways(
    lab: &Lab,
    examples: &std::path::Path,
    json: &mut Vec<String>,
) -> Result<Vec<Mode>> {
    let (client, server) = (&lab.client, &lab.server);
    let target = server.ipv4.to_string();
    let ticks_per_s = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)?.unwrap_or(100) as f64;
    println!("| answered by | answers/s (flood) | loss | mean RTT µs | p99 RTT µs | machine CPU µs/answer |");
    println!("|---|---|---|---|---|---|");
    let modes = [Mode::Kernel, Mode::Tc, Mode::Xdp];
    for mode in modes {
        let child = answerer(mode, true, server, examples)?;
        let (before, start) = (busy_ticks()?, Instant::now());
        let flood = lab_ping(client, &["-f", "-c", &FLOOD.to_string(), &target])?;
        let (elapsed, busy) = (start.elapsed(), busy_ticks()? - before);
        let received = flood.received as f64;
        let rate = received / elapsed.as_secs_f64();
        let loss = 100.0 * (FLOOD as f64 - received) / FLOOD as f64;
        let cpu_us = busy as f64 / ticks_per_s * 1e6 / received.max(1.0);
        // Latency: paced pings, each RTT printed by ping itself.
        let out = client
            .cmd("ping")
            .args(["-i", "0.001", "-c", &LATENCY_PINGS.to_string(), "-n", &target])
            .output()?;
        let mut rtts: Vec<f64> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split("time=").nth(1)?.split(' ').next()?.parse::<f64>().ok())
            .map(|ms| ms * 1000.0)
            .collect();
        rtts.sort_by(f64::total_cmp);
        let mean = rtts.iter().sum::<f64>() / rtts.len().max(1) as f64;
        let p99 = rtts.get(rtts.len() * 99 / 100).copied().unwrap_or(f64::NAN);
        stop(child)?;
        let shown =
            if mode == Mode::Kernel { "kernel" } else { &format!("{} --quiet", mode.name()) };
        println!("| {shown} | {rate:.0} | {loss:.2}% | {mean:.1} | {p99:.1} | {cpu_us:.2} |");
        let n = mode.name();
        record(json, &format!("ping_{n}_answers_per_s"), rate);
        record(json, &format!("ping_{n}_loss_pct"), loss);
        record(json, &format!("ping_{n}_rtt_mean_us"), mean);
        record(json, &format!("ping_{n}_rtt_p99_us"), p99);
        record(json, &format!("ping_{n}_cpu_us_per_answer"), cpu_us);
    }
    println!("\nCPU is the whole machine's (client and ping included; those are the same in all");
    println!("three rows), from /proc/stat at clock-tick resolution.");

    // The same answerers, reports on and off, timed by ping itself.
    println!(
        "\n`ping -f -c {TIMED_FLOOD}`: ping's own \"time\" for the whole flood, median of 3\n"
    );
    println!(
        "| answered by | per-ping reports | flood time ms (median) | the 3 runs, ms | vs. kernel |"
    );
    println!("|---|---|---|---|---|");
    let mut kernel_ms = f64::NAN;
    let timed = [
        (Mode::Kernel, true),
        (Mode::Tc, true),
        (Mode::Tc, false),
        (Mode::Xdp, true),
        (Mode::Xdp, false),
    ];
    for (mode, quiet) in timed {
        let child = answerer(mode, quiet, server, examples)?;
        let mut runs = Vec::new();
        for _ in 0..3 {
            let flood = lab_ping(client, &["-f", "-c", &TIMED_FLOOD.to_string(), &target])?;
            if flood.received != flood.sent {
                eprintln!(
                    "note: {} answered {} of {} pings",
                    mode.name(),
                    flood.received,
                    flood.sent
                );
            }
            runs.push(flood.time_ms);
        }
        stop(child)?;
        let ms = median(runs.clone());
        if mode == Mode::Kernel {
            kernel_ms = ms;
        }
        let (shown, reports, key) = match (mode, quiet) {
            (Mode::Kernel, _) => ("kernel".to_string(), "—", "kernel".to_string()),
            (_, true) => {
                (format!("{} --quiet", mode.name()), "off", format!("{}_quiet", mode.name()))
            }
            (_, false) => (
                mode.name().to_string(),
                "on, printed to /dev/null",
                format!("{}_reporting", mode.name()),
            ),
        };
        let all = runs.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ");
        println!("| {shown} | {reports} | {ms:.0} | {all} | {:.2}x |", ms / kernel_ms);
        record(json, &format!("ping_flood_{TIMED_FLOOD}_{key}_ms"), ms);
    }
    server.kernel_echo_reply(true)?;
    Ok(modes.to_vec())
}

// ---- 4 -----------------------------------------------------------------------

fn net_events_per_ping(
    lab: &Lab,
    examples: &std::path::Path,
    modes: &[Mode],
    json: &mut Vec<String>,
) -> Result<()> {
    let (client, server) = (&lab.client, &lab.server);
    println!("| answered by | net events per ping | vs. kernel |");
    println!("|---|---|---|");
    let mut kernel = 0.0;
    for &mode in modes {
        let child = answerer(mode, true, server, examples)?;
        let out = Command::new(examples.join("net_events"))
            .args([
                "--interval",
                "0",
                "--netns",
                &server.ns,
                "--",
                "ip",
                "netns",
                "exec",
                &client.ns,
            ])
            .args([
                "ping",
                "-q",
                "-i",
                "0.01",
                "-c",
                &EVENT_PINGS.to_string(),
                &server.ipv4.to_string(),
            ])
            .output()?;
        stop(child)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let all: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("all"))
            .context("net_events totals")?
            .trim()
            .parse()?;
        let per_ping = all / EVENT_PINGS as f64;
        if mode == Mode::Kernel {
            kernel = per_ping;
        }
        println!(
            "| {} | {per_ping:.2} | {:.2}x |",
            mode.name(),
            per_ping / kernel.max(f64::MIN_POSITIVE)
        );
        record(json, &format!("net_events_per_ping_{}", mode.name()), per_ping);
    }
    server.kernel_echo_reply(true)?;
    Ok(())
}

// ---- 5 -----------------------------------------------------------------------

fn startup(lab: &Lab, examples: &std::path::Path, json: &mut Vec<String>) -> Result<()> {
    let server = &lab.server;
    println!("| example | start to attached (ms) | peak RSS (MiB) |");
    println!("|---|---|---|");
    let runs: [(&str, &[&str], bool); 8] = [
        ("hello", &[], false),
        ("tcpconnect", &[], false),
        ("net_events", &[], false),
        ("socket_filter", &["veth-server"], true),
        ("xdp", &["veth-server"], true),
        ("xdp_pingpong", &["veth-server"], true),
        ("tc", &["veth-server"], true),
        ("tc_pingpong", &["veth-server"], true),
    ];
    for (name, args, in_lab) in runs {
        let mut samples = Vec::new();
        for _ in 0..3 {
            let mut cmd = if in_lab {
                server.cmd(examples.join(name))
            } else {
                Command::new(examples.join(name))
            };
            cmd.args(args);
            // Process start to "attached", then Ctrl-C; peak memory from wait4.
            let start = Instant::now();
            let running = Running::start(cmd)?;
            let attached = start.elapsed();
            let (_, usage, _) = running.stop()?;
            samples.push((attached, usage.ru_maxrss as u64));
        }
        samples.sort();
        let (t, rss) = samples[1];
        println!("| {name} | {:.1} | {:.1} |", t.as_secs_f64() * 1e3, rss as f64 / 1024.0);
        record(json, &format!("startup_{name}_ms"), t.as_secs_f64() * 1e3);
        record(json, &format!("startup_{name}_rss_mib"), rss as f64 / 1024.0);
    }
    println!("\nFor scale: a BCC/Python loader of a one-line tracepoint program takes about");
    println!("0.5 s and 128 MB on this kind of machine (figure from the benchmark issue, not");
    println!("measured here: BCC is not installed).");
    Ok(())
}

// ---- 6 -----------------------------------------------------------------------

/// Make `n` execs of /bin/true as fast as two threads can.
fn burst(n: u32) {
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..n / 2 {
                    let _ = Command::new("/bin/true").status();
                }
            });
        }
    });
}

/// hello's exit summary: (events seen, events lost).
fn hello_summary(stderr: &str) -> Result<(f64, f64)> {
    let line = stderr.lines().find(|l| l.contains("execs seen")).context("hello summary")?;
    let n: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    Ok((n[0], n[1]))
}

fn event_delivery(examples: &std::path::Path, json: &mut Vec<String>) -> Result<()> {
    println!("| reader | execs made | events received | events lost | user-space CPU µs/event |");
    println!("|---|---|---|---|---|");
    for paused in [false, true] {
        let hello = Running::start(Command::new(examples.join("hello")))?;
        let pid = hello.pid();
        if paused {
            kill(pid, Signal::SIGSTOP)?;
        }
        burst(EXECS);
        if paused {
            kill(pid, Signal::SIGCONT)?;
        }
        std::thread::sleep(Duration::from_millis(500)); // let it drain
        let (_, usage, rest) = hello.stop()?;
        let (seen, lost) = hello_summary(&rest)?;
        let cpu_us = (tv_us(usage.ru_utime) + tv_us(usage.ru_stime)) / seen.max(1.0);
        let reader = if paused { "paused during the burst" } else { "running" };
        println!("| {reader} | {EXECS} | {seen:.0} | {lost:.0} | {cpu_us:.1} |");
        let key = if paused { "paused" } else { "running" };
        record(json, &format!("hello_{key}_events"), seen);
        record(json, &format!("hello_{key}_lost"), lost);
        record(json, &format!("hello_{key}_cpu_us_per_event"), cpu_us);
    }
    println!("\nOther processes' execs during the run are counted too. With the reader paused,");
    println!("\"received\" is what the 1 MiB ring buffer holds: past that, events are lost and");
    println!("counted (max_entries of the `events` map in bpf/hello.bpf.c sizes it).");
    Ok(())
}

fn tv_us(t: libc::timeval) -> f64 {
    t.tv_sec as f64 * 1e6 + t.tv_usec as f64
}

// ---- 7 -----------------------------------------------------------------------

/// Connections per second from the load-balancer lab's client: straight to one
/// backend; through xdp_lb to that one backend (the fair comparison: the same
/// server work, plus the balancer); through xdp_lb to two. And xdp_lb's cost per
/// packet in place (bpf_stats) under the two-backend traffic.
fn xdp_lb_rows(examples: &std::path::Path, json: &mut Vec<String>) -> Result<()> {
    use ebpf_workshop::lab::{answered_by, serve_name, LbLab, LB_PORT};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    const CONNECTIONS: usize = 4000;
    const THREADS: usize = 4; // clients at a time

    let lab = LbLab::up(&format!("ebpflb-bench{}", std::process::id()))?;
    undo().lb_lab = Some(lab.name.clone());
    for (b, name) in lab.backends.iter().zip(["b1", "b2"]) {
        let listener = in_namespace(&b.ns, || std::net::TcpListener::bind(("0.0.0.0", LB_PORT)))??;
        std::thread::spawn(move || serve_name(listener, name));
    }
    // CONNECTIONS connections (a line, the whole answer, close), THREADS at a time.
    let rate = |to: SocketAddr| -> Result<f64> {
        let started = Instant::now();
        let workers: Vec<_> = (0..THREADS)
            .map(|_| {
                let ns = lab.client.ns.clone();
                std::thread::spawn(move || {
                    in_namespace(&ns, || -> Result<()> {
                        for _ in 0..CONNECTIONS / THREADS {
                            let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
                            s.set_read_timeout(Some(Duration::from_secs(3)))?;
                            s.write_all(b"hi\n")?;
                            let mut answer = Vec::new();
                            s.read_to_end(&mut answer)?;
                            answered_by(&answer).context("an incomplete answer")?;
                        }
                        Ok(())
                    })?
                })
            })
            .collect();
        for w in workers {
            w.join().expect("client thread")?;
        }
        Ok(CONNECTIONS as f64 / started.elapsed().as_secs_f64())
    };
    let vip = SocketAddr::new(lab.vip.into(), LB_PORT);
    let direct = rate(SocketAddr::new(lab.backends[0].ipv4.into(), LB_PORT))?;

    // xdp_lb on the balancer, as the lab's instructions run it, with `backends`.
    let balanced = |backends: usize| -> Result<(f64, f64)> {
        let mut cmd = lab.lb.cmd(examples.join("xdp_lb"));
        cmd.args([lab.lb.iface, "--vip", &lab.vip.to_string(), "--quiet"]);
        for b in &lab.backends[..backends] {
            cmd.args(["--backend", &b.ipv4.to_string()]);
        }
        let running = Running::start(cmd)?; // stdin /dev/null: no backend changes

        let prog = example_prog(running.pid(), "xdp_lb")?;
        let _stats = BpfStats::set(true)?;
        let before = prog_info(prog.as_fd())?;
        let through = rate(vip)?;
        let after = prog_info(prog.as_fd())?;
        let runs = (after.run_cnt - before.run_cnt).max(1);
        Ok((through, (after.run_time_ns - before.run_time_ns) as f64 / runs as f64))
    };
    let (one, _) = balanced(1)?;
    let (two, ns) = balanced(2)?;

    println!(
        "{CONNECTIONS} connections from the client ({THREADS} at a time; each sends a line and"
    );
    println!("reads a 5.2 kB answer); xdp_lb runs with --quiet.\n");
    println!("| path | connections/s | vs. direct | xdp_lb ns/packet in place |");
    println!("|---|---|---|---|");
    println!("| client → one backend, direct | {direct:.0} | 1.00x | |");
    println!(
        "| client → VIP → xdp_lb → the same one backend | {one:.0} | {:.2}x | |",
        one / direct
    );
    println!(
        "| client → VIP → xdp_lb → two backends | {two:.0} | {:.2}x | {ns:.0} |",
        two / direct
    );
    record(json, "xdp_lb_direct_conn_per_s", direct);
    record(json, "xdp_lb_one_backend_conn_per_s", one);
    record(json, "xdp_lb_two_backends_conn_per_s", two);
    record(json, "xdp_lb_ns_per_packet", ns);
    undo().lb_lab = None; // `lab` removes itself when dropped, right after this
    Ok(())
}
