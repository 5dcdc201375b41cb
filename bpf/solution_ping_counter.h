/* The key of solution_ping_counter.bpf.c's `pings` map: who pinged. Rust reads it
 * as the skeleton's `types::ping_key`. */
#pragma once

struct ping_key {
    __u8 addr[16]; /* the pinger's address, network order; IPv4 in the first 4 */
    __u16 family;  /* AF_INET or AF_INET6 */
    /* Explicit padding: a hash map compares keys byte by byte, so every byte must
     * be set (the program zeroes the whole key before filling it). */
    __u16 pad;
};
