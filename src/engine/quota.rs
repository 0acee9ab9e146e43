//! The central quota: bytes and nodes, reserved before anything is allocated.
//!
//! Reserving is one compare-and-swap: there is no window between checking
//! the balance and charging it, so concurrent writers can never push `used`
//! past `max`. A [`Reservation`] is settled against what the operation really
//! allocated (any excess goes back), or returned in full when dropped, so a
//! refused or failed operation leaves the quota as it found it.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::NoSpaceCause;

/// Bytes and node counters with their limits.
pub(crate) struct Quota {
    max_bytes: u64,
    used: AtomicU64,
    max_nodes: u64,
    nodes: AtomicU64,
    /// Bytes given back since creation (monotonic; lets a process decide
    /// when freed memory is worth returning to the system).
    released: AtomicU64,
    /// Memory the process holds for the filesystem beyond `used`, as
    /// measured from outside (allocator fragmentation). Counted against the
    /// maximum, so charges plus waste never exceed it.
    unaccounted: AtomicU64,
    /// `released` at the last measurement. Bytes released since may still be
    /// resident (not yet returned by the allocator), so once measurements
    /// are made they count as held until the next one.
    released_at_report: AtomicU64,
    reporting: std::sync::atomic::AtomicBool,
}

impl Quota {
    pub(crate) fn new(max_bytes: u64, max_nodes: Option<u64>) -> Quota {
        Quota {
            max_bytes,
            used: AtomicU64::new(0),
            max_nodes: max_nodes.unwrap_or(u64::MAX),
            nodes: AtomicU64::new(0),
            released: AtomicU64::new(0),
            unaccounted: AtomicU64::new(0),
            released_at_report: AtomicU64::new(0),
            reporting: std::sync::atomic::AtomicBool::new(false),
        }
    }

    pub(crate) fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    pub(crate) fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub(crate) fn max_nodes(&self) -> Option<u64> {
        (self.max_nodes != u64::MAX).then_some(self.max_nodes)
    }

    pub(crate) fn released(&self) -> u64 {
        self.released.load(Ordering::Relaxed)
    }

    pub(crate) fn nodes(&self) -> u64 {
        self.nodes.load(Ordering::Relaxed)
    }

    /// Memory held beyond the charges: measured waste, plus bytes released
    /// since the measurement when measurements are made.
    fn held_beyond(&self) -> u64 {
        let mut extra = self.unaccounted.load(Ordering::Relaxed);
        if self.reporting.load(Ordering::Relaxed) {
            extra += self.released().saturating_sub(self.released_at_report.load(Ordering::Relaxed));
        }
        extra
    }

    /// Whether a refusal might go away with a fresh measurement.
    pub(crate) fn measurement_pending(&self) -> bool {
        self.reporting.load(Ordering::Relaxed) && self.held_beyond() > 0
    }

    /// Whether bytes were released since the last measurement.
    pub(crate) fn releases_pending(&self) -> bool {
        self.reporting.load(Ordering::Relaxed) && self.released() > self.released_at_report.load(Ordering::Relaxed)
    }

    /// Takes `n` bytes from the quota, or refuses and changes nothing.
    /// Nothing is refused for nothing: an operation that allocates no new
    /// memory (a rename onto an existing name, an overwrite in place) goes
    /// through even while measured allocator waste holds the limit below
    /// the charges, as the memory guard lets it through too.
    pub(crate) fn reserve(&self, n: u64) -> Result<Reservation<'_>, NoSpaceCause> {
        if n == 0 {
            return Ok(Reservation { quota: self, bytes: 0 });
        }
        let limit = self.max_bytes.saturating_sub(self.held_beyond());
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(n).filter(|&total| total <= limit)
            })
            .map(|_| Reservation { quota: self, bytes: n })
            .map_err(|used| NoSpaceCause::Quota { requested: n, available: limit.saturating_sub(used) })
    }

    /// Bytes available for new charges.
    pub(crate) fn available(&self) -> u64 {
        self.max_bytes.saturating_sub(self.held_beyond()).saturating_sub(self.used())
    }

    pub(crate) fn unaccounted(&self) -> u64 {
        self.unaccounted.load(Ordering::Relaxed)
    }

    /// Records a measurement: `waste` held beyond the charges, taken when
    /// `released_before` bytes had been released.
    pub(crate) fn set_unaccounted(&self, waste: u64, released_before: u64) {
        self.unaccounted.store(waste, Ordering::Relaxed);
        self.released_at_report.store(released_before, Ordering::Relaxed);
        self.reporting.store(true, Ordering::Relaxed);
    }

    /// Gives back `n` bytes charged earlier.
    pub(crate) fn release(&self, n: u64) {
        if n == 0 {
            return;
        }
        // Saturating: were the books ever wrong (a request that panicked
        // between its change and its settlement), wrapping would leave the
        // mount refusing every allocation from then on.
        let prev = match self.used.fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| Some(u.saturating_sub(n))) {
            Ok(prev) | Err(prev) => prev,
        };
        self.released.fetch_add(n, Ordering::Relaxed);
        debug_assert!(prev >= n, "quota underflow: releasing {n} of {prev}");
        if prev < n {
            log::error!("quota underflow: releasing {n} bytes of {prev} charged; counted as 0");
        }
    }

    /// Counts one more node, or refuses at the node limit.
    pub(crate) fn reserve_node(&self) -> Result<NodeReservation<'_>, NoSpaceCause> {
        self.nodes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                n.checked_add(1).filter(|&total| total <= self.max_nodes)
            })
            .map(|_| NodeReservation { quota: self, live: true })
            .map_err(|_| NoSpaceCause::Nodes { limit: self.max_nodes })
    }

    /// Forgets a node counted earlier.
    pub(crate) fn release_node(&self) {
        let prev = self.nodes.fetch_sub(1, Ordering::AcqRel);
        debug_assert!(prev > 0, "node count underflow");
    }
}

/// Bytes taken from the quota for an operation in progress. Dropping it
/// gives them all back; [`Reservation::settle`] keeps what was really used.
#[must_use]
pub(crate) struct Reservation<'q> {
    quota: &'q Quota,
    bytes: u64,
}

impl Reservation<'_> {
    /// Keeps the whole reservation as a permanent charge.
    pub(crate) fn keep(mut self) {
        self.bytes = 0;
    }

    /// Settles against the charge of the thing changed: it went from
    /// `before` to `after` bytes, so the quota keeps `after - before` (or
    /// gives back the difference when the charge shrank).
    pub(crate) fn settle(mut self, before: u64, after: u64) {
        let reserved = std::mem::take(&mut self.bytes);
        if after >= before {
            let grew = after - before;
            if grew <= reserved {
                self.quota.release(reserved - grew);
            } else {
                // A cost function under-estimated. Charge the truth so the
                // books stay exact; tests run with debug assertions and catch it.
                debug_assert!(false, "reserved {reserved} but the charge grew by {grew}");
                log::error!("quota under-reservation: reserved {reserved}, charge grew by {grew}");
                self.quota.used.fetch_add(grew - reserved, Ordering::AcqRel);
            }
        } else {
            self.quota.release(reserved + (before - after));
        }
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.quota.release(self.bytes);
    }
}

/// One node counted for a creation in progress; dropped, it is uncounted.
#[must_use]
pub(crate) struct NodeReservation<'q> {
    quota: &'q Quota,
    live: bool,
}

impl NodeReservation<'_> {
    /// Keeps the node counted.
    pub(crate) fn keep(mut self) {
        self.live = false;
    }
}

impl Drop for NodeReservation<'_> {
    fn drop(&mut self) {
        if self.live {
            self.quota.release_node();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_refuses_without_changing_anything() {
        let q = Quota::new(100, Some(1));
        let r = q.reserve(60).unwrap();
        assert_eq!(q.used(), 60);
        let err = q.reserve(41).err().unwrap();
        assert_eq!(err, NoSpaceCause::Quota { requested: 41, available: 40 });
        assert_eq!(q.used(), 60);
        drop(r);
        assert_eq!(q.used(), 0);
    }

    #[test]
    fn settle_keeps_only_what_was_used() {
        let q = Quota::new(100, None);
        q.reserve(50).unwrap().settle(10, 30);
        assert_eq!(q.used(), 20);
        q.reserve(0).unwrap().settle(30, 10);
        assert_eq!(q.used(), 0);
    }

    #[test]
    fn node_limit_is_exact() {
        let q = Quota::new(0, Some(2));
        q.reserve_node().unwrap().keep();
        let second = q.reserve_node().unwrap();
        assert_eq!(q.reserve_node().err(), Some(NoSpaceCause::Nodes { limit: 2 }));
        drop(second);
        q.reserve_node().unwrap().keep();
        assert_eq!(q.nodes(), 2);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_maximum() {
        let q = Quota::new(1_000_000, None);
        let peak = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for i in 0..20_000u64 {
                        if let Ok(r) = q.reserve(1 + i % 97) {
                            peak.fetch_max(q.used(), Ordering::Relaxed);
                            r.keep();
                            q.release(1 + i % 97);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 1_000_000);
        assert_eq!(q.used(), 0);
    }
}
