//! ebpf-workshop: the plumbing every example shares, so each example can stay a
//! short lesson.
//!
//! - [`skel`]: one generated skeleton per `bpf/<name>.bpf.c`.
//! - [`preflight`]: privilege / BTF / tracefs checks with one clear sentence each.
//! - [`ring`]: read a ring buffer until Ctrl-C, decoding records into C's types.
//! - [`attach`]: try the talk's hook, fall back to an equivalent one, say which.
//! - [`echo`]: the ping report every packet program sends.
//! - [`format`]: addresses, ports, times and aligned columns.
//! - [`frames`]: hand-built frames for BPF_PROG_TEST_RUN tests and benchmarks.
//! - [`net`]: interface lookup and checks, XDP attachment through a bpf_link.
//! - [`packet_socket`]: a raw AF_PACKET socket with a BPF socket filter.
//! - [`tc`]: TC ingress attachment, TCX link or netlink clsact.
//! - [`netns`], [`lab`]: network namespaces and the two-namespace packet lab.

pub mod attach;
pub mod echo;
pub mod format;
pub mod frames;
pub mod lab;
pub mod net;
pub mod netns;
pub mod packet_socket;
pub mod preflight;
pub mod ring;
pub mod tc;

/// Generated skeletons, one module per `bpf/<name>.bpf.c` (see `build.rs`).
pub mod skel {
    include!(concat!(env!("OUT_DIR"), "/skels.rs"));
}
