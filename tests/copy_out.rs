//! `make new`: an example copied out into a project of its own builds with plain
//! `cargo build` and behaves like the example. The proof that copy-out works.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

/// Where the copied projects build: one target directory for both, so that their
/// dependencies (the same versions, from the copied Cargo.lock) build once.
fn shared_target() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target").join("copy-out")
}

/// Run `make new`'s generator for `example` into a fresh directory and build the
/// result; the path of the built binary.
fn copy_and_build(example: &str) -> PathBuf {
    let root = std::env::temp_dir().join(unique("ebpfws-new-"));
    let dir = root.join(format!("my-{}", example.replace('_', "-")));
    let out = Command::new(env!("CARGO_BIN_EXE_new"))
        .arg(&dir)
        .args(["--example", example])
        .output()
        .unwrap();
    assert!(out.status.success(), "make new failed: {}", String::from_utf8_lossy(&out.stderr));
    // Nothing of this repository is referred to: no path dependency, no include.
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    assert!(!manifest.contains("path ="), "{manifest}");
    assert!(!manifest.contains("ebpf-workshop"), "{manifest}");
    let main_rs = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
    assert!(!main_rs.contains("ebpf_workshop"), "main.rs still uses the workshop crate");
    assert!(dir.join(format!("src/bpf/{example}.bpf.c")).exists());
    assert!(dir.join("src/bpf/vmlinux.h").exists());

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let build = Command::new(cargo)
        .arg("build")
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", shared_target())
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "cargo build in the copied project failed:\n{}",
        String::from_utf8_lossy(&build.stderr)
    );
    let binary = shared_target().join("debug").join(dir.file_name().unwrap());
    assert!(binary.exists(), "{} was not built", binary.display());
    let _ = std::fs::remove_dir_all(root);
    binary
}

#[test]
fn copied_hello_and_xdp_pingpong_build_and_run_like_the_examples() {
    // hello: reports an exec, like examples/hello.rs.
    let hello = copy_and_build("hello");
    let mut run = spawn(Command::new(&hello));
    run.wait_attached();
    let marker = std::env::temp_dir().join(unique("ebpfws-copied-"));
    std::fs::copy("/bin/true", &marker).unwrap();
    spawn_fresh_copy(&marker).wait().unwrap();
    run.wait_for(marker.to_str().unwrap(), Duration::from_secs(10));
    let end = run.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    let _ = std::fs::remove_file(marker);

    // xdp_pingpong: answers pings in the lab while the kernel's own replies are off.
    let pingpong = copy_and_build("xdp_pingpong");
    let lab = lab();
    let (client, server) = (&lab.client, &lab.server);
    server.kernel_echo_reply(false).unwrap();
    assert_eq!(ping(client, server.ipv4, 1), 0, "the kernel still answers");
    let mut cmd = server.cmd(&pingpong);
    cmd.arg(server.iface);
    let mut run = spawn(cmd);
    run.wait_attached();
    assert_eq!(ping(client, server.ipv4, 3), 3, "the copied xdp_pingpong answers");
    let ids = bpf_prog_ids(run.pid());
    let end = run.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.stderr.contains("replied 3"), "{}", end.stderr);
    assert_eq!(xdp_on(server), None);
    assert_unloaded(&ids);
}
