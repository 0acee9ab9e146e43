//! Append buffers faulted in ahead of need, so a streaming writer does not
//! wait for the kernel to hand over fresh memory.
//!
//! A fresh 2 MiB buffer is 512 pages the kernel must find and zero before
//! the first byte lands; on a VM whose freed memory goes back to the host,
//! finding them also means the host faulting them back in. Done inside a
//! WRITE request, that sat on the writer's critical path: perf showed
//! `clear_page` under `madvise(MADV_POPULATE_WRITE)` as 19% of all samples
//! of a 1 MiB streaming write, about as much as the writer's own copy into
//! the page cache. Here a background thread keeps [`KEEP`] buffers faulted
//! in: a writer that fills its buffer takes the next one ready-made and the
//! thread faults in a replacement on a CPU that would otherwise be idle
//! while the writer copies its next request (`docs/performance.md` has the
//! measurements).
//!
//! The spares are the daemon's own memory, not the filesystem's: they count
//! in its fixed baseline ([`SPARE_BYTES`]), and they are given back after
//! [`IDLE`] without a taker, so an idle daemon holds none.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::hugebuf::{HUGE, HugeBuf};

/// Buffers kept ready while large writes stream in.
pub const KEEP: usize = 2;
/// Most memory the spares hold (part of the daemon's baseline).
pub const SPARE_BYTES: u64 = (KEEP * HUGE) as u64;
/// Spares are unmapped after this long without a taker.
pub const IDLE: Duration = Duration::from_secs(2);

/// The pool behind [`take`].
static SPARES: Spares = Spares::new(KEEP, IDLE);

/// A 2 MiB append buffer, faulted in: a spare if one is ready, otherwise
/// mapped now. `None` if the system refuses the mapping.
pub fn take() -> Option<HugeBuf> {
    SPARES.take()
}

struct State {
    ready: Vec<HugeBuf>,
    /// A buffer was taken since the last refill.
    wanted: bool,
    /// The refill thread runs (or could not be started: then never retried).
    started: bool,
}

/// A pool of faulted-in buffers topped up by its own thread.
pub struct Spares {
    state: Mutex<State>,
    wake: Condvar,
    keep: usize,
    idle: Duration,
}

impl Spares {
    pub const fn new(keep: usize, idle: Duration) -> Spares {
        Spares {
            state: Mutex::new(State { ready: Vec::new(), wanted: false, started: false }),
            wake: Condvar::new(),
            keep,
            idle,
        }
    }

    /// A buffer, a spare if one is ready; either way the refill thread
    /// (started on first use) is asked to top the pool up.
    pub fn take(&'static self) -> Option<HugeBuf> {
        let mut st = self.state.lock();
        let spare = st.ready.pop();
        st.wanted = true;
        if !st.started {
            st.started = true;
            let spawned = std::thread::Builder::new().name("prefault".into()).spawn(move || self.refill());
            if let Err(e) = spawned {
                log::warn!("append buffers are faulted in by the writer: no prefault thread: {e}");
            }
        }
        drop(st);
        self.wake.notify_one();
        spare.or_else(HugeBuf::new)
    }

    /// Number of spares ready now.
    #[cfg(test)]
    fn ready(&self) -> usize {
        self.state.lock().ready.len()
    }

    /// The refill thread: tops the pool up after each take, and empties it
    /// once no buffer has been taken for `idle`.
    fn refill(&self) {
        let mut st = self.state.lock();
        loop {
            if st.wanted {
                st.wanted = false;
                while st.ready.len() < self.keep {
                    // Fault in without the lock: a writer may take meanwhile.
                    drop(st);
                    let fresh = HugeBuf::new();
                    st = self.state.lock();
                    match fresh {
                        Some(b) => st.ready.push(b),
                        None => break,
                    }
                }
                continue;
            }
            if self.wake.wait_for(&mut st, self.idle).timed_out() && !st.wanted {
                let unused = std::mem::take(&mut st.ready);
                // Unmap without the lock, then sleep until the next taker.
                drop(st);
                drop(unused);
                st = self.state.lock();
                while !st.wanted {
                    self.wake.wait(&mut st);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    fn wait_until(what: &str, f: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn refills_after_each_take_and_empties_when_idle() {
        // Each full pool is seen only until it idles out, so the idle time
        // is long next to how late a test thread on a loaded machine may
        // look (200 ms was missed with 5 runnable threads per CPU).
        let pool: &'static Spares = Box::leak(Box::new(Spares::new(2, Duration::from_secs(1))));
        assert_eq!(pool.ready(), 0, "nothing is faulted in before the first writer");
        let mut first = pool.take().expect("mmap");
        first.extend_from_slice(&[7u8; 4096]);
        assert_eq!(first.as_ref()[4095], 7);
        wait_until("the pool holds two spares", || pool.ready() == 2);
        let b = pool.take().expect("spare");
        assert_eq!(b.len(), 0, "a spare starts empty");
        wait_until("the pool is topped up again", || pool.ready() == 2);
        wait_until("idle spares are given back", || pool.ready() == 0);
        // and a later writer brings them back
        drop(pool.take().expect("mmap"));
        wait_until("the pool refills after being emptied", || pool.ready() == 2);
    }
}
