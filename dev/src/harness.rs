//! Run an example binary as a user would, watch its output, stop it with a signal
//! and see how it ended: for the end-to-end tests and for `make bench`.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use nix::libc;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Time limits stretch by `EBPF_WORKSHOP_TIME_SCALE` (a whole number, default 1):
/// `make test-kernels` sets it when a kernel runs under emulation, where everything
/// takes several times longer. Every limit in the tests goes through this.
pub fn scaled(limit: Duration) -> Duration {
    let scale = std::env::var("EBPF_WORKSHOP_TIME_SCALE").ok().and_then(|s| s.parse().ok());
    limit * scale.unwrap_or(1u32).max(1)
}

/// target/<profile>/examples: tests run from target/<profile>/deps/, `bench` and
/// `lab` from target/<profile>/.
pub fn examples_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("this program's path");
    let mut dir = exe.parent().expect("a directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples")
}

/// The built example binary (cargo test builds them first).
pub fn example_path(name: &str) -> PathBuf {
    let path = examples_dir().join(name);
    assert!(
        path.exists(),
        "{} not built: run `cargo test`, which builds the examples",
        path.display()
    );
    path
}

/// What to do with a started program's stdout.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Stdout {
    /// Keep it, to look for lines in it.
    Collect,
    /// /dev/null: for `make bench`, where the example prints every report and
    /// nothing should read (and store) them but the kernel.
    Discard,
}

/// A running program, with its output collected in the background. Dropping it
/// kills the process, so a failing test or bench leaves nothing running.
pub struct Running {
    child: Option<Child>,
    /// How it ended, once a poll saw it end (it is reaped then).
    ended: Option<(ExitStatus, libc::rusage)>,
    output: Arc<Output>,
    readers: Vec<thread::JoinHandle<()>>,
}

/// Both streams so far, and a signal for each new line.
#[derive(Default)]
struct Output {
    text: Mutex<(String, String)>,
    changed: Condvar,
}

/// Processes started here and not yet reaped, for [`kill_started`].
static STARTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

fn started() -> std::sync::MutexGuard<'static, Vec<u32>> {
    STARTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// SIGKILL every process started here that is still running: for a Ctrl-C
/// handler, which ends the process without running the Drop guards.
pub fn kill_started() {
    for &pid in started().iter() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
}

/// Start `cmd` with piped output (panics if it cannot start).
pub fn spawn(cmd: Command) -> Running {
    Running::start(cmd, Stdout::Collect).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Start example `name` with `args`.
pub fn run_example(name: &str, args: &[&str]) -> Running {
    let mut cmd = Command::new(example_path(name));
    cmd.args(args);
    spawn(cmd)
}

/// Run example `name` to completion (for runs that should fail fast).
pub fn run_to_end(name: &str, args: &[&str]) -> Finished {
    run_example(name, args).wait(Duration::from_secs(30))
}

fn collect(
    pipe: impl Read + Send + 'static,
    output: Arc<Output>,
    stderr: bool,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut text = output.text.lock().unwrap();
            let s = if stderr { &mut text.1 } else { &mut text.0 };
            s.push_str(&line);
            s.push('\n');
            output.changed.notify_all();
        }
        output.changed.notify_all(); // end of the stream: the process may be gone
    })
}

/// How a run ended.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    /// From the start of the wait (or the signal) to the exit.
    pub took: Duration,
    pub stdout: String,
    pub stderr: String,
    /// Its peak resident memory, KiB, and the CPU time it used (user + system).
    pub peak_rss_kib: u64,
    pub cpu: Duration,
}

impl Running {
    /// Start `cmd`, stdin from /dev/null, stderr collected, stdout as `stdout` says.
    pub fn start(mut cmd: Command, stdout: Stdout) -> Result<Running> {
        let out = match stdout {
            Stdout::Collect => Stdio::piped(),
            Stdout::Discard => Stdio::null(),
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        started().push(child.id());
        let output = Arc::new(Output::default());
        let mut readers = vec![collect(child.stderr.take().unwrap(), output.clone(), true)];
        if let Some(pipe) = child.stdout.take() {
            readers.push(collect(pipe, output.clone(), false));
        }
        Ok(Running { child: Some(child), ended: None, output, readers })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }
    pub fn stdout(&self) -> String {
        self.output.text.lock().unwrap().0.clone()
    }
    pub fn stderr(&self) -> String {
        self.output.text.lock().unwrap().1.clone()
    }

    /// Has it exited? Reaps it the first time (wait4, which also gives the rusage).
    fn poll_exit(&mut self) -> Option<ExitStatus> {
        if self.ended.is_none() {
            let pid = self.pid() as i32;
            let mut status = 0;
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
            if rc == pid {
                self.ended = Some((ExitStatus::from_raw(status), usage));
                started().retain(|&p| p != pid as u32);
            }
        }
        self.ended.map(|(status, _)| status)
    }

    /// Wait until stdout or stderr has a line for which `pred` holds; an error
    /// with everything printed so far if it does not come within `timeout` or the
    /// process exits first.
    pub fn try_wait_for_line(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String> {
        let deadline = Instant::now() + scaled(timeout);
        loop {
            {
                let text = self.output.text.lock().unwrap();
                let (out, err) = &*text;
                if let Some(line) = out.lines().chain(err.lines()).find(|l| pred(l)) {
                    return Ok(line.to_string());
                }
                // A new line wakes us at once; the exit and the deadline are
                // looked at every 20 ms.
                let _ = self.output.changed.wait_timeout(text, Duration::from_millis(20));
            }
            let exited = self.poll_exit();
            if exited.is_some() || Instant::now() > deadline {
                thread::sleep(Duration::from_millis(100)); // let the readers finish
                bail!(
                    "no line with {what} (exited: {exited:?})\n--- stdout:\n{}--- stderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
        }
    }

    /// Like [`Running::try_wait_for_line`], and panic when the line does not come.
    pub fn wait_for_line(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        self.try_wait_for_line(timeout, what, pred).unwrap_or_else(|e| panic!("{e:#}"))
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
    pub fn try_stop(&mut self, sig: Signal, timeout: Duration) -> Result<Finished> {
        if self.ended.is_none() {
            kill(Pid::from_raw(self.pid() as i32), sig)?;
        }
        self.try_wait(timeout)
    }

    /// Like [`Running::try_stop`], and panic when it runs on.
    pub fn stop(&mut self, sig: Signal, timeout: Duration) -> Finished {
        self.try_stop(sig, timeout).unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// The exit, if the process ends within `timeout` on its own; None if it runs on.
    pub fn wait_for_exit_or(&mut self, timeout: Duration) -> Option<Finished> {
        let deadline = Instant::now() + scaled(timeout);
        while Instant::now() < deadline {
            if self.poll_exit().is_some() {
                return Some(self.wait(Duration::from_secs(1)));
            }
            thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Wait for the process to exit on its own (at most `timeout`).
    pub fn try_wait(&mut self, timeout: Duration) -> Result<Finished> {
        let timeout = scaled(timeout);
        let started = Instant::now();
        while self.poll_exit().is_none() {
            if started.elapsed() >= timeout {
                return Err(anyhow!("still running after {timeout:?}\n{}", self.stderr()));
            }
            thread::sleep(Duration::from_millis(10));
        }
        for r in self.readers.drain(..) {
            r.join().unwrap();
        }
        self.child = None;
        let (status, usage) = self.ended.expect("reaped");
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        Ok(Finished {
            status,
            took: started.elapsed(),
            stdout: self.stdout(),
            stderr: self.stderr(),
            peak_rss_kib: usage.ru_maxrss as u64,
            cpu: tv(usage.ru_utime) + tv(usage.ru_stime),
        })
    }

    /// Like [`Running::try_wait`], and panic when it runs on.
    pub fn wait(&mut self, timeout: Duration) -> Finished {
        self.try_wait(timeout).unwrap_or_else(|e| panic!("{e:#}"))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if self.ended.is_none() {
                let _ = child.kill();
                let _ = child.wait();
                started().retain(|&p| p != child.id());
            }
        }
    }
}

/// Assert that none of `ids` is loaded any more (the kernel frees programs shortly
/// after the last reference goes, so allow it a moment).
pub fn assert_unloaded(ids: &[u32]) {
    use crate::progs::prog_loaded;
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
