//! BPF programs as the kernel sees them: by id, by the process that holds them, the
//! smallest program of a type, and `BPF_PROG_TEST_RUN` on any program fd (a
//! skeleton's program in the tests, a running example's program or a bare floor
//! program in `make bench`).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The smallest program of a type: `return value;`, two instructions, loaded
/// straight from bytecode. The lab's XDP pass program, and the benchmark's floor.
pub fn return_only_program(
    prog_type: libbpf_sys::bpf_prog_type,
    value: i32,
    name: &std::ffi::CStr,
) -> Result<OwnedFd> {
    use libbpf_sys::{bpf_insn, BPF_ALU64, BPF_EXIT, BPF_JMP, BPF_K, BPF_MOV};
    let insn = |code: u32, imm: i32| bpf_insn {
        code: code as u8,
        _bitfield_align_1: [],
        _bitfield_1: bpf_insn::new_bitfield_1(0, 0), // dst r0, src r0
        off: 0,
        imm,
    };
    // r0 = value; exit (r0 is the return value)
    let prog = [insn(BPF_ALU64 | BPF_MOV | BPF_K, value), insn(BPF_JMP | BPF_EXIT, 0)];
    let fd = unsafe {
        libbpf_sys::bpf_prog_load(
            prog_type,
            name.as_ptr(),
            c"Dual BSD/GPL".as_ptr(),
            prog.as_ptr(),
            prog.len() as _,
            std::ptr::null_mut(),
        )
    };
    if fd < 0 {
        bail!("loading {name:?}: {}", std::io::Error::from_raw_os_error(-fd));
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new fd for the loaded program `id`.
pub fn prog_by_id(id: u32) -> std::io::Result<OwnedFd> {
    let fd = unsafe { libbpf_sys::bpf_prog_get_fd_by_id(id) };
    if fd < 0 {
        return Err(std::io::Error::from_raw_os_error(-fd));
    }
    // SAFETY: a fresh fd we own; dropping it closes it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Is a BPF program with this id still loaded in the kernel?
pub fn prog_loaded(id: u32) -> bool {
    prog_by_id(id).is_ok()
}

/// The kernel's facts about a program: name, run_time_ns and run_cnt (while
/// kernel.bpf_stats_enabled is 1), ...
pub fn prog_info(prog: BorrowedFd) -> std::io::Result<libbpf_sys::bpf_prog_info> {
    let mut info: libbpf_sys::bpf_prog_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of_val(&info) as u32;
    let rc = unsafe { libbpf_sys::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) };
    if rc < 0 {
        return Err(std::io::Error::from_raw_os_error(-rc));
    }
    Ok(info)
}

/// The program's name as the kernel keeps it (at most 15 characters).
pub fn prog_name(info: &libbpf_sys::bpf_prog_info) -> String {
    let name: Vec<u8> = info.name.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&name).into_owned()
}

/// The BPF program ids a process holds (program and link fds both name them in
/// /proc/<pid>/fdinfo). Recording them while it runs lets a test check afterwards
/// that exactly these are gone, even while other tests load programs of their own.
pub fn bpf_prog_ids(pid: u32) -> Vec<u32> {
    let mut ids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .map(|d| d.flatten().collect::<Vec<_>>())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .flat_map(|info| {
            info.lines()
                .filter_map(|l| l.strip_prefix("prog_id:"))
                .filter_map(|v| v.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Program `name` (as the kernel shows it: at most 15 characters) of process
/// `pid`: the program a running example loaded and attached, to measure in place.
pub fn prog_of(pid: u32, name: &str) -> Result<OwnedFd> {
    let ids = bpf_prog_ids(pid);
    for &id in &ids {
        let Ok(fd) = prog_by_id(id) else { continue }; // gone since
        let info = prog_info(fd.as_fd()).with_context(|| format!("BPF program {id}"))?;
        if prog_name(&info) == name {
            return Ok(fd);
        }
    }
    bail!("process {pid} has no BPF program named {name} (program ids {ids:?})")
}

/// What a packet program did with one frame under `BPF_PROG_TEST_RUN`.
#[derive(Debug)]
pub struct TestRun {
    /// The program's return value (XDP_PASS, TC_ACT_OK, ...).
    pub action: u32,
    /// The frame as the program left it.
    pub frame: Vec<u8>,
    /// The kernel's mean time per run.
    pub duration: Duration,
}

/// Run `prog` once on `frame` in the kernel.
pub fn test_run(prog: &impl AsFd, frame: &[u8]) -> std::io::Result<TestRun> {
    test_run_repeated(prog, frame, 1)
}

/// Run `prog` `repeat` times on `frame` in one call. Each repetition sees what
/// the one before left: the output frame is the last run's.
pub fn test_run_repeated(prog: &impl AsFd, frame: &[u8], repeat: u32) -> std::io::Result<TestRun> {
    run(prog, frame, repeat, None)
}

/// Run an XDP `prog` once on `frame` as if it came in on interface `ifindex`
/// (what bpf_fib_lookup needs). The kernel takes an XDP context in a test run
/// from Linux 5.15: before that this fails with EINVAL.
pub fn test_run_on_device(
    prog: &impl AsFd,
    frame: &[u8],
    ifindex: u32,
) -> std::io::Result<TestRun> {
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    // egress_ifindex. data_end is the frame's length (data 0: no metadata).
    let mut ctx = [0u32; 6];
    ctx[1] = frame.len() as u32;
    ctx[3] = ifindex;
    run(prog, frame, 1, Some(&ctx))
}

fn run(
    prog: &impl AsFd,
    frame: &[u8],
    repeat: u32,
    ctx: Option<&[u32]>,
) -> std::io::Result<TestRun> {
    let mut out = vec![0u8; frame.len() + 256];
    let mut opts: libbpf_sys::bpf_test_run_opts = unsafe { std::mem::zeroed() };
    opts.sz = std::mem::size_of_val(&opts) as _;
    opts.data_in = frame.as_ptr().cast();
    opts.data_size_in = frame.len() as u32;
    opts.data_out = out.as_mut_ptr().cast();
    opts.data_size_out = out.len() as u32;
    opts.repeat = repeat as i32;
    if let Some(ctx) = ctx {
        opts.ctx_in = ctx.as_ptr().cast();
        opts.ctx_size_in = std::mem::size_of_val(ctx) as u32;
    }
    let rc = unsafe { libbpf_sys::bpf_prog_test_run_opts(prog.as_fd().as_raw_fd(), &mut opts) };
    if rc < 0 {
        return Err(std::io::Error::from_raw_os_error(-rc));
    }
    out.truncate(opts.data_size_out as usize);
    Ok(TestRun {
        action: opts.retval,
        frame: out,
        duration: Duration::from_nanos(opts.duration.into()),
    })
}
