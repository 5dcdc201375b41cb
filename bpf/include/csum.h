/* Internet checksum, updated incrementally.
 *
 * IPv4, ICMP, ICMPv6 and TCP checksums (TCP's covers a pseudo-header with both IP
 * addresses) are the one's complement of the one's complement sum of the 16-bit
 * words they cover. When one word changes from m to m', RFC 1624
 * (equation 3) gives the new checksum without re-reading the packet:
 *
 *     HC' = ~(~HC + ~m + m')
 *
 * Why it is right: ~HC is the sum of all words; adding ~m removes m (in one's
 * complement arithmetic, adding ~m is subtracting m) and adding m' puts in the new
 * word. Folding the carries back in keeps the result a 16-bit one's complement sum.
 * The sum is the same whatever the byte order, as long as m and m' are read from
 * the packet the way the checksum is stored, so no byte swapping is needed.
 *
 * One corner: one's complement has two zeros. When the new words sum to zero the
 * update yields 0x0000, which is right unless every word is zero (then 0xFFFF is).
 * Only reading the whole message can tell; echo_answerable() in reply.h leaves
 * that single case to the kernel.
 *
 * A 32-bit field (an IPv4 address) is two such words: xdp_lb.bpf.c's
 * csum_replace4() updates for each half in turn.
 */
#pragma once

#include "vmlinux.h"

static __always_inline void csum_replace2(__sum16 *sum, __u16 old, __u16 new) {
    __u32 s = (__u16) ~*sum;
    s += (__u16)~old;
    s += new;
    s = (s & 0xFFFF) + (s >> 16); /* fold the carries in (twice is always enough) */
    s = (s & 0xFFFF) + (s >> 16);
    *sum = ~s;
}

/* Set the type of an ICMP or ICMPv6 header in place and update its checksum for
 * the one 16-bit word that changed (type and code share it). */
static __always_inline void icmp_set_type(__u8 *type, __sum16 *csum, __u8 new_type) {
    __u16 old_word = *(__u16 *)type;
    *type = new_type;
    csum_replace2(csum, old_word, *(__u16 *)type);
}
