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
    println!(
        "cargo:rerun-if-changed={}",
        manifest.join("vmlinux").display()
    );
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
        // Structs in bpf/<name>.h are records sent to user space: let `plain` read
        // them from ring-buffer bytes (they are plain old data by construction).
        for event in shared_structs(&bpf_dir.join(format!("{name}.h")))? {
            writeln!(
                index,
                "unsafe impl plain::Plain for {name}::types::{event} {{}}"
            )?;
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

/// Names of the `struct x {` definitions in a shared header and the local headers
/// it includes (`#include "echo.h"`, looked up in bpf/ and bpf/include/).
fn shared_structs(header: &Path) -> Result<Vec<String>> {
    let Ok(text) = fs::read_to_string(header) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("struct "))
        .filter_map(|l| l.strip_suffix(" {"))
        .map(str::to_string)
        .collect();
    let bpf_dir = header.parent().context("header directory")?;
    for included in text
        .lines()
        .filter_map(|l| l.strip_prefix("#include \"")?.strip_suffix('"'))
    {
        for dir in [bpf_dir.to_path_buf(), bpf_dir.join("include")] {
            if dir.join(included).exists() {
                names.extend(shared_structs(&dir.join(included))?);
                break;
            }
        }
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
