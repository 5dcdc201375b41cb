/* What tc.bpf.c counts, one copy per CPU. Rust reads it as the skeleton's
 * `types::tc_counts` and adds up the CPUs. */
#pragma once

struct tc_counts {
    __u64 dropped; /* pings dropped (with --drop-all: every packet dropped) */
    __u64 passed;  /* packets let through */
    __u64 lost;    /* ping reports that found the ring buffer full */
};
