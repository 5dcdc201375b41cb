/* The ping (ICMP/ICMPv6 echo request) report the packet examples send to user
 * space. Each program declares its own ring buffer and sends this struct through
 * it; Rust reads it as that program's skeleton type `types::echo_event`. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "packet.h"
#include "wakeup.h"

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

/* Fill `e` from the headers of a ping that is_echo_request() accepted, stamped
 * `ts_ns` (bpf_ktime_get_ns()). Call it before any rewrite: it reads the
 * request's addresses. */
static __always_inline void fill_echo(struct echo_event *e, __u64 ts_ns, __u32 ifindex,
                                      const struct packet *p, enum echo_action action) {
    __builtin_memset(e, 0, sizeof(*e));
    e->ts_ns = ts_ns;
    e->ifindex = ifindex;
    e->action = action;
    e->family = packet_addrs(p, e->saddr, e->daddr);
    if (p->icmp) {
        e->id = bpf_ntohs(p->icmp->un.echo.id);
        e->seq = bpf_ntohs(p->icmp->un.echo.sequence);
    } else if (p->icmp6) {
        e->id = bpf_ntohs(p->icmp6->icmp6_dataun.u_echo.identifier);
        e->seq = bpf_ntohs(p->icmp6->icmp6_dataun.u_echo.sequence);
    }
}

/* Report a ping straight into `ringbuf`: reserve a record, fill it, submit it.
 * Call it before any rewrite. A full ring (the reader is behind) is counted in
 * *lost: the packet itself goes on, a report is never worth a dropped packet. */
static __always_inline void report_echo(void *ringbuf, __u64 *lost, __u32 ifindex,
                                        const struct packet *p, enum echo_action action) {
    struct echo_event *e = bpf_ringbuf_reserve(ringbuf, sizeof(*e), 0);
    if (!e) {
        (*lost)++;
        return;
    }
    fill_echo(e, bpf_ktime_get_ns(), ifindex, p, action);
    bpf_ringbuf_submit(e, wakeup_flags(ringbuf, sizeof(*e))); /* see wakeup.h */
}

/* Send a report filled earlier with fill_echo(), for a program that learns the
 * ping's fate only after rewriting it (tc_pingpong). Holding the reservation
 * across the rewrite instead is refused by older verifiers (6.1: "Unreleased
 * reference"), so the report waits on the stack. */
static __always_inline void send_echo(void *ringbuf, __u64 *lost,
                                      const struct echo_event *filled) {
    if (bpf_ringbuf_output(ringbuf, (void *)filled, sizeof(*filled),
                           output_wakeup_flags(ringbuf, sizeof(*filled))))
        (*lost)++;
}
