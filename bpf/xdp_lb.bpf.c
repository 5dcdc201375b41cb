/* The capstone: a load balancer in XDP, built from xdp_pingpong's moves (rewrite
 * a frame in place, send it back out with XDP_TX).
 *
 * Clients connect to a virtual address, the VIP, which the balancer owns. For
 * each new TCP connection to the VIP the program picks a backend from a Maglev
 * table (user space builds it, src/maglev.rs) by a hash of the connection's
 * addresses and ports, and from then on sends every packet of it there. Two ways:
 *
 * dsr (direct server return, what production balancers do): only the frame's
 * destination MAC changes, to the backend's. The backend owns the VIP too (on
 * lo, where it answers no ARP), so its kernel takes the packet as its own and
 * answers the client directly: replies never pass the balancer. No checksum to
 * fix, no state for replies, no ports to share. Needs the backends on the same
 * Ethernet segment as the balancer (IPVS calls it "direct routing").
 *
 *   client -> VIP        becomes   client -> VIP, to the backend's MAC (forward)
 *   VIP -> client        sent by the backend itself
 *
 * nat (full NAT, the older design): the backends see the balancer as their
 * client, so their replies come back through it:
 *
 *   client:port -> VIP       becomes   balancer:nat_port -> backend   (forward)
 *   backend -> balancer:nat_port  becomes   VIP -> client:port        (reply)
 *
 * nat_port is a free source port picked per connection, as the kernel's SNAT
 * does: two clients may use the same port towards the same backend.
 *
 * State: `conns` remembers each connection's backend (so one connection stays on
 * its backend when the backend list changes; the Maglev table alone already
 * keeps most flows where they were) and, for nat, `replies` finds the client
 * again for a backend's reply. Both are LRU maps: when full, the least recently
 * used entry makes room, so they cannot grow without bound.
 *
 * TCP only; IPv4 in both modes, IPv6 in dsr (--vip6); everything else goes to
 * the kernel untouched.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "packet.h"
#include "tcp.h"
#include "csum.h"
#include "wakeup.h"
#include "xdp_lb.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* A 32-bit field (an IPv4 address) changed from `old` to `new`. The checksum is a
 * sum of 16-bit words and a 32-bit field is two of them, so an update for each half
 * (csum_replace2, csum.h) is one update for the whole field. The halves are taken
 * as the field lies in the packet: each half of the loaded value is one packet
 * word, whatever the CPU's byte order. Used for the IPv4 header checksum and for
 * TCP's, whose pseudo-header holds both addresses. */
static __always_inline void csum_replace4(__sum16 *sum, __be32 old, __be32 new) {
    csum_replace2(sum, (__u16)old, (__u16) new);
    csum_replace2(sum, (__u16)(old >> 16), (__u16)(new >> 16));
}

/* Set by user space before load (network byte order). */
const volatile __be32 vip = 0; /* the address clients connect to */
const volatile __be32 lb_addr =
    0; /* nat: the balancer's own address, the backends' client */
const volatile bool dsr = true;                /* --mode dsr (true) or nat (false) */
const volatile bool report_connections = true; /* --quiet sets it false */
const volatile __u32 vip6[4] = {};             /* --vip6, as it lies in packets */
const volatile bool has_vip6 = false;

/* The backends, one slot each, written by user space: at start from --backend,
 * and while running when a backend is added or removed (`live`). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAX_BACKENDS);
    __type(key, __u32);            /* slot */
    __type(value, struct backend); /* address, MAC, live */
} backends SEC(".maps");

/* The Maglev lookup table, built by user space: entry hash % MAGLEV_SIZE names
 * the backend of a new connection. Rebuilt (only the entries that change are
 * written) when a backend is added or removed. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAGLEV_SIZE);
    __type(key, __u32);
    __type(value, struct maglev_slot);
} maglev SEC(".maps");

/* A TCP connection as the packets on the wire name it. */
struct flow {
    __be32 saddr;
    __be32 daddr;
    __be16 sport;
    __be16 dport;
};

/* What the balancer remembers of a connection. */
struct conn {
    __u32 slot;      /* its backend's slot in `backends` */
    __be16 nat_port; /* nat: the source port the backend sees */
    __u16 _pad;
};

/* Forward state: client -> VIP connection to its backend. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536); /* connections remembered; the oldest unused go first */
    __type(key, struct flow);   /* client, VIP, client port, VIP port */
    __type(value, struct conn);
} conns SEC(".maps");

/* An IPv6 TCP connection (dsr only). */
struct flow6 {
    __u32 saddr[4];
    __u32 daddr[4];
    __be16 sport;
    __be16 dport;
};

/* Forward state for IPv6: as `conns`. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct flow6);
    __type(value, struct conn);
} conns6 SEC(".maps");

/* nat: how to send a backend's reply back to the client. */
struct reply {
    __be32 client;      /* becomes the destination again */
    __be32 vip;         /* becomes the source again: the client talks to the VIP */
    __be16 client_port; /* becomes the destination port again */
    __u8 client_mac[6]; /* where the client's frames came from */
    __u32 slot;         /* the backend, for the counters */
};

/* nat: reply state, filled by the forward path: backend -> balancer to the client. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct flow); /* backend, balancer, VIP port, nat port */
    __type(value, struct reply);
} replies SEC(".maps");

/* nat: where each CPU's search for a free source port starts. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} port_cursor SEC(".maps");

/* New-connection reports for user space, one struct lb_event each. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 18); /* bytes: 8,192 reports of 24 + 8 bytes */
} events SEC(".maps");

/* The totals, one copy per CPU: no atomics on the fast path. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct lb_counts);
} counts SEC(".maps");

/* Per backend, one copy per CPU. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, MAX_BACKENDS);
    __type(key, __u32); /* slot, as in `backends` */
    __type(value, struct backend_counts);
} per_backend SEC(".maps");

struct lb_event _lb_event = {};       /* a global of the type puts it in the skeleton */
struct maglev_slot _maglev_slot = {}; /* likewise */

/* Mix 32 bits well (MurmurHash3's finaliser): client ports often differ in a few
 * bits only (Linux prefers even ones), and `% MAGLEV_SIZE` must not see that. */
static __always_inline __u32 mix32(__u32 h) {
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;
    return h;
}

/* The 5-tuple's hash (the protocol is always TCP here): the same connection
 * always hashes the same, so its SYN retransmits pick the same backend. */
static __always_inline __u32 flow_hash(const struct flow *f) {
    __u32 ports = ((__u32)f->sport << 16) | f->dport;
    return mix32(f->saddr ^ mix32(f->daddr ^ mix32(ports ^ IPPROTO_TCP)));
}

/* The backend for a new connection with hash h: one lookup in the Maglev table,
 * no loop. Removing a backend rewrites only its own entries (about 1/N of them),
 * so the other backends keep their flows. Returns MAX_BACKENDS when no backend
 * is live. */
static __always_inline __u32 pick_backend(__u32 h) {
    __u32 i = h % MAGLEV_SIZE;
    struct maglev_slot *m = bpf_map_lookup_elem(&maglev, &i);
    return m ? m->slot : MAX_BACKENDS;
}

/* IPv6: fold the addresses' words into the same kind of hash. */
static __always_inline __u32 flow6_hash(const struct flow6 *f) {
    __u32 h = mix32(((__u32)f->sport << 16) | f->dport);
    for (int i = 0; i < 4; i++) /* unrolled by clang: a constant bound */
        h = mix32(h ^ f->saddr[i] ^ mix32(f->daddr[i]));
    return h;
}

static __always_inline bool is_syn(const struct tcphdr *tcp) {
    return tcp->syn && !tcp->ack; /* the first packet of a connection */
}

/* nat: rewrite the IP addresses and one port, and fix both checksums. The TCP
 * checksum covers a pseudo-header with both addresses, so it changes with them
 * (RFC 1624, csum.h). */
static __always_inline void set_addrs(struct iphdr *ip, struct tcphdr *tcp, __be32 saddr,
                                      __be32 daddr, __be16 *port, __be16 new_port) {
    csum_replace4(&ip->check, ip->saddr, saddr);
    csum_replace4(&ip->check, ip->daddr, daddr);
    csum_replace4(&tcp->check, ip->saddr, saddr);
    csum_replace4(&tcp->check, ip->daddr, daddr);
    csum_replace2(&tcp->check, *port, new_port);
    ip->saddr = saddr;
    ip->daddr = daddr;
    *port = new_port;
}

static __always_inline void report(struct lb_counts *n, const struct flow *f,
                                   __be32 backend, __u32 slot) {
    struct lb_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        n->lost++; /* ring full: user space is behind; count it, do not wait */
        return;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->client = f->saddr;
    e->backend = backend;
    e->client_port = bpf_ntohs(f->sport);
    e->port = bpf_ntohs(f->dport);
    e->slot = slot;
    /* No wake-up per connection: see wakeup.h. */
    bpf_ringbuf_submit(e, wakeup_flags(&events, sizeof(*e)));
}

#define FIRST_PORT 1024 /* nat ports: 1024-65535, as the kernel's SNAT would */
#define PORT_TRIES 16   /* ports tried per new connection, then it is dropped */

/* nat: is the reply key `back` free for this client, or already its own? */
static __always_inline bool port_free(struct flow *back, const struct flow *f) {
    struct reply *r = bpf_map_lookup_elem(&replies, back);
    return !r || (r->client == f->saddr && r->client_port == f->sport);
}

/* nat: a source port towards backend b that no other client's connection holds:
 * the backend's reply to it must name one client. Each CPU walks the port range
 * from where it stopped (as the kernel's SNAT does), so a port comes back only
 * after the others; a port stays taken until the LRU map evicts its entry (no
 * FIN/RST tracking here). Returns 0 when PORT_TRIES ports in a row are taken. */
static __always_inline __be16 pick_port(struct backend *b, const struct flow *f,
                                        const struct conn *known) {
    struct flow back = {b->addr, lb_addr, f->dport, 0};
    if (known && known->nat_port) { /* the same connection again: keep its port */
        back.dport = known->nat_port;
        if (port_free(&back, f))
            return known->nat_port;
    }
    __u32 zero = 0;
    __u32 *cursor = bpf_map_lookup_elem(&port_cursor, &zero);
    if (!cursor)
        return 0;
    if (*cursor == 0) /* each CPU starts somewhere else */
        *cursor = bpf_get_prandom_u32() | 1;
#pragma unroll
    for (int i = 0; i < PORT_TRIES; i++) {
        __u16 port = FIRST_PORT + (*cursor)++ % (65536 - FIRST_PORT);
        back.dport = bpf_htons(port);
        if (port_free(&back, f))
            return back.dport;
    }
    return 0;
}

/* client -> VIP: find (or pick) the backend, send the frame on towards it. */
static __always_inline int forward(struct lb_counts *n, struct packet *p,
                                   struct tcphdr *tcp) {
    struct flow f = {p->ip->saddr, p->ip->daddr, tcp->source, tcp->dest};
    struct backend *b = NULL;
    struct conn *known = bpf_map_lookup_elem(&conns, &f);
    struct conn c = {.slot = known ? known->slot : MAX_BACKENDS};
    if (known)
        c.nat_port = known->nat_port;
    if (c.slot < MAX_BACKENDS)
        b = bpf_map_lookup_elem(&backends, &c.slot);
    /* A known connection keeps its backend, even one removed since (its
     * connections drain). A SYN is a new connection, also on a known tuple: a
     * client may reuse a source port long before `conns` forgets it. */
    if (!b || is_syn(tcp)) {
        c.slot = pick_backend(flow_hash(&f));
        b = c.slot < MAX_BACKENDS ? bpf_map_lookup_elem(&backends, &c.slot) : NULL;
        if (!b) {
            n->no_backend++;
            return XDP_DROP; /* try XDP_PASS: the balancer's kernel then refuses it */
        }
        if (!dsr) {
            c.nat_port = pick_port(b, &f, known && known->slot == c.slot ? known : NULL);
            if (!c.nat_port) {
                n->collisions++;
                return XDP_DROP;
            }
            struct flow back = {b->addr, lb_addr, f.dport, c.nat_port};
            struct reply r = {.client = f.saddr,
                              .vip = f.daddr,
                              .client_port = f.sport,
                              .slot = c.slot};
            __builtin_memcpy(r.client_mac, p->eth->h_source, ETH_ALEN);
            bpf_map_update_elem(&replies, &back, &r, BPF_ANY);
        }
        bpf_map_update_elem(&conns, &f, &c, BPF_ANY);
        struct backend_counts *bc = bpf_map_lookup_elem(&per_backend, &c.slot);
        if (bc)
            bc->connections++;
        if (report_connections)
            report(n, &f, b->addr, c.slot);
    }
    struct backend_counts *bc = bpf_map_lookup_elem(&per_backend, &c.slot);
    if (bc)
        bc->packets++;

    /* The frame came addressed to us: we become its sender, the backend its
     * receiver, on the same Ethernet segment. For dsr that is all: the IP header
     * still says client -> VIP, and the backend owns the VIP. */
    __builtin_memcpy(p->eth->h_source, p->eth->h_dest, ETH_ALEN);
    __builtin_memcpy(p->eth->h_dest, b->mac, ETH_ALEN);
    if (!dsr)
        set_addrs(p->ip, tcp, lb_addr, b->addr, &tcp->source, c.nat_port);
    n->forwarded++;
    return XDP_TX;
}

/* IPv6 client -> VIP6, dsr only: forward()'s steps without nat. Connections
 * are counted, not reported (struct lb_event holds IPv4 addresses). */
static __always_inline int forward6(struct lb_counts *n, struct packet *p,
                                    struct tcphdr *tcp) {
    struct flow6 f = {.sport = tcp->source, .dport = tcp->dest};
    __builtin_memcpy(f.saddr, &p->ip6->saddr, sizeof(f.saddr));
    __builtin_memcpy(f.daddr, &p->ip6->daddr, sizeof(f.daddr));
    struct conn *known = bpf_map_lookup_elem(&conns6, &f);
    struct conn c = {.slot = known ? known->slot : MAX_BACKENDS};
    struct backend *b = NULL;
    if (c.slot < MAX_BACKENDS)
        b = bpf_map_lookup_elem(&backends, &c.slot);
    if (!b || is_syn(tcp)) {
        c.slot = pick_backend(flow6_hash(&f));
        b = c.slot < MAX_BACKENDS ? bpf_map_lookup_elem(&backends, &c.slot) : NULL;
        if (!b) {
            n->no_backend++;
            return XDP_DROP;
        }
        bpf_map_update_elem(&conns6, &f, &c, BPF_ANY);
        struct backend_counts *bc = bpf_map_lookup_elem(&per_backend, &c.slot);
        if (bc)
            bc->connections++;
    }
    struct backend_counts *bc = bpf_map_lookup_elem(&per_backend, &c.slot);
    if (bc)
        bc->packets++;
    __builtin_memcpy(p->eth->h_source, p->eth->h_dest, ETH_ALEN);
    __builtin_memcpy(p->eth->h_dest, b->mac, ETH_ALEN);
    n->forwarded++;
    return XDP_TX;
}

static __always_inline bool is_vip6(const struct ipv6hdr *ip6) {
    const __u32 *d = (const __u32 *)&ip6->daddr;
    return d[0] == vip6[0] && d[1] == vip6[1] && d[2] == vip6[2] && d[3] == vip6[3];
}

/* nat: backend -> balancer: if it belongs to a connection we forwarded, rewrite
 * it back to the client, as if the VIP answered. */
static __always_inline int reply(struct lb_counts *n, struct packet *p,
                                 struct tcphdr *tcp) {
    struct flow f = {p->ip->saddr, p->ip->daddr, tcp->source, tcp->dest};
    struct reply *r = bpf_map_lookup_elem(&replies, &f);
    if (!r) { /* the balancer's own traffic: for its kernel */
        n->passed++;
        return XDP_PASS;
    }
    __builtin_memcpy(p->eth->h_source, p->eth->h_dest, ETH_ALEN);
    __builtin_memcpy(p->eth->h_dest, r->client_mac, ETH_ALEN);
    set_addrs(p->ip, tcp, r->vip, r->client, &tcp->dest, r->client_port);
    n->returned++;
    return XDP_TX;
}

SEC("xdp")
int xdp_lb(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    __u32 zero = 0;
    struct lb_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* never for an array, but the verifier wants the check */
        return XDP_PASS;

    struct packet p;
    struct tcphdr *tcp = NULL;
    /* Only whole, unfragmented IPv4 TCP headers: parse_packet() and parse_tcp()
     * return false/NULL for a frame too short for what its headers claim (the
     * verifier also demands those checks before any read). A later fragment has
     * no TCP header at all; a first one is left to the kernel too. */
    bool ok = parse_packet(&p, data, data_end) && p.l4proto == IPPROTO_TCP;
    if (ok && p.ip && !ipv4_is_fragment(p.ip))
        tcp = parse_tcp(&p.c);
    /* IPv6 with TCP right after its header (extension headers are not walked). */
    if (ok && p.ip6 && dsr && has_vip6 && is_vip6(p.ip6)) {
        tcp = parse_tcp(&p.c);
        if (tcp)
            return forward6(n, &p, tcp);
    }
    if (!tcp || !p.ip) {
        n->passed++;
        return XDP_PASS;
    }
    /* XDP_TX sends the frame back out of this interface. On veth it lands in the
     * peer's XDP receive path, which exists only while the peer has an XDP
     * program of its own (the lab gives the bridge-side end one). */
    if (p.ip->daddr == vip)
        return forward(n, &p, tcp);
    if (!dsr && p.ip->daddr == lb_addr)
        return reply(n, &p, tcp);
    n->passed++;
    return XDP_PASS;
}
