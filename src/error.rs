//! The examples' `main` returns `Result<(), OneSentence>`: an error is printed as
//! one line, what failed and why ("attaching the XDP program to eth0: Device or
//! resource busy"), never a stack trace, whatever `RUST_BACKTRACE` says. Rust
//! prints the error of a failed `main` with `Debug`; this type's `Debug` is
//! anyhow's one-line `{:#}` form.

use std::fmt;

/// An `anyhow::Error` that prints as one sentence with its causes.
pub struct OneSentence(anyhow::Error);

/// `?` in `main` turns any error (anyhow's, libbpf-rs's, std's) into one.
impl<E: Into<anyhow::Error>> From<E> for OneSentence {
    fn from(e: E) -> Self {
        OneSentence(e.into())
    }
}

impl fmt::Debug for OneSentence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}
