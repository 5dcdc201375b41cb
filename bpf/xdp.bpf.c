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
#include <bpf/bpf_endian.h>
#include "events.h"
#include "packet.h"
#include "echo.h"
#include "xdp.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load (--drop-pings). */
const volatile bool drop_pings = false;

struct proto_counts _proto_counts = {}; /* exports the type to the skeleton */

struct {
    /* Per-CPU: each CPU adds to its own copy, so no atomic operations are needed
     * on the fast path; user space adds the copies up. */
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct proto_counts);
} counts SEC(".maps");

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
        /* Try it: change XDP_DROP to XDP_PASS below and pings work again. */
        report_echo(ctx->ingress_ifindex, &p, drop_pings ? ECHO_DROPPED : ECHO_SEEN);
        if (drop_pings)
            return XDP_DROP;
    }
    return XDP_PASS;
}
