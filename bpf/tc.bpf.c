/* Step 6 of the talk: a traffic-control (TC) ingress filter. It runs a little later
 * than XDP: the kernel has already built a socket buffer (struct __sk_buff) for the
 * packet, so the program can see and change more of its metadata, and it works on
 * every interface, with no driver support needed.
 *
 * It drops pings (ICMP and ICMPv6 echo requests) and reports each drop; with
 * --drop-all it is the talk's tc_drop and drops everything. Return values:
 *   TC_ACT_OK    carry on: the packet continues up the network stack
 *   TC_ACT_SHOT  drop it here
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "events.h"
#include "packet.h"
#include "echo.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by user space before load (--drop-all). */
const volatile bool drop_all = false;

SEC("tc")
int tc_ingress(struct __sk_buff *skb) {
    /* Direct packet access, as in XDP. It covers the skb's linear part, which
     * always holds the headers of a ping; bpf_skb_pull_data() would pull more. */
    void *data = (void *)(long)skb->data;
    void *data_end = (void *)(long)skb->data_end;

    struct packet p;
    if (parse_packet(&p, data, data_end) && is_echo_request(&p)) {
        report_echo(skb->ifindex, &p, ECHO_DROPPED);
        return TC_ACT_SHOT; /* try TC_ACT_OK here: pings get answered again */
    }
    return drop_all ? TC_ACT_SHOT : TC_ACT_OK;
}
