/* The batching chapter: xdp_pingpong, with its reports sent in per-CPU batches.
 *
 * Everything but the reports is xdp_pingpong's (compare the two files: the
 * difference is the lesson). A report goes into this CPU's batch (batch.h); a full
 * batch of 64 goes to the ring buffer as one record, and a timer sends what waits
 * after at most 20 ms. --wake-each instead sends each report as a record of its
 * own and wakes the reader for it: the cost this chapter starts from.
 *
 * Needs bpf_timer (Linux 5.15) and, to batch, BPF_F_TIMER_CPU_PIN (6.7); before
 * 6.7 each report is sent at once.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "packet.h"
#include "reply.h"
#include "csum.h"
#include "echo.h"
#include "batch.h"
#include "xdp_pingpong.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load. */
const volatile bool report_pings = true; /* --quiet: counters only */
const volatile bool wake_each = false;   /* --wake-each: a record and a wake-up each */

/* Ping reports for user space: records of up to ECHO_BATCH struct echo_event
 * each (batch.h). */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20); /* bytes: 18,600 reports in full batches */
} events SEC(".maps");

/* Reports wait here, a batch per CPU, until a batch is full or its timer fires.
 * An array, not a per-CPU array: a map value with a timer cannot be per-CPU, so
 * the key is the CPU's number. */
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

/* The batch timer's callback (batch.h): send this CPU's waiting reports. */
static int flush_batch(void *map, __u32 *cpu, struct echo_batch *b) {
    __u32 zero = 0;
    struct pingpong_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (n) /* the timer fires on the batch's own CPU: these are its counters */
        batch_timer_fired(&events, b, &n->lost);
    return 0;
}

/* A report the expensive way: its own record, and a wake-up for it (flags 0). */
static __always_inline void report_and_wake(__u64 *lost, __u32 ifindex,
                                            const struct packet *p) {
    struct echo_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        (*lost)++;
        return;
    }
    fill_echo(e, bpf_ktime_get_ns(), ifindex, p, ECHO_ANSWERED);
    bpf_ringbuf_submit(e, 0);
}

SEC("xdp")
int xdp_pingpong_batched(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    struct pingpong_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* never for an array, but the verifier wants the check */
        return XDP_PASS;

    struct packet p;
    if (!parse_packet(&p, data, data_end) || !is_echo_request(&p) ||
        !echo_answerable(&p)) {
        n->passed++;
        return XDP_PASS;
    }
    /* The one difference from xdp_pingpong: how the report travels. */
    if (report_pings && wake_each)
        report_and_wake(&n->lost, ctx->ingress_ifindex, &p);
    else if (report_pings)
        report_echo_batched(&batches, flush_batch, &events, &n->lost,
                            ctx->ingress_ifindex, &p, ECHO_ANSWERED);

    swap_bytes(p.eth->h_source, p.eth->h_dest, ETH_ALEN);
    if (p.ip && p.icmp) {
        swap_bytes(&p.ip->saddr, &p.ip->daddr, sizeof(p.ip->saddr));
        icmp_set_type(&p.icmp->type, &p.icmp->checksum, ICMP_ECHOREPLY);
    } else if (p.ip6 && p.icmp6) {
        swap_bytes(&p.ip6->saddr, &p.ip6->daddr, sizeof(p.ip6->saddr));
        icmp_set_type(&p.icmp6->icmp6_type, &p.icmp6->icmp6_cksum, ICMPV6_ECHO_REPLY);
    }
    n->replied++;
    return XDP_TX;
}
