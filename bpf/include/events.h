/* Ring buffer plumbing shared by every example.
 *
 * Each program that includes this gets its own `events` ring buffer (BPF -> user
 * space, one record per event) and `lost_events` counter. A ring buffer is full
 * when user space reads slower than the kernel writes; the reservation then fails
 * and the event is gone. We count those failures so that the Rust side can say
 * "N events lost" instead of silently showing fewer lines.
 */
#pragma once

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    /* Bytes, a power of two and a multiple of the page size. 1 MiB holds about 5,700
     * of hello's 176-byte events (each record has an 8-byte header too); raise it
     * if the exit summary reports losses. */
    __uint(max_entries, 1 << 20);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY); /* one slot, read by user space at exit */
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64); /* failed reservations so far */
} lost_events SEC(".maps");

/* Reserve room for one event, or count the loss and return NULL. The caller must
 * bpf_ringbuf_submit() what it got (the verifier checks that it does). */
static __always_inline void *reserve_event(__u64 size) {
    void *e = bpf_ringbuf_reserve(&events, size, 0);
    if (!e) {
        __u32 zero = 0;
        __u64 *lost = bpf_map_lookup_elem(&lost_events, &zero);
        if (lost) /* the verifier insists on the NULL check, even for an array */
            __sync_fetch_and_add(lost, 1);
    }
    return e;
}
