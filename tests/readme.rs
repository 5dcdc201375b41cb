//! The guide cannot rot. README.md and then every page of the book, in the order of
//! book/src/SUMMARY.md, are walked as a reader walks them: every command block marked
//! `<!-- run: NAME -->` is run as written, the blocks marked `lab` all in one lab (its
//! namespace names swapped for the lab's), so a chapter that leaves the lab changed
//! breaks the chapters after it. The output block marked `<!-- output: NAME -->` on
//! the same page must match what the example really printed, line by line, with
//! numbers masked (times, pids, addresses and counts vary from run to run). A block
//! after `<!-- quote: PATH -->` must still be in that file. And every relative link
//! must point at a file that exists, every `#anchor` at a heading of its page.
//!
//! `README_CAPTURE=1 cargo test --test readme -- --nocapture` prints fresh outputs
//! to paste into the pages.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use ebpf_workshop::kprobe_fallback::kprobes_missing;
use nix::sys::signal::Signal;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const BOOK: &str = "book/src";

/// A page of the guide: its path in the repository, and its text.
struct Page {
    path: String,
    text: String,
}

fn read(path: &str) -> Page {
    let text = std::fs::read_to_string(Path::new(ROOT).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    Page { path: path.to_string(), text }
}

/// README.md, then the book's pages in SUMMARY.md order: the walk a reader takes.
fn pages() -> Vec<Page> {
    let summary = read(&format!("{BOOK}/SUMMARY.md"));
    let mut out = vec![read("README.md")];
    for (target, _) in links(&summary.text) {
        out.push(read(&format!("{BOOK}/{target}")));
    }
    out
}

struct Scenario {
    name: String,
    lab: bool,
    commands: Vec<String>,
    expected: Vec<String>,
}

/// The ```-fenced block right after `marker` in `text`, as lines.
fn block_after(text: &str, marker: &str) -> Option<Vec<String>> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let start = rest.find("```")?;
    let body = &rest[start..];
    let body = &body[body.find('\n')? + 1..];
    if body.starts_with("```") {
        return Some(Vec::new()); // an empty block
    }
    let end = body.find("\n```")?;
    Some(body[..end].lines().map(str::to_string).collect())
}

/// The `<!-- KIND: ARGS -->` markers of a page (each on a line of its own): where
/// each is, and its ARGS.
fn markers<'a>(text: &'a str, kind: &str) -> Vec<(usize, &'a str)> {
    let start = format!("<!-- {kind}: ");
    text.match_indices(&start)
        .filter(|(i, _)| *i == 0 || text[..*i].ends_with('\n'))
        .map(|(i, _)| {
            let args = &text[i + start.len()..];
            (i, &args[..args.find(" -->").expect("unclosed marker")])
        })
        .collect()
}

fn scenarios(page: &Page) -> Vec<Scenario> {
    let (text, path) = (&page.text, &page.path);
    let mut out = Vec::new();
    for (i, header) in markers(text, "run") {
        let mut words = header.split_whitespace();
        let name = words.next().expect("run marker without a name").to_string();
        let lab = words.any(|w| w == "lab");
        let commands = block_after(&text[i..], " -->")
            .unwrap_or_else(|| panic!("{path}: run marker {name} without a block"))
            .into_iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let expected = markers(text, "output")
            .into_iter()
            .find(|(_, n)| *n == name)
            .and_then(|(at, _)| block_after(&text[at..], " -->"))
            .unwrap_or_else(|| panic!("{path}: no <!-- output: {name} --> block"));
        out.push(Scenario { name, lab, commands, expected });
    }
    out
}

/// Digits masked, blanks folded: the shape of a line. A trace_pipe line (hello
/// --printk) is reduced to its message: the task name and flags before it depend on
/// the kernel's state.
fn shape(line: &str) -> String {
    if let (Some(_), Some(message)) = (line.strip_prefix("printk: "), line.rsplit(": ").next()) {
        return format!("printk: {message}");
    }
    let mut s = String::new();
    let mut prev_digit = false;
    for c in line.chars() {
        if c.is_ascii_digit() {
            if !prev_digit {
                s.push('#');
            }
            prev_digit = true;
        } else {
            prev_digit = false;
            s.push(c);
        }
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Run one scenario: the first command that starts an example runs in the
/// background ("terminal 1"); the others run after it has attached, in order
/// ("terminal 2"). Returns everything the example printed.
fn run(s: &Scenario, lab_name: Option<&str>) -> String {
    let fix = |cmd: &str| -> String {
        let mut c = cmd.strip_prefix("sudo ").unwrap_or(cmd).to_string();
        if let Some(lab) = lab_name {
            c = c
                .replace("ebpfws-client", &format!("{lab}-client"))
                .replace("ebpfws-server", &format!("{lab}-server"));
        }
        // The examples as this test run built them (the pages say target/debug).
        if let Some(at) = c.find("target/debug/examples/") {
            let rest = &c[at + "target/debug/examples/".len()..];
            let name: String =
                rest.chars().take_while(|ch| ch.is_alphanumeric() || *ch == '_').collect();
            c = c.replacen(
                &format!("target/debug/examples/{name}"),
                example_path(&name).to_str().unwrap(),
                1,
            );
        }
        c
    };
    let (first, rest) = s.commands.split_first().expect("empty run block");
    // The pages show a kernel without kprobes; where the kernel has them, ask the
    // tracing examples for the same tracepoint path so that the output compares.
    let first = if kprobes_missing().is_none()
        && (first.contains("/hello") || first.contains("/tcpconnect"))
    {
        format!("{first} --attach tracepoint")
    } else {
        first.clone()
    };
    let first = &first;
    assert!(
        first.contains("target/debug/examples/"),
        "{}: the first command must start an example",
        s.name
    );
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &format!("exec {}", fix(first))]);
    let mut example = spawn(cmd);
    example.wait_attached();
    for c in rest {
        let out = Command::new("bash").args(["-c", &fix(c)]).output().unwrap();
        assert!(
            out.status.success(),
            "{}: `{c}` failed:\n{}{}",
            s.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::thread::sleep(Duration::from_millis(1300)); // periodic lines come every second
    let end = match example.wait_for_exit_or(Duration::from_millis(100)) {
        Some(end) => end,
        None => example.stop(Signal::SIGINT, Duration::from_secs(5)),
    };
    // What a person sees: the example's words around its table. The lab's unique
    // name goes back to the pages'.
    let all = format!("{}{}", end.stdout, end.stderr);
    match lab_name {
        Some(lab) => all.replace(lab, "ebpfws"),
        None => all,
    }
}

#[test]
fn readme_commands_run_and_outputs_match() {
    let pages = pages();
    let all: Vec<(&str, Scenario)> =
        pages.iter().flat_map(|p| scenarios(p).into_iter().map(|s| (p.path.as_str(), s))).collect();
    assert!(all.len() >= 8, "expected a run block per example, found {}", all.len());
    let capture = std::env::var_os("README_CAPTURE").is_some();
    let mut failures = Vec::new();
    // One lab for the whole walk, as a reader has.
    let lab = lab();
    for (path, s) in &all {
        let actual = run(s, s.lab.then_some(lab.name.as_str()));
        let shapes: Vec<String> = actual.lines().map(shape).collect();
        // The "no kprobes" note only appears on kernels without kprobes.
        let kernel_specific =
            |l: &str| l.starts_with("note: no kprobe") && kprobes_missing().is_none();
        let missing: Vec<&String> = s
            .expected
            .iter()
            .filter(|l| !l.trim().is_empty() && !kernel_specific(l) && !shapes.contains(&shape(l)))
            .collect();
        if capture {
            println!("{path}:\n<!-- output: {} -->\n```text\n{}```\n", s.name, actual);
        }
        if !missing.is_empty() {
            failures.push(format!(
                "{path}, {}: lines not in the real output: {missing:#?}\nreal output:\n{actual}",
                s.name
            ));
        }
    }
    // After the walk the lab is as `make lab` made it: the kernel answers pings.
    for (from, to) in [(&lab.client, &lab.server), (&lab.server, &lab.client)] {
        if ping(from, to.ipv4, 1) != 1 {
            failures.push(format!("after the chapters, {} no longer answers pings", to.ns));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn readme_quotes_match_the_files_they_quote() {
    let mut checked = 0;
    for page in pages() {
        let text = &page.text;
        for (i, path) in markers(text, "quote") {
            let quote = block_after(&text[i..], " -->").unwrap().join("\n");
            let file = std::fs::read_to_string(Path::new(ROOT).join(path))
                .unwrap_or_else(|e| panic!("{}: {path}: {e}", page.path));
            assert!(
                file.contains(&quote),
                "{} quotes {path}, but the file no longer has:\n{quote}",
                page.path
            );
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} quotes found");
}

/// The text outside ```-fenced blocks, where headings and links are (a fenced line
/// becomes an empty one, so that line numbers stay).
fn outside_fences(text: &str) -> String {
    let mut fenced = false;
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// `text` without its code spans (`x`, ``x``, which may hold brackets that are no link).
fn without_code_spans(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find('`') {
        out.push_str(&rest[..at]);
        let ticks = rest[at..].len() - rest[at..].trim_start_matches('`').len();
        let fence = &rest[at..at + ticks];
        let after = &rest[at + ticks..];
        rest = match after.find(fence) {
            Some(end) => {
                out.extend(after[..end].matches('\n').map(|_| '\n')); // lines stay
                &after[end + ticks..]
            }
            None => after, // a lone backtick
        };
    }
    out + rest
}

/// The `[text](target)` links of a page (outside code), with the 1-based line of each.
fn links(text: &str) -> Vec<(String, usize)> {
    let prose = without_code_spans(&outside_fences(text));
    prose
        .match_indices("](")
        .filter_map(|(i, _)| {
            let target = &prose[i + 2..];
            let target = target[..target.find(')')?].split_whitespace().next()?;
            let line = prose[..i].matches('\n').count() + 1;
            Some((target.to_string(), line))
        })
        .collect()
}

/// The anchors of a page's headings, as GitHub and mdBook make them: lowercase,
/// spaces to '-', punctuation dropped; a repeated heading gets `-1`, `-2`...
fn anchors(text: &str) -> Vec<String> {
    let mut seen = HashMap::new();
    outside_fences(text)
        .lines()
        .filter(|l| l.starts_with('#'))
        .filter_map(|l| l.trim_start_matches('#').strip_prefix(' '))
        .map(|heading| {
            let slug: String = heading
                .trim()
                .to_lowercase()
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                    _ => None,
                })
                .collect();
            let n = seen.entry(slug.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                slug
            } else {
                format!("{slug}-{}", *n - 1)
            }
        })
        .collect()
}

/// `a/b/../c` as `a/c`, without touching the file system.
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[test]
fn links_point_at_files_and_headings() {
    let mut paths = vec!["README.md".to_string()];
    for entry in std::fs::read_dir(Path::new(ROOT).join(BOOK)).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".md") {
            paths.push(format!("{BOOK}/{name}"));
        }
    }
    let in_summary: Vec<String> = pages().into_iter().map(|p| p.path).collect();
    let mut broken = Vec::new();
    let mut checked = 0;
    for path in &paths {
        let page = read(path);
        let in_book = path.starts_with(BOOK);
        if in_book && !path.ends_with("SUMMARY.md") && !in_summary.contains(path) {
            broken.push(format!("{path}: not in {BOOK}/SUMMARY.md, so the book leaves it out"));
        }
        for (link, line) in links(&page.text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (file, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if file.is_empty() {
                PathBuf::from(path)
            } else {
                normalise(&Path::new(path).parent().unwrap().join(file))
            };
            let target_str = target.to_string_lossy().to_string();
            let at = format!("{path}:{line}: {link}");
            if !Path::new(ROOT).join(&target).exists() {
                broken.push(format!("{at}: no file {target_str}"));
                continue;
            }
            // mdBook turns a link to a .md file into one to its .html page: the page
            // must be one the book renders.
            if in_book && target_str.ends_with(".md") && !in_summary.contains(&target_str) {
                broken.push(format!("{at}: {target_str} is not a page of the book"));
            }
            if !anchor.is_empty() && !anchors(&read(&target_str).text).iter().any(|a| a == anchor) {
                broken.push(format!("{at}: no heading #{anchor} in {target_str}"));
            }
        }
        // {{#include FILE:NAME}} takes the part of FILE between its ANCHOR comments;
        // a link in that part would be relative to the wrong page in one place or the
        // other.
        for (i, _) in page.text.match_indices("{{#include ") {
            let spec = &page.text[i + "{{#include ".len()..];
            let spec = &spec[..spec.find("}}").unwrap()];
            let (file, name) = spec.split_once(':').unwrap_or((spec, ""));
            let file = normalise(&Path::new(path).parent().unwrap().join(file));
            let text = read(&file.to_string_lossy()).text;
            let part = text
                .split_once(&format!("ANCHOR: {name} "))
                .and_then(|(_, rest)| rest.split_once(&format!("ANCHOR_END: {name} ")));
            let Some((part, _)) = part else {
                broken.push(format!("{path}: includes {spec}, not marked in the file"));
                continue;
            };
            let relative: Vec<_> =
                links(part).into_iter().filter(|(l, _)| !l.contains("://")).collect();
            if !relative.is_empty() {
                broken.push(format!("{path}: includes {spec}, which has links: {relative:?}"));
            }
        }
    }
    assert!(checked >= 50, "only {checked} links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}
