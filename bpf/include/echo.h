/* The ping (ICMP/ICMPv6 echo request) report the packet examples send to user
 * space, and the helper that fills it from parsed headers. Each program declares
 * its own ring buffer and sends this struct through it; Rust reads it as that
 * program's skeleton type `types::echo_event`. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "common.h"
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
    __u64 ts_ns;   /* bpf_ktime_get_ns() when it was sent (in a batch: see send_batch) */
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
 * No lock: packet programs run with softirqs (bottom halves) off on their CPU,
 * so nothing else touches this CPU's batch meanwhile, as long as the timer (a
 * softirq too) fires on the same CPU. That takes BPF_F_TIMER_CPU_PIN (Linux 6.7).
 * Where the kernel cannot pin timers, bpf_timer_start() fails, and each report
 * is sent at once, as a record of its own. Two exceptions user space must know
 * about: on a PREEMPT_RT kernel, softirq work can be preempted on its CPU (from
 * 6.18 on; newer verifiers refuse bpf_timer there altogether), so user space
 * sets batch_reports = false on RT kernels; and BPF_PROG_TEST_RUN ran programs
 * with softirqs on before 6.11. */

#define ECHO_BATCH 64                       /* reports per ring-buffer record */
#define ECHO_FLUSH_NS (20ULL * 1000 * 1000) /* the longest a report waits: 20 ms */

/* Set by user space before load: false sends each report at once, and the
 * verifier never sees the timer code (PREEMPT_RT). */
const volatile bool batch_reports = true;

enum batch_timer {
    TIMER_NONE = 0,   /* not set up yet */
    TIMER_IDLE = 1,   /* set up, not running */
    TIMER_ARMED = 2,  /* running: it will send the batch */
    TIMER_CANNOT = 3, /* no pinned timer on this kernel: send each report at once */
};

/* One CPU's batch. n and timer come first: user space reads them to know when
 * every batch has been sent (src/maps.rs, wait_for_batches). */
struct echo_batch {
    __u32 n;                /* reports waiting in ev[] */
    enum batch_timer timer; /* 4 bytes */
    struct bpf_timer flush; /* sends the batch ECHO_FLUSH_NS after it started */
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
    barrier_var(n); /* and clang must not drop that bound for knowing better */
    /* One clock read per batch, not per ping: measured in place, a clock read
     * per ping cost 25-35 ns, a third of xdp_pingpong's own time. So a report's
     * time is when its batch left: about ECHO_FLUSH_NS after the ping at most. All 64
     * are stamped, used or not: a loop with a constant count that the verifier
     * checks once, not once for each possible n. */
    __u64 now = bpf_ktime_get_ns();
    for (__u32 i = 0; i < ECHO_BATCH; i++)
        b->ev[i].ts_ns = now;
    __u64 size = n * sizeof(struct echo_event);
    /* No wake-up per record either: see wakeup.h. */
    if (bpf_ringbuf_output(ringbuf, b->ev, size, output_wakeup_flags(ringbuf, size)))
        *lost += n;
    b->n = 0;
}

/* Send one report `e` (filled, on the stack) as a record of its own. */
static __always_inline void send_one(void *ringbuf, struct echo_event *e, __u64 *lost) {
    e->ts_ns = bpf_ktime_get_ns();
    if (bpf_ringbuf_output(ringbuf, e, sizeof(*e),
                           output_wakeup_flags(ringbuf, sizeof(*e))))
        (*lost)++;
}

/* The batch timer's callback calls this: the timer is spent (the next report
 * starts it again); send what waits. */
static __always_inline void batch_timer_fired(void *ringbuf, struct echo_batch *b,
                                              __u64 *lost) {
    b->timer = TIMER_IDLE;
    send_batch(ringbuf, b, lost);
}

/* Make sure batch `b`'s timer is running, so that what is in the batch will be
 * sent. `flush` is the timer's callback, a function of the program's own file
 * that calls batch_timer_fired() (it names the program's own maps). False if
 * this kernel cannot pin the timer to this CPU, or the timer could not be set
 * up (tried again next report): then send the batch now. */
static __always_inline bool batch_timer_armed(void *batches, struct echo_batch *b,
                                              void *flush) {
    if (b->timer == TIMER_ARMED)
        return true;
    if (b->timer == TIMER_CANNOT)
        return false;
    if (b->timer == TIMER_NONE) {
        long err = bpf_timer_init(&b->flush, batches, CLOCK_MONOTONIC);
        if (err && err != -EBUSY) /* out of memory: try again next time */
            return false;
        if (bpf_timer_set_callback(&b->flush, flush))
            return false;
        b->timer = TIMER_IDLE;
    }
    long err = bpf_timer_start(&b->flush, ECHO_FLUSH_NS, BPF_F_TIMER_CPU_PIN);
    if (err == -EINVAL) { /* before 6.7: an unknown flag */
        b->timer = TIMER_CANNOT;
        return false;
    }
    if (err) /* being freed, or busy: send now, try again next report */
        return false;
    b->timer = TIMER_ARMED;
    return true;
}

/* Add report `e` (filled, on the stack) to this CPU's batch in `batches` (an
 * array with an entry per CPU), and send the batch if it is full or cannot wait.
 * Without a batch (batching off, or a CPU past the array's end), send `e` alone. */
static __always_inline void send_echo(void *batches, void *flush, void *ringbuf,
                                      __u64 *lost, struct echo_event *e) {
    __u32 cpu = bpf_get_smp_processor_id();
    struct echo_batch *b = batch_reports ? bpf_map_lookup_elem(batches, &cpu) : NULL;
    if (!b) {
        send_one(ringbuf, e, lost);
        return;
    }
    __u32 n = b->n;
    if (n >= ECHO_BATCH) /* never: a full batch is sent at once */
        n = ECHO_BATCH - 1;
    __builtin_memcpy(&b->ev[n], e, sizeof(*e));
    b->n = n + 1;
    if (b->n >= ECHO_BATCH || !batch_timer_armed(batches, b, flush))
        send_batch(ringbuf, b, lost);
}

/* Report a ping that is_echo_request() accepted. Call it before any rewrite: it
 * reads the request's addresses. */
static __always_inline void report_echo(void *batches, void *flush, void *ringbuf,
                                        __u64 *lost, __u32 ifindex,
                                        const struct packet *p, enum echo_action action) {
    struct echo_event e;
    fill_echo(&e, ifindex, p, action);
    send_echo(batches, flush, ringbuf, lost, &e);
}
