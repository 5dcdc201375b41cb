/* Local TCP without the TCP/IP stack between the two ends: what Cilium and
 * Merbridge do for the hop between an application and its proxy on the same host.
 *
 * Two programs and a socket map:
 * - track_sockets (BPF_PROG_TYPE_SOCK_OPS), attached to a cgroup v2 directory, runs at
 *   points of the life of every TCP socket of the cgroup's processes. When a
 *   connection is established it puts the socket into sock_map, keyed by its
 *   4-tuple: both ends, the connecting one and the accepting one, each under its
 *   own key. It asks for state callbacks, to see the close.
 * - redirect_msg (BPF_PROG_TYPE_SK_MSG), attached to sock_map itself, runs for every
 *   sendmsg() on a socket of the map. It builds the key of the socket at the other
 *   end of the connection (its 4-tuple, turned around) and asks the kernel to put
 *   the message straight into that socket's receive queue: no TCP segment, no IP
 *   packet, no loopback device, no softirq. When the other end is not in the map
 *   (it is outside the cgroup, or on another host), the message goes by TCP.
 *
 * A socket map holds sockets, not values: user space can list its keys (and
 * delete), but the lookup that counts is the kernel's, by bpf_msg_redirect_hash().
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "common.h"
#include "wakeup.h"
#include "sockmap.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_SOCKETS 65536 /* entries of the socket map: two per connection */

/* The sockets of the cgroup's established TCP connections, by their 4-tuple. A
 * SOCKHASH (not a SOCKMAP, which is an array indexed 0..N) because we look a
 * socket up by what we know of it: its addresses and ports. */
struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, MAX_SOCKETS);
    __type(key, struct sock_key);
    __type(value, __u64); /* the socket: user space reads its cookie here */
} sock_map SEC(".maps");

/* A report per socket added, one struct sock_event each. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20); /* bytes: 14,563 reports of 64 + 8 */
} events SEC(".maps");

/* The counters, one copy per CPU, so that CPUs do not fight over a cache line.
 * Still added to atomically (COUNT): on one CPU, a sock_ops run in softirq may
 * interrupt one in a process, and on a preemptible kernel one sendmsg() may preempt
 * another; a plain `+=` would lose counts. Uncontended, the atomic add costs a few
 * nanoseconds. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct sockmap_counts);
} counts SEC(".maps");

/* Globals of the types put them in the skeleton, for Rust. */
struct sock_event _sock_event = {};

#define COUNT(field, value) __sync_fetch_and_add(&(field), (value))

static __always_inline struct sockmap_counts *counters(void) {
    __u32 zero = 0;
    return bpf_map_lookup_elem(&counts, &zero);
}

/* An IPv4 address as the IPv4-mapped IPv6 address ::ffff:a.b.c.d, so that one key
 * layout holds both families, and an IPv4 client of a dual-stack (IPv6) server
 * finds it: the server's socket is AF_INET6 and sees the client as ::ffff:a.b.c.d. */
static __always_inline void v4_mapped(__u32 ip[4], __u32 ip4) {
    ip[0] = 0;
    ip[1] = 0;
    ip[2] = bpf_htonl(0xffff);
    ip[3] = ip4;
}

/* A socket's 4-tuple, seen from that socket (local first). `ctx` is a struct
 * bpf_sock_ops or a struct sk_msg_md: both have these fields, with the same
 * meaning, so one macro serves both (a function would need one per type).
 *
 * The byte orders, the classic pitfall, the same in both structs:
 * - the addresses are in network order, as in the packet;
 * - local_port is in host order (port 80 reads 80);
 * - remote_port is in network order, and the kernel loads the 16-bit port into the
 *   32-bit field shifted left by 16 on little-endian machines: port 80 (bytes 00 50)
 *   reads 0x50000000. bpf_ntohl() of that is 80 on either endianness, so it is what
 *   we store. (Some newer context fields, like bpf_sock's dst_port, were later made
 *   16 bits wide; these two are still 32-bit fields in the old layout.)
 *
 * Each field is read once, as a 32-bit load, through CTX: the kernel rewrites
 * every context access at load time, so it must be ctx + a constant. Left alone,
 * clang moves the loads into the `if` and merges the two branches' loads into one
 * through a pointer that is ctx + 20 or ctx + 24, which the verifier refuses
 * ("dereference of modified ctx ptr"); barrier_var() pins each value where it is
 * read. */
#define CTX(field)                                                                       \
    ({                                                                                   \
        __u32 v = (field);                                                               \
        barrier_var(v);                                                                  \
        v;                                                                               \
    })
#define READ_TUPLE(ctx, k)                                                               \
    do {                                                                                 \
        __u32 local4 = CTX((ctx)->local_ip4), remote4 = CTX((ctx)->remote_ip4);          \
        if (CTX((ctx)->family) == AF_INET) {                                             \
            v4_mapped((k)->local_ip, local4);                                            \
            v4_mapped((k)->remote_ip, remote4);                                          \
        } else {                                                                         \
            (k)->local_ip[0] = CTX((ctx)->local_ip6[0]);                                 \
            (k)->local_ip[1] = CTX((ctx)->local_ip6[1]);                                 \
            (k)->local_ip[2] = CTX((ctx)->local_ip6[2]);                                 \
            (k)->local_ip[3] = CTX((ctx)->local_ip6[3]);                                 \
            (k)->remote_ip[0] = CTX((ctx)->remote_ip6[0]);                               \
            (k)->remote_ip[1] = CTX((ctx)->remote_ip6[1]);                               \
            (k)->remote_ip[2] = CTX((ctx)->remote_ip6[2]);                               \
            (k)->remote_ip[3] = CTX((ctx)->remote_ip6[3]);                               \
        }                                                                                \
        (k)->local_port = CTX((ctx)->local_port);              /* host order already */  \
        (k)->remote_port = bpf_ntohl(CTX((ctx)->remote_port)); /* see above */           \
    } while (0)

/* Tell user space about a socket put into the map. */
static __always_inline void report_added(struct bpf_sock_ops *skops,
                                         struct sockmap_counts *n, struct sock_key *key,
                                         bool passive) {
    struct sock_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) { /* the ring is full: user space is behind; count it */
        COUNT(n->lost, 1);
        return;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->cookie = bpf_get_socket_cookie(skops);
    e->key = *key;
    e->family = skops->family;
    e->passive = passive;
    /* No wake-up per report (wakeup.h): 1,000 connections a second must not cost
     * 2,000 wake-ups. */
    bpf_ringbuf_submit(e, wakeup_flags(&events, sizeof(*e)));
}

/* SOCK_OPS: called with skops->op saying what happens to a TCP socket of the
 * cgroup. No pid in the report: the established callbacks run when the handshake's
 * packet arrives, in softirq, on behalf of whichever process happened to run (on
 * loopback, often the connecting one, for both ends). */
SEC("sockops")
int track_sockets(struct bpf_sock_ops *skops) {
    struct sock_key key = {};
    struct sockmap_counts *n = counters();
    if (!n) /* never for an array, but the verifier wants the check */
        return 1;
    /* Only TCP sockets reach this hook. */
    if (skops->family != AF_INET && skops->family != AF_INET6)
        return 1;

    switch (skops->op) {
    case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:  /* connect() got its SYN-ACK */
    case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB: /* the accepted socket got its ACK */
        READ_TUPLE(skops, &key);
        /* Put this socket into the map under its own 4-tuple. From now on the
         * kernel runs `redirect_msg` for every sendmsg() on it, and its recvmsg() also
         * reads what other sockets redirect to it. */
        if (bpf_sock_hash_update(skops, &sock_map, &key, BPF_NOEXIST)) {
            /* The map is full: this socket goes the normal way. */
            COUNT(n->add_failed, 1);
            return 1;
        }
        COUNT(n->added, 1);
        /* Ask for BPF_SOCK_OPS_STATE_CB from now on, to see the close. */
        bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
                                             BPF_SOCK_OPS_STATE_CB_FLAG);
        report_added(skops, n, &key, skops->op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB);
        break;
    case BPF_SOCK_OPS_STATE_CB: /* args[0]: the old TCP state, args[1]: the new */
        if (skops->args[1] != BPF_TCP_CLOSE)
            break;
        /* Out of the map. After close() the kernel has already done it (the map
         * takes over a socket's close and unhash when the socket goes in), so this
         * finds nothing; a reset or a timeout ends here first. */
        READ_TUPLE(skops, &key);
        bpf_map_delete_elem(&sock_map, &key);
        COUNT(n->closed, 1);
        break;
    }
    return 1; /* sock_ops programs return 1; the value is ignored for these ops */
}

/* SK_MSG: called for each message that a socket of the map sends (a sendmsg(),
 * write() or send(); a large one in pieces). */
SEC("sk_msg")
int redirect_msg(struct sk_msg_md *msg) {
    struct sock_key peer = {}, mine = {};
    struct sockmap_counts *n = counters();
    if (!n)
        return SK_PASS;
    /* The peer's key is ours turned around: its local end is our remote one. */
    READ_TUPLE(msg, &mine);
    __builtin_memcpy(peer.local_ip, mine.remote_ip, sizeof(peer.local_ip));
    __builtin_memcpy(peer.remote_ip, mine.local_ip, sizeof(peer.remote_ip));
    peer.local_port = mine.remote_port;
    peer.remote_port = mine.local_port;

    __u32 size = msg->size;
    /* BPF_F_INGRESS: onto the peer's receive queue, as if it had arrived (without
     * it, out of the peer's send queue, to the peer's own peer: a proxy's splice).
     * The helper returns SK_PASS when it found the socket and SK_DROP when not; we
     * return SK_PASS either way: redirected, or sent by TCP as usual. Return
     * SK_DROP instead and a send to anyone outside the map fails with EACCES. */
    if (bpf_msg_redirect_hash(msg, &sock_map, &peer, BPF_F_INGRESS) == SK_PASS) {
        COUNT(n->redirected_msgs, 1);
        COUNT(n->redirected_bytes, size);
    } else {
        COUNT(n->passed_msgs, 1);
        COUNT(n->passed_bytes, size);
    }
    return SK_PASS;
}
