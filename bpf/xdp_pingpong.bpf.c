/* Step 5 of the talk: answer pings in the driver. The kernel's network stack never
 * sees the request: we turn the frame into the reply in place and send it back
 * out of the interface it came in on (XDP_TX).
 *
 * Turning an echo request into an echo reply:
 *   1. swap the Ethernet source and destination addresses
 *   2. swap the IP source and destination addresses
 *   3. set the ICMP type to "echo reply" and fix the ICMP checksum
 * Everything else (payload, id, sequence) goes back unchanged, which is exactly
 * what ping expects.
 *
 * It answers every unicast ping that reaches the interface, without checking that
 * the destination is one of the interface's own addresses: right for a host, wrong
 * for a bridge port or a router (solution_pingpong_one_address adds that check).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "packet.h"
#include "reply.h"
#include "csum.h"
#include "echo.h"
#include "xdp_pingpong.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load: --quiet switches the per-ping reports off (the
 * verifier then removes that code), leaving only the counters. */
const volatile bool report_pings = true;

/* Ping reports for user space, a struct echo_event (echo.h) each. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20); /* bytes: 16,384 reports of 56 + 8 (header) */
} events SEC(".maps");

/* The counters, one copy per CPU: no atomics on the fast path. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct pingpong_counts);
} counts SEC(".maps");

struct echo_event _echo_event = {}; /* a global of the type puts it in the skeleton */

SEC("xdp")
int xdp_pingpong(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    struct pingpong_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* never for an array, but the verifier wants the check */
        return XDP_PASS;

    struct packet p;
    /* Only pings we can answer in place: unicast, whole, no fragments or IPv4
     * options. Anything else goes to the kernel exactly as it came. */
    if (!parse_packet(&p, data, data_end) || !is_echo_request(&p) ||
        !echo_answerable(&p)) {
        n->passed++;
        return XDP_PASS;
    }
    if (report_pings) /* before the rewrite: the report reads the request */
        report_echo(&events, &n->lost, ctx->ingress_ifindex, &p, ECHO_ANSWERED);

    swap_bytes(p.eth->h_source, p.eth->h_dest, ETH_ALEN);
    if (p.ip && p.icmp) {
        /* The IPv4 header checksum is a sum of its 16-bit words; swapping two
         * addresses only reorders them, so it stays valid. */
        swap_bytes(&p.ip->saddr, &p.ip->daddr, sizeof(p.ip->saddr));
        icmp_set_type(&p.icmp->type, &p.icmp->checksum, ICMP_ECHOREPLY);
    } else if (p.ip6 && p.icmp6) {
        /* The ICMPv6 checksum also covers a pseudo-header with both addresses;
         * swapping them leaves that sum unchanged too. */
        swap_bytes(&p.ip6->saddr, &p.ip6->daddr, sizeof(p.ip6->saddr));
        icmp_set_type(&p.icmp6->icmp6_type, &p.icmp6->icmp6_cksum, ICMPV6_ECHO_REPLY);
    }
    n->replied++;
    /* Send the frame back out of the interface it arrived on. On veth, the peer
     * needs an XDP program of its own to receive it (see src/lab.rs). */
    return XDP_TX;
}
