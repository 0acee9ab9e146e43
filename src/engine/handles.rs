//! Open file and directory handles: handle number -> node and flags.
//!
//! A handle is the daemon's part of an open file, like the kernel's own
//! `struct file` (about 256 bytes, which the kernel holds as well). The
//! first [`HANDLES_IN_BASELINE`] open at once are covered by the daemon's
//! fixed baseline; each one beyond is charged [`HANDLE_COST`] to the quota
//! when it is opened and given back when it is closed, so a million open
//! descriptors cannot grow the daemon past quota + baseline (an open that
//! does not fit fails with `ENFILE`). The table gives memory back as
//! handles close.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::node::Node;
use super::table::{IntMap, shrink_sparse};
use super::types::{Fh, OpenFlags};
use crate::sync::RwLock;

const SHARDS: usize = 16;
/// Handles open at once that the daemon's baseline covers (concurrent opens
/// may pass it by one per request thread).
pub const HANDLES_IN_BASELINE: u64 = 16_384;
/// What a handle beyond those costs: its table slot (a 24-byte entry and a
/// control byte) at the lowest load the table keeps, 3/8, with room for
/// growth's doubling.
pub const HANDLE_COST: u64 = 72;
/// A shard keeps this many slots whatever it holds.
const MIN_SLOTS: usize = 16;

#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) node: Arc<Node>,
    pub(crate) flags: OpenFlags,
    /// Charged [`HANDLE_COST`] to the quota (opened beyond the baseline's).
    pub(crate) charged: bool,
}

pub(crate) struct Handles {
    shards: Box<[RwLock<IntMap<Handle>>]>,
    next: AtomicU64,
    open: AtomicU64,
}

impl Handles {
    pub(crate) fn new() -> Handles {
        Handles {
            shards: (0..SHARDS).map(|_| RwLock::new(IntMap::default())).collect(),
            next: AtomicU64::new(1),
            open: AtomicU64::new(0),
        }
    }

    fn shard(&self, fh: Fh) -> &RwLock<IntMap<Handle>> {
        &self.shards[(fh.0 as usize) % SHARDS]
    }

    /// Whether the next open must be charged to the quota.
    pub(crate) fn next_is_charged(&self) -> bool {
        self.open.load(Ordering::Relaxed) >= HANDLES_IN_BASELINE
    }

    /// Registers an open of `node`; the caller has counted it in `node.opens`
    /// and, if `charged`, taken [`HANDLE_COST`] from the quota.
    pub(crate) fn open(&self, node: Arc<Node>, flags: OpenFlags, charged: bool) -> Fh {
        let fh = Fh(self.next.fetch_add(1, Ordering::Relaxed));
        self.open.fetch_add(1, Ordering::Relaxed);
        self.shard(fh).write().insert(fh.0, Handle { node, flags, charged });
        fh
    }

    pub(crate) fn get(&self, fh: Fh) -> Option<Handle> {
        self.shard(fh).read().get(&fh.0).cloned()
    }

    /// Removes a handle; the caller gives back its charge.
    pub(crate) fn close(&self, fh: Fh) -> Option<Handle> {
        let mut shard = self.shard(fh).write();
        let handle = shard.remove(&fh.0)?;
        shrink_sparse(&mut shard, 0, MIN_SLOTS);
        drop(shard);
        self.open.fetch_sub(1, Ordering::Relaxed);
        Some(handle)
    }

    /// Whether some handle open for writing refers to `ino` (a walk of every
    /// open handle: for rare checks only).
    pub(crate) fn any_writer(&self, ino: super::Ino) -> bool {
        self.shards.iter().any(|s| s.read().values().any(|h| h.node.ino == ino && h.flags.write))
    }

    pub(crate) fn count(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }

    /// Bytes the table's shards hold (for tests).
    pub(crate) fn table_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.read().allocation_size()).sum()
    }
}
