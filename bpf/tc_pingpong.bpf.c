/* Step 7 of the talk: answer pings at TC ingress. Like xdp_pingpong, but on the
 * socket buffer the kernel has already built: rewrite the request into the reply,
 * send a copy back out of the same interface with bpf_clone_redirect(), and drop
 * the original so the kernel never answers it too.
 *
 * Here the kernel offers helpers that edit the packet and keep its checksums (and
 * the skb's own checksum state) right: bpf_skb_store_bytes() and
 * bpf_l4_csum_replace(). Every helper that can change the packet invalidates the
 * data/data_end pointers, so we read what we need first and use offsets after.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "packet.h"
#include "reply.h"
#include "echo.h"
#include "tc_pingpong.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load: --quiet switches the per-ping reports off. */
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

/* The socket-buffer twin of icmp_set_type() in csum.h (which XDP uses): write the
 * reply's ICMP type at `type_off` and fix the checksum at `csum_off` for the one
 * 16-bit word (type and code) that changed. bpf_l4_csum_replace() is told the old
 * and new word, and keeps the skb's own checksum state right too. */
static __always_inline int skb_icmp_set_type(struct __sk_buff *skb, __u32 type_off,
                                             __u32 csum_off, __u8 old_type,
                                             __u8 new_type) {
    __u8 code = 0; /* echo requests and replies both have code 0 */
    __u16 old_word = (__u16)old_type << 8 | code;
    __u16 new_word = (__u16)new_type << 8 | code;
    if (bpf_l4_csum_replace(skb, csum_off, bpf_htons(old_word), bpf_htons(new_word),
                            sizeof(__u16)))
        return -1;
    return bpf_skb_store_bytes(skb, type_off, &new_type, sizeof(new_type), 0);
}

SEC("tc")
int tc_pingpong(struct __sk_buff *skb) {
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    __u32 zero = 0;
    struct pingpong_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* never for an array, but the verifier wants the check */
        return TC_ACT_OK;

    struct packet p;
    if (!parse_packet(&p, data, data_end) || !is_echo_request(&p) ||
        !echo_answerable(&p)) {
        n->passed++;
        return TC_ACT_OK;
    }
    /* Note the ping now (the rewrite invalidates the header pointers); send the
     * report once we know whether the answer went out. */
    struct echo_event report;
    fill_echo(&report, bpf_ktime_get_ns(), skb->ifindex, &p, ECHO_ANSWERED);

    /* Swapping addresses keeps every checksum valid: the IPv4 header checksum and
     * the ICMPv6 pseudo-header sum both just add the two addresses. Changing the
     * TTL would need bpf_l3_csum_replace() as well; we leave it as it came. */
    swap_bytes(p.eth->h_source, p.eth->h_dest, ETH_ALEN);
    int err;
    if (p.ip && p.icmp) {
        swap_bytes(&p.ip->saddr, &p.ip->daddr, sizeof(p.ip->saddr));
        __u32 off = (void *)p.icmp - data;
        err = skb_icmp_set_type(skb, off, off + offsetof(struct icmphdr, checksum),
                                ICMP_ECHO, ICMP_ECHOREPLY);
    } else if (p.ip6 && p.icmp6) {
        swap_bytes(&p.ip6->saddr, &p.ip6->daddr, sizeof(p.ip6->saddr));
        __u32 off = (void *)p.icmp6 - data;
        err = skb_icmp_set_type(skb, off, off + offsetof(struct icmp6hdr, icmp6_cksum),
                                ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY);
    } else { /* not reached: is_echo_request() set one of them */
        return TC_ACT_OK;
    }
    /* A copy goes out of the interface it came in on (flags 0 = egress)... */
    if (!err)
        err = bpf_clone_redirect(skb, skb->ifindex, 0);
    if (err) {
        /* Half rewritten, or not sent: neither answer nor pass it. */
        n->failed++;
        report.action = ECHO_DROPPED;
        if (report_pings)
            send_echo(&events, &n->lost, &report);
        return TC_ACT_SHOT;
    }
    if (report_pings)
        send_echo(&events, &n->lost, &report);
    n->replied++;
    /* ...and the original request ends here. */
    return TC_ACT_SHOT;
}
