/* Step 2 of the talk: who connects where. A probe on tcp_v4_connect() (and
 * tcp_v6_connect()) reports the process, its addresses and ports.
 *
 * Two ways in, the same facts out (examples/tcpconnect.rs picks one):
 *   - kprobe path: connect_entry remembers the socket when tcp_v*_connect() starts;
 *     connect_exit reads its addresses when it returns (the source port is only
 *     chosen inside the function) along with the return value.
 *   - tracepoint path, for kernels without kprobes: sock:inet_sock_set_state.
 *     A socket enters SYN_SENT in the connecting process (we note who), and leaves
 *     it when the handshake ends (we report where, and whether it worked).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "sock.h"
#include "wakeup.h"
#include "tcpconnect.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Filters, set by user space before load (--pid, --port). `const volatile` puts
 * them in read-only data that the verifier sees as constants: with a filter off,
 * its check is removed from the program entirely. */
const volatile __u32 target_pid = 0;  /* 0 = every process */
const volatile __u16 target_port = 0; /* destination port, 0 = any */

/* One connect_event per connection, to user space. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024); /* bytes: about 2,900 events */
} events SEC(".maps");

/* Counters, one copy per CPU (no atomics needed); Rust adds the copies up. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct connect_counts);
} counts SEC(".maps");

struct connect_event _connect_event =
    {}; /* a global of the type puts it in the skeleton */

/* Connections in flight: who started them, keyed by thread (kprobe path) or by
 * socket address (tracepoint path). */
struct pending {
    struct sock *sk;
    __u32 pid;
    __u32 uid;
    char comm[TASK_COMM_LEN];
};
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 10240); /* concurrent connects we can track */
    __type(key, __u64);         /* thread id, or socket address */
    __type(value, struct pending);
} inflight SEC(".maps");

/* Note the caller of connect() under `key`, unless --pid filters it out. */
static __always_inline void remember(__u64 key, struct sock *sk) {
    __u32 pid = bpf_get_current_pid_tgid() >> 32;
    if (target_pid && pid != target_pid)
        return;
    struct pending p = {.sk = sk, .pid = pid, .uid = (__u32)bpf_get_current_uid_gid()};
    bpf_get_current_comm(p.comm, sizeof(p.comm));
    bpf_map_update_elem(&inflight, &key, &p, BPF_ANY);
}

/* Fill an event from the socket's own fields (CO-RE reads: the layout of struct
 * sock differs between kernels) and send it, unless --port filters it out. */
static __always_inline void report(struct pending *p, int ret) {
    struct sock_common *skc = &p->sk->__sk_common;
    __u16 dport = bpf_ntohs(BPF_CORE_READ(skc, skc_dport));
    if (target_port && dport != target_port)
        return;
    __u32 zero = 0;
    struct connect_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* never for an array, but the verifier wants the check */
        return;
    struct connect_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) { /* full: user space is behind; count it for the summary */
        n->lost++;
        return;
    }
    n->reported++;
    e->ts_ns = bpf_ktime_get_ns();
    e->pid = p->pid;
    e->uid = p->uid;
    e->ret = ret;
    e->family = sock_addrs(skc, e->saddr, e->daddr);
    /* Host order already. 0 after a failed handshake: the port is released before
     * the socket closes. */
    e->sport = BPF_CORE_READ(skc, skc_num);
    e->dport = dport;
    __builtin_memcpy(e->comm, p->comm, sizeof(e->comm));
    /* No wake-up per event: see wakeup.h. */
    bpf_ringbuf_submit(e, wakeup_flags(&events, sizeof(*e)));
}

/* --- kprobe path: attached to tcp_v4_connect and tcp_v6_connect by user space. */

SEC("kprobe")
int BPF_KPROBE(connect_entry, struct sock *sk) {
    remember(bpf_get_current_pid_tgid(), sk);
    return 0;
}

SEC("kretprobe")
int BPF_KRETPROBE(connect_exit, int ret) {
    __u64 tid = bpf_get_current_pid_tgid();
    struct pending *p = bpf_map_lookup_elem(&inflight, &tid);
    if (!p) /* filtered out at entry, or the entry was missed */
        return 0;
    report(p, ret);
    bpf_map_delete_elem(&inflight, &tid);
    return 0;
}

/* --- tracepoint path. */

SEC("tracepoint/sock/inet_sock_set_state")
int connect_state(struct trace_event_raw_inet_sock_set_state *ctx) {
    if (ctx->protocol != IPPROTO_TCP)
        return 0;
    struct sock *sk = (struct sock *)ctx->skaddr;
    __u64 key = (__u64)sk;

    /* CLOSE -> SYN_SENT runs inside connect(), so "current" is the caller. */
    if (ctx->newstate == TCP_SYN_SENT) {
        remember(key, sk);
        return 0;
    }
    /* SYN_SENT -> anything: the handshake is over. ESTABLISHED means it worked;
     * otherwise the reason (see handshake_result() in sock.h). */
    if (ctx->oldstate != TCP_SYN_SENT)
        return 0;
    struct pending *p = bpf_map_lookup_elem(&inflight, &key);
    if (!p)
        return 0;
    int ret = handshake_result(ctx->newstate, sk);
    report(p, ret);
    bpf_map_delete_elem(&inflight, &key);
    return 0;
}
