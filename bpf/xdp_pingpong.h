/* Counters kept by xdp_pingpong.bpf.c, one copy per CPU; Rust reads them as
 * `types::pingpong_counts` and adds up the CPUs. */
#pragma once

#include "echo.h"

struct pingpong_counts {
    __u64 replied; /* pings answered with XDP_TX */
    __u64 passed;  /* everything else, handed to the kernel untouched */
};
