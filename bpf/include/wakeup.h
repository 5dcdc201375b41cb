/* Telling user space has a price: waking it up.
 *
 * bpf_ringbuf_submit(e, 0) wakes the reader whenever it has caught up, which at
 * ping rates is every time. A wake-up is not free: the kernel queues irq_work,
 * which interrupts this CPU (on a virtual machine, an exit to the hypervisor)
 * and then wakes the reading thread. Measured in place (`make bench`), that made
 * a report cost 20 to 100 times the rest of the program.
 *
 * So the programs submit with BPF_RB_NO_WAKEUP: the record is in the ring, but
 * nobody is told. The reader looks anyway every 100 ms (its poll timeout), and
 * the program wakes it only when a batch is waiting (each eighth of the ring),
 * so that a burst is read before the ring fills. One wake-up per batch instead of
 * one per packet; a report still shows up within about 100 ms.
 *
 * Try it: pass 0 instead of wakeup_flags(...) and compare `make bench`. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define RINGBUF_HDR_SZ 8 /* each record's header, <linux/bpf.h> BPF_RINGBUF_HDR_SZ */

/* The flags for bpf_ringbuf_submit() of a `size`-byte record just reserved in
 * `ringbuf`: wake the reader only when this record makes the data waiting cross
 * a multiple of an eighth of the ring. At most eight wake-ups per ringful, however
 * fast the packets come; none at all while the reader keeps up on its own. */
static __always_inline __u64 wakeup_flags(void *ringbuf, __u64 size) {
    __u64 waiting = bpf_ringbuf_query(ringbuf, BPF_RB_AVAIL_DATA); /* ours included */
    /* The ring's size is a power of two, so an eighth of it is one too, and
     * "which multiple of it" is a mask away (no division on the fast path). */
    __u64 batch_mask = ~(bpf_ringbuf_query(ringbuf, BPF_RB_RING_SIZE) / 8 - 1);
    __u64 record =
        (size + RINGBUF_HDR_SZ + 7) & ~7ULL; /* rounded up to 8, as the kernel does */
    if (waiting < record)
        return BPF_RB_NO_WAKEUP;
    __u64 before = waiting - record; /* what was waiting before our record */
    return (waiting & batch_mask) != (before & batch_mask) ? BPF_RB_FORCE_WAKEUP
                                                           : BPF_RB_NO_WAKEUP;
}
