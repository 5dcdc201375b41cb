/* What the two pingpong programs (XDP and TC) count, one copy per CPU. Rust reads
 * it as `types::pingpong_counts` and adds up the CPUs. Include after echo.h. */
#pragma once

struct pingpong_counts {
    __u64 replied; /* pings answered by the program */
    __u64 passed;  /* everything else, handed to the kernel untouched */
};

struct pingpong_counts _pingpong_counts = {}; /* exports the type to the skeleton */

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); /* per CPU: no atomics on the fast path */
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct pingpong_counts);
} counts SEC(".maps");

/* This CPU's counters (never NULL for an array, but the verifier wants the check). */
static __always_inline struct pingpong_counts *pingpong_counts(void) {
    __u32 zero = 0;
    return bpf_map_lookup_elem(&counts, &zero);
}
