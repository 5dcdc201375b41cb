//! A raw `AF_PACKET` socket with a BPF socket filter attached: the socket receives
//! a copy of every frame on one interface (both directions) that the filter keeps.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result};
use nix::libc;

use crate::iface::Interface;

pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    /// Open a raw socket on `iface` with `prog` as its filter.
    ///
    /// Order matters: a socket bound before its filter is attached could queue
    /// unfiltered frames, so we create it listening to nothing (protocol 0), attach
    /// the filter, and only then bind it to the interface and every protocol.
    pub fn open(iface: &Interface, prog: &impl AsFd) -> Result<Self> {
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error())
                .context("opening an AF_PACKET socket (needs CAP_NET_RAW)");
        }
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };

        let prog_fd = prog.as_fd().as_raw_fd();
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_BPF,
                (&prog_fd as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error())
                .context("attaching the socket filter (SO_ATTACH_BPF)");
        }

        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = (libc::ETH_P_ALL as u16).to_be(); // every protocol
        addr.sll_ifindex = iface.index as i32;
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("binding the packet socket to {}", iface.name));
        }
        Ok(PacketSocket { fd })
    }

    /// The next frame the filter let through, if one is waiting.
    pub fn try_recv(&self, buf: &mut [u8]) -> Option<usize> {
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        (n >= 0).then_some(n as usize)
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
