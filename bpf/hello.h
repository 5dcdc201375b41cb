/* The record hello.bpf.c sends to user space for every execve. Rust reads it as
 * the skeleton's generated `types::exec_event`: this file is its only definition. */
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
