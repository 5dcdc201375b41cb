//! `make lab` / `make lab-down`: build or remove the packet lab (see src/lab.rs).

use anyhow::Result;
use clap::{Parser, Subcommand};
use ebpf_workshop::lab::Lab;

/// Two network namespaces joined by a veth pair, to try the packet examples safely.
#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    action: Action,
    /// Lab name: the namespaces are <NAME>-client and <NAME>-server.
    #[arg(long, default_value = "ebpfws", global = true)]
    name: String,
}

#[derive(Subcommand)]
enum Action {
    /// Build the lab and print how to use it.
    Up,
    /// Remove the lab (namespaces, veth pair, attached programs).
    Down,
    /// Put the lab back as `up` made it: the kernel answers pings again, extra
    /// addresses and leftover programs are gone (stop running examples first).
    Reset,
    /// Show what is attached in the lab: XDP, TCX and netlink TC programs, and
    /// whether the kernels answer pings.
    Status,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ebpf_workshop::preflight::check(ebpf_workshop::preflight::Needs::Networking)?;
    match args.action {
        Action::Down => {
            Lab::down(&args.name)?;
            println!("lab {} removed", args.name);
        }
        Action::Reset => {
            Lab::down(&args.name)?;
            Lab::up(&args.name)?.keep();
            println!("lab {} reset: as `make lab` made it", args.name);
        }
        Action::Status => status(&args.name)?,
        Action::Up => {
            let lab = Lab::up(&args.name)?;
            let (c, s) = (&lab.client, &lab.server);
            println!("lab {} is up:", lab.name);
            println!("  client: namespace {:<16} {} {} {}", c.ns, c.iface, c.ipv4, c.ipv6);
            println!("  server: namespace {:<16} {} {} {}", s.ns, s.iface, s.ipv4, s.ipv6);
            println!(
                "  ({} carries an XDP pass program: veth needs one on the peer for XDP_TX)",
                c.iface
            );
            println!();
            println!("Run a packet example on the server end, e.g.:");
            println!("  cargo build --examples");
            println!(
                "  sudo ip netns exec {} target/debug/examples/xdp_pingpong {}",
                s.ns, s.iface
            );
            println!("and ping it from the client:");
            println!("  sudo ip netns exec {} ping -c 3 {}", c.ns, s.ipv4);
            println!("  sudo ip netns exec {} ping -c 3 {}", c.ns, s.ipv6);
            println!(
                "To see the example answer instead of the kernel, switch the kernel's replies off:"
            );
            println!("  sudo ip netns exec {} sysctl -w net.ipv4.icmp_echo_ignore_all=1 net.ipv6.icmp.echo_ignore_all=1", s.ns);
            println!("Remove it with `make lab-down`.");
            lab.keep();
        }
    }
    Ok(())
}

/// What is attached to each end of lab `name`, and how its kernel answers pings.
fn status(name: &str) -> Result<()> {
    use ebpf_workshop::lab::{CLIENT_IF, SERVER_IF};
    for (ns, iface) in
        [(format!("{name}-client"), CLIENT_IF), (format!("{name}-server"), SERVER_IF)]
    {
        if !std::path::Path::new(ebpf_workshop::netns::NETNS_DIR).join(&ns).exists() {
            println!("{ns}: not there (`make lab` builds the lab)");
            continue;
        }
        let lines = ebpf_workshop::netns::in_namespace(&ns, || -> Result<Vec<String>> {
            let i = ebpf_workshop::iface::interface(iface)?;
            let xdp = match ebpf_workshop::xdp::prog_id(i.index) {
                Some(id) => format!("program id {id} ({} mode)", ebpf_workshop::xdp::mode(&i)),
                None => "none".to_string(),
            };
            let tc = ebpf_workshop::tc::ingress_programs(&i);
            let tc = if tc.is_empty() { "none".to_string() } else { tc.join(", ") };
            let ignore = std::fs::read_to_string("/proc/sys/net/ipv4/icmp_echo_ignore_all")?;
            let echo = if ignore.trim() == "1" { "off (icmp_echo_ignore_all=1)" } else { "on" };
            Ok(vec![
                format!("  XDP:           {xdp}"),
                format!("  TC ingress:    {tc}"),
                format!("  kernel echo replies: {echo}"),
            ])
        })??;
        println!("{ns} ({iface}):");
        for line in lines {
            println!("{line}");
        }
    }
    Ok(())
}
