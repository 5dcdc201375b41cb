//! The README cannot rot: every command block marked `<!-- run: NAME -->` is run as
//! written, in README order, as a reader does: the blocks marked `lab` all in one
//! lab (its namespace names swapped for the lab's), so a chapter that leaves the lab
//! changed breaks the chapters after it. The output block marked
//! `<!-- output: NAME -->` must match what the example really printed, line by
//! line, with numbers masked (times, pids, addresses and counts vary from run to run).
//!
//! `README_CAPTURE=1 cargo test --test readme -- --nocapture` prints fresh outputs
//! to paste into the README.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use ebpf_workshop::kprobe_fallback::kprobes_missing;
use nix::sys::signal::Signal;

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

fn scenarios(readme: &str) -> Vec<Scenario> {
    let mut out = Vec::new();
    for (i, _) in readme.match_indices("<!-- run: ") {
        let header = &readme[i + "<!-- run: ".len()..];
        let header = &header[..header.find(" -->").expect("unclosed run marker")];
        let mut words = header.split_whitespace();
        let name = words.next().expect("run marker without a name").to_string();
        let lab = words.any(|w| w == "lab");
        let commands = block_after(&readme[i..], " -->")
            .expect("run marker without a block")
            .into_iter()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        let expected = block_after(readme, &format!("<!-- output: {name} -->"))
            .unwrap_or_else(|| panic!("no <!-- output: {name} --> block"));
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
        // The examples as this test run built them (the README says target/debug).
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
    // The README shows a kernel without kprobes; where the kernel has them, ask the
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
    // name goes back to the README's.
    let all = format!("{}{}", end.stdout, end.stderr);
    match lab_name {
        Some(lab) => all.replace(lab, "ebpfws"),
        None => all,
    }
}

#[test]
fn readme_commands_run_and_outputs_match() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let all = scenarios(&readme);
    assert!(all.len() >= 8, "expected a run block per example, found {}", all.len());
    let capture = std::env::var_os("README_CAPTURE").is_some();
    let mut failures = Vec::new();
    // One lab for the whole walk, as a reader has.
    let lab = lab();
    for s in &all {
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
            println!("<!-- output: {} -->\n```text\n{}```\n", s.name, actual);
        }
        if !missing.is_empty() {
            failures.push(format!(
                "{}: README lines not in the real output: {missing:#?}\nreal output:\n{actual}",
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
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let mut checked = 0;
    for (i, _) in readme.match_indices("<!-- quote: ") {
        let path = &readme[i + "<!-- quote: ".len()..];
        let path = &path[..path.find(" -->").unwrap()];
        let quote = block_after(&readme[i..], " -->").unwrap().join("\n");
        let file = std::fs::read_to_string(format!("{root}/{path}"))
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            file.contains(&quote),
            "README quotes {path}, but the file no longer has:\n{quote}"
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} quotes found");
}
