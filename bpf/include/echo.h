/* The ping (ICMP/ICMPv6 echo request) report the packet examples send to user
 * space, and the helper that fills it from parsed headers. Each program declares
 * its own ring buffer and sends this struct through it; Rust reads it as that
 * program's skeleton type `types::echo_event`. */
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
    __u64 ts_ns;   /* bpf_ktime_get_ns() when its batch was sent (see send_batch) */
    __u32 ifindex; /* interface it arrived on */
    __u16 family;  /* AF_INET or AF_INET6 */
    __u16 id;      /* echo identifier, host order (ping's process id or socket) */
    __u16 seq;     /* echo sequence number, host order (icmp_seq) */
    __u16 pad;
    enum echo_action action;
    __u8 saddr[16]; /* the pinger's address, network order; IPv4 in the first 4 */
    __u8 daddr[16]; /* the address it pinged */
};

/* Fill `e` from the headers of a ping that is_echo_request() accepted. Call it
 * before any rewrite: it reads the request's addresses. */
static __always_inline void fill_echo(struct echo_event *e, __u32 ifindex,
                                      const struct packet *p, enum echo_action action) {
    __builtin_memset(e, 0, sizeof(*e));
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

/* ---- Reports in batches ------------------------------------------------------
 *
 * Even without a wake-up (wakeup.h), each ring-buffer record costs a reservation
 * (a lock and an atomic on memory the reader also touches) and a commit: measured
 * in place, that was about 150 ns per ping, twice the rest of xdp_pingpong.
 *
 * So reports first go into a batch of this CPU's own, a plain array in a map
 * value. A full batch goes to the ring buffer as one record (the reader splits
 * it), and a timer sends a batch that is not full within ECHO_FLUSH_NS, so that
 * a lone ping still shows up promptly. Measured in place, a report now costs
 * about a fifth of what it did.
 *
 * No lock: packet programs run with softirqs off on their CPU, so nothing else
 * touches this CPU's batch meanwhile, as long as the timer (a softirq too) fires
 * on the same CPU. That takes BPF_F_TIMER_CPU_PIN (Linux 6.7). Where the kernel
 * cannot pin timers, bpf_timer_start() fails, and each report is sent at once,
 * as one record of its own. */

#define ECHO_BATCH 64                       /* reports per ring-buffer record */
#define ECHO_FLUSH_NS (20ULL * 1000 * 1000) /* the longest a report waits: 20 ms */
#define CLOCK_MONOTONIC 1                   /* <time.h>, for bpf_timer_init() */

struct echo_batch {
    struct bpf_timer flush; /* sends the batch ECHO_FLUSH_NS after its first report */
    __u16 timer_ready;      /* bpf_timer_init() done */
    __u16 timer_armed;      /* started, not fired yet */
    __u32 n;                /* reports waiting in ev[] */
    struct echo_event ev[ECHO_BATCH];
};

/* Send what waits in batch `b` to `ringbuf` as one record; if the ring is full,
 * count each report in it in *lost. */
static __always_inline void send_batch(void *ringbuf, struct echo_batch *b, __u64 *lost) {
    __u32 n = b->n;
    if (n == 0)
        return;
    if (n > ECHO_BATCH) /* never, but the verifier wants a bound on the size */
        n = ECHO_BATCH;
    /* One clock read per batch, not per ping: measured in place, a clock read
     * per ping cost 25-35 ns, a third of xdp_pingpong's own time. So a report's
     * time is when its batch left: at most ECHO_FLUSH_NS after the ping. */
    __u64 now = bpf_ktime_get_ns();
    /* All of them, used or not: a loop with a constant count is unrolled by
     * clang and checked once by the verifier, not once per possible `n`. */
    for (__u32 i = 0; i < ECHO_BATCH; i++)
        b->ev[i].ts_ns = now;
    __u64 size = n * sizeof(struct echo_event);
    /* No wake-up per record either: see wakeup.h. */
    if (bpf_ringbuf_output(ringbuf, b->ev, size, wakeup_flags(ringbuf, size)))
        *lost += n;
    b->n = 0;
}

/* The batch timer's callback calls this: the timer is spent (the next report
 * starts it again); send what waits. */
static __always_inline void batch_timer_fired(void *ringbuf, struct echo_batch *b,
                                              __u64 *lost) {
    b->timer_armed = 0;
    send_batch(ringbuf, b, lost);
}

/* This CPU's batch in `batches` (an array with one entry per CPU), or NULL. */
static __always_inline struct echo_batch *cpu_batch(void *batches) {
    __u32 cpu = bpf_get_smp_processor_id();
    return bpf_map_lookup_elem(batches, &cpu);
}

/* The next free report in `b`: fill it, then call batch_added(). */
static __always_inline struct echo_event *batch_next(struct echo_batch *b) {
    __u32 n = b->n;
    if (n >= ECHO_BATCH) /* never: batch_added() sends a full batch */
        n = ECHO_BATCH - 1;
    return &b->ev[n];
}

/* Count the report batch_next() gave out, and send the batch if it is full.
 * Starts the batch's timer if it is not running; `flush` is the timer's
 * callback, a function of the program's own file that calls batch_timer_fired()
 * (it names the program's own maps). */
static __always_inline void batch_added(void *batches, struct echo_batch *b, void *flush,
                                        void *ringbuf, __u64 *lost) {
    b->n++;
    if (!b->timer_armed) {
        if (!b->timer_ready) {
            bpf_timer_init(&b->flush, batches, CLOCK_MONOTONIC);
            bpf_timer_set_callback(&b->flush, flush);
            b->timer_ready = 1;
        }
        if (bpf_timer_start(&b->flush, ECHO_FLUSH_NS, BPF_F_TIMER_CPU_PIN) == 0)
            b->timer_armed = 1;
        else
            send_batch(ringbuf, b, lost); /* cannot pin (before 6.7): no batching */
    }
    if (b->n >= ECHO_BATCH)
        send_batch(ringbuf, b, lost);
}

/* Report a ping that is_echo_request() accepted: fill a report in this CPU's
 * batch. Call it before any rewrite: it reads the request's addresses. */
static __always_inline void report_echo(void *batches, void *flush, void *ringbuf,
                                        __u64 *lost, __u32 ifindex,
                                        const struct packet *p, enum echo_action action) {
    struct echo_batch *b = cpu_batch(batches);
    if (!b) { /* a CPU without a batch: user space made too few */
        (*lost)++;
        return;
    }
    fill_echo(batch_next(b), ifindex, p, action);
    batch_added(batches, b, flush, ringbuf, lost);
}

/* Report a ping from a copy filled earlier with fill_echo() (on the stack: for a
 * program that rewrites the packet between noting the ping and knowing what
 * became of it). */
static __always_inline void send_echo(void *batches, void *flush, void *ringbuf,
                                      __u64 *lost, const struct echo_event *filled) {
    struct echo_batch *b = cpu_batch(batches);
    if (!b) {
        (*lost)++;
        return;
    }
    __builtin_memcpy(batch_next(b), filled, sizeof(*filled));
    batch_added(batches, b, flush, ringbuf, lost);
}
