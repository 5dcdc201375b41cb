/* What hello.bpf.c shares with Rust: the record it sends for every execve, and its
 * counters. Rust reads them as the skeleton's `types::exec_event` and
 * `types::exec_counts`: this file is their only definition. */
#pragma once

#include "common.h"
#define FILENAME_LEN 128

struct exec_event {
    __u64 ts_ns;                 /* bpf_ktime_get_ns(): nanoseconds since boot */
    __u32 pid;                   /* process (thread group) id of the caller */
    __u32 ppid;                  /* its parent's */
    __u32 uid;                   /* real user id */
    char comm[TASK_COMM_LEN];    /* who called execve (the old program name) */
    char filename[FILENAME_LEN]; /* what it asked to run */
};

struct exec_counts {
    __u64 execs; /* execve calls seen */
    __u64 lost;  /* events that found the ring buffer full */
};
