//! The floor: a two-instruction program of a hook's type, run by the same
//! traffic as the example it is compared with: the cost of running any program
//! there, statistics' clock reads included.

use std::os::fd::{AsFd, OwnedFd};

use anyhow::{Context, Result};
use ebpf_workshop::packet_socket::PacketSocket;
use ebpf_workshop::{iface, netns::in_namespace, tc, xdp};
use ebpf_workshop_dev::lab::Host;
use ebpf_workshop_dev::progs::{prog_by_id, return_only_program};

use crate::stats::RunStats;

/// Where a packet example's program runs, and so which floor it is compared with.
#[derive(Clone, Copy, PartialEq)]
pub enum Hook {
    Xdp,
    Tc,
    Socket,
}

/// A floor program on the client end of the lab.
pub struct Floor {
    prog: OwnedFd,
    /// What keeps it attached (a TCX link, a packet socket); None for the lab's
    /// own XDP program, which stays until the lab goes.
    _attachment: Option<Box<dyn AsFd + Send>>,
}

impl Floor {
    pub fn up(hook: Hook, client: &Host) -> Result<Floor> {
        let name = client.iface;
        in_namespace(&client.ns, || -> Result<Floor> {
            let iface = iface::interface(name)?;
            match hook {
                // The lab's XDP_PASS program on veth-client: it runs on every reply.
                Hook::Xdp => {
                    let id = xdp::prog_id(iface.index)
                        .with_context(|| format!("{name} has no XDP program"))?;
                    Ok(Floor { prog: prog_by_id(id)?, _attachment: None })
                }
                // return TC_ACT_OK, at TCX ingress: it runs on every reply.
                Hook::Tc => {
                    let prog =
                        return_only_program(libbpf_sys::BPF_PROG_TYPE_SCHED_CLS, 0, c"floor_tc")?;
                    let link = tc::tcx_link(&prog, &iface)
                        .with_context(|| format!("attaching the TC floor to {name}"))?;
                    Ok(Floor { prog, _attachment: Some(Box::new(link)) })
                }
                // return 0 (copy nothing), on a packet socket bound to veth-client:
                // like the example's, it runs on every frame, both ways.
                Hook::Socket => {
                    let prog = return_only_program(
                        libbpf_sys::BPF_PROG_TYPE_SOCKET_FILTER,
                        0,
                        c"floor_socket",
                    )?;
                    let socket = PacketSocket::open(&iface, &prog)?;
                    Ok(Floor { prog, _attachment: Some(Box::new(socket)) })
                }
            }
        })?
    }

    pub fn stats(&self) -> Result<RunStats> {
        RunStats::of(self.prog.as_fd())
    }
}
