/* IPv6 extension headers, walked to find the TCP or UDP header behind them.
 *
 * An IPv6 header's nexthdr may name an extension header (Hop-by-Hop options,
 * Routing, Fragment, Destination options, AH), which names the next, and so on
 * to TCP, UDP or ICMPv6. A program that looks for ports right after the 40-byte
 * header is bypassed by any sender that adds one (setsockopt(IPV6_HOPOPTS), 8
 * bytes of padding): the classic way past a firewall. So a policy walks the
 * chain, and where it cannot (the packet ends inside it, or it is longer than
 * we walk) it does not guess: a policy that cannot read a packet does not let
 * it through. The walk is bounded (IPV6_EXT_MAX) and unrolled, which every
 * verifier from 5.10 on accepts; bpf_skb_load_bytes() checks each read itself. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* From <linux/in6.h> and <net/ipv6.h>: vmlinux.h has no #defines. */
#define IPV6_HDRLEN 40      /* the fixed header; extension headers follow it */
#define NEXTHDR_HOP 0       /* Hop-by-Hop options: (hdrlen + 1) * 8 bytes */
#define NEXTHDR_ROUTING 43  /* Routing: (hdrlen + 1) * 8 bytes */
#define NEXTHDR_FRAGMENT 44 /* Fragment: always 8 bytes */
#define NEXTHDR_AUTH 51     /* Authentication (AH): (hdrlen + 2) * 4 bytes */
#define NEXTHDR_DEST 60     /* Destination options: (hdrlen + 1) * 8 bytes */
#define IP6_OFFSET 0xFFF8   /* fragment offset bits of frag_off (host order) */
#define IPV6_EXT_MAX 8      /* extension headers walked at most */

/* What the walk found. */
enum ipv6_walk {
    IPV6_FOUND,          /* *proto (TCP, UDP, ICMPv6...) is at *off */
    IPV6_LATER_FRAGMENT, /* not the first fragment: the ports are in that one */
    IPV6_UNREADABLE,     /* cut short inside the chain, or longer than IPV6_EXT_MAX */
};

/* The length of the extension header `proto` whose second byte is `hdrlen`, or 0
 * when `proto` is not an extension header. AH counts in 4-byte words, minus 2;
 * the others in 8-byte words, minus 1 (RFC 8200, RFC 4302). */
static __always_inline __u32 ipv6_ext_len(__u8 proto, __u8 hdrlen) {
    switch (proto) {
    case NEXTHDR_HOP:
    case NEXTHDR_ROUTING:
    case NEXTHDR_DEST:
        return ((__u32)hdrlen + 1) * 8;
    case NEXTHDR_FRAGMENT:
        return 8;
    case NEXTHDR_AUTH:
        return ((__u32)hdrlen + 2) * 4;
    default:
        return 0;
    }
}

/* Walk the extension headers of the IPv6 packet whose fixed header starts at
 * offset `l3` of skb and says `nexthdr`. *proto and *off get the header after the
 * chain (on IPV6_FOUND), or the last one reached. */
static __always_inline enum ipv6_walk
ipv6_skb_find_l4(struct __sk_buff *skb, __u32 l3, __u8 nexthdr, __u8 *proto, __u32 *off) {
    *proto = nexthdr;
    *off = l3 + IPV6_HDRLEN;
#pragma unroll
    for (int i = 0; i < IPV6_EXT_MAX; i++) {
        /* Every extension header starts with nexthdr and a length byte; the
         * Fragment header's next two bytes are its offset. */
        struct {
            __u8 nexthdr;
            __u8 hdrlen;
            __be16 frag_off;
        } h;
        if (!ipv6_ext_len(*proto, 0))
            return IPV6_FOUND; /* not an extension header: the transport */
        if (bpf_skb_load_bytes(skb, *off, &h, sizeof(h)))
            return IPV6_UNREADABLE; /* the packet ends inside the chain */
        if (*proto == NEXTHDR_FRAGMENT && (bpf_ntohs(h.frag_off) & IP6_OFFSET)) {
            *proto = h.nexthdr;
            return IPV6_LATER_FRAGMENT;
        }
        *off += ipv6_ext_len(*proto, h.hdrlen);
        *proto = h.nexthdr;
    }
    /* Still an extension header after IPV6_EXT_MAX of them? Then we give up. */
    return ipv6_ext_len(*proto, 0) ? IPV6_UNREADABLE : IPV6_FOUND;
}
