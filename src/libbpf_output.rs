//! libbpf prints its warnings (a verifier log, a failed attach) to stderr, which is
//! what a learner wants to see, except for failures we expect and explain in a
//! sentence of our own.

/// Run `f` with libbpf's messages muted: for attempts whose failure we expect and
/// explain ourselves (a kprobe on a kernel without kprobes, a query for something
/// that may not be there).
pub fn muted<T>(f: impl FnOnce() -> T) -> T {
    let before = libbpf_rs::set_print(None);
    let out = f();
    libbpf_rs::set_print(before);
    out
}
