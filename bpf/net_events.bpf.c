/* Step 8 of the talk: how much work does the kernel do per packet? Count the hits
 * on the kernel's net:* tracepoints (the talk ran `perf trace -e 'net:*' ping -c1`)
 * to compare answering pings in the kernel, at TC and at XDP.
 *
 * One small program per tracepoint, all generated from the list below. They are
 * raw tracepoints: the program gets the tracepoint's own arguments (ctx->args[]),
 * and for every event here the first one is the packet, a struct sk_buff *.
 * Events without a packet (the *_exit ones, net_dev_xmit_timeout) are left out:
 * they could not be filtered by namespace, and each _exit mirrors its _entry.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The tracepoints, in one list, each with where its device is: DEV_OF_SKB when
 * only the packet is passed (skb->dev is then the device it is queued on or
 * received by), or the index of the tracepoint's own net_device argument. The
 * transmit events must use theirs: after veth's transmit, skb->dev already names
 * the peer that receives it, and at net_dev_xmit the packet may be freed.
 * Add a line here and everything else follows. */
#define DEV_OF_SKB -1
#define NET_EVENTS(X)                                                                    \
    X(net_dev_queue, DEV_OF_SKB)                                                         \
    X(net_dev_start_xmit, 1)                                                             \
    X(net_dev_xmit, 2)                                                                   \
    X(netif_rx, DEV_OF_SKB)                                                              \
    X(netif_rx_entry, DEV_OF_SKB)                                                        \
    X(netif_receive_skb, DEV_OF_SKB)                                                     \
    X(netif_receive_skb_entry, DEV_OF_SKB)                                               \
    X(netif_receive_skb_list_entry, DEV_OF_SKB)                                          \
    X(napi_gro_receive_entry, DEV_OF_SKB)                                                \
    X(napi_gro_frags_entry, DEV_OF_SKB)

#define AS_INDEX(name, dev_arg) EV_##name,
enum { NET_EVENTS(AS_INDEX) NUM_EVENTS };

/* The names, in index order, for user space: it attaches program on_<name> to
 * tracepoint net:<name> and reads counts[index]. */
#define AS_NAME(name, dev_arg) #name,
const volatile char event_names[NUM_EVENTS][32] = {NET_EVENTS(AS_NAME)};

/* Filters, set before load: only packets on a device in this network namespace
 * (its inode number, as in `ls -i /run/netns/NAME`) and with this ifindex. */
const volatile __u32 target_netns = 0;   /* 0 = every namespace */
const volatile __u32 target_ifindex = 0; /* 0 = every interface */

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY); /* per CPU: no atomics, no contention */
    __uint(max_entries, NUM_EVENTS);
    __type(key, __u32);   /* EV_<name> */
    __type(value, __u64); /* hits */
} counts SEC(".maps");

static __always_inline int count_event(__u32 index, struct bpf_raw_tracepoint_args *ctx,
                                       int dev_arg) {
    if (target_netns || target_ifindex) {
        /* Kernel memory: read it with CO-RE (the offsets differ between kernels). */
        struct net_device *dev;
        if (dev_arg == DEV_OF_SKB)
            dev = BPF_CORE_READ((struct sk_buff *)ctx->args[0], dev);
        else
            dev = (struct net_device *)ctx->args[dev_arg];
        if (!dev)
            return 0;
        if (target_ifindex && BPF_CORE_READ(dev, ifindex) != target_ifindex)
            return 0;
        if (target_netns && BPF_CORE_READ(dev, nd_net.net, ns.inum) != target_netns)
            return 0;
    }
    __u64 *n = bpf_map_lookup_elem(&counts, &index);
    if (n)
        (*n)++;
    return 0;
}

#define AS_PROGRAM(name, dev_arg)                                                        \
    SEC("raw_tracepoint/" #name)                                                         \
    int on_##name(struct bpf_raw_tracepoint_args *ctx) {                                 \
        return count_event(EV_##name, ctx, dev_arg);                                     \
    }
NET_EVENTS(AS_PROGRAM)
