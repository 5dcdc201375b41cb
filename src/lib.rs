//! ebpf-workshop's helpers: only what libbpf-rs does not do for us, and what is not
//! the lesson. Each example shows the libbpf-rs life cycle itself (open, load,
//! attach, ring buffer, poll loop); these modules are small, one job each, and
//! `make new` copies the ones an example uses into a project of its own.
//!
//! Used by the examples:
//! - [`preflight`]: privileges, BTF and tracefs, checked with one clear sentence each.
//! - [`iface`]: find an interface by name; guard the one carrying the default route.
//! - [`xdp`]: an interface that already has an XDP program; which XDP mode is live.
//! - [`tc`]: TC ingress attachment, TCX link or netlink clsact (libbpf-rs lacks TCX).
//! - [`kprobe_fallback`]: try the talk's kprobe, fall back to a tracepoint, say which.
//! - [`packet_socket`]: a raw AF_PACKET socket with a BPF socket filter.
//! - [`cgroup`]: a cgroup v2 directory to attach to, created and removed; commands in it.
//! - [`maps`]: add up the per-CPU copies of a counter map.
//! - [`batches`]: wait for xdp_pingpong_batched's report batches (the batching chapter).
//! - [`error`]: `main`'s errors as one sentence, never a backtrace.
//! - [`maglev`]: Maglev consistent hashing, the lookup table xdp_lb picks backends from.
//! - [`neigh`]: the MAC address of a neighbour, from the kernel's ARP table.
//! - [`pings`], [`format`]: rows and columns a person can scan.
//! - [`netns`]: run code inside a named network namespace; namespace and interface ids.
//! - [`trace_pipe`]: the lines bpf_printk() writes, for hello --printk.
//! - [`libbpf_output`]: mute libbpf for failures we expect and explain.
//!
//! The lab, the tests' harness and `make bench` are in `dev/`, not here.

pub mod batches;
pub mod cgroup;
pub mod error;
pub mod format;
pub mod iface;
pub mod kprobe_fallback;
pub mod libbpf_output;
pub mod maglev;
pub mod maps;
pub mod neigh;
pub mod netns;
pub mod packet_socket;
pub mod pings;
pub mod preflight;
pub mod tc;
pub mod trace_pipe;
pub mod xdp;
