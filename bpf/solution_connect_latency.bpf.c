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
#include "common.h"
#include "events.h"
#include "solution_connect_latency.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define MAX_INFLIGHT 10240 /* handshakes in progress we can time at once */

/* Set by user space before load (--pid): 0 = every process. */
const volatile __u32 target_pid = 0;

struct latency_event _latency_event = {}; /* exports the type to the skeleton */

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
    struct latency_event *e = reserve_event(sizeof(*e));
    if (e) {
        e->ts_ns = bpf_ktime_get_ns();
        e->latency_ns = e->ts_ns - s->ts_ns;
        e->pid = s->pid;
        /* The socket's own fields, read with CO-RE (struct sock's layout differs
         * between kernels). On failure the kernel has stored the reason in sk_err. */
        struct sock *sk = (struct sock *)ctx->skaddr;
        struct sock_common *skc = &sk->__sk_common;
        e->ret = HANDSHAKE_RESULT(ctx->newstate, sk);
        /* The tracepoint hands us the ports (host order) and family itself. Its
         * address arrays we leave alone: clang may turn copies out of the context
         * into pointer arithmetic on it, which the verifier refuses. */
        e->family = ctx->family;
        e->sport = ctx->sport;
        e->dport = ctx->dport;
        if (ctx->family == AF_INET) {
            bpf_core_read(e->saddr, 4, &skc->skc_rcv_saddr);
            bpf_core_read(e->daddr, 4, &skc->skc_daddr);
        } else {
            bpf_core_read(e->saddr, 16, &skc->skc_v6_rcv_saddr);
            bpf_core_read(e->daddr, 16, &skc->skc_v6_daddr);
        }
        __builtin_memcpy(e->comm, s->comm, sizeof(e->comm));
        bpf_ringbuf_submit(e, 0);
    }
    bpf_map_delete_elem(&inflight, &key);
    return 0;
}
