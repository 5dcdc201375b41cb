/* The record solution_tc_drop_port.bpf.c sends for every TCP segment it drops.
 * Rust reads it as the skeleton's `types::drop_event`. */
#pragma once

struct drop_event {
    __u64 ts_ns;    /* bpf_ktime_get_ns() */
    __u16 family;   /* AF_INET or AF_INET6 */
    __u16 sport;    /* host byte order */
    __u16 dport;    /* host byte order */
    __u8 tcp_flags; /* FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, ... */
    __u8 pad;
    __u8 saddr[16]; /* network byte order; IPv4 uses the first 4 bytes */
    __u8 daddr[16];
};
