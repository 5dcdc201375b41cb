/* What xdp.bpf.c counts, one copy per CPU. Rust reads it as the skeleton's
 * `types::proto_counts` and adds up the CPUs. */
#pragma once

struct proto_counts {
    __u64 icmp; /* ICMP and ICMPv6 */
    __u64 tcp;
    __u64 udp;
    __u64 other; /* any other IP protocol, and non-IP frames such as ARP */
    __u64 lost;  /* ping reports that found the ring buffer full */
};
