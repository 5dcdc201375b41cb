// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
// load-objects: the arm64 line of `make test-kernels` (.ci/test-kernels). The Rust
// loaders need an aarch64 Rust standard library that this machine cannot have, so
// the same BPF objects, built for arm64 (vmlinux/arm64/vmlinux.h,
// -D__TARGET_ARCH_arm64), are loaded here with libbpf: every program of every
// object is verified, attached to the hook its examples use, and detached; at the
// end no program, XDP or TC attachment may be left.
//
//   load-objects -d DEV -c CGROUP_DIR -k FUNC[,FUNC] OBJ.bpf.o ...
//
// -d: an interface for XDP, TC and socket filters (a veth end); -c: a cgroup v2
// directory for cgroup_skb, sock_ops and cgroup/connect*; -k: the functions an untargeted
// SEC("kprobe") and SEC("kretprobe") go on (tcpconnect: tcp_v4_connect,tcp_v6_connect).
// Prints one line per program and "load-objects: N passed, N failed".
// Built statically with aarch64-linux-gnu-gcc against Debian's libbpf-dev:arm64.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef SO_ATTACH_BPF
#define SO_ATTACH_BPF 50
#endif
#ifndef SO_DETACH_BPF
#define SO_DETACH_BPF 27
#endif
#define TCX_INGRESS                                                                      \
    46 /* enum bpf_attach_type BPF_TCX_INGRESS (6.6), newer than this libbpf */

static const char *dev, *cgroup_dir, *kprobe_funcs;
static struct bpf_object *cur_obj; // the object being tried (SK_MSG needs its socket map)
static int ifindex, passed, failed;
static char why[256];

static int fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    return -1;
}

static int quiet(enum libbpf_print_level level, const char *fmt, va_list ap) {
    // The verifier log on a failed load (libbpf prints it as a warning).
    return level == LIBBPF_DEBUG ? 0 : vfprintf(stderr, fmt, ap);
}

static int xdp_attached(void) {
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    if (bpf_xdp_query(ifindex, 0, &q))
        return -1;
    return q.prog_id != 0;
}

static int tc_attached(void) {
    LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex, .attach_point = BPF_TC_INGRESS);
    LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 1, .priority = 1);
    int tcx = 0;
    __u32 count = 0;
    // TCX: BPF_PROG_QUERY on the ifindex; netlink: our handle/priority.
    if (bpf_prog_query(ifindex, TCX_INGRESS, 0, NULL, NULL, &count) == 0)
        tcx = count;
    return tcx || bpf_tc_query(&hook, &opts) == 0;
}

// Attaches prog as its examples do, then detaches; *how says which way.
static int attach_detach(struct bpf_program *prog, char *how, size_t n) {
    int fd = bpf_program__fd(prog);
    const char *sec = bpf_program__section_name(prog);
    struct bpf_link *links[8];
    int nlinks = 0, err = 0, i;

    switch (bpf_program__type(prog)) {
    case BPF_PROG_TYPE_XDP: {
        LIBBPF_OPTS(bpf_xdp_query_opts, q);
        links[nlinks] = bpf_program__attach_xdp(prog, ifindex);
        if (!links[nlinks])
            return fail("XDP link on %s: %s", dev, strerror(errno));
        nlinks++;
        if (bpf_xdp_query(ifindex, 0, &q) || q.prog_id == 0)
            err = fail("XDP program not seen on %s after attaching", dev);
        snprintf(how, n, "XDP link on %s (%s mode)", dev,
                 q.attach_mode == XDP_ATTACHED_DRV   ? "native"
                 : q.attach_mode == XDP_ATTACHED_SKB ? "generic"
                                                     : "other");
        break;
    }
    case BPF_PROG_TYPE_SCHED_CLS: {
        // As the examples: a TCX link where the kernel has it (6.6+), else netlink.
        int link = bpf_link_create(fd, ifindex, TCX_INGRESS, NULL);
        if (link >= 0) {
            if (!tc_attached())
                err = fail("TCX program not seen on %s after attaching", dev);
            close(link);
            snprintf(how, n, "TCX link on %s ingress", dev);
        } else {
            LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = ifindex,
                        .attach_point = BPF_TC_INGRESS);
            LIBBPF_OPTS(bpf_tc_opts, opts, .handle = 1, .priority = 1, .prog_fd = fd);
            int made = bpf_tc_hook_create(&hook);
            if (made && made != -EEXIST)
                return fail("clsact qdisc on %s: %s", dev, strerror(-made));
            if (bpf_tc_attach(&hook, &opts))
                return fail("netlink TC filter on %s: %s", dev, strerror(errno));
            if (!tc_attached())
                err = fail("TC filter not seen on %s after attaching", dev);
            opts.prog_fd = opts.flags = opts.prog_id = 0;
            bpf_tc_detach(&hook, &opts);
            hook.attach_point = BPF_TC_INGRESS | BPF_TC_EGRESS;
            bpf_tc_hook_destroy(&hook);
            snprintf(how, n, "netlink TC filter on %s ingress (no TCX here)", dev);
        }
        return err ? err : tc_attached() ? fail("TC program left on %s", dev) : 0;
    }
    case BPF_PROG_TYPE_SOCKET_FILTER: {
        struct sockaddr_ll sll = {.sll_family = AF_PACKET,
                                  .sll_protocol = htons(ETH_P_ALL),
                                  .sll_ifindex = ifindex};
        int s = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
        if (s < 0 || bind(s, (struct sockaddr *)&sll, sizeof(sll)))
            return fail("packet socket on %s: %s", dev, strerror(errno));
        if (setsockopt(s, SOL_SOCKET, SO_ATTACH_BPF, &fd, sizeof(fd)))
            err = fail("SO_ATTACH_BPF: %s", strerror(errno));
        else if (setsockopt(s, SOL_SOCKET, SO_DETACH_BPF, &fd, sizeof(fd)))
            err = fail("SO_DETACH_BPF: %s", strerror(errno));
        close(s);
        snprintf(how, n, "SO_ATTACH_BPF on a packet socket bound to %s", dev);
        return err;
    }
    case BPF_PROG_TYPE_SK_MSG: {
        // SK_MSG attaches to a socket map, not a hook: the object's SOCKHASH/SOCKMAP
        // (bpf_prog_attach; a bpf_link for it is 6.10+).
        struct bpf_map *m;
        int mfd = -1;
        bpf_object__for_each_map(m, cur_obj) {
            if (bpf_map__type(m) == BPF_MAP_TYPE_SOCKHASH ||
                bpf_map__type(m) == BPF_MAP_TYPE_SOCKMAP)
                mfd = bpf_map__fd(m);
        }
        if (mfd < 0)
            return fail("no socket map in the object for SK_MSG");
        if (bpf_prog_attach(fd, mfd, BPF_SK_MSG_VERDICT, 0))
            return fail("SK_MSG on the socket map: %s", strerror(errno));
        if (bpf_prog_detach2(fd, mfd, BPF_SK_MSG_VERDICT))
            err = fail("detaching SK_MSG: %s", strerror(errno));
        snprintf(how, n, "SK_MSG verdict on its socket map");
        return err;
    }
    case BPF_PROG_TYPE_SOCK_OPS:
    case BPF_PROG_TYPE_CGROUP_SOCK_ADDR:
    case BPF_PROG_TYPE_CGROUP_SKB: {
        int cg = open(cgroup_dir, O_RDONLY | O_DIRECTORY);
        if (cg < 0)
            return fail("%s: %s", cgroup_dir, strerror(errno));
        links[nlinks] = bpf_program__attach_cgroup(prog, cg);
        close(cg);
        if (!links[nlinks])
            return fail("cgroup link on %s: %s", cgroup_dir, strerror(errno));
        nlinks++;
        snprintf(how, n, "cgroup link on %s", cgroup_dir);
        break;
    }
    default:
        if ((!strcmp(sec, "kprobe") || !strcmp(sec, "kretprobe")) && kprobe_funcs) {
            // An untargeted kprobe: the loader names the functions (as tcpconnect).
            char funcs[128], *f, *save;
            snprintf(funcs, sizeof(funcs), "%s", kprobe_funcs);
            for (f = strtok_r(funcs, ",", &save); f && nlinks < 8;
                 f = strtok_r(NULL, ",", &save)) {
                links[nlinks] = bpf_program__attach_kprobe(prog, sec[1] == 'r', f);
                if (!links[nlinks]) {
                    err = fail("%s on %s: %s", sec, f, strerror(errno));
                    break;
                }
                nlinks++;
            }
            snprintf(how, n, "%s on %s", sec, kprobe_funcs);
        } else {
            // tracepoint/..., raw_tracepoint/..., ksyscall/...: from the section name.
            links[nlinks] = bpf_program__attach(prog);
            if (!links[nlinks])
                return fail("attaching %s: %s", sec, strerror(errno));
            nlinks++;
            snprintf(how, n, "%s", sec);
        }
    }
    for (i = 0; i < nlinks; i++)
        bpf_link__destroy(links[i]);
    if (!err && bpf_program__type(prog) == BPF_PROG_TYPE_XDP && xdp_attached())
        err = fail("XDP program left on %s after its link was destroyed", dev);
    return err;
}

static void load_object(const char *path) {
    struct bpf_object *obj = bpf_object__open_file(path, NULL);
    struct bpf_program *prog;
    struct bpf_map *map;
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;

    if (!obj) {
        printf("FAIL %s: cannot open: %s\n", name, strerror(errno));
        failed++;
        return;
    }
    // Maps the examples size at run time (per-CPU batches): one entry per CPU.
    bpf_object__for_each_map(map, obj) {
        if (bpf_map__max_entries(map) == 0)
            bpf_map__set_max_entries(map, libbpf_num_possible_cpus());
    }
    if (bpf_object__load(obj)) {
        printf("FAIL %s: the verifier (or the kernel) refused it: %s\n", name,
               strerror(errno));
        bpf_object__for_each_program(prog, obj) failed++;
        bpf_object__close(obj);
        return;
    }
    cur_obj = obj;
    bpf_object__for_each_program(prog, obj) {
        char how[160] = "";
        struct bpf_prog_info info = {};
        __u32 len = sizeof(info);
        bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len);
        if (attach_detach(prog, how, sizeof(how))) {
            printf("FAIL %s %s: loaded (%u insns), %s\n", name, bpf_program__name(prog),
                   info.xlated_prog_len / 8, why);
            failed++;
        } else {
            printf("ok   %s %s: loaded (%u insns, jited %u bytes), attached (%s), "
                   "detached\n",
                   name, bpf_program__name(prog), info.xlated_prog_len / 8,
                   info.jited_prog_len, how);
            passed++;
        }
    }
    bpf_object__close(obj);
}

int main(int argc, char **argv) {
    __u32 id = 0, left = 0;
    int o;

    while ((o = getopt(argc, argv, "d:c:k:")) != -1) {
        switch (o) {
        case 'd':
            dev = optarg;
            break;
        case 'c':
            cgroup_dir = optarg;
            break;
        case 'k':
            kprobe_funcs = optarg;
            break;
        default:
            fprintf(stderr, "usage: %s -d DEV -c CGROUP -k FUNCS OBJ...\n", argv[0]);
            return 2;
        }
    }
    if (!dev || !cgroup_dir || optind >= argc || !(ifindex = if_nametoindex(dev))) {
        fprintf(stderr, "usage: %s -d DEV -c CGROUP -k FUNCS OBJ... (DEV must exist)\n",
                argv[0]);
        return 2;
    }
    libbpf_set_print(quiet);
    for (; optind < argc; optind++)
        load_object(argv[optind]);
    // Every object is closed: nothing of ours may still be loaded or attached.
    while (bpf_prog_get_next_id(id, &id) == 0)
        left++;
    if (left || xdp_attached() || tc_attached()) {
        printf("FAIL left behind: %u programs loaded, XDP %s, TC %s on %s\n", left,
               xdp_attached() ? "attached" : "none", tc_attached() ? "attached" : "none",
               dev);
        failed++;
    } else {
        printf("ok   nothing left: no program loaded, no XDP or TC attachment on %s\n",
               dev);
    }
    printf("load-objects: %d passed, %d failed\n", passed, failed);
    return failed != 0;
}
