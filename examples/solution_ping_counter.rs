//! # solution_ping_counter — who pings us, and how often (exercise solution)
//!
//! An XDP program counts pings (ICMP and ICMPv6 echo requests) per source address
//! in a BPF hash map and passes every packet on, so the kernel still answers. User
//! space reads the whole map every second and prints the table when a count
//! changed, and once more at exit: a per-source tally kept entirely in the
//! kernel, with no event per packet.
//!
//! Hook: XDP (`SEC("xdp")`) through a bpf_link: nothing stays attached after exit.
//!
//! Try it in the lab (`make lab`):
//! `sudo ip netns exec ebpfws-server target/debug/examples/solution_ping_counter veth-server`,
//! then `sudo ip netns exec ebpfws-client ping -c 3 10.77.0.2` (and `fd77::2`).
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON), BTF, an interface with XDP support
//! (generic mode works everywhere).

use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::error::OneSentence;
use ebpf_workshop::format::{ip, Clock, Table};
use ebpf_workshop::iface::interface;
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::xdp;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/solution_ping_counter.skel.rs"));
}
use skel::types::ping_key;
use skel::SolutionPingCounterSkelBuilder;

// SAFETY: a plain C struct of integers.
unsafe impl plain::Plain for ping_key {}

/// Count pings (ICMP/ICMPv6 echo requests) per source address with XDP.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/solution_ping_counter veth-server"
)]
struct Args {
    /// Interface whose incoming pings to count (`ip link` lists them).
    iface: String,
    /// Replace an XDP program already attached to the interface.
    #[arg(long)]
    replace: bool,
}

fn main() -> Result<(), OneSentence> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;

    // Ctrl-C (or SIGTERM) only sets a flag: the loop ends, and all is detached on
    // the way out. Set before attaching, so that no Ctrl-C leaves a program behind.
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst)).context("Ctrl-C handler")?;

    // open → load (nothing to configure) → attach
    let mut storage = MaybeUninit::uninit();
    let open = SolutionPingCounterSkelBuilder::default()
        .open(&mut storage)
        .context("opening the BPF object")?;
    let skel = open.load().context("loading the XDP program into the kernel")?;
    // One interface runs one XDP program: refuse (or, with --replace, remove)
    // one that is there already, now that ours has loaded.
    xdp::ensure_free(&iface, args.replace)?;
    let _link = skel
        .progs
        .xdp_ping_counter
        .attach_xdp(iface.index as i32)
        .with_context(|| format!("attaching the XDP program to {}", iface.name))?;
    eprintln!(
        "attached: XDP program xdp_ping_counter on {} ({} mode)",
        iface.name,
        xdp::mode(&iface)
    );
    eprintln!("counting pings");

    // No ring buffer to wait on: look at the map once a second, until Ctrl-C.
    let clock = Clock::start();
    let mut shown = Vec::new();
    let mut next = Instant::now() + Duration::from_secs(1);
    while !stop.load(Ordering::SeqCst) {
        thread::sleep(Duration::from_millis(100)); // short: Ctrl-C stays responsive
        if Instant::now() < next {
            continue;
        }
        next += Duration::from_secs(1);
        let counts = read_pings(&skel.maps.pings)?;
        if counts != shown {
            let now = clock.now();
            println!("\nat {now}s:");
            print_table(&counts);
            shown = counts;
        }
    }

    let counts = read_pings(&skel.maps.pings)?;
    println!("\nat exit:");
    print_table(&counts);
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    eprintln!("\n{total} pings from {} sources", counts.len());
    Ok(())
}

/// Every (source, pings) pair in the map, most pings first.
fn read_pings(map: &dyn MapCore) -> Result<Vec<(String, u64)>> {
    let mut rows = Vec::new();
    // Walking a hash map while the program adds to it is fine: at worst a source
    // that appears meanwhile shows up on the next round.
    for key_bytes in map.keys() {
        let Some(value) = map.lookup(&key_bytes, MapFlags::ANY).context("reading the pings map")?
        else {
            continue; // removed between keys() and lookup(): cannot happen here
        };
        let mut key = ping_key::default();
        plain::copy_from_bytes(&mut key, &key_bytes)
            .map_err(|_| anyhow::anyhow!("pings map key shorter than struct ping_key"))?;
        let count = u64::from_ne_bytes(value[..8].try_into()?);
        rows.push((ip(key.family, &key.addr).to_string(), count));
    }
    rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(rows)
}

fn print_table(rows: &[(String, u64)]) {
    let table = Table::new(&[("SOURCE", 40), ("PINGS", 0)]);
    for (source, count) in rows {
        table.row(&[source.clone(), count.to_string()]);
    }
}
