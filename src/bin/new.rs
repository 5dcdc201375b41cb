//! `make new DIR=<path> [EXAMPLE=<name>]`: copy one example out into a cargo project
//! of its own, that depends on nothing in this repository.
//!
//! What it writes: `Cargo.toml` (package and binary named after DIR), a short
//! `build.rs`, `src/main.rs` (the example), the `src/` helper modules the example
//! uses, and `src/bpf/` with the example's C file, exactly the headers it includes
//! and this architecture's `vmlinux.h`. Then `cd DIR && cargo build`.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Parser;

/// Copy an example into a standalone cargo project.
#[derive(Parser)]
#[command(after_help = "Example: make new DIR=~/my-xdp EXAMPLE=xdp_pingpong")]
struct Args {
    /// The directory to create (its last component names the package and binary).
    dir: PathBuf,
    /// The example to start from (`ls examples/`).
    #[arg(long, default_value = "hello")]
    example: String,
}

/// The build script of the new project: the repository's (build.rs), minus what
/// only a project with many programs needs. `tests/copy_out.rs` builds with it.
const BUILD_RS: &str = include_str!("new/build.rs");
/// The copy runs as root the way this repository does (.cargo/).
const AS_ROOT: &str = include_str!("../../.cargo/as-root");
const CONFIG_TOML: &str = include_str!("../../.cargo/config.toml");

fn main() -> Result<()> {
    let args = Args::parse();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = &args.example;
    let main_rs = repo.join("examples").join(format!("{example}.rs"));
    let bpf_c = repo.join("bpf").join(format!("{example}.bpf.c"));
    if !main_rs.exists() || !bpf_c.exists() {
        bail!("no example {example}: `ls examples/` lists them (each has a bpf/<name>.bpf.c)");
    }
    let name = args
        .dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("DIR needs a last component to name the project")?;
    if !name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("{name} cannot name a cargo package: use letters, digits, - and _, starting with a letter");
    }
    if args.dir.exists() && fs::read_dir(&args.dir)?.next().is_some() {
        bail!("{} exists and is not empty: pick a new directory", args.dir.display());
    }
    let src = args.dir.join("src");
    fs::create_dir_all(src.join("bpf"))?;
    fs::create_dir_all(args.dir.join(".cargo"))?;

    // src/main.rs and the helper modules it uses, with `ebpf_workshop::` -> `crate::`.
    let text = fs::read_to_string(&main_rs)?;
    let modules = modules_used(&text, repo)?;
    let mods: String = modules.iter().map(|m| format!("mod {m};\n")).collect();
    fs::write(src.join("main.rs"), insert_after_docs(&as_crate_paths(&text), &mods))?;
    for m in &modules {
        let body = fs::read_to_string(repo.join("src").join(format!("{m}.rs")))?;
        // A helper module serves several examples: this one may not use all of it.
        let body = format!("#![allow(dead_code)] // from ebpf-workshop's src/{m}.rs\n{body}");
        fs::write(src.join(format!("{m}.rs")), body)?;
    }

    // src/bpf: the program, the headers it includes, vmlinux.h.
    let mut headers = BTreeSet::new();
    headers_of(&bpf_c, repo, &mut headers)?;
    fs::copy(&bpf_c, src.join("bpf").join(bpf_c.file_name().unwrap()))?;
    for h in &headers {
        fs::copy(h, src.join("bpf").join(h.file_name().unwrap()))?;
    }
    let vmlinux = fs::read_dir(repo.join("vmlinux"))?
        .flatten()
        .map(|e| e.path().join("vmlinux.h"))
        .find(|p| p.exists() && p.parent().is_some_and(|d| d.ends_with(arch())))
        .context("vmlinux/<arch>/vmlinux.h is missing: run `make vmlinux`")?;
    fs::copy(vmlinux, src.join("bpf").join("vmlinux.h"))?;

    // Cargo.toml: our dependencies, so the versions are the ones this repo tests.
    let ours = fs::read_to_string(repo.join("Cargo.toml"))?;
    let deps = section(&ours, "[dependencies]").context("our Cargo.toml has no [dependencies]")?;
    let libbpf_cargo = section(&ours, "[build-dependencies]")
        .and_then(|s| s.lines().find(|l| l.starts_with("libbpf-cargo")).map(str::to_string))
        .context("our Cargo.toml has no libbpf-cargo")?;
    fs::write(
        args.dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
             [dependencies]\n{deps}\n[build-dependencies]\n{libbpf_cargo}\n"
        ),
    )?;
    // The lock file pins the versions this repository was tested with.
    fs::copy(repo.join("Cargo.lock"), args.dir.join("Cargo.lock"))?;
    fs::write(args.dir.join("build.rs"), BUILD_RS)?;
    fs::write(args.dir.join(".cargo/config.toml"), CONFIG_TOML)?;
    fs::write(args.dir.join(".cargo/as-root"), AS_ROOT)?;
    set_executable(&args.dir.join(".cargo/as-root"))?;
    fs::write(args.dir.join(".gitignore"), "/target\n")?;
    fs::write(args.dir.join("README.md"), readme(name, example, &modules, &headers))?;

    println!("wrote {} from the example {example}:", args.dir.display());
    for line in listing(&args.dir)? {
        println!("  {line}");
    }
    println!("build and run it:  cd {} && cargo run -- --help", args.dir.display());
    Ok(())
}

/// The modules of `src/` that `text` uses through `ebpf_workshop::`, and the ones
/// those use through `crate::`, sorted.
fn modules_used(text: &str, repo: &Path) -> Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let mut todo: Vec<String> = idents_after(text, "ebpf_workshop::");
    while let Some(m) = todo.pop() {
        if found.insert(m.clone()) {
            let file = repo.join("src").join(format!("{m}.rs"));
            let body =
                fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
            todo.extend(idents_after(&body, "crate::"));
        }
    }
    Ok(found)
}

/// The identifiers right after each `prefix` in `text`.
fn idents_after(text: &str, prefix: &str) -> Vec<String> {
    text.match_indices(prefix)
        .map(|(i, _)| {
            text[i + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        })
        .filter(|m| !m.is_empty())
        .collect()
}

/// The example's `use ebpf_workshop::...` as `use crate::...`. In main.rs the
/// modules are declared at the root (`mod preflight;`), so `use crate::xdp;` and
/// the `self` of `use crate::tc::{self, TcApi};` would name them twice: dropped.
fn as_crate_paths(text: &str) -> String {
    let mut out = String::new();
    for line in text.replace("ebpf_workshop::", "crate::").lines() {
        let is_module_import = line.starts_with("use crate::")
            && line.ends_with(';')
            && !line.contains("::{")
            && line.matches("::").count() == 1;
        if is_module_import {
            continue;
        }
        let line = if line.starts_with("use crate::") {
            line.replace("::{self, ", "::{")
        } else {
            line.to_string()
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// `text` with `lines` inserted after its leading `//!` doc comment.
fn insert_after_docs(text: &str, lines: &str) -> String {
    let doc_end = text.lines().take_while(|l| l.starts_with("//!")).map(|l| l.len() + 1).sum();
    format!("{}\n{}{}", &text[..doc_end], lines, &text[doc_end..])
}

/// The headers `file` includes with quotes (found in bpf/ or bpf/include/), and
/// theirs; vmlinux.h is copied separately.
fn headers_of(file: &Path, repo: &Path, found: &mut BTreeSet<PathBuf>) -> Result<()> {
    let text = fs::read_to_string(file)?;
    for name in text.lines().filter_map(|l| l.strip_prefix("#include \"")?.strip_suffix('"')) {
        if name == "vmlinux.h" {
            continue;
        }
        let path = [repo.join("bpf").join(name), repo.join("bpf/include").join(name)]
            .into_iter()
            .find(|p| p.exists())
            .with_context(|| {
                format!(
                    "{} includes {name}, which is in neither bpf/ nor bpf/include/",
                    file.display()
                )
            })?;
        if found.insert(path.clone()) {
            headers_of(&path, repo, found)?;
        }
    }
    Ok(())
}

/// The lines of a TOML `[section]`, up to the next section.
fn section(toml: &str, header: &str) -> Option<String> {
    let start = toml.find(header)? + header.len();
    let body = &toml[start..];
    let end = body.find("\n[").map(|i| i + 1).unwrap_or(body.len());
    Some(body[..end].trim_start_matches('\n').to_string())
}

/// vmlinux/'s name for this machine's architecture.
fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "x86",
        "aarch64" => "arm64",
        "riscv64" => "riscv",
        "powerpc64" => "powerpc",
        "s390x" => "s390",
        "loongarch64" => "loongarch",
        other => other,
    }
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Every file under `dir`, relative to it, sorted.
fn listing(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in fs::read_dir(&d)?.flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push(path.strip_prefix(dir)?.display().to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

fn readme(
    name: &str,
    example: &str,
    modules: &BTreeSet<String>,
    headers: &BTreeSet<PathBuf>,
) -> String {
    let modules: Vec<String> = modules.iter().map(|m| format!("`src/{m}.rs`")).collect();
    let headers: Vec<String> = headers
        .iter()
        .filter_map(|h| h.file_name()?.to_str().map(|n| format!("`src/bpf/{n}`")))
        .collect();
    format!(
        "# {name}\n\n\
         Started from the ebpf-workshop example `{example}`.\n\n\
         ```sh\n\
         cargo build              # clang compiles src/bpf/{example}.bpf.c (build.rs)\n\
         cargo run -- --help      # runs as root: sudo unless you are root (.cargo/config.toml)\n\
         ```\n\n\
         - `src/main.rs`: the program: open, load, attach, read the ring buffer until Ctrl-C.\n\
         - `src/bpf/{example}.bpf.c`: the eBPF program, compiled into a Rust skeleton.\n\
         - helpers: {}.\n\
         - BPF headers: {}, and `src/bpf/vmlinux.h` (this machine's kernel types, for CO-RE;\n  \
           regenerate with `bpftool btf dump file /sys/kernel/btf/vmlinux format c`).\n\n\
         Needs clang, libelf and zlib headers (Debian: `apt install clang libelf-dev zlib1g-dev pkg-config`).\n",
        if modules.is_empty() { "none".to_string() } else { modules.join(", ") },
        if headers.is_empty() { "none".to_string() } else { headers.join(", ") },
    )
}
