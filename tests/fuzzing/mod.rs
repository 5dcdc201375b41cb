//! Fuzzing the packet programs, shared by tests/fuzz_<program>.rs: generated and
//! mutated frames ([`gen`]) through one program with BPF_PROG_TEST_RUN, each run
//! compared with what the program must do by a reference model written here in
//! Rust ([`model`]): the verdict and every output byte.
//!
//! tests/fuzz_cgroup_firewall.rs and tests/fuzz_xdp_lb.rs bring their own frames
//! ([`gen::policy_frame`], [`gen::lb_frame`]: IPv6 extension-header chains, IPv4
//! options and fragments, lying lengths) and models with state.
//!
//! Reproducible: each test prints its seed; run again with
//! `FUZZ_SEED=<n> cargo test --test fuzz_<program>` (and `FUZZ_CASES=<n>`,
//! default 100000, for more or fewer frames per program).
#![allow(dead_code)] // each test file uses a different subset

pub mod gen;
pub mod model;

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

use ebpf_workshop_dev::progs::TestRun;

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;
pub const TC_ACT_OK: u32 = 0;
pub const TC_ACT_SHOT: u32 = 2;
pub const CGROUP_SKB_DROP: u32 = 0;
pub const CGROUP_SKB_PASS: u32 = 1;

/// Every test run refuses frames shorter than an Ethernet header.
pub const ETH_HLEN: usize = 14;

/// skb test runs also refuse frames shorter than the Ethernet header plus the
/// IPv4 or IPv6 header its (outer) EtherType announces: the kernel reads it to
/// fake a socket. Kernel 6.18 refuses exactly those; a kernel that accepts them
/// is fine too (the run is then checked against the model like any other).
pub fn skb_may_refuse(frame: &[u8]) -> bool {
    let announced = match frame.get(12..14) {
        Some([0x08, 0x00]) => 20,
        Some([0x86, 0xDD]) => 40,
        _ => 0,
    };
    frame.len() < ETH_HLEN + announced
}

// ---------------------------------------------------------------------------
// Seeding and a small PRNG (splitmix64): no extra crates.
// ---------------------------------------------------------------------------

/// One seed for the whole run: FUZZ_SEED, or the clock.
pub fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| match std::env::var("FUZZ_SEED") {
        Ok(s) => {
            s.trim().parse().unwrap_or_else(|_| panic!("FUZZ_SEED={s:?} is not a decimal u64"))
        }
        Err(_) => {
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
            // Keep it short enough to type: 48 bits.
            (t.as_nanos() as u64 ^ u64::from(std::process::id()) << 20) & 0xFFFF_FFFF_FFFF
        }
    })
}

pub fn cases() -> usize {
    match std::env::var("FUZZ_CASES") {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("FUZZ_CASES={s:?} is not a number")),
        Err(_) => 100_000,
    }
}

pub fn replay_hint(seed: u64) -> String {
    // The test target that includes this module (tests/fuzz_<program>.rs).
    format!("replay with: FUZZ_SEED={seed} cargo test --test {}", env!("CARGO_CRATE_NAME"))
}

pub struct Rng(u64);

impl Rng {
    /// `salt` gives each test its own stream from the one seed.
    pub fn new(seed: u64, salt: &str) -> Self {
        let mut s = seed;
        for b in salt.bytes() {
            s = (s ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3); // FNV-1a step
        }
        Rng(s)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    pub fn u8(&mut self) -> u8 {
        self.next() as u8
    }

    pub fn u16(&mut self) -> u16 {
        self.next() as u16
    }

    pub fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }

    /// A 16-bit field value, often one of the values where arithmetic goes wrong.
    pub fn field16(&mut self) -> u16 {
        match self.below(10) {
            0 => 0,
            1 => 0xFFFF,
            2 => self.pick(&[1, 0x0800, 0xF7FF, 0x8000, 0x7FFF, 0x00FF, 0xFF00]),
            _ => self.u16(),
        }
    }
}

// ---------------------------------------------------------------------------
// The runner.
// ---------------------------------------------------------------------------

/// What one program must do with one frame.
pub enum Expect {
    /// Return this verdict and leave the frame exactly as it came.
    Unchanged(u32),
    /// Return this verdict with the frame rewritten into this reply.
    Reply(u32, model::Reply),
}

/// Which kind of test run: the kernel refuses different frames for each.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    Xdp,
    Tc,
    /// cgroup_skb: the program sees the packet from its IP header on, and the
    /// kernel refuses the same short frames as for TC.
    Cgroup,
}

pub fn verdict_name(hook: Hook, action: u32) -> String {
    match (hook, action) {
        (Hook::Xdp, XDP_DROP) => "XDP_DROP".into(),
        (Hook::Xdp, XDP_PASS) => "XDP_PASS".into(),
        (Hook::Xdp, XDP_TX) => "XDP_TX".into(),
        (Hook::Tc, TC_ACT_OK) => "TC_ACT_OK".into(),
        (Hook::Tc, TC_ACT_SHOT) => "TC_ACT_SHOT".into(),
        (Hook::Cgroup, CGROUP_SKB_DROP) => "drop (0)".into(),
        (Hook::Cgroup, CGROUP_SKB_PASS) => "pass (1)".into(),
        (_, n) => format!("action {n}"),
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Compare one run with the model: None when it matches, else what differs.
pub fn check(
    hook: Hook,
    frame: &[u8],
    got: &std::io::Result<TestRun>,
    expect: &Expect,
) -> Option<String> {
    let run = match got {
        Err(_) if frame.len() < ETH_HLEN => return None,
        Err(_) if hook != Hook::Xdp && skb_may_refuse(frame) => return None,
        Err(e) => return Some(format!("kernel refused a {}-byte frame: {e}", frame.len())),
        Ok(_) if frame.len() < ETH_HLEN => {
            return Some(format!("kernel accepted a {}-byte frame", frame.len()))
        }
        Ok(run) => run,
    };
    let (action, want, loose) = match expect {
        Expect::Unchanged(a) => (*a, frame, None),
        Expect::Reply(a, r) => (*a, &r.frame[..], r.loose_csum_at),
    };
    let same_bytes = match loose {
        // A cgroup program's test run gives the packet back from the IP header
        // on, behind 14 zero bytes: the Ethernet header was never its to see.
        None if hook == Hook::Cgroup => {
            run.frame.len() == want.len() && run.frame[ETH_HLEN..] == want[ETH_HLEN..]
        }
        None => run.frame == want,
        Some(at) => {
            // Checksum compared as a one's complement value: 0x0000 == 0xFFFF.
            let canon = |v: u16| if v == 0xFFFF { 0 } else { v };
            run.frame.len() == want.len()
                && run.frame[..at] == want[..at]
                && run.frame[at + 2..] == want[at + 2..]
                && canon(model::be16(&run.frame, at)) == canon(model::be16(want, at))
        }
    };
    if run.action == action && same_bytes {
        return None;
    }
    let first_diff = run
        .frame
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .map_or("none (lengths differ)".to_string(), |i| i.to_string());
    Some(format!(
        "verdict expected {} got {}; bytes {} (first difference at {first_diff}{})\n  \
         frame:    {}\n  expected: {}\n  got:      {}",
        verdict_name(hook, action),
        verdict_name(hook, run.action),
        if same_bytes { "match" } else { "DIFFER" },
        if loose.is_some() { ", checksum compared mod 0xFFFF" } else { "" },
        hex(frame),
        hex(want),
        hex(&run.frame),
    ))
}

/// The result of fuzzing one program; assert on it in the test's own thread.
pub struct Report {
    name: &'static str,
    seed: u64,
    frames: usize,
    mismatches: usize,
    examples: Vec<String>,
}

impl Report {
    pub fn assert_clean(&self) {
        assert!(
            self.mismatches == 0,
            "{}: {} of {} frames differ from the model (seed {}; {}). First ones:\n{}",
            self.name,
            self.mismatches,
            self.frames,
            self.seed,
            replay_hint(self.seed),
            self.examples.join("\n"),
        );
    }
}

/// Run `cases()` generated frames through `run` and compare each with `expect`.
pub fn fuzz(
    name: &'static str,
    hook: Hook,
    run: impl FnMut(&[u8]) -> std::io::Result<TestRun>,
    expect: impl Fn(&[u8]) -> Expect,
) -> Report {
    fuzz_with(name, hook, gen::frame, run, expect, |_, _| None)
}

/// [`fuzz`] with frames from `generate`, a model that may keep state (`expect`
/// sees the frames in order, each before it runs), and `after`, which may check
/// more than verdict and bytes once a frame has run (a drop report, a map): its
/// `Some(difference)` counts as a mismatch too.
pub fn fuzz_with(
    name: &'static str,
    hook: Hook,
    mut generate: impl FnMut(&mut Rng) -> (Vec<u8>, &'static str),
    mut run: impl FnMut(&[u8]) -> std::io::Result<TestRun>,
    mut expect: impl FnMut(&[u8]) -> Expect,
    mut after: impl FnMut(&[u8], &TestRun) -> Option<String>,
) -> Report {
    let (seed, n) = (seed(), cases());
    eprintln!("{name}: FUZZ_SEED={seed} FUZZ_CASES={n} ({})", replay_hint(seed));
    let mut rng = Rng::new(seed, name);
    let start = Instant::now();
    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    let mut families: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut refused, mut longest_refused, mut mismatches) = (0, 0, 0);
    let (mut replies, mut loose_replies) = (0, 0);
    let mut examples = Vec::new();
    for case in 0..n {
        let (frame, family) = generate(&mut rng);
        *families.entry(family).or_default() += 1;
        let want = expect(&frame);
        let got = run(&frame);
        match &got {
            Ok(r) => *verdicts.entry(verdict_name(hook, r.action)).or_default() += 1,
            Err(_) => refused += 1,
        }
        match &want {
            Expect::Reply(_, r) if r.loose_csum_at.is_some() => loose_replies += 1,
            Expect::Reply(..) => replies += 1,
            Expect::Unchanged(_) => {}
        }
        if got.is_err() {
            longest_refused = longest_refused.max(frame.len());
        }
        let diff = check(hook, &frame, &got, &want).or_else(|| {
            let run = got.as_ref().ok()?;
            after(&frame, run).map(|d| format!("{d}\n  frame:    {}", hex(&frame)))
        });
        if let Some(diff) = diff {
            mismatches += 1;
            if examples.len() < 5 {
                examples.push(format!(
                    "case #{case} ({family}, {} bytes, seed {seed}; {}): {diff}",
                    frame.len(),
                    replay_hint(seed)
                ));
            }
        }
    }
    eprintln!(
        "{name}: {n} frames in {:.1?}: {}, refused by the kernel {refused} (longest \
         {longest_refused} bytes); replies expected {} ({loose_replies} to invalid \
         checksums); mismatches {mismatches}",
        start.elapsed(),
        verdicts.iter().map(|(v, c)| format!("{v} {c}")).collect::<Vec<_>>().join(", "),
        replies + loose_replies,
    );
    eprintln!(
        "{name}: families: {}",
        families.iter().map(|(f, c)| format!("{f} {c}")).collect::<Vec<_>>().join(", ")
    );
    Report { name, seed, frames: n, mismatches, examples }
}
