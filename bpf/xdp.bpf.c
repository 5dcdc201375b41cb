/* Step 4 of the talk: look at every packet in the driver, before the kernel has
 * spent anything on it. Count packets per protocol, report each ping, and pass
 * (or, with --drop-pings, drop) it.
 *
 * An XDP program gets the raw frame (struct xdp_md: data .. data_end) and returns
 * what the driver does next:
 *   XDP_PASS     hand it to the kernel's network stack as usual
 *   XDP_DROP     forget it; the cheapest way to drop a packet on Linux
 *   XDP_TX       send it back out of the same interface (see xdp_pingpong)
 *   XDP_REDIRECT send it to another interface, CPU or AF_XDP socket
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "packet.h"
#include "echo.h"
#include "xdp.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load. The verifier sees them as constants, so a
 * switched-off branch is removed from the program. */
const volatile bool drop_pings = false;  /* --drop-pings */
const volatile bool report_pings = true; /* off with --quiet: counters only */

/* Ping reports for user space, a struct echo_event (echo.h) each. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20); /* bytes: 16,384 reports of 56 + 8 (header) */
} events SEC(".maps");

/* The counters. Per-CPU: each CPU adds to its own copy, so no atomic operations
 * are needed on the fast path; user space adds the copies up. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct proto_counts);
} counts SEC(".maps");

struct echo_event _echo_event = {}; /* a global of the type puts it in the skeleton */

SEC("xdp")
int xdp_inspect(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 zero = 0;

    struct proto_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* cannot happen for an array, but the verifier wants the check */
        return XDP_PASS;

    struct packet p;
    if (!parse_packet(&p, data, data_end)) {
        n->other++; /* too short for its own headers: let the kernel deal with it */
        return XDP_PASS;
    }
    switch (p.l4proto) {
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6:
        n->icmp++;
        break;
    case IPPROTO_TCP:
        n->tcp++;
        break;
    case IPPROTO_UDP:
        n->udp++;
        break;
    default:
        n->other++;
    }

    if (is_echo_request(&p)) {
        if (report_pings)
            report_echo(&events, &n->lost, ctx->ingress_ifindex, &p,
                        drop_pings ? ECHO_DROPPED : ECHO_SEEN);
        /* Try it: change XDP_DROP to XDP_PASS below and pings work again. */
        if (drop_pings)
            return XDP_DROP;
    }
    return XDP_PASS;
}
