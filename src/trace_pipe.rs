//! The kernel's trace pipe, where `bpf_printk()` writes: open it with only new
//! lines in it, and print the lines a program wrote.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::OpenOptionsExt;

use anyhow::{Context, Result};
use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::preflight::TRACEFS;

/// Open the kernel's trace pipe, and first throw away what is already in it (lines
/// from earlier runs), so that we show only this run's. It is a pipe shared by
/// every bpf_printk on the system, and reading consumes it.
pub fn open() -> Result<File> {
    let path = format!("{TRACEFS}/trace_pipe");
    let mut pipe = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(&path)
        .with_context(|| format!("opening {path}"))?;
    let mut old = vec![0u8; 1 << 16];
    // At most 1,000 reads: something may printk without pause.
    for _ in 0..1000 {
        if !matches!(pipe.read(&mut old), Ok(n) if n > 0) {
            break;
        }
    }
    fcntl(&pipe, FcntlArg::F_SETFL(OFlag::empty())).context("making the trace pipe blocking")?;
    Ok(pipe)
}

/// Copy the lines of `pipe` that contain `text` to our stdout, as `printk: LINE`,
/// in the background.
pub fn print_lines_with(pipe: File, text: &'static str) {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if line.contains(text) {
                println!("printk: {}", line.trim());
            }
        }
    });
}
