//! # solution_pingpong_one_address — answer pings for one address only (exercise solution)
//!
//! xdp_pingpong, narrowed: the XDP program turns IPv4 pings (ICMP echo requests)
//! sent to the address given with `--only` into replies in the driver (`XDP_TX`).
//! Pings to every other address of the machine, and IPv6 pings, pass to the kernel,
//! which answers them (or not) as usual. The address reaches the program as a
//! `const volatile` global set before load: the verifier sees it as a constant.
//!
//! Hook: XDP (`SEC("xdp")`) through a bpf_link: nothing stays attached after exit.
//!
//! Try it in the lab (`make lab`): give the server a second address
//! (`sudo ip -n ebpfws-server addr add 10.77.0.3/24 dev veth-server`), turn its
//! kernel's echo replies off (`sudo ip netns exec ebpfws-server sysctl
//! net.ipv4.icmp_echo_ignore_all=1`), run
//! `sudo ip netns exec ebpfws-server target/debug/examples/solution_pingpong_one_address veth-server --only 10.77.0.2`
//! and ping 10.77.0.2 (answered) and 10.77.0.3 (not) from ebpfws-client.
//!
//! Needs: root (or CAP_BPF + CAP_NET_ADMIN), BTF, an interface with XDP support; on
//! veth, an XDP program on the peer (the lab has one) or XDP_TX frames are dropped.

use std::mem::MaybeUninit;
use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use clap::Parser;
use ebpf_workshop::echo::{print_pingpong_summary, EchoEvent, EchoTable};
use ebpf_workshop::net::{attach_xdp, guard_default_route, interface, XdpOptions};
use ebpf_workshop::preflight::{self, Needs};
use ebpf_workshop::ring::RingReader;
use ebpf_workshop::skel::solution_pingpong_one_address::SolutionPingpongOneAddressSkelBuilder;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};

/// Answer pings to one IPv4 address with XDP_TX; all other pings go to the kernel.
#[derive(Parser)]
#[command(
    after_help = "Example: sudo ip netns exec ebpfws-server target/debug/examples/solution_pingpong_one_address veth-server --only 10.77.0.2"
)]
struct Args {
    /// Interface to answer pings on (`ip link` lists them).
    iface: String,
    /// The IPv4 address whose pings the program answers.
    #[arg(long, value_name = "ADDR")]
    only: Ipv4Addr,
    #[command(flatten)]
    xdp: XdpOptions,
    /// Run even on the interface that carries the default route.
    #[arg(long)]
    force: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    preflight::check(Needs::Networking)?;
    let iface = interface(&args.iface)?;
    guard_default_route(&iface, args.force, "answer pings in place of the kernel")?;
    if !has_address(&iface.name, args.only) {
        eprintln!(
            "note: {} is not an address of {}: nobody will send pings for it there \
             (`ip addr show {}` lists its addresses)",
            args.only, iface.name, iface.name
        );
    }

    // open → configure → load → attach
    let mut storage = MaybeUninit::uninit();
    let mut open = SolutionPingpongOneAddressSkelBuilder::default()
        .open(&mut storage)
        .context("opening the BPF object")?;
    // octets() is network order; from_ne_bytes keeps those bytes as they are, so
    // the program can compare with iphdr.daddr without bpf_ntohl().
    open.maps.rodata_data.as_mut().context("no read-only data")?.only_addr =
        u32::from_ne_bytes(args.only.octets());
    let skel = open.load().context("loading the XDP program into the kernel")?;
    let _link = attach_xdp(&skel.progs.xdp_pingpong_one, &iface, &args.xdp)?;
    eprintln!("answering pings to {}", args.only);

    let pings = EchoTable::new();
    let summary =
        RingReader::new(&skel.maps.events, &skel.maps.lost_events, |e: &EchoEvent| pings.row(e))?
            .run()?;
    print_pingpong_summary(&skel.maps.counts, &summary)
}

/// Is `addr` one of `iface`'s addresses?
fn has_address(iface: &str, addr: Ipv4Addr) -> bool {
    nix::ifaddrs::getifaddrs()
        .into_iter()
        .flatten()
        .filter(|i| i.interface_name == iface)
        .filter_map(|i| i.address?.as_sockaddr_in().map(|a| a.ip()))
        .any(|a| a == addr)
}
