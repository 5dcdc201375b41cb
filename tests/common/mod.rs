//! Helpers for end-to-end tests: run an example binary as a user would, watch its
//! output, stop it with a signal, and check what it left loaded. The process
//! harness and the lab are in dev/ (shared with `make bench`); what is here is
//! the tests' own.
#![allow(dead_code, unused_imports)] // each test file uses a different subset

use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

pub use ebpf_workshop_dev::harness::{
    assert_unloaded, example_path, run_example, run_to_end, scaled, spawn, Finished, Running,
};
pub use ebpf_workshop_dev::progs::{bpf_prog_ids, prog_loaded, test_run, TestRun};

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

use ebpf_workshop_dev::lab::{Host, Lab};

/// A fresh lab with names no other test uses; removed when dropped (also on panic).
pub fn lab() -> Lab {
    Lab::up(&unique("ebpfws-t")).expect("building the lab")
}

/// Ping `to` from `from`'s namespace `count` times; how many answers came back.
pub fn ping(from: &Host, to: impl std::fmt::Display, count: u32) -> u32 {
    let count = count.to_string();
    let to = to.to_string();
    from.ping(&["-c", &count, "-i", "0.2", "-W", "1", &to])
        .unwrap_or_else(|e| panic!("{e:#}"))
        .received
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
    skeletons!(xdp, xdp_pingpong, tc, tc_pingpong, xdp_lb, cgroup_firewall, xdp_router);
}

/// A cgroup v2 directory no other test uses, named `<prefix><unique>`, for the
/// examples that create it (cgroup_firewall, sockmap, sock_lb). The guard removes
/// it when it goes, also when the test fails: its processes killed first
/// (cgroup.kill from 5.14, each pid by hand before that), then the directory and
/// the examples' record of it.
pub struct TestCgroup {
    pub name: String,
    pub path: std::path::PathBuf,
}

impl TestCgroup {
    pub fn new(prefix: &str) -> Self {
        let name = unique(prefix);
        let path = ebpf_workshop::cgroup::resolve(&name).expect("cgroup v2 is mounted");
        TestCgroup { name, path }
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let procs = self.path.join("cgroup.procs");
        if self.path.exists() {
            let _ = std::fs::write(self.path.join("cgroup.kill"), "1"); // 5.14+
            for p in std::fs::read_to_string(&procs).unwrap_or_default().lines() {
                let pid = nix::unistd::Pid::from_raw(p.parse().unwrap_or(0));
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            eventually("the test cgroup emptied", || {
                std::fs::read_to_string(&procs).map_or(true, |p| p.is_empty())
            });
            let _ = std::fs::remove_dir(&self.path);
        }
        let _ = std::fs::remove_file(ebpf_workshop::cgroup::record_path(&self.path));
    }
}
