//! Helpers for end-to-end tests: run an example binary as a user would, watch its
//! output, stop it with a signal, and check what it left loaded.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Time limits stretch by `EBPF_WORKSHOP_TIME_SCALE` (a whole number, default 1):
/// `make test-kernels` sets it when a kernel runs under emulation, where everything
/// takes several times longer. Every limit in the tests goes through this.
pub fn scaled(limit: Duration) -> Duration {
    let scale = std::env::var("EBPF_WORKSHOP_TIME_SCALE").ok().and_then(|s| s.parse().ok());
    limit * scale.unwrap_or(1u32).max(1)
}

/// The built example binary: tests run from target/<profile>/deps/, examples are
/// in target/<profile>/examples/ (cargo test builds them first).
pub fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// A running example, with its output collected in the background. Dropping it
/// kills the process, so a failing test leaves nothing running.
pub struct Running {
    child: Option<Child>,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<thread::JoinHandle<()>>,
}

/// Start `cmd` with piped output.
pub fn spawn(mut cmd: Command) -> Running {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let stdout = Arc::new(Mutex::new(String::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let readers = vec![
        collect(child.stdout.take().unwrap(), stdout.clone()),
        collect(child.stderr.take().unwrap(), stderr.clone()),
    ];
    Running { child: Some(child), stdout, stderr, readers }
}

/// Start example `name` with `args`.
pub fn run_example(name: &str, args: &[&str]) -> Running {
    let mut cmd = Command::new(example_path(name));
    cmd.args(args);
    spawn(cmd)
}

fn collect(pipe: impl Read + Send + 'static, into: Arc<Mutex<String>>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut s = into.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    })
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Wait until stdout or stderr has a line for which `pred` holds; panic with
    /// everything printed so far if it does not come within `timeout` or the
    /// process exits first.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + scaled(timeout);
        loop {
            let out = format!("{}{}", self.stdout(), self.stderr());
            if let Some(line) = out.lines().find(|l| pred(l)) {
                return line.to_string();
            }
            let exited = self.child.as_mut().unwrap().try_wait().unwrap();
            if exited.is_some() || Instant::now() > deadline {
                thread::sleep(Duration::from_millis(100)); // let the readers finish
                panic!(
                    "no line with {what} (exited: {exited:?})\n--- stdout:\n{}--- stderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Wait for a line that contains `needle`.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        self.wait_for_line(timeout, needle, |l| l.contains(needle))
    }

    /// Wait until the example says its programs are attached.
    pub fn wait_attached(&mut self) {
        self.wait_for("attached", Duration::from_secs(20));
    }

    /// Send `sig` and wait for the exit (at most `timeout`).
    pub fn stop(&mut self, sig: Signal, timeout: Duration) -> Finished {
        kill(Pid::from_raw(self.pid() as i32), sig).unwrap();
        self.wait(timeout)
    }

    /// The exit, if the process ends within `timeout` on its own; None if it runs on.
    pub fn wait_for_exit_or(&mut self, timeout: Duration) -> Option<Finished> {
        let deadline = Instant::now() + scaled(timeout);
        while Instant::now() < deadline {
            if self.child.as_mut().unwrap().try_wait().unwrap().is_some() {
                return Some(self.wait(Duration::from_secs(1)));
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Wait for the process to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> Finished {
        let timeout = scaled(timeout);
        let started = Instant::now();
        let status = loop {
            if let Some(s) = self.child.as_mut().unwrap().try_wait().unwrap() {
                break s;
            }
            assert!(
                started.elapsed() < timeout,
                "still running after {timeout:?}\n{}",
                self.stderr()
            );
            thread::sleep(Duration::from_millis(10));
        };
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        self.child = None;
        Finished { status, took: started.elapsed(), stdout: self.stdout(), stderr: self.stderr() }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// How a run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub took: Duration,
    pub stdout: String,
    pub stderr: String,
}

/// Run example `name` to completion (for runs that should fail fast).
pub fn run_to_end(name: &str, args: &[&str]) -> Finished {
    run_example(name, args).wait(Duration::from_secs(30))
}

/// The BPF program ids a process holds (program and link fds both name them in
/// /proc/<pid>/fdinfo). Recording them while it runs lets a test check afterwards
/// that exactly these are gone, even while other tests load programs of their own.
pub fn bpf_prog_ids(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Is a BPF program with this id still loaded in the kernel?
pub fn prog_loaded(id: u32) -> bool {
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return false;
    }
    // SAFETY: a fresh fd we own; dropping it closes it.
    drop(unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
    true
}

/// Assert that none of `ids` is loaded any more (the kernel frees programs shortly
/// after the last reference goes, so allow it a moment).
pub fn assert_unloaded(ids: &[u32]) {
    assert!(!ids.is_empty(), "the example held no BPF programs: nothing was checked");
    let deadline = Instant::now() + scaled(Duration::from_secs(3));
    while ids.iter().any(|&id| prog_loaded(id)) {
        assert!(
            Instant::now() < deadline,
            "BPF programs still loaded: {:?}",
            ids.iter().filter(|&&id| prog_loaded(id)).collect::<Vec<_>>()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Start a program that a test has just written (a copy of /bin/true with a unique
/// name). Another test thread may fork while the copy is still open for writing;
/// the child holds that descriptor until its own exec, and until then exec'ing the
/// copy fails with ETXTBSY. Retry for a moment instead of failing.
pub fn spawn_fresh_copy(path: &std::path::Path) -> Child {
    for _ in 0..100 {
        match Command::new(path).spawn() {
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) => {
                thread::sleep(Duration::from_millis(10))
            }
            other => return other.unwrap_or_else(|e| panic!("running {}: {e}", path.display())),
        }
    }
    panic!("{} stayed busy (ETXTBSY)", path.display());
}

/// A name no other test run uses at the same time.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}x{}", std::process::id() % 100000, N.fetch_add(1, Ordering::SeqCst))
}

/// The command line that runs `path` as user "nobody" with no capabilities.
pub fn as_nobody(path: &std::path::Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args([
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
    ]);
    cmd.arg(path);
    cmd
}

// ---- the packet lab -------------------------------------------------------------

use ebpf_workshop::lab::{Host, Lab};

/// A fresh lab with names no other test uses; removed when dropped (also on panic).
pub fn lab() -> Lab {
    Lab::up(&unique("ebpfws-t")).expect("building the lab")
}

/// Ping `to` from `from`'s namespace `count` times; how many answers came back.
pub fn ping(from: &Host, to: impl std::fmt::Display, count: u32) -> u32 {
    let out = from
        .cmd("ping")
        .args(["-c", &count.to_string(), "-i", "0.2", "-W", "1", "-n", &to.to_string()])
        .output()
        .expect("running ping (iputils-ping: `make deps`)");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.split(", ").find_map(|part| part.strip_suffix(" received")))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| {
            panic!("unexpected ping output:\n{text}{}", String::from_utf8_lossy(&out.stderr))
        })
}

/// Start example `name` inside `host`'s namespace, as the book's chapters show:
/// `ip netns exec <ns> target/debug/examples/<name> <args>`.
pub fn run_in(host: &Host, name: &str, args: &[&str]) -> Running {
    let mut cmd = host.cmd(example_path(name));
    cmd.args(args);
    spawn(cmd)
}

/// The id of the XDP program on `host`'s veth end, if any.
pub fn xdp_on(host: &Host) -> Option<u32> {
    let iface = host.iface;
    ebpf_workshop::netns::in_namespace(&host.ns, || {
        let index = nix::net::if_::if_nametoindex(iface).expect("lab interface");
        ebpf_workshop::xdp::prog_id(index)
    })
    .unwrap()
}

/// Wait (a little) for `cond`, which the kernel may make true asynchronously.
pub fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + scaled(Duration::from_secs(5));
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "{what}: still not true after {:?}",
            scaled(Duration::from_secs(5))
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// What is attached at TC ingress of `host`'s veth end: the number of TCX programs
/// (asked from the kernel) and the netlink filters as `tc filter show` lists them.
pub fn tc_ingress_on(host: &Host) -> (u32, String) {
    let iface = host.iface;
    let tcx = ebpf_workshop::netns::in_namespace(&host.ns, || {
        let index = nix::net::if_::if_nametoindex(iface).expect("lab interface");
        let mut opts: libbpf_sys::bpf_prog_query_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of_val(&opts) as _;
        let rc = unsafe {
            libbpf_sys::bpf_prog_query_opts(index as i32, libbpf_sys::BPF_TCX_INGRESS, &mut opts)
        };
        // A kernel without TCX (before 6.6) cannot have TCX programs attached.
        if rc != 0 {
            return 0;
        }
        unsafe { opts.__bindgen_anon_1.prog_cnt }
    })
    .unwrap();
    let out = Command::new("tc")
        .args(["-n", &host.ns, "filter", "show", "dev", iface, "ingress"])
        .output()
        .unwrap();
    (tcx, String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The qdiscs on `host`'s veth end, as `tc qdisc show` lists them.
pub fn qdiscs_on(host: &Host) -> String {
    let out = Command::new("tc")
        .args(["-n", &host.ns, "qdisc", "show", "dev", host.iface])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// A TCP listener inside `server`'s namespace (a socket stays in the namespace it
/// was made in) that echoes what it reads, in the background.
pub fn echo_server(server: &Host) -> std::net::SocketAddr {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::new(server.ipv4.into(), 0);
    let listener =
        ebpf_workshop::netns::in_namespace(&server.ns, || std::net::TcpListener::bind(addr))
            .unwrap()
            .unwrap();
    let bound = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 64];
            if let Ok(n) = conn.read(&mut buf) {
                let _ = conn.write_all(&buf[..n]);
            }
        }
    });
    bound
}

/// Connect from `client`'s namespace, send `msg`, and return what came back
/// (None when the connection could not be made).
pub fn tcp_exchange(client: &Host, to: std::net::SocketAddr, msg: &[u8]) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    ebpf_workshop::netns::in_namespace(&client.ns, || {
        let mut s = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(msg).ok()?;
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).ok()?;
        Some(back)
    })
    .unwrap()
}

/// Does this kernel have TCX links (6.6+)? Asked the way libbpf would: a TCX query.
pub fn tcx_supported() -> bool {
    let mut opts: libbpf_sys::bpf_prog_query_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    // ifindex 1 is the loopback device of the test's namespace.
    unsafe { libbpf_sys::bpf_prog_query_opts(1, libbpf_sys::BPF_TCX_INGRESS, &mut opts) == 0 }
}

// ---- programs without an interface: BPF_PROG_TEST_RUN ---------------------------

/// The packet examples' skeletons (build.rs writes them to OUT_DIR), for tests that
/// load a program and run it on hand-made frames.
pub mod skel {
    macro_rules! skeletons {
        ($($name:ident),*) => {$(
            #[allow(clippy::all, unused)]
            pub mod $name {
                include!(concat!(env!("OUT_DIR"), "/", stringify!($name), ".skel.rs"));
            }
        )*};
    }
    skeletons!(xdp, xdp_pingpong, tc, tc_pingpong, xdp_lb, cgroup_firewall);
}

/// What a packet program did with one frame under `BPF_PROG_TEST_RUN`.
#[derive(Debug)]
pub struct TestRun {
    /// The program's return value (XDP_PASS, TC_ACT_OK, ...).
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
}

/// Run `prog` once on `frame` in the kernel (libbpf-rs's `Program::test_run`).
pub fn test_run(prog: &libbpf_rs::ProgramMut, frame: &[u8]) -> libbpf_rs::Result<TestRun> {
    let mut out = vec![0u8; frame.len() + 256];
    let input = libbpf_rs::ProgramInput {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..Default::default()
    };
    let output = prog.test_run(input)?;
    let action = output.return_value;
    let frame = output.data.map(|d| d.to_vec()).unwrap_or_default();
    Ok(TestRun { action, frame })
}
