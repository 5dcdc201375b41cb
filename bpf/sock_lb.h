/* What sock_lb.bpf.c shares with examples/sock_lb.rs: the backend table that user
 * space fills, the report of a balanced connect(), and the counters. Rust reads
 * them as the skeleton's `types::backend`, `types::lb_event`, `types::lb_counts`. */
#pragma once

#define MAX_BACKENDS 16 /* slots in the `backends` array */

/* One backend, as user space writes it into `backends` (one slot each). */
struct backend {
    __u32 addr[4]; /* network byte order: IPv4 in addr[0], IPv6 in all four */
    __u16 port;    /* network byte order, as in struct sockaddr_in */
    __u8 live;     /* 1: takes new connections; 0: removed (or never used) */
    __u8 _pad;
};

/* The slots that take new connections, written by user space whenever a backend
 * is added or removed, so that the program picks one without a loop. */
struct live_set {
    __u32 count;              /* how many of slot[] are valid */
    __u32 slot[MAX_BACKENDS]; /* the live backends' slots in `backends` */
};

/* A connect() to the service, reported once, when its backend is picked. */
struct lb_event {
    __u64 ts_ns;   /* bpf_ktime_get_ns() */
    __u64 cookie;  /* the socket's cookie: one number per socket */
    __u32 pid;     /* the connecting process (0 where the kernel cannot say) */
    __u32 uid;     /* its user */
    __u32 slot;    /* the backend's slot in `backends` */
    char comm[16]; /* its command name (empty where the kernel cannot say) */
};

/* Totals, one copy per CPU (key 0 of `counts`). */
struct lb_counts {
    __u64 no_backend; /* connect()s to the service refused: no live backend */
    __u64 lost;       /* reports that found the ring buffer full */
};
