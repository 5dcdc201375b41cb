/* Exercise solution: how long does a TCP handshake take?
 *
 * One tracepoint, sock:inet_sock_set_state, fires on every TCP state change:
 *   - CLOSE -> SYN_SENT happens inside connect(): the SYN is about to go out. We
 *     remember the time and the caller, keyed by the socket's address.
 *   - SYN_SENT -> anything is the end of the handshake: ESTABLISHED when the
 *     SYN-ACK came back, CLOSE when it was refused or timed out. The difference
 *     of the two timestamps is the connect latency (about one round trip).
 * A tracepoint is a stable interface, unlike the kprobes of bcc's tcpconnlat
 * (tcp_v4_connect + tcp_rcv_state_process), and works on kernels without kprobes.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "sock.h"
#include "wakeup.h"
#include "solution_connect_latency.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_INFLIGHT 10240 /* handshakes in progress we can time at once */

/* Set by user space before load (--pid): 0 = every process. */
const volatile __u32 target_pid = 0;

/* One latency_event per finished handshake, to user space. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024); /* bytes */
} events SEC(".maps");

/* Events that found the ring buffer full, one count per CPU. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} lost_events SEC(".maps");

struct latency_event _latency_event =
    {}; /* a global of the type puts it in the skeleton */

/* A handshake in progress: when it started and who started it. */
struct start {
    __u64 ts_ns;
    __u32 pid;
    char comm[TASK_COMM_LEN];
};
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, MAX_INFLIGHT);
    __type(key, __u64);          /* the socket's address (struct sock *) */
    __type(value, struct start); /* removed when the handshake ends */
} inflight SEC(".maps");

SEC("tracepoint/sock/inet_sock_set_state")
int connect_latency(struct trace_event_raw_inet_sock_set_state *ctx) {
    if (ctx->protocol != IPPROTO_TCP)
        return 0;
    __u64 key = (__u64)ctx->skaddr;

    if (ctx->newstate == TCP_SYN_SENT) {
        /* Inside connect(): "current" is the process that called it. */
        __u32 pid = bpf_get_current_pid_tgid() >> 32;
        if (target_pid && pid != target_pid)
            return 0;
        struct start s = {.ts_ns = bpf_ktime_get_ns(), .pid = pid};
        bpf_get_current_comm(s.comm, sizeof(s.comm));
        bpf_map_update_elem(&inflight, &key, &s, BPF_ANY);
        return 0;
    }
    if (ctx->oldstate != TCP_SYN_SENT)
        return 0;

    /* Leaving SYN_SENT. This usually runs in softirq context, on behalf of whatever
     * process the CPU was running: that is why the caller was noted at the start. */
    struct start *s = bpf_map_lookup_elem(&inflight, &key);
    if (!s) /* filtered out by --pid, or started before we attached */
        return 0;
    struct latency_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        __u32 zero = 0;
        __u64 *lost = bpf_map_lookup_elem(&lost_events, &zero);
        if (lost)
            (*lost)++;
    } else {
        e->ts_ns = bpf_ktime_get_ns();
        e->latency_ns = e->ts_ns - s->ts_ns;
        e->pid = s->pid;
        /* The socket's own fields, read with CO-RE (struct sock's layout differs
         * between kernels). On failure the kernel has stored the reason in sk_err. */
        struct sock *sk = (struct sock *)ctx->skaddr;
        struct sock_common *skc = &sk->__sk_common;
        e->ret = handshake_result(ctx->newstate, sk);
        /* The tracepoint hands us the ports (host order) and family itself. Its
         * address arrays we leave alone: clang may turn copies out of the context
         * into pointer arithmetic on it, which the verifier refuses. */
        e->family = ctx->family;
        e->sport = ctx->sport;
        e->dport = ctx->dport;
        sock_addrs(skc, e->saddr, e->daddr);
        __builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
        bpf_ringbuf_submit(e, wakeup_flags(&events, sizeof(*e)));
    }
    bpf_map_delete_elem(&inflight, &key);
    return 0;
}
