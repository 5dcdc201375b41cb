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
#include "csum.h"
#include "echo.h"
#include "xdp_pingpong.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Ping reports for user space: records of up to ECHO_BATCH struct echo_event
 * each (echo.h). */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20); /* bytes: 18,600 reports in full batches */
} events SEC(".maps");

/* Reports wait here, a batch per CPU, until a batch is full or its timer fires
 * (echo.h says why). An array, not a per-CPU array: a map value with a timer
 * cannot be per-CPU, so the key is the CPU's number. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1); /* user space makes it one per CPU before loading */
    __type(key, __u32);
    __type(value, struct echo_batch);
} batches SEC(".maps");

/* The counters, one copy per CPU: no atomics on the fast path. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct pingpong_counts);
} counts SEC(".maps");

struct echo_event _echo_event = {}; /* a global of the type puts it in the skeleton */

/* The batch timer's callback (echo.h): send this CPU's waiting reports. */
static int flush_batch(void *map, __u32 *cpu, struct echo_batch *b) {
    __u32 zero = 0;
    struct pingpong_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (n) /* the timer fires on the batch's own CPU: these are its counters */
        batch_timer_fired(&events, b, &n->lost);
    return 0;
}

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
    report_echo(&batches, flush_batch, &events, &n->lost, ctx->ingress_ifindex, &p,
                ECHO_ANSWERED);

    swap_bytes(p.eth->h_source, p.eth->h_dest, ETH_ALEN);
    /* Swapping the addresses only reorders the words of the IPv4 header checksum:
     * it stays valid. */
    swap_bytes(&p.ip->saddr, &p.ip->daddr, sizeof(p.ip->saddr));
    icmp_set_type(&p.icmp->type, &p.icmp->checksum, ICMP_ECHOREPLY);
    n->replied++;
    return XDP_TX; /* back out of the interface it came in on */
}
