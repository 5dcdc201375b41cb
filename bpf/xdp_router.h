/* What xdp_router.bpf.c shares with examples/xdp_router.rs: the counters and the
 * report of a new flow. Rust reads them as the skeleton's `types::router_counts`
 * and `types::flow_event`. */
#pragma once

#define MAX_IFACES 64 /* interfaces one xdp_router can forward between */

/* Why a packet went to the kernel instead, one copy per CPU (key 0 of `counts`).
 * The forwarded ones are counted per egress interface, in `forwarded`. */
struct router_counts {
    __u64 not_ip;    /* ARP, LLDP...: not for the FIB */
    __u64 malformed; /* shorter than its headers claim */
    __u64 ttl;       /* TTL (hop limit) 1 or 0: the kernel says "time exceeded" */
    __u64 options;   /* IPv4 options, IPv6 hop-by-hop header: each router acts on them */
    __u64 local;     /* for the router itself, or broadcast/multicast */
    __u64 no_neigh;  /* next hop's MAC unknown: the kernel resolves it */
    __u64 fwd_disabled; /* forwarding switched off in this namespace */
    __u64 unroutable;   /* no route, blackhole, prohibit, too big for the egress MTU */
    __u64 not_ours;     /* the route leaves by an interface we were not given */
    __u64 lost;         /* flow reports that found the ring buffer full */
};

/* A new flow (source, destination, protocol), reported once with --verbose. */
struct flow_event {
    __u64 ts_ns;    /* bpf_ktime_get_ns() */
    __u8 saddr[16]; /* IPv4 in the first 4 bytes, network byte order */
    __u8 daddr[16];
    __u16 family;  /* AF_INET or AF_INET6 */
    __u8 protocol; /* IPPROTO_ICMP, _TCP, _UDP, _ICMPV6... */
    __u8 _pad;
    __u32 ifindex_in;  /* where it came in */
    __u32 ifindex_out; /* where bpf_fib_lookup sends it */
    __u32 _pad2;
};
