/* Reading a TCP socket from a tracing program: struct sock is kernel memory whose
 * layout differs between kernels, so every field is read with CO-RE. */
#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "common.h"

/* Copy a socket's local and remote addresses into 16-byte arrays (IPv4 fills the
 * first 4 bytes, network byte order) and return its family, AF_INET or AF_INET6.
 * bpf_core_read(dst, size, src) copies `size` bytes of a kernel field. */
static __always_inline __u16 sock_addrs(struct sock_common *skc, __u8 saddr[16],
                                        __u8 daddr[16]) {
    __u16 family = BPF_CORE_READ(skc, skc_family);
    if (family == AF_INET) {
        bpf_core_read(saddr, 4, &skc->skc_rcv_saddr);
        bpf_core_read(daddr, 4, &skc->skc_daddr);
    } else {
        bpf_core_read(saddr, 16, &skc->skc_v6_rcv_saddr);
        bpf_core_read(daddr, 16, &skc->skc_v6_daddr);
    }
    return family;
}

/* How a TCP handshake that left SYN_SENT ended, as 0 or -errno: the kernel stores
 * the reason for a failure in sk_err (ECONNREFUSED, ETIMEDOUT...); a socket
 * closed before any answer has none, so call that an abort. */
static __always_inline int handshake_result(int newstate, struct sock *sk) {
    if (newstate == TCP_ESTABLISHED)
        return 0;
    int err = BPF_CORE_READ(sk, sk_err);
    return err ? -err : -ECONNABORTED;
}
