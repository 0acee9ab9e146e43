//! Counters kept as atomics, cheap to bump on hot paths and to read at any time.

use std::sync::atomic::{AtomicU64, Ordering};

use super::error::NoSpaceCause;
use super::quota::Quota;
use crate::storage::Shape;

/// Live counters. Every field is an independent relaxed atomic.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) files_sequential: AtomicU64,
    pub(crate) files_random_access: AtomicU64,
    pub(crate) directories: AtomicU64,
    pub(crate) symlinks: AtomicU64,
    pub(crate) specials: AtomicU64,
    pub(crate) promotions: AtomicU64,
    pub(crate) promotions_refused: AtomicU64,
    pub(crate) refused_quota: AtomicU64,
    pub(crate) refused_nodes: AtomicU64,
    pub(crate) refused_guard: AtomicU64,
    pub(crate) late_refusals: AtomicU64,
    pub(crate) guard_warnings: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn drop_one(counter: &AtomicU64) {
    counter.fetch_sub(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn shape(&self, shape: Shape) -> &AtomicU64 {
        match shape {
            Shape::Sequential => &self.files_sequential,
            Shape::RandomAccess => &self.files_random_access,
        }
    }

    fn refusals_of(&self, cause: &NoSpaceCause) -> &AtomicU64 {
        match cause {
            NoSpaceCause::Quota { .. } => &self.refused_quota,
            NoSpaceCause::Nodes { .. } => &self.refused_nodes,
            NoSpaceCause::MemoryGuard { .. } => &self.refused_guard,
        }
    }

    pub(crate) fn refusal(&self, cause: &NoSpaceCause) {
        bump(self.refusals_of(cause));
    }

    pub(crate) fn withdraw(&self, cause: &NoSpaceCause) {
        drop_one(self.refusals_of(cause));
    }
}

/// Refusals by cause since the engine started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Refusals {
    /// Refused because the quota was full.
    pub quota: u64,
    /// Refused because the node limit was reached.
    pub nodes: u64,
    /// Refused by the memory guard.
    pub memory_guard: u64,
    /// Of the above, refusals of page-cache writeback (shared mmap stores),
    /// which no `write(2)` caller sees.
    pub late: u64,
}

/// A snapshot of the engine's figures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stats {
    /// Quota size in bytes.
    pub quota_bytes: u64,
    /// Bytes charged to the quota.
    pub used_bytes: u64,
    /// Node limit, if any.
    pub max_nodes: Option<u64>,
    /// Nodes in existence (including unlinked ones still open).
    pub nodes: u64,
    /// Regular files stored sequentially.
    pub files_sequential: u64,
    /// Regular files stored as block maps.
    pub files_random_access: u64,
    /// Directories (including the root).
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// FIFOs, sockets and device nodes.
    pub specials: u64,
    /// Sequential files promoted to random-access.
    pub promotions: u64,
    /// Promotions skipped because their memory did not fit (the write went
    /// ahead on the sequential shape).
    pub promotions_refused: u64,
    /// Refused operations by cause.
    pub refusals: Refusals,
    /// Memory-guard warnings (guard action `warn`).
    pub guard_warnings: u64,
    /// The guard's latest reading of available memory, if it has one.
    pub guard_available: Option<u64>,
    /// Memory held beyond the charges (allocator fragmentation), as last
    /// measured by the daemon; counted against the quota.
    pub unaccounted_bytes: u64,
    /// The daemon's resident memory, if it reports it.
    pub resident_bytes: Option<u64>,
    /// The part of the resident memory that is not the filesystem's.
    pub baseline_bytes: Option<u64>,
}

impl Counters {
    /// Reads every counter; the quota and guard figures come from their owners.
    pub(crate) fn snapshot(&self, quota: &Quota, guard_available: Option<u64>) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            quota_bytes: quota.max_bytes(),
            used_bytes: quota.used(),
            max_nodes: quota.max_nodes(),
            nodes: quota.nodes(),
            files_sequential: get(&self.files_sequential),
            files_random_access: get(&self.files_random_access),
            directories: get(&self.directories),
            symlinks: get(&self.symlinks),
            specials: get(&self.specials),
            promotions: get(&self.promotions),
            promotions_refused: get(&self.promotions_refused),
            refusals: Refusals {
                quota: get(&self.refused_quota),
                nodes: get(&self.refused_nodes),
                memory_guard: get(&self.refused_guard),
                late: get(&self.late_refusals),
            },
            guard_warnings: get(&self.guard_warnings),
            guard_available,
            unaccounted_bytes: quota.unaccounted(),
            resident_bytes: None,
            baseline_bytes: None,
        }
    }
}
