//! hello, run as a user would: real kernel, real execs.

mod common;

use std::time::Duration;

use common::*;
use ebpf_workshop::kprobe_fallback::kprobes_missing;
use nix::sys::signal::Signal;

/// A program with a name nobody else runs: a copy of `true`.
fn unique_program() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(unique("ebpfws-hello-"));
    std::fs::copy("/bin/true", &path).unwrap();
    path
}

#[test]
fn reports_an_exec_with_its_pid_and_filename() {
    let mut hello = run_example("hello", &[]);
    // The talk's hook where the kernel has kprobes; the tracepoint only where not.
    let attached = hello.wait_for("attached:", Duration::from_secs(20));
    let expected = match kprobes_missing() {
        None => "attached: kprobe on the execve syscall",
        Some(_) => "attached: tracepoint syscalls:sys_enter_execve",
    };
    assert_eq!(attached, expected);
    let program = unique_program();
    let mut child = spawn_fresh_copy(&program);
    let pid = child.id().to_string();
    child.wait().unwrap();
    let name = program.to_str().unwrap().to_string();
    // Columns: TIME PID PPID UID COMM FILENAME. hello reports every execve call,
    // failed ones too: an attempt that met ETXTBSY (see spawn_fresh_copy) shows up
    // under its own pid, so look for the row of the exec that ran.
    let line = hello.wait_for_line(Duration::from_secs(10), &format!("{name} run by {pid}"), |l| {
        l.ends_with(&format!(" {name}")) && l.split_whitespace().nth(1) == Some(pid.as_str())
    });
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cols[2], std::process::id().to_string(), "ppid is this test in {line:?}");
    assert_eq!(cols[3], "0", "uid column in {line:?}");
    assert_eq!(cols[5], name);
    let ids = bpf_prog_ids(hello.pid());
    let end = hello.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "exit after Ctrl-C: {end:?}");
    assert!(end.took < scaled(Duration::from_secs(1)), "Ctrl-C took {:?}", end.took);
    assert!(end.stderr.contains("execs seen, 0 events lost"), "summary: {}", end.stderr);
    assert_unloaded(&ids);
    let _ = std::fs::remove_file(program);
}

#[test]
fn printk_shows_im_alive() {
    let mut hello = run_example("hello", &["--printk"]);
    hello.wait_attached();
    let program = unique_program();
    // One exec may race with the trace_pipe reader starting; a few make it certain.
    for _ in 0..5 {
        spawn_fresh_copy(&program).wait().unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = hello.wait_for("I'm alive!", Duration::from_secs(10));
    assert!(line.starts_with("printk:"), "{line}");
    let ids = bpf_prog_ids(hello.pid());
    let end = hello.stop(Signal::SIGTERM, Duration::from_secs(2));
    assert!(end.status.success(), "exit after SIGTERM: {end:?}");
    assert_unloaded(&ids);
    let _ = std::fs::remove_file(program);
}

#[test]
fn tracepoint_can_be_chosen_and_says_so() {
    let mut hello = run_example("hello", &["--attach", "tracepoint"]);
    let line = hello.wait_for("attached:", Duration::from_secs(20));
    assert_eq!(line, "attached: tracepoint syscalls:sys_enter_execve");
    hello.stop(Signal::SIGINT, Duration::from_secs(2));
}

#[test]
fn forced_kprobe_attaches_the_kprobe_or_names_the_missing_feature() {
    let mut hello = run_example("hello", &["--attach", "kprobe"]);
    if kprobes_missing().is_none() {
        // A kernel with kprobes: the talk's hook must just work.
        let line = hello.wait_for("attached:", Duration::from_secs(20));
        assert_eq!(line, "attached: kprobe on the execve syscall");
        hello.stop(Signal::SIGINT, Duration::from_secs(2));
        return;
    }
    let end = hello.wait(Duration::from_secs(20));
    assert!(!end.status.success());
    assert!(end.stderr.contains("CONFIG_KPROBES"), "message: {}", end.stderr);
    assert!(end.stderr.contains("--attach tracepoint"), "says what to do: {}", end.stderr);
    assert!(!end.stderr.contains("panicked"), "{}", end.stderr);
}
