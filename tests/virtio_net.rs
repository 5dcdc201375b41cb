//! xdp_pingpong on a real NIC driver, virtio_net (what learners' VMs have), not on
//! veth: two virtio NICs that QEMU joins back to back (a hub), each moved into a
//! namespace of its own; xdp_pingpong runs in native mode on one, the other pings
//! it with the first namespace's kernel echo replies off.
//!
//! It takes over the two NICs, so it runs only when told which: `make test-kernels`
//! gives its x86-64 guests such a pair (virtme-ng `--net loop`) and names them in
//! EBPF_WORKSHOP_VIRTIO_PAIR (two MAC addresses, comma-separated). Elsewhere it
//! says why it skipped and passes: no NIC of a real machine is ever touched.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;
use std::time::Duration;

use common::*;
use ebpf_workshop_dev::lab::Host;
use nix::sys::signal::Signal;

/// The two NICs: (name, MAC) of each, if the environment names a virtio_net pair.
fn virtio_pair() -> Result<[(String, String); 2], String> {
    let macs = std::env::var("EBPF_WORKSHOP_VIRTIO_PAIR").map_err(|_| {
        "EBPF_WORKSHOP_VIRTIO_PAIR is not set (make test-kernels sets it in its guests, \
         which have two virtio NICs joined by QEMU): this test takes over two NICs"
            .to_string()
    })?;
    let macs: Vec<String> = macs.split(',').map(|m| m.trim().to_ascii_lowercase()).collect();
    if macs.len() != 2 {
        return Err(format!("EBPF_WORKSHOP_VIRTIO_PAIR wants two MAC addresses, not {macs:?}"));
    }
    let mut found = Vec::new();
    for mac in &macs {
        let name = std::fs::read_dir("/sys/class/net")
            .map_err(|e| e.to_string())?
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .find(|n| {
                std::fs::read_to_string(format!("/sys/class/net/{n}/address"))
                    .is_ok_and(|a| a.trim() == mac)
            })
            .ok_or_else(|| format!("no interface with MAC {mac} (EBPF_WORKSHOP_VIRTIO_PAIR)"))?;
        let driver = std::fs::read_link(format!("/sys/class/net/{name}/device/driver"))
            .map_err(|e| format!("{name}: no driver link: {e}"))?;
        let driver = driver.file_name().unwrap_or_default().to_string_lossy().into_owned();
        if driver != "virtio_net" {
            return Err(format!("{name} ({mac}) is driven by {driver}, not virtio_net"));
        }
        found.push((name, mac.clone()));
    }
    Ok([found[0].clone(), found[1].clone()])
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The namespaces, deleted on drop (also on panic): a NIC in a deleted namespace
/// goes back to the root one.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
fn xdp_pingpong_answers_pings_in_native_mode_on_virtio_net() {
    let [(a, _), (b, _)] = match virtio_pair() {
        Ok(pair) => pair,
        Err(why) => {
            eprintln!("skipped: {why}");
            return;
        }
    };
    let tag = unique("ebpfws-vio");
    let namespaces = Namespaces(vec![format!("{tag}-a"), format!("{tag}-b")]);
    let hosts: Vec<Host> = [(&a, 1u8), (&b, 2u8)]
        .iter()
        .zip(&namespaces.0)
        .map(|(&(iface, n), ns)| {
            ip(&["netns", "add", ns]);
            let host = Host {
                ns: ns.clone(),
                iface: Box::leak(iface.clone().into_boxed_str()),
                ipv4: Ipv4Addr::new(10, 78, 0, n),
                ipv6: format!("fd78::{n}").parse::<Ipv6Addr>().unwrap(),
            };
            ip(&["link", "set", "dev", iface, "netns", ns]);
            ip(&["-n", ns, "addr", "add", &format!("{}/24", host.ipv4), "dev", iface]);
            ip(&["-n", ns, "addr", "add", &format!("{}/64", host.ipv6), "dev", iface, "nodad"]);
            ip(&["-n", ns, "link", "set", "dev", iface, "up"]);
            host
        })
        .collect();
    let (server, client) = (&hosts[0], &hosts[1]);
    // The hub carries nothing but these two: the first answer is the kernel's.
    eventually("the kernel answers over the virtio pair", || ping(client, server.ipv4, 1) == 1);
    server.kernel_echo_reply(false).unwrap();
    assert_eq!(
        ping(client, server.ipv4, 1),
        0,
        "the kernel still answers: the test would prove nothing"
    );
    assert_eq!(ping(client, server.ipv6, 1), 0, "the kernel still answers over IPv6");

    let mut example = run_in(server, "xdp_pingpong", &[server.iface]);
    let attached = example.wait_for("attached:", scaled(Duration::from_secs(20)));
    assert!(attached.contains("(native mode)"), "virtio_net should take XDP natively: {attached}");
    assert_eq!(ping(client, server.ipv4, 5), 5, "IPv4 answers from XDP on virtio_net");
    assert_eq!(ping(client, server.ipv6, 5), 5, "IPv6 answers from XDP on virtio_net");

    let ids = bpf_prog_ids(example.pid());
    let end = example.stop(Signal::SIGINT, Duration::from_secs(2));
    assert!(end.status.success(), "{end:?}");
    let answered: Vec<&str> = end.stdout.lines().filter(|l| l.contains(" answered ")).collect();
    for to in [server.ipv4.to_string(), server.ipv6.to_string()] {
        assert_eq!(
            answered.iter().filter(|l| l.contains(&format!(" {to} "))).count(),
            5,
            "answers to {to}: {}",
            end.stdout
        );
    }
    assert!(end.stderr.contains("replied 10"), "{}", end.stderr);
    assert_eq!(xdp_on(server), None, "XDP program left on {}", server.iface);
    assert_unloaded(&ids);
    assert_eq!(ping(client, server.ipv4, 1), 0, "pings answered after the example exited");
    drop(namespaces);
    // Both NICs are back in the root namespace, with nothing attached.
    for iface in [&a, &b] {
        eventually(&format!("{iface} back in the root namespace"), || {
            std::path::Path::new(&format!("/sys/class/net/{iface}")).exists()
        });
        let index = nix::net::if_::if_nametoindex(iface.as_str()).unwrap();
        assert_eq!(ebpf_workshop::xdp::prog_id(index), None, "XDP left on {iface}");
    }
}
