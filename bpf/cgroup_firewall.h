/* What cgroup_firewall.bpf.c shares with user space. Rust reads the event and the
 * counters as the skeleton's `types::drop_event` and `types::firewall_counts`, and
 * writes the deny lists' keys in the layout of the two LPM key structs. */
#pragma once

/* Why a packet was dropped. An enum (not #defines) so that it reaches the
 * skeleton: Rust gets the same names. */
enum drop_reason {
    DROP_ADDRESS = 1,    /* the other end's address is in a denied prefix */
    DROP_PORT = 2,       /* the other end's TCP or UDP port is denied */
    DROP_UNREADABLE = 3, /* the rules need what the packet does not let us read:
                            its IP header, or (with port rules) its ports */
};

/* One dropped packet. No pid: at this hook the packet may be sent by the kernel on
 * the socket's behalf (a TCP retransmit from a timer, in softirq), when no process
 * of the cgroup is running, and cgroup_skb programs may not call
 * bpf_get_current_pid_tgid(). What the packet itself carries is reported. */
struct drop_event {
    __u64 ts_ns;     /* bpf_ktime_get_ns() */
    __u64 cgroup_id; /* the sending (or receiving) socket's cgroup */
    __u64 cookie;    /* the socket's cookie: one number per socket, never reused */
    __u32 uid;       /* the socket owner's uid (65534 when there is no full socket) */
    __u32 len;       /* packet length from the IP header on */
    __u32 rule;      /* DROP_ADDRESS: which --deny matched (0 = the first);
                        DROP_PORT: the denied port; DROP_UNREADABLE: 0 */
    enum drop_reason reason;
    __u16 family;   /* AF_INET or AF_INET6 */
    __u16 sport;    /* host order; 0 when not TCP or UDP */
    __u16 dport;    /* host order */
    __u8 protocol;  /* IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP... (for IPv6 the
                       header after the extension headers, or the last reached) */
    __u8 egress;    /* 1: being sent, 0: being received */
    __u8 saddr[16]; /* network order; IPv4 in the first 4 bytes */
    __u8 daddr[16];
};

/* What the programs count, one copy per CPU. */
struct firewall_counts {
    __u64 passed;             /* packets let through */
    __u64 dropped_address;    /* dropped: denied address */
    __u64 dropped_port;       /* dropped: denied port */
    __u64 dropped_unreadable; /* dropped: what the rules need could not be read */
    __u64 lost;               /* drop reports that found the ring buffer full */
};

/* The keys of the LPM (longest prefix match) tries: the prefix length in bits
 * first, then the address in network byte order. A lookup with a full-length key
 * finds the longest stored prefix that contains the address. */
struct deny_v4_key {
    __u32 prefix_len; /* 0 to 32 */
    __u8 addr[4];
};

struct deny_v6_key {
    __u32 prefix_len; /* 0 to 128 */
    __u8 addr[16];
};
