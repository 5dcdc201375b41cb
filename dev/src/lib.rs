//! What the workshop needs besides the library learners copy (`src/`): nothing
//! here is an example's helper, and `make new` copies none of it.
//!
//! - [`lab`]: the two-namespace packet lab, and the four-host load-balancer lab
//!   (`make lab`, `make lab-lb`; the tests and `make bench` build their own).
//! - [`frames`]: hand-built frames and their expected replies.
//! - [`harness`]: run an example as a user would, watch its output, stop it.
//! - [`progs`]: BPF programs by id or by the process that holds them, the
//!   two-instruction floor program, and `BPF_PROG_TEST_RUN` on any program fd.
//!
//! Binaries: `lab` (`make lab`, `make status`, ...) and `bench` (`make bench`).

pub mod frames;
pub mod harness;
pub mod lab;
pub mod progs;
