//! Compiles every `bpf/<name>.bpf.c` with clang and turns it into a Rust skeleton,
//! `$OUT_DIR/<name>.skel.rs`. An example includes its own skeleton:
//!
//! ```ignore
//! mod xdp_pingpong { include!(concat!(env!("OUT_DIR"), "/xdp_pingpong.skel.rs")); }
//! ```
//!
//! Adding an example needs no edit here: drop `bpf/<name>.bpf.c` next to
//! `examples/<name>.rs` and it is discovered. A program that does not compile stops
//! the build with one sentence naming the file and clang's first error.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use libbpf_cargo::util::CargoWarningFormatter;
use libbpf_cargo::SkeletonBuilder;
use tracing_subscriber::filter::{LevelFilter as Level, Targets};
use tracing_subscriber::prelude::*;

fn main() {
    if let Err(e) = run() {
        // One sentence, no backtrace: the message says what to fix.
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    // clang's warnings come back through `tracing`; print them as cargo warnings.
    // Only clang's own output: libbpf-cargo's chatter about sections is not for users.
    let clang_only = Targets::new()
        .with_target("compiler-stderr", Level::INFO)
        .with_target("compiler-stdout", Level::INFO);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .event_format(CargoWarningFormatter)
                .with_filter(clang_only),
        )
        .init();

    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let bpf_dir = manifest.join("bpf");
    let vmlinux_dir = manifest.join("vmlinux").join(kernel_arch()?);
    println!("cargo:rerun-if-changed={}", manifest.join("vmlinux").display());
    if !vmlinux_dir.join("vmlinux.h").exists() {
        bail!(
            "{} is missing: run `make vmlinux` (needs bpftool and /sys/kernel/btf/vmlinux) \
             to generate it for this architecture",
            vmlinux_dir.join("vmlinux.h").display()
        );
    }

    // Headers are included, not compiled: watch them (and the folders, for new
    // files) so that an edit rebuilds.
    for dir in [bpf_dir.clone(), bpf_dir.join("include")] {
        println!("cargo:rerun-if-changed={}", dir.display());
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }

    let include_dirs = [vmlinux_dir, bpf_dir.join("include"), bpf_dir.clone()];
    for src in bpf_sources(&bpf_dir)? {
        let name = src.file_name().and_then(OsStr::to_str).and_then(|n| n.strip_suffix(".bpf.c"));
        let name = name.context("bpf source name")?;
        build_skeleton(&src, &include_dirs, &out.join(format!("{name}.skel.rs")))?;
    }
    Ok(())
}

/// clang `src` and write its skeleton to `skel`, or fail with one sentence.
fn build_skeleton(src: &Path, include_dirs: &[PathBuf], skel: &Path) -> Result<()> {
    let mut args: Vec<String> = include_dirs.iter().map(|d| format!("-I{}", d.display())).collect();
    // A helper called without its header is an error, not a warning: otherwise
    // clang emits a call to an unknown function that only fails later, in libbpf.
    args.extend(["-Wall", "-Werror=implicit-function-declaration"].map(String::from));
    // libbpf-rs panics on some malformed objects; turn that into an error too.
    std::panic::set_hook(Box::new(|_| {}));
    let built = std::panic::catch_unwind(|| {
        SkeletonBuilder::new().source(src).clang_args(&args).build_and_generate(skel)
    });
    let _ = std::panic::take_hook();
    let shown = src.strip_prefix(env::var("CARGO_MANIFEST_DIR")?).unwrap_or(src).display();
    match built {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            // The root of the chain is clang's stderr: show it all, then name the
            // first error in the one-line summary.
            let clang = e.root_cause().to_string();
            eprintln!("{clang}");
            let first = clang.lines().find(|l| l.contains("error:")).unwrap_or("see above");
            Err(anyhow!("{shown} does not compile: {}", first.trim()))
        }
        Err(_) => bail!(
            "{shown} compiled, but libbpf cannot read the object (an unknown function or \
             section?); the clang warnings above say where"
        ),
    }
}

/// `bpf/*.bpf.c`, sorted so the build order is stable.
fn bpf_sources(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".bpf.c"))
        .collect();
    v.sort();
    Ok(v)
}

/// The directory name the kernel (and bpftool/libbpf) use for the target arch.
fn kernel_arch() -> Result<&'static str> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH")?;
    Ok(match arch.as_str() {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        "riscv64" => "riscv",
        "powerpc64" => "powerpc",
        "s390x" => "s390",
        "loongarch64" => "loongarch",
        other => bail!("no vmlinux/ mapping for target arch {other}: add one in build.rs"),
    })
}
