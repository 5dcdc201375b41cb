/* xdp_router: route packets in XDP, with the kernel's own routing and neighbour
 * tables (bpf_fib_lookup), and send them out of another interface (XDP_REDIRECT
 * through a DEVMAP).
 *
 * A router takes a packet in on one interface, looks its destination up in the
 * routing table, finds the next hop's MAC in the neighbour table, lowers the TTL
 * and sends the frame out of the route's interface. The kernel does all of that
 * in its forwarding path, after it has built a socket buffer, run netfilter and
 * more. Here the same steps run in XDP, before any of that:
 *
 *   parse -> bpf_fib_lookup() -> TTL - 1 -> both MACs from the answer
 *         -> bpf_redirect_map(&egress, ifindex) -> out of the egress interface
 *
 * No routing table of our own: bpf_fib_lookup() asks the kernel's (`ip route`,
 * `ip -6 route`, `ip neigh`), so a route added with `ip route` is used by the
 * next packet. Whatever the lookup cannot finish goes to the kernel (XDP_PASS),
 * which knows what to do: resolve a missing neighbour, answer "time exceeded",
 * deliver packets for the router itself, handle everything that is not IP.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "packet.h"
#include "csum.h"
#include "wakeup.h"
#include "xdp_router.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL"; /* bpf_fib_lookup is GPL-only */

const volatile bool report_flows = false; /* --verbose sets it */

/* The interfaces packets may leave by, filled by user space from the command
 * line: key and value are both the ifindex. bpf_redirect_map() looks the key up
 * and queues the frame for that device. A DEVMAP_HASH is the DEVMAP keyed by
 * any number (a plain DEVMAP is an array: its key is a slot, 0..max_entries). */
struct {
    __uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
    __uint(max_entries, MAX_IFACES);
    __type(key, __u32);   /* ifindex, as bpf_fib_lookup() answers it */
    __type(value, __u32); /* ifindex of the device to send on (the same) */
} egress SEC(".maps");

/* Packets forwarded, per egress interface and CPU. User space creates one entry
 * per interface given: an ifindex that is not here is not ours to send on. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_HASH);
    __uint(max_entries, MAX_IFACES);
    __type(key, __u32);   /* egress ifindex */
    __type(value, __u64); /* packets */
} forwarded SEC(".maps");

/* Packets passed to the kernel, per reason, one copy per CPU. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct router_counts);
} counts SEC(".maps");

/* A flow: the two addresses and the protocol. */
struct flow {
    __u8 saddr[16];
    __u8 daddr[16];
    __u16 family;
    __u8 protocol;
    __u8 _pad;
};

/* Flows already reported (with --verbose): one report per flow, not per packet.
 * LRU: when full, the least recently seen flow makes room (and is reported again
 * if it comes back). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 4096);
    __type(key, struct flow);
    __type(value, __u8); /* nothing: being here is the information */
} seen SEC(".maps");

/* New-flow reports for user space, one struct flow_event each. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 18); /* bytes: 4,096 reports of 56 + 8 bytes */
} events SEC(".maps");

struct flow_event _flow_event = {}; /* a global of the type puts it in the skeleton */

/* The first packet of a flow: one report. The `seen` lookup costs a hash per
 * packet, and only with --verbose. */
static __always_inline void report_new_flow(struct router_counts *n,
                                            const struct packet *p, __u32 in, __u32 out) {
    struct flow f = {};
    f.family = packet_addrs(p, f.saddr, f.daddr);
    f.protocol = p->l4proto;
    __u8 one = 1;
    if (bpf_map_update_elem(&seen, &f, &one, BPF_NOEXIST) != 0)
        return; /* already there: not new */
    struct flow_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        n->lost++; /* ring full: user space is behind; count it, do not wait */
        return;
    }
    e->ts_ns = bpf_ktime_get_ns();
    __builtin_memcpy(e->saddr, f.saddr, sizeof(e->saddr));
    __builtin_memcpy(e->daddr, f.daddr, sizeof(e->daddr));
    e->family = f.family;
    e->protocol = f.protocol;
    e->ifindex_in = in;
    e->ifindex_out = out;
    bpf_ringbuf_submit(e,
                       wakeup_flags(&events, sizeof(*e))); /* no wake-up each: wakeup.h */
}

/* TTL - 1. The header checksum covers TTL and protocol as one 16-bit word: the
 * incremental update for that word (RFC 1624, csum.h) keeps the sum exact
 * without adding up the header again. */
static __always_inline void ipv4_decrement_ttl(struct iphdr *ip) {
    __u16 old_word = *(__u16 *)&ip->ttl;
    ip->ttl--;
    csum_replace2(&ip->check, old_word, *(__u16 *)&ip->ttl);
}

/* fe80::/10: link-local addresses never leave their link; the kernel drops (and
 * answers) such packets itself. */
static __always_inline bool ipv6_link_local(const struct in6_addr *a) {
    return a->in6_u.u6_addr8[0] == 0xfe && (a->in6_u.u6_addr8[1] & 0xc0) == 0x80;
}

SEC("xdp")
int xdp_router(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    struct router_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* never for an array, but the verifier wants the check */
        return XDP_PASS;

    /* parse_packet() returns false for a frame shorter than its headers claim
     * (the verifier demands those checks before any read). */
    struct packet p;
    if (!parse_packet(&p, data, data_end)) {
        n->malformed++;
        return XDP_PASS;
    }

    /* A VLAN tag would mean a VLAN device, which the lookup does not see: the
     * kernel's (parse_packet() skips one tag; here we want none). */
    if (p.eth->h_proto != bpf_htons(ETH_P_IP) &&
        p.eth->h_proto != bpf_htons(ETH_P_IPV6)) {
        n->not_ip++; /* ARP and the like: the kernel's */
        return XDP_PASS;
    }

    /* The question for the kernel's tables: where does this packet go? */
    struct bpf_fib_lookup fib = {};
    fib.ifindex = ctx->ingress_ifindex; /* the lookup starts from the receiving device */
    if (p.ip) {
        if (p.ip->ttl <= 1) { /* the kernel sends "time exceeded" (traceroute's answer) */
            n->ttl++;
            return XDP_PASS;
        }
        /* Options (record route, router alert...) ask every router on the path to
         * act; the kernel knows how. Most packets have none (ihl 5: 20 bytes). */
        if (p.ip->ihl != IPV4_MIN_IHL) {
            n->options++;
            return XDP_PASS;
        }
        fib.family = AF_INET;
        fib.tos = p.ip->tos;
        fib.l4_protocol = p.ip->protocol;
        fib.tot_len = bpf_ntohs(p.ip->tot_len); /* checked against the egress MTU */
        fib.ipv4_src = p.ip->saddr;
        fib.ipv4_dst = p.ip->daddr;
    } else if (p.ip6) {
        if (p.ip6->hop_limit <= 1) {
            n->ttl++;
            return XDP_PASS;
        }
        if (ipv6_link_local(&p.ip6->saddr) || ipv6_link_local(&p.ip6->daddr)) {
            n->local++;
            return XDP_PASS;
        }
        if (p.ip6->nexthdr == 0) { /* hop-by-hop options: the same, for IPv6 */
            n->options++;
            return XDP_PASS;
        }
        fib.family = AF_INET6;
        /* Traffic class and flow label, which policy routing may match on. */
        fib.flowinfo = *(__be32 *)p.ip6 & bpf_htonl(0x0FFFFFFF);
        fib.l4_protocol = p.ip6->nexthdr;
        fib.tot_len = bpf_ntohs(p.ip6->payload_len);
        __builtin_memcpy(fib.ipv6_src, &p.ip6->saddr, sizeof(fib.ipv6_src));
        __builtin_memcpy(fib.ipv6_dst, &p.ip6->daddr, sizeof(fib.ipv6_dst));
    } else {
        return XDP_PASS; /* not reached: the EtherType said IP */
    }

    /* Route and neighbour in one call. flags 0: the main routing table (policy
     * rules included) and a full neighbour lookup. On success fib.ifindex is the
     * egress device and fib.smac/dmac the MACs to put on the frame. */
    long rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
    switch (rc) {
    case BPF_FIB_LKUP_RET_SUCCESS:
        break;
    case BPF_FIB_LKUP_RET_NO_NEIGH: /* route known, next hop's MAC not (yet): the
                                     * kernel resolves it; once it has, the next
                                     * packet takes this fast path */
        n->no_neigh++;
        return XDP_PASS;
    case BPF_FIB_LKUP_RET_NOT_FWDED: /* for this host (or broadcast, multicast) */
        n->local++;
        return XDP_PASS;
    case BPF_FIB_LKUP_RET_FWD_DISABLED: /* sysctl net.ipv4.ip_forward (or IPv6's) is 0 */
        n->fwd_disabled++;
        return XDP_PASS;
    default: /* no route, blackhole, prohibit, too big: the kernel drops the packet and
              * answers with the right ICMP error. Try XDP_DROP here: silence. */
        n->unroutable++;
        return XDP_PASS;
    }

    /* Only onto interfaces we were given: their counter entries exist. */
    __u64 *sent = bpf_map_lookup_elem(&forwarded, &fib.ifindex);
    if (!sent) {
        n->not_ours++;
        return XDP_PASS;
    }
    if (report_flows)
        report_new_flow(n, &p, ctx->ingress_ifindex, fib.ifindex);

    /* Now we are the router: one hop less, and a new Ethernet header for the next
     * link (the router's MAC on that link as source, the next hop's as destination). */
    if (p.ip)
        ipv4_decrement_ttl(p.ip);
    else if (p.ip6)         /* always, but the verifier cannot know: it asks */
        p.ip6->hop_limit--; /* IPv6 has no header checksum */
    __builtin_memcpy(p.eth->h_dest, fib.dmac, ETH_ALEN);
    __builtin_memcpy(p.eth->h_source, fib.smac, ETH_ALEN);
    (*sent)++;

    /* XDP_REDIRECT: the frame leaves by the egress device, without the kernel's
     * network stack. flags 0: a key missing from the map would drop the frame
     * (the `forwarded` lookup made sure it is there). On veth it lands in
     * the peer's XDP receive path, which needs an XDP program there (the lab
     * gives the client and the server one). */
    return bpf_redirect_map(&egress, fib.ifindex, 0);
}
