/* Constants from the kernel's C headers that vmlinux.h cannot carry (it has types
 * and enums, not #defines), used by more than one program. */
#pragma once

#define TASK_COMM_LEN 16 /* size of a task's command name, NUL included */
#define AF_INET 2        /* address families, as in sk_family */
#define AF_INET6 10
#define ECONNABORTED 103 /* <errno.h>: a connection closed before it was set up */

/* How a TCP handshake that left SYN_SENT ended, as 0 or -errno: the kernel stores
 * the reason for a failure in sk_err (ECONNREFUSED, ETIMEDOUT...); a socket
 * closed before any answer has none, so call that an abort. */
#define HANDSHAKE_RESULT(newstate, sk)                                                   \
    ((newstate) == TCP_ESTABLISHED ? 0                                                   \
     : BPF_CORE_READ(sk, sk_err)   ? -BPF_CORE_READ(sk, sk_err)                          \
                                   : -ECONNABORTED)
