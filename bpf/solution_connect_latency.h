/* The record solution_connect_latency.bpf.c sends when a TCP handshake ends. Rust
 * reads it as the skeleton's `types::latency_event`. */
#pragma once

#include "common.h"

struct latency_event {
    __u64 ts_ns;      /* bpf_ktime_get_ns() when the handshake ended */
    __u64 latency_ns; /* from entering SYN_SENT to leaving it */
    __u32 pid;        /* the process that called connect() */
    __s32 ret;        /* 0 = established, else -errno (e.g. -ECONNREFUSED) */
    __u16 family;     /* AF_INET or AF_INET6 */
    __u16 sport;      /* host byte order */
    __u16 dport;      /* host byte order */
    __u16 pad;
    __u8 saddr[16]; /* network byte order; IPv4 uses the first 4 bytes */
    __u8 daddr[16];
    char comm[TASK_COMM_LEN];
};
