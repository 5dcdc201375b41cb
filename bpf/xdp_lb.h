/* What xdp_lb.bpf.c shares with examples/xdp_lb.rs: the backend table and the
 * Maglev lookup table that user space fills, the report of a new connection, and
 * the counters. Rust reads them as the skeleton's `types::backend`,
 * `types::lb_event`, `types::lb_counts`, `types::maglev_slot`. */
#pragma once

#define MAX_BACKENDS 16 /* slots in the `backends` array */
/* Entries of the Maglev table: a prime (the table is built from permutations of
 * 0..M-1, which need M prime), and much larger than MAX_BACKENDS so that every
 * backend's share is within a fraction of a percent of even. Katran's is 65537. */
#define MAGLEV_SIZE 65537

/* One backend, as user space writes it into `backends` (one slot each). */
struct backend {
    __be32 addr; /* IPv4 address, network byte order */
    __u8 mac[6]; /* its MAC, from the balancer's neighbour table */
    __u8 live;   /* 1: takes new connections; 0: removed (or never used) */
    __u8 _pad;
};

/* One entry of the Maglev table (`maglev`): the slot in `backends` that owns it,
 * or MAX_BACKENDS when no backend is live. */
struct maglev_slot {
    __u32 slot;
};

/* A new connection, reported once per SYN, when the balancer picks its backend. */
struct lb_event {
    __u64 ts_ns;       /* bpf_ktime_get_ns() */
    __be32 client;     /* client address, network byte order */
    __be32 backend;    /* backend address, network byte order */
    __u16 client_port; /* host byte order */
    __u16 port;        /* the VIP's port, also the backend's (host byte order) */
    __u32 slot;        /* the backend's slot in `backends` */
};

/* Totals, one copy per CPU (key 0 of `counts`). */
struct lb_counts {
    __u64 forwarded;  /* client -> VIP packets sent on to a backend */
    __u64 returned;   /* backend -> client packets sent back to the client (nat) */
    __u64 passed;     /* everything else, handed to the kernel untouched */
    __u64 no_backend; /* new connections dropped: no live backend */
    __u64 collisions; /* new connections dropped: no free source port (nat) */
    __u64 lost;       /* reports that found the ring buffer full */
};

/* Per backend, one copy per CPU (key = slot of `per_backend`). */
struct backend_counts {
    __u64 connections; /* new connections sent to it */
    __u64 packets;     /* packets forwarded to it */
};
