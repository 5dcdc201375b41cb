# ebpf-workshop — every target says what it does before it does it.
# Run `make help` for the list.

SHELL      := /bin/bash
CARGO      ?= cargo
# Debian/Ubuntu packages the workshop needs: clang compiles bpf/*.bpf.c, libelf/zlib
# are linked by libbpf, bpftool writes vmlinux.h and shows loaded programs, iproute2
# and iputils-ping drive the lab.
# nftables: the kernel's own firewall and NAT, what the router and balancer chapters
# are compared with (and the router test's drop-everything forward chain).
DEB_PKGS   := clang clang-format llvm libelf-dev zlib1g-dev pkg-config bpftool iproute2 iputils-ping nftables
# make bench also drives real servers and clients: nginx, ab, wrk, iperf3, ethtool.
BENCH_PKGS := nginx apache2-utils wrk iperf3 ethtool
ARCH       := $(shell uname -m | sed -e 's/x86_64/x86/' -e 's/aarch64/arm64/' -e 's/riscv64/riscv/' -e 's/ppc64le/powerpc/' -e 's/s390x/s390/' -e 's/loongarch64/loongarch/')
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
LAB        := ebpfws
LB_LAB     := ebpflb
ROUTER_LAB := ebpfws-rt

# make test-kernels TEST_KERNELS_FLAGS="-d 3000": flags for .ci/test-kernels (-d: the
# whole run's time limit in seconds, as CI sets it; -t: one kernel's; -k: another list).
TEST_KERNELS_FLAGS ?=

.PHONY: help deps build hello trace test test-only vmlinux vmlinux-arm64 fmt lint lab lab-lb lab-router lab-reset lab-down status bench new book clean test-kernels
EXAMPLE    ?= hello
# mdbook builds the book (make book); cargo installs it into CARGO_HOME when missing.
MDBOOK_VERSION := 0.5.4
MDBOOK     ?= $(shell command -v mdbook || echo "$${CARGO_HOME:-$$HOME/.cargo}/bin/mdbook")

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

deps: ## install missing build/lab packages with apt (clang, libelf, bpftool, ...)
	@echo "==> deps: checking $(DEB_PKGS)"
	@if ! command -v dpkg-query >/dev/null; then \
	  missing=""; \
	  for c in clang clang-format llvm-strip bpftool pkg-config ip ping; do \
	    command -v $$c >/dev/null || missing="$$missing $$c"; done; \
	  if [ -z "$$missing" ]; then echo "    all present (not checked: libelf and zlib headers)"; exit 0; fi; \
	  echo "    not Debian/Ubuntu: install with your package manager:$$missing, plus libelf and zlib headers"; \
	  exit 1; \
	fi; \
	missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ] && command -v bpftool >/dev/null; then missing=$$(echo "$$missing" | sed 's/ bpftool//'); fi; \
	if [ -z "$$missing" ]; then echo "    all present"; exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "    no apt-get here: install these with your package manager:$$missing"; exit 1; fi; \
	echo "    installing:$$missing"; \
	$(SUDO) apt-get update -qq || exit 1; \
	if echo "$$missing" | grep -qw bpftool && ! apt-cache show bpftool >/dev/null 2>&1; then \
	  echo "    (no bpftool package here, as on Ubuntu: using linux-tools for this kernel)"; \
	  missing=$$(echo "$$missing" | sed "s/ bpftool/ linux-tools-common linux-tools-$$(uname -r)/"); fi; \
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing
	@# Tracepoints and bpf_printk need tracefs; most systems mount it at boot.
	@if [ ! -e /sys/kernel/tracing/trace_pipe ]; then \
	  echo "    mounting tracefs on /sys/kernel/tracing"; \
	  $(SUDO) mount -t tracefs tracefs /sys/kernel/tracing; fi

build: deps ## build the library and every example
	@echo "==> build: cargo build --examples"
	$(CARGO) build --examples

hello: deps ## run the first example, with its "I'm alive!" lines (Ctrl-C to stop)
	@echo "==> hello: cargo run --example hello -- --printk"
	$(CARGO) run --example hello -- --printk

trace: ## stream new bpf_printk output (the kernel trace pipe; Ctrl-C to stop)
	@echo "==> trace: $(SUDO) cat /sys/kernel/tracing/trace_pipe, after dropping the lines already waiting there"
	@$(SUDO) sh -c 'timeout 0.3 cat /sys/kernel/tracing/trace_pipe >/dev/null; exec cat /sys/kernel/tracing/trace_pipe'

test: deps lint test-only ## deps + lint + the full end-to-end test suite (needs root)

test-only: ## the test suite alone (runs as root through the runner in .cargo/config.toml)
	@echo "==> test: cargo test (end-to-end, real kernel, own network namespaces)"
	$(CARGO) test -- --test-threads=2

lab: deps ## build the packet lab: client and server namespaces joined by veth
	@echo "==> lab: two network namespaces ($(LAB)-client, $(LAB)-server) and a veth pair"
	$(CARGO) run --quiet --bin lab -- up --name $(LAB)

lab-lb: deps ## build the load-balancer lab: client, balancer, two backends on a bridge
	@echo "==> lab-lb: namespaces $(LB_LAB)-client, -lb, -b1, -b2 on a bridge in $(LB_LAB)-br; a service on each backend"
	$(CARGO) run --quiet --bin lab -- up-lb --name $(LB_LAB)

lab-router: deps ## build the router lab: client and server on two subnets, a router between
	@echo "==> lab-router: namespaces $(ROUTER_LAB)-client, -router, -server; two veth pairs, IPv4 and IPv6"
	$(CARGO) run --quiet --bin lab -- up-router --name $(ROUTER_LAB)

lab-reset: ## put the lab back as `make lab` made it (kernel echo replies on, nothing attached)
	@echo "==> lab-reset: removing and rebuilding $(LAB)-client and $(LAB)-server"
	$(CARGO) run --quiet --bin lab -- reset --name $(LAB)

status: ## show what is attached in the lab (XDP, TCX and netlink TC) and the echo settings
	@echo "==> status: programs attached in $(LAB)-client and $(LAB)-server"
	$(CARGO) run --quiet --bin lab -- status --name $(LAB)

lab-down: ## remove the labs (packet, load-balancer, router) and everything attached to them
	@echo "==> lab-down: deleting namespaces $(LAB)-client and $(LAB)-server, the $(LB_LAB)-* and $(ROUTER_LAB)-* ones"
	$(CARGO) run --quiet --bin lab -- down --name $(LAB)
	$(CARGO) run --quiet --bin lab -- down --name $(LB_LAB)
	$(CARGO) run --quiet --bin lab -- down --name $(ROUTER_LAB)

test-kernels: deps ## the kernel-dependent tests inside Debian's 5.10, 6.1, 6.12, 7.2 and arm64 kernels (QEMU; .ci/kernels.list)
	@echo "==> test-kernels: boot each kernel of .ci/kernels.list with virtme-ng and run the tests inside"
	$(SUDO) CARGO="$$(command -v $(CARGO))" .ci/test-kernels $(TEST_KERNELS_FLAGS)

bench: DEB_PKGS += $(BENCH_PKGS)
bench: deps ## measure program cost, ping three ways, events, start-up (release build; SECTIONS="1 3" for some)
	@echo "==> bench: cargo build --release, then target/release/bench $(SECTIONS) (prints markdown, writes target/bench.json)"
	$(CARGO) build --release --examples --bins
	$(CARGO) run --release --quiet --bin bench -- $(SECTIONS)

new: ## copy an example into a project of its own: make new DIR=../my-tool [EXAMPLE=xdp_pingpong]
	@test -n "$(DIR)" || { echo "usage: make new DIR=<path> [EXAMPLE=<name>] (default EXAMPLE=hello)"; exit 1; }
	@echo "==> new: a cargo project in $(DIR) from examples/$(EXAMPLE).rs and bpf/$(EXAMPLE).bpf.c"
	$(CARGO) run --quiet --bin new -- "$(DIR)" --example "$(EXAMPLE)"

book: ## build the book (book/src, mdBook) into target/book; installs mdbook if missing
	@if [ ! -x "$(MDBOOK)" ]; then \
	  echo "==> book: mdbook missing: cargo install mdbook --locked --no-default-features --version $(MDBOOK_VERSION)"; \
	  $(CARGO) install mdbook --locked --no-default-features --version $(MDBOOK_VERSION); fi
	@echo "==> book: $(MDBOOK) build book (open target/book/index.html)"
	"$(MDBOOK)" build book

vmlinux: ## regenerate vmlinux/<arch>/vmlinux.h from this kernel's BTF
	@echo "==> vmlinux: bpftool btf dump /sys/kernel/btf/vmlinux > vmlinux/$(ARCH)/vmlinux.h"
	@command -v bpftool >/dev/null || { echo "bpftool missing: run 'make deps'"; exit 1; }
	mkdir -p vmlinux/$(ARCH)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > vmlinux/$(ARCH)/vmlinux.h
	@# Before 5.15 the kernel has no struct bpf_timer: add its uapi definition, so that
	@# every program still compiles (xdp_pingpong_batched then says at run time why not).
	@grep -q '^struct bpf_timer {' vmlinux/$(ARCH)/vmlinux.h || { \
	  echo "    this kernel has no bpf_timer (Linux 5.15+): adding its definition for xdp_pingpong_batched"; \
	  sed -i '$$i /* Added by make vmlinux: this kernel has no bpf_timer (<linux/bpf.h>, 5.15). */\nstruct bpf_timer {\n\t__u64 __opaque[2];\n} __attribute__((aligned(8)));\n' vmlinux/$(ARCH)/vmlinux.h; }

# arm64: the BTF is copied out of Debian's arm64 kernel image itself (no arm64 machine
# or boot needed): the package is fetched as `make test-kernels` fetches kernels
# (private apt configuration, nothing installed), vmlinux/arm64/btf-from-image
# finds the BTF blob in the Image, bpftool turns it into C. make test-kernels boots
# that kernel and checks that its /sys/kernel/btf/vmlinux is the same bytes.
ARM64_KERNEL ?= linux-image-arm64:arm64/trixie-security
vmlinux-arm64: ## regenerate vmlinux/arm64/vmlinux.h from Debian's arm64 kernel (ARM64_KERNEL=pkg:arm64/suite)
	@echo "==> vmlinux-arm64: BTF of $(ARM64_KERNEL) > vmlinux/arm64/vmlinux.h"
	@command -v bpftool >/dev/null || { echo "bpftool missing: run 'make deps'"; exit 1; }
	read -r root kimg < <($(SUDO) .ci/test-kernels -f $(ARM64_KERNEL)) && \
	  vmlinux/arm64/btf-from-image "$$kimg" vmlinux/arm64/vmlinux.btf && \
	  bpftool btf dump file vmlinux/arm64/vmlinux.btf format c > vmlinux/arm64/vmlinux.h && \
	  rm vmlinux/arm64/vmlinux.btf

fmt: ## format Rust (cargo fmt) and C (clang-format)
	@echo "==> fmt: cargo fmt, clang-format -i bpf/"
	$(CARGO) fmt
	clang-format -i bpf/*.c bpf/*.h bpf/include/*.h

lint: ## check formatting and clippy warnings (what CI checks)
	@echo "==> lint: cargo fmt --check, clippy -D warnings, clang-format --dry-run"
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	clang-format --dry-run --Werror bpf/*.c bpf/*.h bpf/include/*.h

clean: ## remove build output
	$(CARGO) clean
