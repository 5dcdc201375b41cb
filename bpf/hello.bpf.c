/* Step 1 of the talk: run a program every time any process calls execve().
 *
 * Two entry points do the same work, because kernels differ:
 *   - hello_ksyscall: a kprobe on the execve syscall, as in the talk. Needs
 *     CONFIG_KPROBES, which most distribution kernels have.
 *   - hello_tracepoint: the stable syscalls:sys_enter_execve tracepoint, for
 *     kernels without kprobes.
 * User space attaches one of them (see examples/hello.rs).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "wakeup.h"
#include "hello.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The ring buffer that carries one exec_event per execve to user space. */
struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    /* Bytes, a power of two and a multiple of the page size. 1 MiB holds 5,957 of
     * our 168-byte events (176 with each record's 8-byte header); raise it if the
     * exit summary reports losses. */
    __uint(max_entries, 1 << 20);
} events SEC(".maps");

/* Counters, one copy per CPU (no atomics needed); Rust adds the copies up. */
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct exec_counts);
} counts SEC(".maps");

/* A global of the event type makes it part of the skeleton, so Rust gets the
 * exact same layout as `types::exec_event` (no hand-copied struct to drift). */
struct exec_event _exec_event = {};

static __always_inline int say_hello(const char *filename) {
    /* The talk's one-liner. Output goes to /sys/kernel/tracing/trace_pipe:
     * `make trace` or `hello --printk` shows it. */
    bpf_printk("I'm alive!");

    __u32 zero = 0;
    struct exec_counts *n = bpf_map_lookup_elem(&counts, &zero);
    if (!n) /* never for an array, but the verifier wants the check */
        return 0;
    n->execs++;

    /* Reserve room in the ring buffer. NULL means it is full: user space reads
     * slower than execs happen. Count the loss, so the summary can say so. */
    struct exec_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        n->lost++;
        return 0;
    }

    /* The current task's parent is a kernel struct: read it with CO-RE so the
     * field offsets are fixed up for whatever kernel loads this program. */
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    e->ts_ns = bpf_ktime_get_ns();
    e->pid = bpf_get_current_pid_tgid() >> 32; /* upper half: tgid = pid */
    e->ppid = BPF_CORE_READ(task, real_parent, tgid);
    e->uid = (__u32)bpf_get_current_uid_gid(); /* lower half: uid */
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    /* filename points into the caller's memory: copy it with the _user helper. */
    bpf_probe_read_user_str(e->filename, sizeof(e->filename), filename);

    /* Hand it over. The verifier checks that every reserved record is submitted
     * (or discarded). No wake-up per event: see wakeup.h for why. */
    bpf_ringbuf_submit(e, wakeup_flags(&events, sizeof(*e)));
    return 0; /* a kprobe's return value is ignored */
}

/* BPF_KSYSCALL unpacks the syscall's arguments portably across architectures. */
SEC("ksyscall/execve")
int BPF_KSYSCALL(hello_ksyscall, const char *filename) {
    return say_hello(filename);
}

/* The tracepoint hands us the raw syscall arguments: args[0] is the filename. */
SEC("tracepoint/syscalls/sys_enter_execve")
int hello_tracepoint(struct trace_event_raw_sys_enter *ctx) {
    return say_hello((const char *)ctx->args[0]);
}
