/* Turning a ping into its answer in place: which requests may be answered that
 * way, and the swaps that make the reply (the pingpong programs). */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_endian.h>
#include "packet.h"

/* May a program answer this ping by rewriting it in place? Only when the frame was
 * sent to us alone (not broadcast or multicast), the whole packet is here, and it
 * is simple: no IPv4 options or fragments (the kernel handles those). */
static __always_inline bool echo_answerable(const struct packet *p) {
    if (p->eth->h_dest[0] & 1) /* broadcast or multicast: not for us alone */
        return false;
    if (p->ip) {
        if (p->ip->ihl != IPV4_MIN_IHL || ipv4_is_fragment(p->ip))
            return false;
        /* One request cannot be answered by an incremental checksum update: with
         * id 0, sequence 0 and checksum 0xF7FF the reply's words sum to zero, and
         * only the payload tells whether its checksum must be 0x0000 or 0xFFFF
         * (RFC 1624, section 3). The kernel answers that one. */
        if (p->icmp && !p->icmp->un.echo.id && !p->icmp->un.echo.sequence &&
            p->icmp->checksum == bpf_htons(0xF7FF))
            return false;
        /* The length must cover the headers we answer with, and the frame must hold
         * what the length claims (a truncated frame does not). Compare it with the
         * bytes present as integers, never as `ip + len <= end`: the length comes
         * from the packet, and older verifiers (6.1) do not know that a byte-swapped
         * __u16 is below 65536, so they refuse to add it to a packet pointer:
         * "math between pkt pointer and register with unbounded min value". */
        __u16 len = bpf_ntohs(p->ip->tot_len);
        return len >= sizeof(struct iphdr) + sizeof(struct icmphdr) &&
               len <= p->c.end - (void *)p->ip;
    }
    if (p->ip6) {
        if (p->ip6->daddr.in6_u.u6_addr8[0] == 0xff) /* ff00::/8 is multicast */
            return false;
        __u16 len = bpf_ntohs(p->ip6->payload_len); /* what follows the fixed header */
        return len >= sizeof(struct icmp6hdr) && len <= p->c.end - (void *)(p->ip6 + 1);
    }
    return false;
}

/* Swap two equally long byte ranges in place (MAC or IP addresses). */
static __always_inline void swap_bytes(void *a, void *b, __u32 len) {
    __u8 tmp[16];
    __builtin_memcpy(tmp, a, len);
    __builtin_memcpy(a, b, len);
    __builtin_memcpy(b, tmp, len);
}
