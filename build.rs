//! Compiles every `bpf/<name>.bpf.c` with clang and turns it into a Rust skeleton
//! (`$OUT_DIR/<name>.skel.rs`, exposed as `ebpf_workshop::skel::<name>`).
//!
//! Adding an example needs no edit here: drop `bpf/<name>.bpf.c` next to
//! `examples/<name>.rs` and it is discovered.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_cargo::util::CargoWarningFormatter;
use libbpf_cargo::SkeletonBuilder;
use tracing_subscriber::filter::{LevelFilter as Level, Targets};
use tracing_subscriber::prelude::*;

fn main() {
    if let Err(e) = run() {
        // `{:#}` prints the whole chain: what failed and why.
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
    let vmlinux_h = vmlinux_dir.join("vmlinux.h");

    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-changed={}", manifest.join("vmlinux").display());
    if !vmlinux_h.exists() {
        bail!(
            "{} is missing: run `make vmlinux` (needs bpftool and /sys/kernel/btf/vmlinux) \
             to generate it for this architecture",
            vmlinux_h.display()
        );
    }

    let sources = bpf_sources(&bpf_dir)?;
    let mut index = String::new();
    for src in &sources {
        // Cargo only watches directories for added/removed files; watch each file too.
        println!("cargo:rerun-if-changed={}", src.display());
        let name = src
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".bpf.c"))
            .context("bpf source name")?
            .to_string();
        let skel = out.join(format!("{name}.skel.rs"));
        SkeletonBuilder::new()
            .source(src)
            .clang_args([
                format!("-I{}", vmlinux_dir.display()),
                format!("-I{}", bpf_dir.join("include").display()),
                format!("-I{}", bpf_dir.display()),
                "-Wall".to_string(),
            ])
            .build_and_generate(&skel)
            .with_context(|| format!("building the BPF program {}", src.display()))?;
        writeln!(
            index,
            "#[allow(missing_docs, clippy::all, clippy::pedantic, unused)]\n\
             pub mod {name} {{ include!(concat!(env!(\"OUT_DIR\"), \"/{name}.skel.rs\")); }}"
        )?;
        // Structs from our own headers that reach user space (events, counters)
        // get `plain::Plain`, so Rust can read them from ring-buffer or map bytes.
        // They are plain old data by construction: C structs of integers.
        let generated = fs::read_to_string(&skel)?;
        for event in shared_structs(src, &bpf_dir)? {
            if generated.contains(&format!("pub struct {event} {{")) {
                writeln!(index, "unsafe impl plain::Plain for {name}::types::{event} {{}}")?;
            }
        }
    }
    fs::write(out.join("skels.rs"), index)?;
    // Header files are included, not compiled: watch them so edits rebuild.
    for dir in [bpf_dir.clone(), bpf_dir.join("include")] {
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
    Ok(())
}

/// Names of the `struct x {` definitions in the local headers that `file` includes
/// (`#include "echo.h"`, found in bpf/ or bpf/include/), and in theirs.
fn shared_structs(file: &Path, bpf_dir: &Path) -> Result<Vec<String>> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut names = Vec::new();
    for included in text.lines().filter_map(|l| l.strip_prefix("#include \"")?.strip_suffix('"')) {
        let found = [bpf_dir.join(included), bpf_dir.join("include").join(included)]
            .into_iter()
            .find(|p| p.exists());
        let Some(header) = found else { continue }; // vmlinux.h
        let header_text = fs::read_to_string(&header)?;
        names.extend(
            header_text
                .lines()
                .filter_map(|l| l.strip_prefix("struct ")?.strip_suffix(" {"))
                .map(str::to_string),
        );
        names.extend(shared_structs(&header, bpf_dir)?);
    }
    Ok(names)
}

/// `bpf/*.bpf.c`, sorted so the generated index is stable.
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
