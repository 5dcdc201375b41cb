/* Step 3 of the talk: a BPF filter on a raw socket. The program decides which
 * packets the socket gets a copy of, and how much of each: its return value is
 * the number of bytes to copy (0 = none). The original packet is untouched and
 * goes on to wherever it was going; this is how tcpdump filters work.
 *
 * We keep whole copies of TCP packets (IPv4 and IPv6) and no copy of anything
 * else. Pings are reported through the ring buffer instead, as the talk's
 * bpf_printk did.
 *
 * Socket filters may not read the packet directly (no data/data_end): they copy
 * the bytes they need with bpf_skb_load_bytes(), which checks the bounds itself.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "packet.h"
#include "ipv6_ext.h"
#include "echo.h"
#include "socket_filter.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define NO_COPY 0 /* return value: the socket gets nothing */

/* Set by user space before load: --quiet switches the ping reports off. */
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
    __type(value, struct filter_counts);
} counts SEC(".maps");

struct echo_event _echo_event = {}; /* a global of the type puts it in the skeleton */

/* Count a ping and report it (the talk printed it with bpf_printk). */
static __always_inline void ping_seen(struct __sk_buff *skb, struct filter_counts *n,
                                      const struct packet *p) {
    n->pings++;
    if (report_pings)
        report_echo(&events, &n->lost, skb->ifindex, p, ECHO_SEEN);
}

SEC("socket")
int socket_filter(struct __sk_buff *skb) {
    /* On an Ethernet AF_PACKET socket the copy starts at the Ethernet header, and
     * skb->protocol holds its EtherType (network byte order). */
    __u32 l3 = sizeof(struct ethhdr);
    struct iphdr ip;
    struct ipv6hdr ip6;
    struct icmphdr icmp;
    struct icmp6hdr icmp6;
    /* report_echo() reads the headers through a struct packet: point it at the
     * copies on our stack. */
    struct packet p = {};
    __u32 zero = 0;
    struct filter_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* never for an array, but the verifier wants the check */
        return NO_COPY;

    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        if (bpf_skb_load_bytes(skb, l3, &ip, sizeof(ip)))
            return NO_COPY;
        if (ip.protocol == IPPROTO_TCP) {
            n->tcp_copied++;
            return skb->len; /* the whole packet */
        }
        if (ip.protocol != IPPROTO_ICMP || ip.ihl < IPV4_MIN_IHL || ipv4_is_fragment(&ip))
            return NO_COPY;
        if (bpf_skb_load_bytes(skb, l3 + ip.ihl * 4, &icmp, sizeof(icmp)))
            return NO_COPY;
        if (icmp.type == ICMP_ECHO && icmp.code == 0) {
            p.ip = &ip;
            p.icmp = &icmp;
            ping_seen(skb, n, &p);
        }
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        if (bpf_skb_load_bytes(skb, l3, &ip6, sizeof(ip6)))
            return NO_COPY;
        /* TCP may sit behind extension headers (Hop-by-Hop options, say):
         * ipv6_ext.h walks them to the header that is none. */
        __u8 proto;
        __u32 l4;
        if (ipv6_skb_find_l4(skb, l3, ip6.nexthdr, &proto, &l4) != IPV6_FOUND)
            return NO_COPY;
        if (proto == IPPROTO_TCP) {
            n->tcp_copied++;
            return skb->len;
        }
        if (proto != IPPROTO_ICMPV6)
            return NO_COPY;
        if (bpf_skb_load_bytes(skb, l4, &icmp6, sizeof(icmp6)))
            return NO_COPY;
        if (icmp6.icmp6_type == ICMPV6_ECHO_REQUEST && icmp6.icmp6_code == 0) {
            p.ip6 = &ip6;
            p.icmp6 = &icmp6;
            ping_seen(skb, n, &p);
        }
    }
    return NO_COPY;
}
