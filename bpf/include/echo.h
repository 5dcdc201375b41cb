/* The ping (ICMP/ICMPv6 echo request) report that every packet example sends to
 * user space, and the helpers that fill it from parsed headers. Rust reads it as
 * the skeleton's `types::echo_event`. Include after events.h and packet.h. */
#pragma once

#include "common.h"

/* What the program did with the ping. An enum (not #defines) so that it reaches
 * the skeleton: Rust gets the same names. */
enum echo_action {
    ECHO_SEEN = 0,     /* let it through to the kernel (XDP_PASS / TC_ACT_OK) */
    ECHO_DROPPED = 1,  /* dropped it (XDP_DROP / TC_ACT_SHOT) */
    ECHO_ANSWERED = 2, /* turned it into a reply and sent it back */
};

struct echo_event {
    __u64 ts_ns;   /* bpf_ktime_get_ns() */
    __u32 ifindex; /* interface it arrived on */
    __u16 family;  /* AF_INET or AF_INET6 */
    __u16 id;      /* echo identifier, host order (ping's process id or socket) */
    __u16 seq;     /* echo sequence number, host order (icmp_seq) */
    __u16 pad;
    enum echo_action action;
    __u8 saddr[16]; /* the pinger's address, network order; IPv4 in the first 4 */
    __u8 daddr[16]; /* the address it pinged */
};

struct echo_event _echo_event = {}; /* exports the type to the skeleton */

/* Fill `e` from the headers of a ping that is_echo_request() accepted. Call it
 * before any rewrite: it reads the request's addresses. */
static __always_inline void fill_echo(struct echo_event *e, __u32 ifindex,
                                      const struct packet *p, enum echo_action action) {
    __builtin_memset(e, 0, sizeof(*e));
    e->ts_ns = bpf_ktime_get_ns();
    e->ifindex = ifindex;
    e->action = action;
    if (p->ip && p->icmp) {
        e->family = AF_INET;
        e->id = bpf_ntohs(p->icmp->un.echo.id);
        e->seq = bpf_ntohs(p->icmp->un.echo.sequence);
        __builtin_memcpy(e->saddr, &p->ip->saddr, 4);
        __builtin_memcpy(e->daddr, &p->ip->daddr, 4);
    } else if (p->ip6 && p->icmp6) {
        e->family = AF_INET6;
        e->id = bpf_ntohs(p->icmp6->icmp6_dataun.u_echo.identifier);
        e->seq = bpf_ntohs(p->icmp6->icmp6_dataun.u_echo.sequence);
        __builtin_memcpy(e->saddr, &p->ip6->saddr, 16);
        __builtin_memcpy(e->daddr, &p->ip6->daddr, 16);
    }
}

/* Send a filled report to user space (or count it as lost). */
static __always_inline void submit_echo(const struct echo_event *filled) {
    struct echo_event *e = reserve_event(sizeof(*e));
    if (!e)
        return;
    __builtin_memcpy(e, filled, sizeof(*e));
    bpf_ringbuf_submit(e, 0);
}

/* Report a ping that is_echo_request() accepted; call before any rewrite. */
static __always_inline void report_echo(__u32 ifindex, const struct packet *p,
                                        enum echo_action action) {
    struct echo_event e;
    fill_echo(&e, ifindex, p, action);
    submit_echo(&e);
}
