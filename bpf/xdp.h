/* Per-protocol packet counters kept by xdp.bpf.c, one copy per CPU. Rust reads them
 * as the skeleton's `types::proto_counts` and adds up the CPUs. */
#pragma once

struct proto_counts {
    __u64 icmp; /* ICMP and ICMPv6 */
    __u64 tcp;
    __u64 udp;
    __u64 other; /* any other IP protocol, and non-IP frames such as ARP */
};
