/* Constants from the kernel's C headers that vmlinux.h cannot carry (it has types
 * and enums, not #defines), used by more than one program. */
#pragma once

#define TASK_COMM_LEN 16 /* size of a task's command name, NUL included */
#define AF_INET 2        /* address families, as in sk_family */
#define AF_INET6 10
#define ECONNABORTED 103 /* <errno.h>: a connection closed before it was set up */
