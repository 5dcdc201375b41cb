/* Bounds-checked packet parsing for XDP and TC programs.
 *
 * A packet is bytes between `data` and `data_end`. The verifier rejects any read
 * that it cannot prove lies inside them, so every header is taken through
 * cursor_take(), the one place that does the check:
 *
 *     if (c->pos + len > c->end) return NULL;
 *
 * Each parse_*() returns a pointer to its header (or NULL when the packet is too
 * short or is not what it claims to be) and moves the cursor past it.
 */
#pragma once

/* From <linux/if_ether.h>, <linux/in6.h>, <linux/icmp.h>, <linux/icmpv6.h> and
 * <linux/ip.h>: vmlinux.h has types and enums, not #defines. */
#define ETH_ALEN 6
#define ETH_P_IP 0x0800      /* IPv4 */
#define ETH_P_IPV6 0x86DD    /* IPv6 */
#define ETH_P_8021Q 0x8100   /* 802.1Q VLAN tag */
#define ETH_P_8021AD 0x88A8  /* 802.1ad (QinQ) outer tag */
#define IPPROTO_ICMPV6 58    /* ICMP for IPv6 (IPv6 "next header" value) */
#define ICMP_ECHOREPLY 0     /* ping reply (IPv4) */
#define ICMP_ECHO 8          /* ping request (IPv4) */
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define IP_MF 0x2000         /* "more fragments" flag in iphdr.frag_off (host order) */
#define IP_OFFSET 0x1FFF     /* fragment offset bits in iphdr.frag_off (host order) */
#define IPV4_MIN_IHL 5       /* header length in 32-bit words, without options */

struct cursor {
    void *pos; /* next unread byte */
    void *end; /* one past the last byte (data_end) */
};

static __always_inline void cursor_init(struct cursor *c, void *data, void *data_end) {
    c->pos = data;
    c->end = data_end;
}

/* The one bounds check: hand out `len` bytes, or NULL if the packet is shorter. */
static __always_inline void *cursor_take(struct cursor *c, __u32 len) {
    void *p = c->pos;
    if (p + len > c->end)
        return NULL;
    c->pos = p + len;
    return p;
}

/* Ethernet, skipping one 802.1Q/802.1ad tag. *proto gets the payload's EtherType
 * in network byte order (compare with bpf_htons(ETH_P_IP)). */
static __always_inline struct ethhdr *parse_eth(struct cursor *c, __be16 *proto) {
    struct ethhdr *eth = cursor_take(c, sizeof(*eth));
    if (!eth)
        return NULL;
    *proto = eth->h_proto;
    if (*proto == bpf_htons(ETH_P_8021Q) || *proto == bpf_htons(ETH_P_8021AD)) {
        struct vlan_hdr *vlan = cursor_take(c, sizeof(*vlan));
        if (!vlan)
            return NULL;
        *proto = vlan->h_vlan_encapsulated_proto;
    }
    return eth;
}

/* IPv4, with its real header length (ihl counts 32-bit words, options included). */
static __always_inline struct iphdr *parse_ipv4(struct cursor *c) {
    struct iphdr *ip = c->pos;
    if (!cursor_take(c, sizeof(*ip)))
        return NULL;
    if (ip->ihl < IPV4_MIN_IHL) /* malformed: shorter than the fixed header */
        return NULL;
    /* Skip the options too. The mask tells the verifier the length is small. */
    __u32 options = (ip->ihl & 0xF) * 4 - sizeof(*ip);
    if (options && !cursor_take(c, options))
        return NULL;
    return ip;
}

static __always_inline struct ipv6hdr *parse_ipv6(struct cursor *c) {
    return cursor_take(c, sizeof(struct ipv6hdr));
}

static __always_inline struct icmphdr *parse_icmp(struct cursor *c) {
    return cursor_take(c, sizeof(struct icmphdr));
}

static __always_inline struct icmp6hdr *parse_icmp6(struct cursor *c) {
    return cursor_take(c, sizeof(struct icmp6hdr));
}

/* TCP, with its real header length (doff counts 32-bit words). */
static __always_inline struct tcphdr *parse_tcp(struct cursor *c) {
    struct tcphdr *tcp = c->pos;
    if (!cursor_take(c, sizeof(*tcp)))
        return NULL;
    if (tcp->doff < sizeof(*tcp) / 4)
        return NULL;
    __u32 options = (tcp->doff & 0xF) * 4 - sizeof(*tcp);
    if (options && !cursor_take(c, options))
        return NULL;
    return tcp;
}

static __always_inline struct udphdr *parse_udp(struct cursor *c) {
    return cursor_take(c, sizeof(struct udphdr));
}

/* Frames for one host only: broadcast and multicast have the lowest bit of the
 * first destination byte set. A ping to them must not be answered by us. */
static __always_inline bool eth_is_unicast(const struct ethhdr *eth) {
    return !(eth->h_dest[0] & 1);
}

/* An IPv4 packet that is a fragment (first or later) carries only part of the
 * ICMP message: its checksum cannot be checked or fixed here. */
static __always_inline bool ipv4_is_fragment(const struct iphdr *ip) {
    return bpf_ntohs(ip->frag_off) & (IP_MF | IP_OFFSET);
}

/* Swap two equally long byte ranges in place (MAC or IP addresses). */
static __always_inline void swap_bytes(void *a, void *b, __u32 len) {
    __u8 tmp[16];
    __builtin_memcpy(tmp, a, len);
    __builtin_memcpy(a, b, len);
    __builtin_memcpy(b, tmp, len);
}
