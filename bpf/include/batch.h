/* Reports in batches: the lesson of xdp_pingpong_batched (the batching chapter).
 *
 * xdp_pingpong sends each report as a ring-buffer record of its own, without a
 * wake-up (wakeup.h). Even so, each record costs a reservation (a lock and an
 * atomic on memory the reader also touches) and a commit, and each report a clock
 * read: measured in place, about as much again as the rest of xdp_pingpong.
 *
 * So here reports first go into a batch of this CPU's own, a plain array in a map
 * value. A full batch goes to the ring buffer as one record (the reader splits
 * it), and a timer sends a batch that is not full within ECHO_FLUSH_NS, so that
 * a lone ping still shows up promptly.
 *
 * No lock: packet programs run with softirqs (bottom halves) off on their CPU,
 * so nothing else touches this CPU's batch meanwhile, as long as the timer (a
 * softirq too) fires on the same CPU. That takes BPF_F_TIMER_CPU_PIN (Linux 6.7).
 * Where the kernel cannot pin timers, bpf_timer_start() fails, and each report
 * is sent at once, as a record of its own. bpf_timer itself needs Linux 5.15.
 * Two exceptions user space must know about: on a PREEMPT_RT kernel, softirq
 * work can be preempted on its CPU (from 6.18 on; newer verifiers refuse
 * bpf_timer there altogether), so user space sets batch_reports = false on RT
 * kernels; and BPF_PROG_TEST_RUN ran programs with softirqs on before 6.11. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "echo.h"
#include "wakeup.h"

/* From <errno.h>, <time.h> and <linux/bpf.h>: vmlinux.h has no #defines, and a
 * vmlinux.h from a kernel before 6.7 has no BPF_F_TIMER_CPU_PIN either. */
#define EBUSY 16          /* bpf_timer_init() on a timer set up already */
#define EINVAL 22         /* bpf_timer_start() with a flag this kernel lacks */
#define CLOCK_MONOTONIC 1 /* the clock of a bpf_timer */
/* BPF_F_TIMER_CPU_PIN (Linux 6.7): the timer fires on the CPU that started it. */
#define BATCH_TIMER_CPU_PIN (1ULL << 1)

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
static __always_inline bool start_batch_timer(void *batches, struct echo_batch *b,
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
    long err = bpf_timer_start(&b->flush, ECHO_FLUSH_NS, BATCH_TIMER_CPU_PIN);
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
static __always_inline void batch_echo(void *batches, void *flush, void *ringbuf,
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
    if (b->n >= ECHO_BATCH || !start_batch_timer(batches, b, flush))
        send_batch(ringbuf, b, lost);
}

/* Report a ping that is_echo_request() accepted. Call it before any rewrite: it
 * reads the request's addresses. */
static __always_inline void report_echo_batched(void *batches, void *flush, void *ringbuf,
                                                __u64 *lost, __u32 ifindex,
                                                const struct packet *p,
                                                enum echo_action action) {
    struct echo_event e;
    fill_echo(&e, 0, ifindex, p, action); /* stamped when its batch is sent */
    batch_echo(batches, flush, ringbuf, lost, &e);
}
