//! Reading a per-CPU counter map: the kernel keeps one copy of the value per CPU
//! (so the program needs no atomic operations), and user space adds them up.

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags};

/// Slot `key` of a `BPF_MAP_TYPE_PERCPU_ARRAY` whose value is a C struct of
/// `__u64` counters (or one `__u64`), summed over the CPUs field by field.
pub fn per_cpu_sum<T: plain::Plain + Default>(map: &dyn MapCore, key: u32) -> Result<T> {
    let size = std::mem::size_of::<T>();
    if size % 8 != 0 {
        bail!("per_cpu_sum reads structs of __u64 counters only");
    }
    let copies = map
        .lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)
        .context("reading the counters")?
        .context("the counter map has no such slot")?;
    let mut words = vec![0u64; size / 8];
    for copy in &copies {
        for (sum, bytes) in words.iter_mut().zip(copy.chunks_exact(8)) {
            *sum += u64::from_ne_bytes(bytes.try_into().expect("8 bytes"));
        }
    }
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let mut total = T::default();
    plain::copy_from_bytes(&mut total, &bytes).map_err(|_| anyhow::anyhow!("counter size"))?;
    Ok(total)
}
