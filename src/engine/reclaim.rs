//! Memory on its way back: deleted nodes the kernel has not let go of yet.
//!
//! A node's memory is released when nothing references it: no link, no open
//! handle, no kernel lookup. The last of those to go is usually the
//! kernel's lookup, dropped by a FORGET that the kernel queues while
//! `unlink(2)` is still running. But the kernel may hand out up to eight
//! later requests before it (its forget batching), and a single worker
//! thread handling one of them cannot read the FORGET meanwhile; so a
//! `write` or `statfs` that follows a delete can find the space still
//! taken. This module counts such *orphans* (unlinked, closed, not yet
//! released) and wakes whoever waits for one to go, so the adapter can
//! hold a refused request back for a moment instead of refusing it.
//!
//! An orphan the kernel keeps (an `O_PATH` descriptor, a process's working
//! directory inside a removed directory) stays one for as long as that
//! lasts, so waiting is only worth it just after a delete:
//! [`Reclaim::pending`] looks at orphans made within its window ([`RECENT`]
//! unless set longer).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::sync::Mutex;

/// How long after the latest delete an orphan is expected to be released
/// soon. The kernel queues the FORGET during the delete; even behind a full
/// forget batch it arrives within a few requests.
pub const RECENT: Duration = Duration::from_secs(1);

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) struct Reclaim {
    /// Orphans in existence.
    orphans: AtomicU64,
    /// Nanoseconds since `epoch` at which the latest orphan was made.
    last_orphaned: AtomicU64,
    /// How long after the latest orphan was made orphans count as pending.
    window_ns: AtomicU64,
    epoch: Instant,
    /// Orphans released so far; waiters watch it change.
    released: AtomicU64,
    waiters: AtomicU64,
    lock: Mutex<()>,
    changed: parking_lot::Condvar,
}

impl Reclaim {
    pub(crate) fn new() -> Reclaim {
        Reclaim {
            orphans: AtomicU64::new(0),
            last_orphaned: AtomicU64::new(0),
            window_ns: AtomicU64::new(nanos(RECENT)),
            epoch: Instant::now(),
            released: AtomicU64::new(0),
            waiters: AtomicU64::new(0),
            lock: Mutex::new(()),
            changed: parking_lot::Condvar::new(),
        }
    }

    fn now_ns(&self) -> u64 {
        nanos(self.epoch.elapsed())
    }

    /// Orphans made within `window` of now count as pending.
    pub(crate) fn set_window(&self, window: Duration) {
        self.window_ns.store(nanos(window), Ordering::Relaxed);
    }

    /// A node became an orphan.
    pub(crate) fn orphaned(&self) {
        self.last_orphaned.store(self.now_ns(), Ordering::Relaxed);
        self.orphans.fetch_add(1, Ordering::AcqRel);
    }

    fn uncount(&self) {
        let prev = self.orphans.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(prev > 0, "orphan count underflow");
    }

    /// An orphan was opened again (through `/proc/self/fd`): not on its way out.
    pub(crate) fn reopened(&self) {
        self.uncount();
    }

    /// An orphan's memory was released (call after the quota has it back):
    /// wakes the waiters.
    pub(crate) fn released(&self) {
        self.uncount();
        self.released.fetch_add(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            let _held = self.lock.lock();
            self.changed.notify_all();
        }
    }

    pub(crate) fn orphans(&self) -> u64 {
        self.orphans.load(Ordering::Acquire)
    }

    /// Whether an orphan exists and the latest was made within the window.
    pub(crate) fn pending(&self) -> bool {
        let age = self.now_ns().saturating_sub(self.last_orphaned.load(Ordering::Relaxed));
        self.orphans() > 0 && age < self.window_ns.load(Ordering::Relaxed)
    }

    /// Orphans released so far (pass it to [`Reclaim::wait`]).
    pub(crate) fn generation(&self) -> u64 {
        self.released.load(Ordering::SeqCst)
    }

    /// Waits until an orphan is released after `seen` was read, or until
    /// `deadline`. Returns whether one was.
    pub(crate) fn wait(&self, seen: u64, deadline: Instant) -> bool {
        let mut held = self.lock.lock();
        self.waiters.fetch_add(1, Ordering::SeqCst);
        // The releaser bumps `released`, then looks for waiters: either it
        // sees this one (and notifies under the lock, after this thread
        // waits) or this thread sees its bump here.
        while self.released.load(Ordering::SeqCst) == seen {
            if self.changed.wait_until(&mut held, deadline).timed_out() {
                break;
            }
        }
        self.waiters.fetch_sub(1, Ordering::SeqCst);
        self.released.load(Ordering::SeqCst) != seen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn an_orphan_is_pending_until_released_and_its_release_wakes_a_waiter() {
        let r = Arc::new(Reclaim::new());
        assert!(!r.pending());
        r.orphaned();
        assert!(r.pending());
        let seen = r.generation();
        let releaser = {
            let r = r.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(10));
                r.released();
            })
        };
        assert!(r.wait(seen, Instant::now() + Duration::from_secs(30)), "the release woke the waiter");
        releaser.join().unwrap();
        assert!(!r.pending());
        assert_eq!(r.orphans(), 0);
    }

    #[test]
    fn a_wait_without_a_release_ends_at_its_deadline() {
        let r = Reclaim::new();
        r.orphaned();
        let seen = r.generation();
        assert!(!r.wait(seen, Instant::now() + Duration::from_millis(5)));
        assert!(r.pending());
        r.set_window(Duration::ZERO);
        assert!(!r.pending(), "an orphan older than the window is not pending");
        // A release before the wait began counts.
        r.released();
        assert!(r.wait(seen, Instant::now() + Duration::from_secs(30)));
    }
}
