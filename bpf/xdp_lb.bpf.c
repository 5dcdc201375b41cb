/* The capstone: a load balancer in XDP, built from xdp_pingpong's moves (rewrite
 * a frame in place, send it back out with XDP_TX).
 *
 * Clients connect to a virtual address, the VIP, which the balancer owns. For
 * each new TCP connection to the VIP the program picks a backend by a hash of the
 * connection's addresses and ports, and from then on rewrites every packet of it:
 *
 *   client -> VIP        becomes   balancer -> backend    (forward)
 *   backend -> balancer  becomes   VIP -> client          (reply)
 *
 * Both directions leave the way they came, with XDP_TX: on one Ethernet segment
 * the balancer only has to put the right MAC addresses on the frame. The kernel
 * of the balancer never sees these packets; the backends see the balancer as
 * their client (full NAT), so their replies come back through it. The client
 * port is kept, so the backend's reply says which connection it belongs to.
 *
 * State: `conns` remembers each connection's backend (so one connection always
 * reaches the same backend, even after the backend list changes) and `replies`
 * finds the client again for a backend's reply. Both are LRU maps: when full,
 * the least recently used entry makes room, so they cannot grow without bound.
 *
 * IPv4 and TCP only; everything else goes to the kernel untouched.
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
const volatile __be32 vip = 0;     /* the address clients connect to */
const volatile __be32 lb_addr = 0; /* the balancer's own address: the backends' client */
const volatile bool report_connections = true; /* --quiet sets it false */

/* The backends, one slot each, written by user space: at start from --backend,
 * and while running when a backend is added or removed (`live`). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAX_BACKENDS);
    __type(key, __u32);            /* slot */
    __type(value, struct backend); /* address, MAC, live */
} backends SEC(".maps");

/* Which slots are live, as one list: user space rewrites it with the backends. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct live_set);
} live SEC(".maps");

/* A TCP connection as the packets on the wire name it. */
struct flow {
    __be32 saddr;
    __be32 daddr;
    __be16 sport;
    __be16 dport;
};

/* Forward state: client -> VIP connection to its backend's slot. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536); /* connections remembered; the oldest unused go first */
    __type(key, struct flow);   /* client, VIP, client port, VIP port */
    __type(value, __u32);       /* slot in `backends` */
} conns SEC(".maps");

/* How to send a backend's reply back to the client. */
struct reply {
    __be32 client;      /* becomes the destination again */
    __be32 vip;         /* becomes the source again: the client talks to the VIP */
    __u8 client_mac[6]; /* where the client's frames came from */
    __u16 _pad;
    __u32 slot; /* the backend, for the counters */
};

/* Reply state, filled by the forward path: backend -> balancer to the client. */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, struct flow); /* backend, balancer, VIP port, client port */
    __type(value, struct reply);
} replies SEC(".maps");

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

struct lb_event _lb_event = {}; /* a global of the type puts it in the skeleton */

/* Mix 32 bits well (MurmurHash3's finaliser): client ports often differ in a few
 * bits only (Linux prefers even ones), and `% live` must not see that pattern. */
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

/* Pick a live backend for a new connection with hash h: the (h % count)-th of the
 * live slots, a list user space keeps in `live`. Removing a backend changes the
 * choice for new connections only; old ones are in `conns`. No loop over the
 * backends here: older verifiers (6.1) give up on a loop that branches on map
 * values ("The sequence of 8193 jumps is too complex"). Returns MAX_BACKENDS when
 * no backend is live. */
/* User space rewrites `live` while packets arrive, and an update is not atomic: a SYN
 * may read a half-written list for an instant. Every slot number in it is still a
 * real backend (old or new list), and the mask keeps the read in bounds. */
static __always_inline __u32 pick_backend(__u32 h) {
    __u32 zero = 0;
    struct live_set *ls = bpf_map_lookup_elem(&live, &zero);
    if (!ls || ls->count == 0 || ls->count > MAX_BACKENDS)
        return MAX_BACKENDS;
    __u32 i = h % ls->count;
    /* i < count <= MAX_BACKENDS, and the mask (MAX_BACKENDS is a power of two)
     * proves it to the verifier. But clang knows it already and would drop the
     * mask as useless: barrier_var() makes clang forget what it knows about i. */
    barrier_var(i);
    return ls->slot[i & (MAX_BACKENDS - 1)];
}

static __always_inline bool is_syn(const struct tcphdr *tcp) {
    return tcp->syn && !tcp->ack; /* the first packet of a connection */
}

/* Rewrite the IP addresses and fix both checksums. The TCP checksum covers a
 * pseudo-header with both addresses, so it changes with them (RFC 1624, csum.h). */
static __always_inline void set_addrs(struct iphdr *ip, struct tcphdr *tcp, __be32 saddr,
                                      __be32 daddr) {
    csum_replace4(&ip->check, ip->saddr, saddr);
    csum_replace4(&ip->check, ip->daddr, daddr);
    csum_replace4(&tcp->check, ip->saddr, saddr);
    csum_replace4(&tcp->check, ip->daddr, daddr);
    ip->saddr = saddr;
    ip->daddr = daddr;
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

/* client -> VIP: find (or pick) the backend, rewrite towards it. */
static __always_inline int forward(struct lb_counts *n, struct packet *p,
                                   struct tcphdr *tcp) {
    struct flow f = {p->ip->saddr, p->ip->daddr, tcp->source, tcp->dest};
    struct backend *b = NULL;
    __u32 *known = bpf_map_lookup_elem(&conns, &f);
    __u32 slot = known ? *known : MAX_BACKENDS;
    if (slot < MAX_BACKENDS)
        b = bpf_map_lookup_elem(&backends, &slot);
    /* A known connection keeps its backend, even one removed since (its
     * connections drain); only a new connection (a SYN) must find a live one. */
    if (!b || (is_syn(tcp) && !b->live)) {
        slot = pick_backend(flow_hash(&f));
        b = slot < MAX_BACKENDS ? bpf_map_lookup_elem(&backends, &slot) : NULL;
        if (!b) {
            n->no_backend++;
            return XDP_DROP; /* try XDP_PASS: the balancer's kernel then refuses it */
        }
        /* The backend will answer the balancer, from the VIP's port to the
         * client's port: that is the reply's key. Another client using the same
         * port towards the same backend would make replies ambiguous; a real
         * balancer would then pick another source port, we refuse. Entries are not
         * removed when a connection ends (no FIN/RST tracking here): a port stays
         * taken by its last client until the LRU map evicts the entry. */
        struct flow back = {b->addr, lb_addr, f.dport, f.sport};
        struct reply *old = bpf_map_lookup_elem(&replies, &back);
        if (old && old->client != f.saddr) {
            n->collisions++;
            return XDP_DROP;
        }
        struct reply r = {.client = f.saddr, .vip = f.daddr, .slot = slot};
        __builtin_memcpy(r.client_mac, p->eth->h_source, ETH_ALEN);
        bpf_map_update_elem(&replies, &back, &r, BPF_ANY);
        bpf_map_update_elem(&conns, &f, &slot, BPF_ANY);
        struct backend_counts *bc = bpf_map_lookup_elem(&per_backend, &slot);
        if (bc)
            bc->connections++;
        if (report_connections)
            report(n, &f, b->addr, slot);
    }
    struct backend_counts *bc = bpf_map_lookup_elem(&per_backend, &slot);
    if (bc)
        bc->packets++;

    /* The frame came addressed to us: we become its sender, the backend its
     * receiver, on the same Ethernet segment. */
    __builtin_memcpy(p->eth->h_source, p->eth->h_dest, ETH_ALEN);
    __builtin_memcpy(p->eth->h_dest, b->mac, ETH_ALEN);
    set_addrs(p->ip, tcp, lb_addr, b->addr);
    n->forwarded++;
    return XDP_TX;
}

/* backend -> balancer: if it belongs to a connection we forwarded, rewrite it
 * back to the client, as if the VIP answered. */
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
    set_addrs(p->ip, tcp, r->vip, r->client);
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
    if (parse_packet(&p, data, data_end) && p.ip && p.l4proto == IPPROTO_TCP &&
        !ipv4_is_fragment(p.ip))
        tcp = parse_tcp(&p.c);
    if (!tcp) {
        n->passed++;
        return XDP_PASS;
    }
    /* XDP_TX sends the frame back out of this interface. On veth it lands in the
     * peer's XDP receive path, which exists only while the peer has an XDP
     * program of its own (the lab gives the bridge-side end one). */
    if (p.ip->daddr == vip)
        return forward(n, &p, tcp);
    if (p.ip->daddr == lb_addr)
        return reply(n, &p, tcp);
    n->passed++;
    return XDP_PASS;
}
