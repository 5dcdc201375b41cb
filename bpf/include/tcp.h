/* TCP's header, taken from a packet parsed with packet.h. */
#pragma once

#include "vmlinux.h"
#include "packet.h"

/* TCP, with its real header length (doff counts 32-bit words). */
static __always_inline struct tcphdr *parse_tcp(struct cursor *c) {
    struct tcphdr *tcp = c->pos;
    if (!cursor_take(c, sizeof(*tcp)))
        return NULL;
    __u32 hdr_len = tcp->doff * 4; /* 20 to 60 bytes */
    if (hdr_len < sizeof(*tcp))
        return NULL;
    __u32 options = (hdr_len - sizeof(*tcp)) & 0x3F; /* at most 40, as for IPv4 */
    if (options && !cursor_take(c, options))
        return NULL;
    return tcp;
}
