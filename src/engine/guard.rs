//! The memory guard: refuses (or warns about) allocations the host or the
//! process's cgroup cannot back, before the kernel's OOM killer has to.
//!
//! In `PerWrite` mode a check costs a few atomic loads: the probe is read at
//! most once per `interval` (by whichever thread finds the reading stale and
//! wins a `try_lock`), and between readings the guard subtracts what the
//! quota has taken since. The check and the quota reservation are separate
//! steps, so concurrent writers can overshoot by at most one request each;
//! the `headroom` absorbs that (the quota itself stays exact).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::config::{GuardAction, GuardConfig, GuardMode};
use super::error::NoSpaceCause;
use super::meminfo::{MemoryProbe, MemoryReading};
use crate::sync::Mutex;

const NEVER: u64 = u64::MAX;
/// Least time between two warnings in `warn` mode.
const WARN_EVERY_NANOS: u64 = 10_000_000_000;

pub(crate) struct MemoryGuard {
    cfg: GuardConfig,
    probe: Box<dyn MemoryProbe>,
    epoch: Instant,
    /// Nanoseconds after `epoch` of the latest reading (`NEVER` if none).
    read_at: AtomicU64,
    /// Available bytes at the latest reading (`u64::MAX` if unreadable).
    available: AtomicU64,
    /// Quota usage at the latest reading.
    used_at_reading: AtomicU64,
    refreshing: Mutex<()>,
    last_warning: AtomicU64,
}

/// What the guard decided about one request.
pub(crate) enum Verdict {
    Allow,
    /// Memory is short but the action is `warn`: go on (the warning is logged).
    Warned,
    Deny(NoSpaceCause),
}

impl MemoryGuard {
    pub(crate) fn new(cfg: GuardConfig, probe: Box<dyn MemoryProbe>) -> MemoryGuard {
        MemoryGuard {
            cfg,
            probe,
            epoch: Instant::now(),
            read_at: AtomicU64::new(NEVER),
            available: AtomicU64::new(u64::MAX),
            used_at_reading: AtomicU64::new(0),
            refreshing: Mutex::new(()),
            last_warning: AtomicU64::new(NEVER),
        }
    }

    pub(crate) fn config(&self) -> GuardConfig {
        self.cfg
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(NEVER - 1)
    }

    fn take_reading(&self, used_now: u64) -> Option<MemoryReading> {
        let reading = self.probe.read();
        self.available.store(reading.map_or(u64::MAX, |r| r.available), Ordering::Relaxed);
        self.used_at_reading.store(used_now, Ordering::Relaxed);
        self.read_at.store(self.now(), Ordering::Release);
        reading
    }

    /// The check at creation: does a quota of `max_bytes` fit in memory?
    pub(crate) fn check_quota(&self, max_bytes: u64) -> (Verdict, Option<MemoryReading>) {
        if self.cfg.mode == GuardMode::None {
            return (Verdict::Allow, None);
        }
        let reading = self.take_reading(0);
        let Some(r) = reading else { return (Verdict::Allow, None) };
        let usable = self.cfg.usable(r.available);
        if max_bytes <= usable {
            return (Verdict::Allow, reading);
        }
        let cause = NoSpaceCause::MemoryGuard { requested: max_bytes, available: usable };
        (self.act(cause), reading)
    }

    /// The check before an allocation of `requested` bytes, with `used_now`
    /// bytes charged to the quota.
    pub(crate) fn check(&self, requested: u64, used_now: u64) -> Verdict {
        if self.cfg.mode != GuardMode::PerWrite || requested == 0 {
            return Verdict::Allow;
        }
        self.refresh_if_stale(used_now);
        let available = self.available.load(Ordering::Relaxed);
        if available == u64::MAX {
            return Verdict::Allow;
        }
        let usable = self.usable_now(available, used_now);
        if requested <= usable {
            return Verdict::Allow;
        }
        self.act(NoSpaceCause::MemoryGuard { requested, available: usable })
    }

    /// Takes a new reading if the latest is older than the interval (or
    /// there is none), unless another thread is taking one right now.
    fn refresh_if_stale(&self, used_now: u64) {
        let read_at = self.read_at.load(Ordering::Acquire);
        let interval = u64::try_from(self.cfg.interval.as_nanos()).unwrap_or(NEVER);
        if (read_at == NEVER || self.now().saturating_sub(read_at) >= interval)
            && let Some(_busy) = self.refreshing.try_lock()
        {
            self.take_reading(used_now);
        }
    }

    /// What the filesystem may still take: the reading `available`, less
    /// what the quota took since it (`used_now` against the usage then),
    /// less the headroom.
    fn usable_now(&self, available: u64, used_now: u64) -> u64 {
        let since = used_now.saturating_sub(self.used_at_reading.load(Ordering::Relaxed));
        self.cfg.usable(available.saturating_sub(since))
    }

    fn act(&self, cause: NoSpaceCause) -> Verdict {
        match self.cfg.action {
            GuardAction::Deny => Verdict::Deny(cause),
            GuardAction::Warn => {
                let now = self.now();
                let last = self.last_warning.load(Ordering::Relaxed);
                if (last == NEVER || now.saturating_sub(last) >= WARN_EVERY_NANOS)
                    && self.last_warning.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
                {
                    log::warn!("memory is short, going on because the guard action is warn: {cause}");
                }
                Verdict::Warned
            }
        }
    }

    /// The latest reading of available memory, if any was taken.
    pub(crate) fn last_available(&self) -> Option<u64> {
        let a = self.available.load(Ordering::Relaxed);
        (self.read_at.load(Ordering::Acquire) != NEVER && a != u64::MAX).then_some(a)
    }

    /// What the guard knows of memory now, for a report: a reading older
    /// than `interval` is first refreshed (in any mode but `none`; unless
    /// another thread is refreshing it that moment), so a report asked for
    /// right after a refusal shows memory as it is, not as it was when the
    /// refused write was checked. `None` without a reading.
    pub(crate) fn status(&self, used_now: u64) -> Option<GuardStatus> {
        if self.cfg.mode == GuardMode::None {
            return None;
        }
        self.refresh_if_stale(used_now);
        let available = self.last_available()?;
        let read_at = self.read_at.load(Ordering::Acquire);
        Some(GuardStatus {
            available,
            age: Duration::from_nanos(self.now().saturating_sub(read_at)),
            usable: (self.cfg.mode == GuardMode::PerWrite && self.cfg.action == GuardAction::Deny)
                .then(|| self.usable_now(available, used_now)),
        })
    }
}

/// The guard's view of memory at one moment (`Engine::guard_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardStatus {
    /// Available memory at the latest reading.
    pub available: u64,
    /// Age of that reading.
    pub age: Duration,
    /// What the guard would let be allocated now: the reading, less what
    /// the quota took since and the headroom. Only where the guard refuses
    /// writes (`per-write`, action `deny`).
    pub usable: Option<u64>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    /// A probe whose reading the test sets.
    struct FakeProbe(Arc<AtomicU64>);

    impl MemoryProbe for FakeProbe {
        fn read(&self) -> Option<MemoryReading> {
            Some(MemoryReading { available: self.0.load(Ordering::Relaxed), source: "fake", cgroup_limit: None })
        }
    }

    fn guard(mode: GuardMode, action: GuardAction, interval: Duration) -> (MemoryGuard, Arc<AtomicU64>) {
        let avail = Arc::new(AtomicU64::new(1000));
        let cfg = GuardConfig { mode, action, interval, headroom: 100 };
        (MemoryGuard::new(cfg, Box::new(FakeProbe(avail.clone()))), avail)
    }

    #[test]
    fn init_check_compares_quota_with_memory_less_headroom() {
        let (g, _) = guard(GuardMode::Init, GuardAction::Deny, Duration::ZERO);
        assert!(matches!(g.check_quota(900).0, Verdict::Allow));
        assert!(matches!(
            g.check_quota(901).0,
            Verdict::Deny(NoSpaceCause::MemoryGuard { requested: 901, available: 900 })
        ));
        let (g, _) = guard(GuardMode::Init, GuardAction::Warn, Duration::ZERO);
        assert!(matches!(g.check_quota(5000).0, Verdict::Warned));
        // Init mode does not check writes.
        assert!(matches!(g.check(5000, 0), Verdict::Allow));
    }

    #[test]
    fn cached_reading_is_reduced_by_what_was_reserved_since() {
        let (g, avail) = guard(GuardMode::PerWrite, GuardAction::Deny, Duration::from_secs(3600));
        assert!(matches!(g.check(900, 0), Verdict::Allow));
        // The probe now reports plenty, but the reading is cached for an hour.
        avail.store(1_000_000, Ordering::Relaxed);
        // 600 bytes were reserved since the reading: 1000 - 600 - 100 = 300 usable.
        assert!(matches!(g.check(300, 600), Verdict::Allow));
        assert!(matches!(
            g.check(301, 600),
            Verdict::Deny(NoSpaceCause::MemoryGuard { requested: 301, available: 300 })
        ));
    }

    #[test]
    fn stale_reading_is_refreshed() {
        let (g, avail) = guard(GuardMode::PerWrite, GuardAction::Deny, Duration::ZERO);
        assert!(matches!(g.check(2000, 0), Verdict::Deny(_)));
        avail.store(10_000, Ordering::Relaxed);
        assert!(matches!(g.check(2000, 0), Verdict::Allow));
        assert_eq!(g.last_available(), Some(10_000));
    }

    #[test]
    fn status_refreshes_a_stale_reading_and_subtracts_what_was_taken_since() {
        let (g, avail) = guard(GuardMode::PerWrite, GuardAction::Deny, Duration::from_secs(3600));
        let first = g.status(0).expect("a reading");
        assert_eq!((first.available, first.usable), (1000, Some(900)));
        // Fresh enough: the cached reading stands, less 300 bytes taken since.
        avail.store(50_000, Ordering::Relaxed);
        let cached = g.status(300).expect("a reading");
        assert_eq!((cached.available, cached.usable), (1000, Some(600)));
        assert!(cached.age >= first.age);

        let (g, avail) = guard(GuardMode::Init, GuardAction::Deny, Duration::ZERO);
        assert!(matches!(g.check_quota(2000).0, Verdict::Deny(_)));
        avail.store(50_000, Ordering::Relaxed);
        let fresh = g.status(0).expect("a reading");
        // The init-mode guard refuses no write: nothing to call usable.
        assert_eq!((fresh.available, fresh.usable), (50_000, None));

        let (g, _) = guard(GuardMode::None, GuardAction::Deny, Duration::ZERO);
        assert_eq!(g.status(0), None);
    }
}
