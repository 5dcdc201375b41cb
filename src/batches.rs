//! The batching chapter (xdp_pingpong_batched): waiting for the per-CPU report
//! batches to reach the ring buffer before the last read.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags};

/// `enum batch_timer` in bpf/include/batch.h: the batch's timer will send it.
const TIMER_ARMED: u32 = 2;

/// Wait until every entry of `batches` (an array of bpf/include/batch.h's `struct
/// echo_batch`, one per CPU) has sent its reports: call it after detaching,
/// before the last read of the ring buffer. A batch that is not full is sent by
/// its timer after about 20 ms. Two empty looks in a row, 5 ms apart, so that a
/// program run still under way when the program was detached is waited for too;
/// after a second, says how many reports it leaves behind.
pub fn wait_for_batches(batches: &dyn MapCore) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(1);
    let mut empty_looks = 0;
    loop {
        let mut waiting = 0;
        for cpu in 0..batches.max_entries() {
            let value = batches
                .lookup(&cpu.to_ne_bytes(), MapFlags::ANY)
                .context("reading the report batches")?
                .context("the batch map has no such entry")?;
            // struct echo_batch starts with __u32 n (reports waiting) and
            // enum batch_timer timer (4 bytes).
            let word =
                |at: usize| u32::from_ne_bytes(value[at..at + 4].try_into().expect("4 bytes"));
            if word(0) > 0 || word(4) == TIMER_ARMED {
                waiting += word(0).max(1);
            }
        }
        empty_looks = if waiting == 0 { empty_looks + 1 } else { 0 };
        if empty_looks == 2 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!("warning: {waiting} reports still waiting in their batches are not shown");
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
