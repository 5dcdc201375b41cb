/* Exercise solution: a TC ingress firewall for one TCP port.
 *
 * Drops every incoming TCP segment whose destination port is `drop_port`
 * (TC_ACT_SHOT) and reports it; everything else goes on up the stack (TC_ACT_OK).
 * A client that connects to that port sees its SYNs vanish: connect() times out,
 * while other ports, pings and UDP keep working.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "common.h"
#include "events.h"
#include "packet.h"
#include "solution_tc_drop_port.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TCP_FLAGS_BYTE 13 /* offset of the flags byte (CWR..FIN) in the TCP header */

/* Set by user space before load (--port): destination port, host byte order. */
const volatile __u16 drop_port = 80;

struct drop_event _drop_event = {}; /* exports the type to the skeleton */

/* Report one dropped segment; a full ring buffer only costs the report. */
static __always_inline void report_drop(const struct packet *p,
                                        const struct tcphdr *tcp) {
    struct drop_event *e = reserve_event(sizeof(*e));
    if (!e)
        return;
    e->ts_ns = bpf_ktime_get_ns();
    e->sport = bpf_ntohs(tcp->source);
    e->dport = bpf_ntohs(tcp->dest);
    e->tcp_flags = ((const __u8 *)tcp)[TCP_FLAGS_BYTE];
    if (p->ip) {
        e->family = AF_INET;
        __builtin_memcpy(e->saddr, &p->ip->saddr, 4);
        __builtin_memcpy(e->daddr, &p->ip->daddr, 4);
    } else {
        e->family = AF_INET6;
        __builtin_memcpy(e->saddr, &p->ip6->saddr, 16);
        __builtin_memcpy(e->daddr, &p->ip6->daddr, 16);
    }
    bpf_ringbuf_submit(e, 0);
}

SEC("tc")
int tc_drop_port(struct __sk_buff *skb) {
    /* Direct packet access over the skb's linear part, which holds the headers. */
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;

    struct packet p;
    if (!parse_packet(&p, data, data_end) || p.l4proto != IPPROTO_TCP)
        return TC_ACT_OK;
    /* A later IPv4 fragment carries payload where the TCP header would be: reading
     * "ports" there would drop random packets. (The first fragment has the header.)
     * IPv6 extension headers are not walked (see packet.h): such packets pass. */
    if (p.ip && (bpf_ntohs(p.ip->frag_off) & IP_OFFSET))
        return TC_ACT_OK;
    struct tcphdr *tcp = parse_tcp(&p.c);
    if (!tcp) /* too short for a TCP header: not ours to judge */
        return TC_ACT_OK;
    if (bpf_ntohs(tcp->dest) != drop_port)
        return TC_ACT_OK;

    report_drop(&p, tcp);
    /* Try TC_ACT_OK here (and keep the report): a logging firewall in "audit" mode. */
    return TC_ACT_SHOT;
}
