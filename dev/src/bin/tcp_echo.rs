//! tcp_echo: an ordinary TCP client and server (blocking std sockets, nothing that
//! knows of eBPF) for `make bench`'s sockmap section, which runs it with and without
//! the sockmap example attached to the processes' cgroup.
//!
//! - `tcp_echo serve`: listen on 127.0.0.1 (a free port, printed as `port N`); per
//!   connection a thread that echoes (mode `e`) or swallows N bytes and answers one
//!   byte (mode `s`).
//! - `tcp_echo rr PORT SIZE COUNT`: one connection, COUNT request/response round
//!   trips of SIZE bytes; prints `p50_ns X p99_ns Y`.
//! - `tcp_echo bulk PORT SIZE BYTES`: one connection, BYTES in writes of SIZE, timed
//!   until the server says it has them all; prints `bytes_per_s X`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize| -> Result<u64> {
        args.get(i)
            .context("missing argument (see the top of tcp_echo.rs)")?
            .parse()
            .context("a number")
    };
    match args.first().map(String::as_str) {
        Some("serve") => serve(),
        Some("rr") => rr(num(1)? as u16, num(2)? as usize, num(3)? as usize),
        Some("bulk") => bulk(num(1)? as u16, num(2)? as usize, num(3)?),
        _ => bail!("usage: tcp_echo serve | rr PORT SIZE COUNT | bulk PORT SIZE BYTES"),
    }
}

fn serve() -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("port {}", listener.local_addr()?.port());
    for conn in listener.incoming() {
        let mut c = conn?;
        std::thread::spawn(move || {
            let _ = handle(&mut c);
        });
    }
    Ok(())
}

/// A connection starts with its mode (a byte) and a length (8 bytes, little-endian).
fn handle(c: &mut TcpStream) -> Result<()> {
    c.set_nodelay(true)?;
    let mut head = [0u8; 9];
    c.read_exact(&mut head)?;
    let mut buf = vec![0u8; 1 << 20];
    match head[0] {
        b'e' => loop {
            let n = c.read(&mut buf)?;
            if n == 0 {
                return Ok(());
            }
            c.write_all(&buf[..n])?;
        },
        _ => {
            let mut left = u64::from_le_bytes(head[1..].try_into()?);
            while left > 0 {
                let n = c.read(&mut buf)?;
                if n == 0 {
                    bail!("the client went before sending it all");
                }
                left -= n as u64;
            }
            c.write_all(b"k")?;
            Ok(())
        }
    }
}

fn connect(port: u16, mode: u8, len: u64) -> Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?; // a request is sent when written, not held for more
    let mut head = vec![mode];
    head.extend(len.to_le_bytes());
    s.write_all(&head)?;
    Ok(s)
}

fn rr(port: u16, size: usize, count: usize) -> Result<()> {
    let mut s = connect(port, b'e', 0)?;
    let (msg, mut back) = (vec![7u8; size], vec![0u8; size]);
    let mut times = Vec::with_capacity(count);
    for i in 0..count + count / 10 {
        let t = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        if i >= count / 10 {
            times.push(t.elapsed().as_nanos() as u64); // after a tenth to warm up
        }
    }
    times.sort_unstable();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    println!("p50_ns {} p99_ns {}", at(0.50), at(0.99));
    Ok(())
}

fn bulk(port: u16, size: usize, bytes: u64) -> Result<()> {
    let mut s = connect(port, b's', bytes)?;
    let msg = vec![7u8; size];
    let t = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let n = left.min(size as u64) as usize;
        s.write_all(&msg[..n])?;
        left -= n as u64;
    }
    let mut ok = [0u8; 1];
    s.read_exact(&mut ok)?;
    println!("bytes_per_s {:.0}", bytes as f64 / t.elapsed().as_secs_f64());
    Ok(())
}
