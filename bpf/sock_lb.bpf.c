/* Load balancing in connect(): no packet is ever rewritten.
 *
 * xdp_lb rewrites every packet of a connection, both ways, on a balancer in the
 * data path. Here the client's own kernel does the job once per connection: a
 * cgroup/connect4 program runs inside connect() (before the kernel looks up a
 * route or sends a SYN) and changes the address the application asked for, the
 * service address, into one live backend. The socket is then an ordinary
 * connection to that backend: its SYN, its packets and its replies carry the
 * backend's address, and the service address never appears on the wire. No host
 * owns it; nobody has to.
 *
 * The application must not notice: getpeername() would return the backend, so a
 * cgroup/getpeername4 program puts the service address back, for the sockets
 * this program balanced (remembered by socket cookie). The same pair for IPv6.
 *
 * These programs run for the processes of one cgroup (and its children), in any
 * network namespace. TCP only: a UDP service would need sendmsg4 (unconnected
 * sends) and recvmsg4 (the source address of replies) as well.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "wakeup.h"
#include "sock_lb.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define SOCK_STREAM 1 /* <linux/net.h>: TCP's socket type */
#define ALLOW 1       /* what a cgroup sock_addr program returns to let the call go on */
#define REFUSE 0      /* connect() fails with EPERM */

/* Set by user space before load, network byte order: the service address. One
 * family per run: the other's address stays zero and matches nothing. */
const volatile __u32 vip4 = 0;
const volatile __u32 vip6[4] = {};
const volatile __u16 vip_port = 0;
const volatile bool report_connections = true; /* --quiet sets it false */
/* bpf_get_current_pid_tgid() and _comm() exist for cgroup hooks from Linux 6.1;
 * user space asks the kernel and sets this. False: the calls below are dead code,
 * which the verifier skips (the value is a constant once loaded). */
const volatile bool has_pid = false;

/* The backends, one slot each, written by user space: at start from --backend,
 * and while running when a backend is added or removed (`live`). */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAX_BACKENDS);
    __type(key, __u32);            /* slot */
    __type(value, struct backend); /* address, port, live */
} backends SEC(".maps");

/* Which slots are live, as one list: user space rewrites it with the backends. */
struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct live_set);
} live SEC(".maps");

/* Round robin, one turn counter per CPU: no lock and no atomic operation, and
 * each CPU alternates over the live backends on its own. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32); /* the next turn */
} turn SEC(".maps");

/* The sockets we balanced: socket cookie -> the backend it was sent to, for
 * getpeername(). An LRU map: entries of closed sockets are pushed out by new
 * ones (a cookie is never reused, so a stale entry matches nothing). */
struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);            /* bpf_get_socket_cookie() */
    __type(value, struct backend); /* where connect() went: address, port */
} balanced SEC(".maps");

/* Reports for user space, one struct lb_event per balanced connect(). */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 18); /* bytes: 5,461 reports of 40 + 8 bytes */
} events SEC(".maps");
struct lb_event _lb_event = {}; /* a global of the type puts it in the skeleton */

/* Connections per backend, one copy per CPU (key = slot). */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, MAX_BACKENDS);
    __type(key, __u32);
    __type(value, __u64);
} per_backend SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct lb_counts);
} counts SEC(".maps");

/* The next live backend, round robin; NULL when none is live. */
static __always_inline struct backend *pick(__u32 *slot) {
    __u32 zero = 0;
    struct live_set *set = bpf_map_lookup_elem(&live, &zero);
    __u32 *next = bpf_map_lookup_elem(&turn, &zero);
    if (!set || !next || set->count == 0)
        return NULL;
    __u32 i = (*next)++ % set->count;
    if (i >= MAX_BACKENDS) /* always false, but the verifier wants the bound */
        return NULL;
    *slot = set->slot[i];
    return bpf_map_lookup_elem(&backends, slot);
}

static __always_inline void report(struct bpf_sock_addr *ctx, __u64 cookie, __u32 slot,
                                   struct lb_counts *n) {
    __u64 *conns = bpf_map_lookup_elem(&per_backend, &slot);
    if (conns)
        *conns += 1;
    if (!report_connections)
        return;
    struct lb_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        n->lost++;
        return;
    }
    e->ts_ns = bpf_ktime_get_ns();
    e->cookie = cookie;
    e->uid = (__u32)bpf_get_current_uid_gid();
    e->slot = slot;
    e->pid = 0;
    __builtin_memset(e->comm, 0, sizeof(e->comm));
    if (has_pid) {
        e->pid = bpf_get_current_pid_tgid() >> 32;
        bpf_get_current_comm(e->comm, sizeof(e->comm));
    }
    bpf_ringbuf_submit(e, wakeup_flags(&events, sizeof(*e)));
}

/* Both families: the address has been compared with the service already. The
 * port and (IPv4) ip4 or (IPv6) ip6 of ctx are what connect() will use. */
static __always_inline int balance(struct bpf_sock_addr *ctx, bool v6) {
    __u32 zero = 0, slot = 0;
    struct lb_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n)
        return ALLOW;
    struct backend *b = pick(&slot);
    if (!b) {
        n->no_backend++;
        return REFUSE; /* try ALLOW: connect() then goes to the service address itself */
    }
    /* The rewrite: from here on the kernel connects to the backend. ctx's fields
     * are the struct sockaddr the application passed; the program may write them. */
    if (v6) {
        ctx->user_ip6[0] = b->addr[0];
        ctx->user_ip6[1] = b->addr[1];
        ctx->user_ip6[2] = b->addr[2];
        ctx->user_ip6[3] = b->addr[3];
    } else {
        ctx->user_ip4 = b->addr[0];
    }
    ctx->user_port = b->port;
    /* Remember it for getpeername(). The cookie is the socket's, made on first use. */
    __u64 cookie = bpf_get_socket_cookie(ctx);
    bpf_map_update_elem(&balanced, &cookie, b, BPF_ANY);
    report(ctx, cookie, slot, n);
    return ALLOW;
}

SEC("cgroup/connect4")
int sock_lb_connect4(struct bpf_sock_addr *ctx) {
    /* user_port is a __u32 field holding a network-order 16-bit port. */
    if (ctx->type != SOCK_STREAM || ctx->user_ip4 != vip4 || ctx->user_port != vip_port)
        return ALLOW; /* not the service: connect() as asked */
    return balance(ctx, false);
}

SEC("cgroup/connect6")
int sock_lb_connect6(struct bpf_sock_addr *ctx) {
    if (ctx->type != SOCK_STREAM || ctx->user_port != vip_port ||
        ctx->user_ip6[0] != vip6[0] || ctx->user_ip6[1] != vip6[1] ||
        ctx->user_ip6[2] != vip6[2] || ctx->user_ip6[3] != vip6[3])
        return ALLOW;
    return balance(ctx, true);
}

/* getpeername(): ctx holds the peer the kernel is about to return, the backend.
 * For a socket we balanced, put the service address back. These hooks must
 * return ALLOW (1): getpeername() cannot be refused. */
SEC("cgroup/getpeername4")
int sock_lb_getpeername4(struct bpf_sock_addr *ctx) {
    __u64 cookie = bpf_get_socket_cookie(ctx);
    struct backend *b = bpf_map_lookup_elem(&balanced, &cookie);
    if (b && ctx->user_ip4 == b->addr[0] && ctx->user_port == b->port) {
        ctx->user_ip4 = vip4;
        ctx->user_port = vip_port;
    }
    return ALLOW;
}

SEC("cgroup/getpeername6")
int sock_lb_getpeername6(struct bpf_sock_addr *ctx) {
    __u64 cookie = bpf_get_socket_cookie(ctx);
    struct backend *b = bpf_map_lookup_elem(&balanced, &cookie);
    if (b && ctx->user_port == b->port && ctx->user_ip6[0] == b->addr[0] &&
        ctx->user_ip6[1] == b->addr[1] && ctx->user_ip6[2] == b->addr[2] &&
        ctx->user_ip6[3] == b->addr[3]) {
        ctx->user_ip6[0] = vip6[0];
        ctx->user_ip6[1] = vip6[1];
        ctx->user_ip6[2] = vip6[2];
        ctx->user_ip6[3] = vip6[3];
        ctx->user_port = vip_port;
    }
    return ALLOW;
}
