/* Exercise solution: xdp_pingpong for one address only.
 *
 * Same rewrite as xdp_pingpong.bpf.c (swap MACs, swap IPs, echo request -> echo
 * reply, fix the checksum, XDP_TX), but only for IPv4 pings sent to `only_addr`.
 * Pings to any other address, and IPv6 pings, go to the kernel (XDP_PASS), which
 * answers them itself or not, as its settings say.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "packet.h"
#include "reply.h"
#include "csum.h"
#include "echo.h"
#include "xdp_pingpong.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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

/* Set by user space before load (--only): the IPv4 address to answer for, in
 * network byte order, exactly as it sits in iphdr.daddr, so one compare does. */
const volatile __u32 only_addr = 0;

SEC("xdp")
int xdp_pingpong_one(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    struct pingpong_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n)
        return XDP_PASS;

    struct packet p;
    /* The one new check is the last: a ping we could answer, but to an address
     * that is not ours to answer for, goes to the kernel untouched. */
    if (!parse_packet(&p, data, data_end) || !is_echo_request(&p) ||
        !echo_answerable(&p) || !p.ip || p.ip->daddr != only_addr) {
        n->passed++;
        return XDP_PASS;
    }
    report_echo(&events, &n->lost, ctx->ingress_ifindex, &p, ECHO_ANSWERED);

    swap_bytes(p.eth->h_source, p.eth->h_dest, ETH_ALEN);
    /* Swapping the addresses only reorders the words of the IPv4 header checksum:
     * it stays valid. */
    swap_bytes(&p.ip->saddr, &p.ip->daddr, sizeof(p.ip->saddr));
    icmp_set_type(&p.icmp->type, &p.icmp->checksum, ICMP_ECHOREPLY);
    n->replied++;
    return XDP_TX; /* back out of the interface it came in on */
}
