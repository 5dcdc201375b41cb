//! `make lab` / `make lab-down`: build or remove the packet lab (see dev/src/lab.rs).

use std::os::unix::process::CommandExt;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ebpf_workshop_dev::lab::{Lab, LbLab, RouterLab};

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
    /// Build the load-balancer lab (client, balancer, two backends on a bridge),
    /// start each backend's service in the background, and print how to use it.
    UpLb,
    /// Build the router lab (a client and a server on two subnets, a router
    /// between them) and print how to use it.
    UpRouter,
    /// The backends' TCP service: answer each connection with "served by NAME"
    /// (run inside a backend's namespace; `up-lb` starts it).
    Serve {
        /// The name to answer with.
        #[arg(long)]
        answer: String,
        /// The port to listen on (all addresses).
        #[arg(long, default_value_t = ebpf_workshop_dev::lab::LB_PORT)]
        port: u16,
    },
}

fn main() -> Result<()> {
    let args = Args::parse();
    ebpf_workshop::preflight::check(ebpf_workshop::preflight::Needs::Networking)?;
    match args.action {
        Action::Down => {
            Lab::down(&args.name)?;
            LbLab::down(&args.name)?;
            RouterLab::down(&args.name)?;
            println!("lab {} removed", args.name);
        }
        Action::Reset => {
            Lab::down(&args.name)?;
            Lab::up(&args.name)?.keep();
            println!("lab {} reset: as `make lab` made it", args.name);
        }
        Action::Status => status(&args.name)?,
        Action::UpLb => up_lb(&args.name)?,
        Action::UpRouter => up_router(&args.name)?,
        Action::Serve { answer, port } => {
            let listener = std::net::TcpListener::bind(("0.0.0.0", port))
                .map_err(|e| anyhow::anyhow!("listening on port {port}: {e}"))?;
            ebpf_workshop_dev::lab::serve_name(listener, &answer);
        }
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
    use ebpf_workshop_dev::lab::{CLIENT_IF, SERVER_IF};
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

/// `make lab-lb`: the load-balancer lab, with each backend's service running in the
/// background (this program again, as `lab serve`, inside the backend's namespace;
/// `lab down` stops them with the lab).
fn up_lb(name: &str) -> Result<()> {
    use anyhow::Context;
    use ebpf_workshop_dev::lab::LB_PORT;
    let lab = LbLab::up(name)?;
    let exe = std::env::current_exe().context("finding the lab program")?;
    for (b, answer) in lab.backends.iter().zip(["b1", "b2"]) {
        b.cmd(&exe)
            .args(["serve", "--answer", answer])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0) // not stopped by a Ctrl-C in the terminal that ran make
            .spawn()
            .with_context(|| format!("starting the service in {}", b.ns))?;
    }
    let (c, l) = (&lab.client, &lab.lb);
    println!("lab {} is up (bridge in namespace {}-br):", lab.name, lab.name);
    println!("  client:   namespace {:<14} {} {}", c.ns, c.iface, c.ipv4);
    println!("  balancer: namespace {:<14} {} {}, VIP {}", l.ns, l.iface, l.ipv4, lab.vip);
    for (b, answer) in lab.backends.iter().zip(["b1", "b2"]) {
        println!(
            "  backend:  namespace {:<14} {} {}, port {LB_PORT} answers \"served by {answer}\"",
            b.ns, b.iface, b.ipv4
        );
    }
    let backends: Vec<String> =
        lab.backends.iter().map(|b| format!("--backend {}", b.ipv4)).collect();
    println!();
    println!("Run the load balancer on the balancer:");
    println!("  cargo build --examples");
    println!(
        "  sudo ip netns exec {} target/debug/examples/xdp_lb {} --vip {} {}",
        l.ns,
        l.iface,
        lab.vip,
        backends.join(" ")
    );
    println!("(direct server return: the backends own the VIP on lo; add --mode nat for full NAT)");
    println!(
        "and connect to the VIP from the client a few times (bash's /dev/tcp, no tool needed):"
    );
    println!(
        "  for i in 1 2 3 4; do sudo ip netns exec {} bash -c 'exec 3<>/dev/tcp/{}/{LB_PORT}; echo hi >&3; head -1 <&3'; done",
        c.ns, lab.vip
    );
    println!(
        "Take a backend out while it runs: type `remove {}` (Enter) where xdp_lb runs.",
        lab.backends[1].ipv4
    );
    println!("Remove it with `make lab-down`.");
    lab.keep();
    Ok(())
}

/// `make lab-router`: the router lab, and how to try xdp_router in it.
fn up_router(name: &str) -> Result<()> {
    use ebpf_workshop_dev::lab::{ROUTER_CLIENT_IF, ROUTER_SERVER_IF};
    let lab = RouterLab::up(name)?;
    let (c, r, rs, s) = (&lab.client, &lab.router, &lab.router_server_side, &lab.server);
    println!("lab {} is up:", lab.name);
    println!("  client: namespace {:<18} {} {} {}", c.ns, c.iface, c.ipv4, c.ipv6);
    println!("  router: namespace {:<18} {} {} {}", r.ns, r.iface, r.ipv4, r.ipv6);
    println!("          {:<28} {} {} {}", "", rs.iface, rs.ipv4, rs.ipv6);
    println!("  server: namespace {:<18} {} {} {}", s.ns, s.iface, s.ipv4, s.ipv6);
    println!("  (the router forwards; {} and {} carry XDP pass programs)", c.iface, s.iface);
    println!();
    println!("Run the router in XDP:");
    println!("  cargo build --examples");
    println!(
        "  sudo ip netns exec {} target/debug/examples/xdp_router {ROUTER_CLIENT_IF} {ROUTER_SERVER_IF} --verbose",
        r.ns
    );
    println!("and ping (or traceroute) the server from the client:");
    println!("  sudo ip netns exec {} ping -c 3 {}", c.ns, s.ipv4);
    println!("  sudo ip netns exec {} ping -c 3 {}", c.ns, s.ipv6);
    println!(
        "To see that the kernel's firewall no longer sees these packets, drop all it forwards:"
    );
    println!(
        "  sudo ip netns exec {} nft 'table inet ebpfws_router {{ chain forward {{ type filter hook forward priority 0; policy drop; }}; }}'",
        r.ns
    );
    println!("Remove it with `make lab-down`.");
    lab.keep();
    Ok(())
}
