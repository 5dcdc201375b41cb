/* What tc_pingpong.bpf.c counts, one copy per CPU. Rust reads it as the
 * skeleton's `types::pingpong_counts` and adds up the CPUs. */
#pragma once

struct pingpong_counts {
    __u64 replied; /* pings answered by the program */
    __u64 passed;  /* everything else, handed to the kernel untouched */
    __u64 failed;  /* pings half rewritten or not sent: dropped */
    __u64 lost;    /* reports that found the ring buffer full */
};
