/* Exercise solution: count pings per source address.
 *
 * An XDP program that lets every packet through (XDP_PASS) and, for each ping
 * (ICMP or ICMPv6 echo request), adds one to a counter in a BPF hash map keyed by
 * the sender's address. User space reads the whole map every second: no ring
 * buffer, no per-packet event, just a table kept in the kernel.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "packet.h"
#include "solution_ping_counter.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_SOURCES 10240 /* distinct pingers we keep a counter for */

struct ping_key _ping_key = {}; /* a global of the type puts it in the skeleton */

struct {
    /* A hash map: entries appear as new sources ping. When it is full, pings from
     * new sources are not counted (bpf_map_update_elem fails). Try
     * BPF_MAP_TYPE_LRU_HASH instead: the least recently seen source then makes room. */
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_SOURCES);
    __type(key, struct ping_key); /* who pinged */
    __type(value, __u64);         /* how many pings so far */
} pings SEC(".maps");

/* Add one to the counter of `key`, creating it at 1 when it is the first ping. */
static __always_inline void count_ping(const struct ping_key *key) {
    __u64 *count = bpf_map_lookup_elem(&pings, key);
    if (count) {
        /* Atomic: the same source can ping on two CPUs at once. */
        __sync_fetch_and_add(count, 1);
        return;
    }
    __u64 one = 1;
    /* BPF_NOEXIST: if another CPU created the entry since our lookup, this fails
     * and we add to theirs instead of overwriting it. */
    if (bpf_map_update_elem(&pings, key, &one, BPF_NOEXIST)) {
        count = bpf_map_lookup_elem(&pings, key);
        if (count)
            __sync_fetch_and_add(count, 1);
    }
}

SEC("xdp")
int xdp_ping_counter(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;

    struct packet p;
    if (!parse_packet(&p, data, data_end) || !is_echo_request(&p))
        return XDP_PASS; /* not a ping: nothing to count */

    struct ping_key key = {}; /* zeroed: IPv4 leaves 12 address bytes unused */
    __u8 daddr[16];           /* not part of the key */
    key.family = packet_addrs(&p, key.addr, daddr);
    count_ping(&key);
    /* Count only, never interfere: the kernel answers the ping as usual. */
    return XDP_PASS;
}
