//! Compiles every src/bpf/<name>.bpf.c with clang into a Rust skeleton,
//! $OUT_DIR/<name>.skel.rs, which src/main.rs includes.

use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

fn main() {
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("src")
        .join("bpf");
    println!("cargo:rerun-if-changed={}", bpf.display());
    for entry in std::fs::read_dir(&bpf).expect("reading src/bpf").flatten() {
        let path = entry.path();
        println!("cargo:rerun-if-changed={}", path.display());
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if let Some(name) = file.strip_suffix(".bpf.c") {
            build(&path, &bpf, &out.join(format!("{name}.skel.rs")));
        }
    }
}

/// clang `src` into a skeleton, or stop the build with clang's first error.
fn build(src: &Path, include: &Path, skel: &Path) {
    let args = [
        format!("-I{}", include.display()),
        "-Wall".to_string(),
        // A helper used without its header is an error, not a later libbpf failure.
        "-Werror=implicit-function-declaration".to_string(),
    ];
    let built = SkeletonBuilder::new().source(src).clang_args(args).build_and_generate(skel);
    if let Err(e) = built {
        let clang = e.root_cause().to_string();
        eprintln!("{clang}");
        let first = clang.lines().find(|l| l.contains("error:")).unwrap_or("see above");
        eprintln!("error: {} does not compile: {}", src.display(), first.trim());
        std::process::exit(1);
    }
}
