/* What tcpconnect.bpf.c shares with Rust: the record it sends for every outgoing
 * TCP connection, and its counters (`types::connect_event`, `types::connect_counts`). */
#pragma once

#include "common.h"

struct connect_event {
    __u64 ts_ns; /* bpf_ktime_get_ns() */
    __u32 pid;   /* the process that called connect() */
    __u32 uid;
    __s32 ret;    /* kprobe: tcp_v*_connect()'s return (0 = SYN sent);
                     tracepoint: 0 = established, else -errno (e.g. -ECONNREFUSED) */
    __u16 family; /* AF_INET or AF_INET6 */
    __u16 sport;  /* host byte order */
    __u16 dport;  /* host byte order */
    __u16 pad;
    __u8 saddr[16]; /* network byte order; IPv4 uses the first 4 bytes */
    __u8 daddr[16];
    char comm[TASK_COMM_LEN];
};

struct connect_counts {
    __u64 reported; /* connections reported */
    __u64 lost;     /* events that found the ring buffer full */
};
