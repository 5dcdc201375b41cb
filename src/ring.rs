//! Read a BPF ring buffer until Ctrl-C or SIGTERM, decoding each record into the
//! C struct's generated Rust type.

use std::cell::Cell;
use std::os::fd::BorrowedFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, RingBuffer, RingBufferBuilder};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

static STOP: AtomicBool = AtomicBool::new(false);
static HANDLER: Once = Once::new();

/// Make Ctrl-C (SIGINT) and SIGTERM ask the loop to stop instead of killing the
/// process, so that links are dropped (programs detached) on the way out.
pub fn install_stop_handler() {
    HANDLER.call_once(|| {
        // With ctrlc's "termination" feature this covers SIGINT, SIGTERM and SIGHUP.
        ctrlc::set_handler(|| STOP.store(true, Ordering::SeqCst))
            .expect("installing the Ctrl-C handler");
    });
}

/// Has Ctrl-C or SIGTERM arrived?
pub fn stop_requested() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Events seen and lost during a run, for the exit summary.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// Records decoded and handed to the callback.
    pub events: u64,
    /// Reservations that failed in the kernel because the buffer was full.
    pub lost: u64,
}

impl Summary {
    /// The exit line: "12 execs seen, 0 events lost".
    pub fn print(&self, what: &str) {
        eprintln!("\n{} {what} seen, {} events lost", self.events, self.lost);
        if self.lost > 0 {
            eprintln!("(the ring buffer was full: user space read too slowly; see events.h)");
        }
    }
}

/// A ring-buffer reader. Build it with [`RingReader::new`], optionally add a
/// periodic callback with [`RingReader::every`], then [`RingReader::run`].
pub struct RingReader<'a> {
    ring: RingBuffer<'a>,
    lost: &'a dyn MapCore,
    events: Rc<Cell<u64>>,
    tick: Option<(Duration, Box<dyn FnMut() + 'a>)>,
    watch: Option<(BorrowedFd<'a>, Box<dyn FnMut() + 'a>)>,
}

impl<'a> RingReader<'a> {
    /// Read `events` (a `BPF_MAP_TYPE_RINGBUF`), calling `on_event` with each record
    /// decoded as `T`. `lost` is the program's `lost_events` array (see
    /// `bpf/include/events.h`).
    pub fn new<T, F>(
        events: &'a dyn MapCore,
        lost: &'a dyn MapCore,
        mut on_event: F,
    ) -> Result<Self>
    where
        T: plain::Plain + Default,
        F: FnMut(&T) + 'a,
    {
        let count = Rc::new(Cell::new(0u64));
        let seen = count.clone();
        let mut builder = RingBufferBuilder::new();
        builder
            .add(events, move |data: &[u8]| {
                // Copy rather than cast: copying needs no alignment. A record shorter
                // than T would mean the C and Rust sides disagree; it is skipped.
                let mut event = T::default();
                if plain::copy_from_bytes(&mut event, data).is_ok() {
                    seen.set(seen.get() + 1);
                    on_event(&event);
                }
                0
            })
            .context("setting up the ring buffer")?;
        let ring = builder.build().context("setting up the ring buffer")?;
        Ok(RingReader { ring, lost, events: count, tick: None, watch: None })
    }

    /// Also call `f` every `period` (e.g. to print per-second counters).
    pub fn every(mut self, period: Duration, f: impl FnMut() + 'a) -> Self {
        self.tick = Some((period, Box::new(f)));
        self
    }

    /// Also call `f` whenever `fd` is readable (e.g. a socket the example reads).
    pub fn watch(mut self, fd: BorrowedFd<'a>, f: impl FnMut() + 'a) -> Self {
        self.watch = Some((fd, Box::new(f)));
        self
    }

    /// Wait up to 100 ms for ring-buffer records (and the watched fd), handle them.
    fn poll_once(&mut self) -> Result<()> {
        let Some((fd, on_ready)) = self.watch.as_mut() else {
            return match self.ring.poll(Duration::from_millis(100)) {
                // EINTR: a signal arrived during epoll_wait; the caller's loop decides.
                Err(e) if e.kind() != libbpf_rs::ErrorKind::Interrupted => {
                    Err(e).context("polling the ring buffer")
                }
                _ => Ok(()),
            };
        };
        // SAFETY: the ring buffer's epoll fd lives as long as `self.ring`.
        let ring_fd = unsafe { BorrowedFd::borrow_raw(self.ring.epoll_fd()) };
        let mut fds =
            [PollFd::new(ring_fd, PollFlags::POLLIN), PollFd::new(*fd, PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e).context("waiting for events"),
        }
        let ready = fds[1].revents().is_some_and(|r| r.contains(PollFlags::POLLIN));
        self.ring.consume().context("reading the ring buffer")?;
        if ready {
            on_ready();
        }
        Ok(())
    }

    /// Poll until Ctrl-C / SIGTERM, then return what was seen and lost.
    pub fn run(mut self) -> Result<Summary> {
        install_stop_handler();
        let mut next_tick = self.tick.as_ref().map(|(p, _)| Instant::now() + *p);
        while !stop_requested() {
            // A short timeout keeps Ctrl-C responsive (well under a second).
            self.poll_once()?;
            if let (Some(at), Some((period, f))) = (next_tick.as_mut(), self.tick.as_mut()) {
                if Instant::now() >= *at {
                    f();
                    *at += *period;
                }
            }
        }
        // Drain what arrived between the last poll and the signal.
        let _ = self.ring.consume();
        Ok(Summary { events: self.events.get(), lost: lost_events(self.lost)? })
    }
}

/// Sum of a one-slot `u64` array (plain or per-CPU): the program's loss counter.
pub fn lost_events(map: &dyn MapCore) -> Result<u64> {
    sum_u64(map, 0)
}

/// Read slot `key` of a `u64` array map, adding up the CPUs of a per-CPU array.
pub fn sum_u64(map: &dyn MapCore, key: u32) -> Result<u64> {
    let key = key.to_ne_bytes();
    let values: Vec<Vec<u8>> = if map.map_type().is_percpu() {
        map.lookup_percpu(&key, MapFlags::ANY)?.unwrap_or_default()
    } else {
        map.lookup(&key, MapFlags::ANY)?.into_iter().collect()
    };
    Ok(values
        .iter()
        .filter_map(|v| v.get(..8))
        .map(|b| u64::from_ne_bytes(b.try_into().unwrap()))
        .sum())
}

/// Every CPU's copy of slot `key` of a per-CPU array, decoded as the C struct `T`
/// (add the copies up for the total).
pub fn per_cpu<T: plain::Plain + Default>(map: &dyn MapCore, key: u32) -> Result<Vec<T>> {
    let copies = map.lookup_percpu(&key.to_ne_bytes(), MapFlags::ANY)?.unwrap_or_default();
    copies
        .iter()
        .map(|bytes| {
            let mut value = T::default();
            plain::copy_from_bytes(&mut value, bytes)
                .map_err(|_| anyhow::anyhow!("per-CPU value shorter than its type"))?;
            Ok(value)
        })
        .collect()
}
