/* What socket_filter.bpf.c counts, one copy per CPU. Rust reads it as the
 * skeleton's `types::filter_counts` and adds up the CPUs. */
#pragma once

struct filter_counts {
    __u64 tcp_copied; /* TCP packets the socket got a copy of */
    __u64 pings;      /* echo requests seen (reported, not copied) */
    __u64 lost;       /* ping reports that found the ring buffer full */
};
