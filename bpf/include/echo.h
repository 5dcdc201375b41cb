/* The ping (ICMP/ICMPv6 echo request) report that every packet example sends to
 * user space, and the helpers that fill it from parsed headers. Rust reads it as
 * the skeleton's `types::echo_event`. Include after events.h and packet.h. */
#pragma once

/* What the program did with the ping. */
#define ECHO_SEEN 0     /* let it through to the kernel (XDP_PASS / TC_ACT_OK) */
#define ECHO_DROPPED 1  /* dropped it (XDP_DROP / TC_ACT_SHOT) */
#define ECHO_ANSWERED 2 /* turned it into a reply and sent it back */

struct echo_event {
    __u64 ts_ns;     /* bpf_ktime_get_ns() */
    __u32 ifindex;   /* interface it arrived on */
    __u16 family;    /* AF_INET or AF_INET6 */
    __u16 id;        /* echo identifier, host order (ping's process id or socket) */
    __u16 seq;       /* echo sequence number, host order (icmp_seq) */
    __u8 action;     /* ECHO_SEEN, ECHO_DROPPED or ECHO_ANSWERED */
    __u8 pad;
    __u8 saddr[16];  /* the pinger's address, network order; IPv4 in the first 4 */
    __u8 daddr[16];  /* the address it pinged */
};

struct echo_event _echo_event = {}; /* exports the type to the skeleton */

#define AF_INET 2
#define AF_INET6 10

/* Called with the request's headers, before any rewrite. */
static __always_inline void report_echo4(__u32 ifindex, struct iphdr *ip,
                                         struct icmphdr *icmp, __u8 action) {
    struct echo_event *e = reserve_event(sizeof(*e));
    if (!e)
        return;
    e->ts_ns = bpf_ktime_get_ns();
    e->ifindex = ifindex;
    e->family = AF_INET;
    e->id = bpf_ntohs(icmp->un.echo.id);
    e->seq = bpf_ntohs(icmp->un.echo.sequence);
    e->action = action;
    __builtin_memcpy(e->saddr, &ip->saddr, 4);
    __builtin_memcpy(e->daddr, &ip->daddr, 4);
    bpf_ringbuf_submit(e, 0);
}

static __always_inline void report_echo6(__u32 ifindex, struct ipv6hdr *ip6,
                                         struct icmp6hdr *icmp6, __u8 action) {
    struct echo_event *e = reserve_event(sizeof(*e));
    if (!e)
        return;
    e->ts_ns = bpf_ktime_get_ns();
    e->ifindex = ifindex;
    e->family = AF_INET6;
    e->id = bpf_ntohs(icmp6->icmp6_dataun.u_echo.identifier);
    e->seq = bpf_ntohs(icmp6->icmp6_dataun.u_echo.sequence);
    e->action = action;
    __builtin_memcpy(e->saddr, &ip6->saddr, 16);
    __builtin_memcpy(e->daddr, &ip6->daddr, 16);
    bpf_ringbuf_submit(e, 0);
}
