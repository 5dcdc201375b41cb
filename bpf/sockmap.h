/* What sockmap.bpf.c shares with user space. Rust reads the event and the counters
 * as the skeleton's `types::sock_event` and `types::sockmap_counts`, and the map's
 * keys as `types::sock_key`. */
#pragma once

/* A socket's 4-tuple, as seen from that socket: its own address and port first.
 * The key of the socket map. The same connection has two keys, one per end: the
 * client's {client, server} and the server's {server, client}. */
struct sock_key {
    __u32 local_ip[4];  /* network order; IPv4 as the IPv4-mapped ::ffff:a.b.c.d */
    __u32 remote_ip[4]; /* the same */
    __u32 local_port;   /* host order */
    __u32 remote_port;  /* host order */
};

/* One socket put into the map. No pid: see track_sockets() in sockmap.bpf.c. */
struct sock_event {
    __u64 ts_ns;  /* bpf_ktime_get_ns() */
    __u64 cookie; /* the socket's cookie: one number per socket, never reused */
    struct sock_key key;
    __u32 family;  /* AF_INET or AF_INET6: the socket's own */
    __u32 passive; /* 1: the accepting end (the server's), 0: the connecting end */
};

/* What the programs count, one copy per CPU. */
struct sockmap_counts {
    __u64 added;            /* sockets put into the map */
    __u64 add_failed;       /* established sockets the map refused (full, say) */
    __u64 closed;           /* sockets of the map that closed */
    __u64 redirected_msgs;  /* messages (sk_msg runs) sent straight to the peer */
    __u64 redirected_bytes; /* their bytes */
    __u64 passed_msgs;      /* messages whose peer is not in the map: sent by TCP */
    __u64 passed_bytes;     /* their bytes */
    __u64 lost;             /* socket reports that found the ring buffer full */
};
