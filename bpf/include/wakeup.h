/* Telling user space has a price: waking it up.
 *
 * bpf_ringbuf_submit(e, 0) wakes the reader whenever it has caught up, which at
 * ping rates is every time. A wake-up is not free: the kernel queues irq_work,
 * which interrupts this CPU (on a virtual machine, an exit to the hypervisor)
 * and then wakes the reading thread. Measured in place (`make bench`), a wake-up
 * per report cost several times the rest of the program.
 *
 * So the programs submit with BPF_RB_NO_WAKEUP: the record is in the ring, but
 * nobody is told. The reader looks anyway every 100 ms (its poll timeout), and
 * the program wakes it only when another eighth of the ring has filled, so that
 * a burst is read before the ring fills: at most eight wake-ups per ringful, and
 * a report still shows up within about 100 ms.
 *
 * Try it: pass 0 instead of wakeup_flags(...) and compare `make bench`. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define RINGBUF_HDR_SZ 8 /* each record's header, <linux/bpf.h> BPF_RINGBUF_HDR_SZ */

/* Wake the reader only if the data waiting, going from `before` to `after` bytes,
 * crosses a multiple of an eighth of the ring. The ring's size is a power of two,
 * so "which eighth" is a mask away (no division on the fast path). */
static __always_inline __u64 crossing_flags(void *ringbuf, __u64 before, __u64 after) {
    __u64 eighth_mask = ~(bpf_ringbuf_query(ringbuf, BPF_RB_RING_SIZE) / 8 - 1);
    return (after & eighth_mask) != (before & eighth_mask) ? BPF_RB_FORCE_WAKEUP
                                                           : BPF_RB_NO_WAKEUP;
}

/* The size a record of `size` bytes takes in the ring: with its header, rounded
 * up to 8, as the kernel does. */
static __always_inline __u64 ring_record_size(__u64 size) {
    return (size + RINGBUF_HDR_SZ + 7) & ~7ULL;
}

/* Flags for bpf_ringbuf_submit() of a `size`-byte record just reserved: the data
 * waiting already counts it. */
static __always_inline __u64 wakeup_flags(void *ringbuf, __u64 size) {
    __u64 waiting = bpf_ringbuf_query(ringbuf, BPF_RB_AVAIL_DATA); /* ours included */
    __u64 record = ring_record_size(size);
    if (waiting < record)
        return BPF_RB_NO_WAKEUP;
    return crossing_flags(ringbuf, waiting - record, waiting);
}

/* Flags for bpf_ringbuf_output() of `size` bytes: it copies the record in after
 * we ask, so the data waiting does not count it yet. */
static __always_inline __u64 output_wakeup_flags(void *ringbuf, __u64 size) {
    __u64 waiting = bpf_ringbuf_query(ringbuf, BPF_RB_AVAIL_DATA); /* ours not yet */
    return crossing_flags(ringbuf, waiting, waiting + ring_record_size(size));
}
