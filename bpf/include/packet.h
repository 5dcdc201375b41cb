/* Bounds-checked packet parsing for XDP and TC programs.
 *
 * A packet is bytes between `data` and `data_end`. The verifier rejects any read
 * that it cannot prove lies inside them, so every header is taken through
 * cursor_take(), the one place that does the check:
 *
 *     if (c->pos + len > c->end) return NULL;
 *
 * Each parse_*() returns a pointer to its header (or NULL when the packet is too
 * short or is not what it claims to be) and moves the cursor past it. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "common.h"

/* From <linux/if_ether.h>, <linux/in6.h>, <linux/icmp.h>, <linux/icmpv6.h>,
 * <linux/ip.h> and <linux/pkt_cls.h>: vmlinux.h has types and enums, not #defines. */
#define ETH_ALEN 6
#define ETH_P_IP 0x0800     /* IPv4 */
#define ETH_P_IPV6 0x86DD   /* IPv6 */
#define ETH_P_8021Q 0x8100  /* 802.1Q VLAN tag */
#define ETH_P_8021AD 0x88A8 /* 802.1ad (QinQ) outer tag */
#define IPPROTO_ICMPV6 58   /* ICMP for IPv6 (IPv6 "next header" value) */
#define ICMP_ECHOREPLY 0    /* ping reply (IPv4) */
#define ICMP_ECHO 8         /* ping request (IPv4) */
#define ICMPV6_ECHO_REQUEST 128
#define ICMPV6_ECHO_REPLY 129
#define IP_MF 0x2000     /* "more fragments" flag in iphdr.frag_off (host order) */
#define IP_OFFSET 0x1FFF /* fragment offset bits in iphdr.frag_off (host order) */
#define IPV4_MIN_IHL 5   /* header length in 32-bit words, without options */
#define TC_ACT_OK 0      /* TC verdict: carry on with the packet (<linux/pkt_cls.h>) */
#define TC_ACT_SHOT 2    /* TC verdict: drop the packet */

struct cursor {
    void *pos; /* next unread byte */
    void *end; /* one past the last byte (data_end) */
};

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
    __u32 hdr_len = ip->ihl * 4; /* 20 to 60 bytes */
    if (hdr_len < sizeof(*ip))   /* malformed: shorter than the fixed header */
        return NULL;
    /* Skip the options too. They are at most 40 bytes; the mask proves to the
     * verifier that the cursor cannot jump arbitrarily far. */
    __u32 options = (hdr_len - sizeof(*ip)) & 0x3F;
    if (options && !cursor_take(c, options))
        return NULL;
    return ip;
}

/* An IPv4 packet that is a fragment (first or later) carries only part of the
 * ICMP message: its checksum cannot be checked or fixed here. */
static __always_inline bool ipv4_is_fragment(const struct iphdr *ip) {
    return bpf_ntohs(ip->frag_off) & (IP_MF | IP_OFFSET);
}

/* A frame parsed down to layer 4. */
struct packet {
    struct cursor c; /* after parse_packet(): at the layer-4 header */
    struct ethhdr *eth;
    struct iphdr *ip;       /* set for IPv4 */
    struct ipv6hdr *ip6;    /* set for IPv6 */
    __u8 l4proto;           /* IPPROTO_TCP, _UDP, _ICMP, ICMPV6...; 0 when not IP */
    struct icmphdr *icmp;   /* set by is_echo_request() */
    struct icmp6hdr *icmp6; /* set by is_echo_request() */
};

/* Parse Ethernet (one VLAN tag allowed) and IPv4 or IPv6. False when the frame is
 * too short for what its headers claim; non-IP frames parse with l4proto 0.
 * IPv6 extension headers are not walked: l4proto is then the first of them. */
static __always_inline bool parse_packet(struct packet *p, void *data, void *data_end) {
    __be16 proto;
    __builtin_memset(p, 0, sizeof(*p));
    p->c.pos = data;
    p->c.end = data_end;
    p->eth = parse_eth(&p->c, &proto);
    if (!p->eth)
        return false;
    if (proto == bpf_htons(ETH_P_IP)) {
        p->ip = parse_ipv4(&p->c);
        if (!p->ip)
            return false;
        p->l4proto = p->ip->protocol;
    } else if (proto == bpf_htons(ETH_P_IPV6)) {
        p->ip6 = cursor_take(&p->c, sizeof(struct ipv6hdr));
        if (!p->ip6)
            return false;
        p->l4proto = p->ip6->nexthdr;
    }
    return true;
}

/* Is this a ping (ICMP echo request, or ICMPv6 echo request)? Takes the ICMP
 * header from the cursor. A later IPv4 fragment has no ICMP header: not a ping. */
static __always_inline bool is_echo_request(struct packet *p) {
    if (p->ip && p->l4proto == IPPROTO_ICMP &&
        !(bpf_ntohs(p->ip->frag_off) & IP_OFFSET)) {
        p->icmp = cursor_take(&p->c, sizeof(struct icmphdr));
        return p->icmp && p->icmp->type == ICMP_ECHO && p->icmp->code == 0;
    }
    if (p->ip6 && p->l4proto == IPPROTO_ICMPV6) {
        p->icmp6 = cursor_take(&p->c, sizeof(struct icmp6hdr));
        return p->icmp6 && p->icmp6->icmp6_type == ICMPV6_ECHO_REQUEST &&
               p->icmp6->icmp6_code == 0;
    }
    return false;
}

/* Copy the packet's source and destination addresses into 16-byte arrays (IPv4
 * fills the first 4 bytes, network byte order) and return AF_INET or AF_INET6;
 * 0 for a frame that is not IP. */
static __always_inline __u16 packet_addrs(const struct packet *p, __u8 saddr[16],
                                          __u8 daddr[16]) {
    if (p->ip) {
        __builtin_memcpy(saddr, &p->ip->saddr, 4);
        __builtin_memcpy(daddr, &p->ip->daddr, 4);
        return AF_INET;
    }
    if (p->ip6) {
        __builtin_memcpy(saddr, &p->ip6->saddr, 16);
        __builtin_memcpy(daddr, &p->ip6->daddr, 16);
        return AF_INET6;
    }
    return 0;
}
