/* Step 6 of the talk: a traffic-control (TC) ingress filter. It runs a little later
 * than XDP: the kernel has already built a socket buffer (struct __sk_buff) for the
 * packet, so the program can see and change more of its metadata, and it works on
 * every interface, with no driver support needed.
 *
 * It drops pings (ICMP and ICMPv6 echo requests) and reports each drop; with
 * --drop-all it is the talk's tc_drop and drops everything. Return values:
 *   TC_ACT_OK    carry on: the packet continues up the network stack
 *   TC_ACT_SHOT  drop it here
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "packet.h"
#include "echo.h"
#include "tc.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load. */
const volatile bool drop_all = false;    /* --drop-all */
const volatile bool report_pings = true; /* off with --quiet: counters only */

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
    __type(value, struct tc_counts);
} counts SEC(".maps");

struct echo_event _echo_event = {}; /* a global of the type puts it in the skeleton */

SEC("tc")
int tc_ingress(struct __sk_buff *skb) {
    /* Direct packet access, as in XDP. It covers the skb's linear part, which
     * always holds the headers of a ping; bpf_skb_pull_data() would pull more. */
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;
    __u32 zero = 0;
    struct tc_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* never for an array, but the verifier wants the check */
        return TC_ACT_OK;

    struct packet p;
    if (parse_packet(&p, data, data_end) && is_echo_request(&p)) {
        if (report_pings)
            report_echo(&events, &n->lost, skb->ifindex, &p, ECHO_DROPPED);
        n->dropped++;
        return TC_ACT_SHOT; /* try TC_ACT_OK here: pings get answered again */
    }
    if (drop_all) {
        n->dropped++;
        return TC_ACT_SHOT;
    }
    n->passed++;
    return TC_ACT_OK;
}
