/* A firewall for one cgroup: network policy per group of processes, the hook
 * container network policies are built on (BPF_PROG_TYPE_CGROUP_SKB).
 *
 * The program is attached to a cgroup v2 directory and runs for every packet that
 * a socket of a process in that cgroup (or below it) sends (cgroup_skb/egress) or
 * receives (cgroup_skb/ingress). Processes in other cgroups never reach it. It
 * looks at the other end of the conversation — the destination of a packet sent,
 * the source of a packet received — and drops the packet when that address is in
 * a denied prefix or that TCP/UDP port is denied. User space fills the deny lists
 * before attaching.
 *
 * What the kernel does with the verdict: 1 lets the packet go on, 0 drops it. A
 * dropped packet being sent makes the sending call fail with EPERM where there is
 * one (ping's sendmsg); a dropped TCP SYN is simply retransmitted later, so
 * connect() waits until it times out.
 *
 * The packet starts at the IP header here (there is no Ethernet header at a
 * socket), and, as in socket_filter.bpf.c, we copy the headers we need with
 * bpf_skb_load_bytes(), which checks the bounds itself: constant sizes, no
 * pointer arithmetic for the verifier to doubt, so it loads on old kernels too.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "common.h"
#include "packet.h"
#include "ipv6_ext.h"
#include "wakeup.h"
#include "cgroup_firewall.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define CGROUP_SKB_DROP 0 /* return value: drop the packet */
#define CGROUP_SKB_PASS 1 /* return value: let it go on */
#define MAX_DENIED 1024   /* entries per deny list */

/* Drop reports for user space, one struct drop_event each. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20); /* bytes: 11,915 reports of 80 + 8 bytes */
} events SEC(".maps");

/* The counters, one copy per CPU: no atomics on the fast path. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct firewall_counts);
} counts SEC(".maps");

/* Denied IPv4 prefixes. An LPM trie answers "which stored prefix contains this
 * address?" (the longest, when several do); the value is the rule's number, so
 * that the report can say which rule matched.
 * LPM tries must be created with BPF_F_NO_PREALLOC (nodes are allocated as
 * prefixes are added). */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, MAX_DENIED);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct deny_v4_key); /* prefix length + address */
    __type(value, __u32);            /* the rule's number */
} denied_v4 SEC(".maps");

/* Denied IPv6 prefixes, the same way. */
struct {
    __uint(type, BPF_MAP_TYPE_LPM_TRIE);
    __uint(max_entries, MAX_DENIED);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, struct deny_v6_key);
    __type(value, __u32);
} denied_v6 SEC(".maps");

/* Denied TCP and UDP ports: present means denied. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_DENIED);
    __type(key, __u16);  /* port, host byte order */
    __type(value, __u8); /* 1 */
} denied_ports SEC(".maps");

/* Set by user space before load: are there port rules? Then a TCP or UDP packet
 * whose ports cannot be read is dropped (see firewall()). */
const volatile bool port_rules = false;

/* Globals of the types put them in the skeleton, for Rust. */
struct drop_event _drop_event = {};
struct deny_v4_key _deny_v4_key = {};
struct deny_v6_key _deny_v6_key = {};

/* Only TCP and UDP have ports, both in the first 4 bytes of their header. */
static __always_inline bool has_ports(__u8 protocol) {
    return protocol == IPPROTO_TCP || protocol == IPPROTO_UDP;
}

/* Tell user space about a drop: what the packet and its socket can tell us. There
 * is no pid to report: see struct drop_event. */
static __always_inline void report_drop(struct __sk_buff *skb, struct firewall_counts *n,
                                        struct drop_event *d) {
    struct drop_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) { /* the ring is full: user space is behind; count it */
        n->lost++;
        return;
    }
    __builtin_memcpy(e, d, sizeof(*e));
    e->ts_ns = bpf_ktime_get_ns();
    e->cgroup_id = bpf_skb_cgroup_id(skb);
    e->cookie = bpf_get_socket_cookie(skb);
    e->uid = bpf_get_socket_uid(skb);
    e->len = skb->len;
    /* No wake-up per packet (wakeup.h): a flood of drops must not cost a wake-up
     * each. */
    bpf_ringbuf_submit(e, wakeup_flags(&events, sizeof(*e)));
}

/* The whole firewall, for both directions: `egress` says which end is the other
 * one (the destination of a packet sent, the source of a packet received).
 *
 * It fails closed: a policy that cannot read a packet does not let it through.
 * With port rules, a TCP or UDP packet whose ports cannot be found (an IPv6
 * extension-header chain that ends early or is longer than ipv6_ext.h walks, a
 * header cut short) is dropped and reported as DROP_UNREADABLE; so is a packet too
 * short for its IP header, whose address cannot be checked either. */
static __always_inline int firewall(struct __sk_buff *skb, bool egress) {
    struct drop_event d = {};
    __u32 l4 = 0;            /* offset of the TCP/UDP header; 0: none to read */
    bool unreadable = false; /* the ports may be there, but we cannot find them */
    __u32 *rule = NULL;      /* the address rule that matched */
    __u32 zero = 0;
    struct firewall_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* never for an array, but the verifier wants the check */
        return CGROUP_SKB_PASS;

    d.egress = egress;
    /* skb->protocol says what the packet is; offset 0 is its IP header. */
    if (skb->protocol == bpf_htons(ETH_P_IP)) {
        struct iphdr ip;
        d.family = AF_INET;
        if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip))) {
            d.reason = DROP_UNREADABLE; /* too short to be IPv4: nothing to check */
            goto verdict;
        }
        d.protocol = ip.protocol;
        __builtin_memcpy(d.saddr, &ip.saddr, 4);
        __builtin_memcpy(d.daddr, &ip.daddr, 4);
        struct deny_v4_key key = {.prefix_len = 32};
        __builtin_memcpy(key.addr, egress ? &ip.daddr : &ip.saddr, 4);
        rule = bpf_map_lookup_elem(&denied_v4, &key);
        /* A later fragment carries no TCP/UDP header. The first one does, and
         * dropping it is enough: the datagram can never be put together. */
        if (ip.ihl < IPV4_MIN_IHL)
            unreadable = true; /* where its options end, nobody can say */
        else if (!(bpf_ntohs(ip.frag_off) & IP_OFFSET))
            l4 = ip.ihl * 4;
    } else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
        struct ipv6hdr ip6;
        d.family = AF_INET6;
        if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6))) {
            d.reason = DROP_UNREADABLE;
            goto verdict;
        }
        __builtin_memcpy(d.saddr, &ip6.saddr, 16);
        __builtin_memcpy(d.daddr, &ip6.daddr, 16);
        struct deny_v6_key key = {.prefix_len = 128};
        __builtin_memcpy(key.addr, egress ? &ip6.daddr : &ip6.saddr, 16);
        rule = bpf_map_lookup_elem(&denied_v6, &key);
        /* The transport may sit behind extension headers (Hop-by-Hop options,
         * say): walk them (ipv6_ext.h). A later fragment has no ports, as for
         * IPv4; a chain we cannot walk to its end may hide any port. */
        __u32 off = 0;
        switch (ipv6_skb_find_l4(skb, 0, ip6.nexthdr, &d.protocol, &off)) {
        case IPV6_FOUND:
            l4 = off;
            break;
        case IPV6_LATER_FRAGMENT:
            break;
        default:
            unreadable = true;
        }
    } else {
        return CGROUP_SKB_PASS; /* neither IPv4 nor IPv6 */
    }

    if (rule) {
        d.reason = DROP_ADDRESS;
        d.rule = *rule;
    }
    /* The ports are the first 4 bytes of both TCP and UDP headers (network byte
     * order). The offset comes from the packet, but the size is a constant and
     * bpf_skb_load_bytes() checks it against the packet: the verifier is happy. */
    __be16 ports[2];
    if (l4 && has_ports(d.protocol)) {
        if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports))) {
            unreadable = true; /* cut short inside the ports */
        } else {
            d.sport = bpf_ntohs(ports[0]);
            d.dport = bpf_ntohs(ports[1]);
            __u16 port = egress ? d.dport : d.sport;
            if (!d.reason && bpf_map_lookup_elem(&denied_ports, &port)) {
                d.reason = DROP_PORT;
                d.rule = port;
            }
        }
    }
    /* Fail closed: a port rule cannot be kept for a packet whose port we cannot
     * read. Try a variation: delete these two lines and run the fuzz test
     * (tests/fuzz_cgroup_firewall.rs), or the Hop-by-Hop test in
     * tests/cgroup_firewall.rs with IPV6_EXT_MAX at 0. */
    if (!d.reason && unreadable && port_rules)
        d.reason = DROP_UNREADABLE;

verdict:
    /* Try a variation: return CGROUP_SKB_DROP here too, and nothing at all gets
     * out of the cgroup. */
    if (!d.reason) {
        n->passed++;
        return CGROUP_SKB_PASS;
    }
    if (d.reason == DROP_ADDRESS)
        n->dropped_address++;
    else if (d.reason == DROP_PORT)
        n->dropped_port++;
    else
        n->dropped_unreadable++;
    report_drop(skb, n, &d);
    return CGROUP_SKB_DROP;
}

/* Packets that sockets of the cgroup's processes send. */
SEC("cgroup_skb/egress")
int cgroup_egress(struct __sk_buff *skb) {
    return firewall(skb, true);
}

/* Packets that reach sockets of the cgroup's processes. */
SEC("cgroup_skb/ingress")
int cgroup_ingress(struct __sk_buff *skb) {
    return firewall(skb, false);
}
