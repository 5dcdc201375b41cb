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
#include "packet.h"
#include "tcp.h"
#include "wakeup.h"
#include "solution_tc_drop_port.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define TCP_FLAGS_BYTE 13 /* offset of the flags byte (CWR..FIN) in the TCP header */

/* Set by user space before load (--port): destination port, host byte order. */
const volatile __u16 drop_port = 80;

/* One drop_event per dropped segment, to user space. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024); /* bytes */
} events SEC(".maps");

/* Reports that found the ring buffer full, one count per CPU. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} lost_events SEC(".maps");

struct drop_event _drop_event = {}; /* a global of the type puts it in the skeleton */

/* Report one dropped segment; a full ring buffer only costs the report. */
static __always_inline void report_drop(const struct packet *p,
                                        const struct tcphdr *tcp) {
    struct drop_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        __u32 zero = 0;
        __u64 *lost = bpf_map_lookup_elem(&lost_events, &zero);
        if (lost)
            (*lost)++;
        return;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->sport = bpf_ntohs(tcp->source);
    e->dport = bpf_ntohs(tcp->dest);
    e->tcp_flags = ((const __u8 *)tcp)[TCP_FLAGS_BYTE];
    e->family = packet_addrs(p, e->saddr, e->daddr);
    bpf_ringbuf_submit(e, wakeup_flags(&events, sizeof(*e)));
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
