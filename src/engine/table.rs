//! The node table: inode number -> node, sharded so that lookups on
//! different inodes do not contend. Shard locks are leaves: nothing else is
//! locked while one is held.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::node::Node;
use super::types::Ino;
use crate::sync::RwLock;

const SHARDS: usize = 64;
/// Capacity every shard keeps from the start (about 77 KiB for the table,
/// a fixed cost of the engine like its code): removals never shrink a shard
/// below it.
const MIN_KEPT: usize = 56;
/// Slots of a shard holding `MIN_KEPT`.
const MIN_SLOTS: usize = 64;

/// Fibonacci hashing of a `u64` key: inode numbers are sequential, and
/// multiplying spreads them over the hash's high bits, which the table uses.
#[derive(Default)]
pub(crate) struct IntHasher(u64);

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

pub(crate) type IntMap<V> = hashbrown::HashMap<u64, V, BuildHasherDefault<IntHasher>>;

/// Gives a map's memory back once under 3/8 of its slots are used (a map
/// that has just grown uses 7/16, so growing and shrinking cannot
/// alternate): at most 8/3 slots per entry, as after growing. Never below
/// `min_kept` entries' room, nor for maps of `min_slots` slots or fewer.
/// (`capacity()` does not count slots left by removals: the allocation's
/// size does.)
pub(crate) fn shrink_sparse<V>(map: &mut IntMap<V>, min_kept: usize, min_slots: usize) {
    let slot = std::mem::size_of::<(u64, V)>() + 1;
    let slots = map.allocation_size() / slot;
    if slots > min_slots && map.len() * 8 < slots * 3 {
        let len = map.len().max(min_kept);
        map.shrink_to(len);
    }
}

pub(crate) struct NodeTable {
    shards: Box<[RwLock<IntMap<Arc<Node>>>]>,
    next_ino: AtomicU64,
}

impl NodeTable {
    pub(crate) fn new() -> NodeTable {
        NodeTable {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(IntMap::with_capacity_and_hasher(MIN_KEPT, Default::default())))
                .collect(),
            next_ino: AtomicU64::new(Ino::ROOT.0),
        }
    }

    fn shard(&self, ino: Ino) -> &RwLock<IntMap<Arc<Node>>> {
        &self.shards[(ino.0 as usize) % SHARDS]
    }

    /// A fresh inode number (the first one is the root's).
    pub(crate) fn alloc_ino(&self) -> Ino {
        Ino(self.next_ino.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn get(&self, ino: Ino) -> Option<Arc<Node>> {
        self.shard(ino).read().get(&ino.0).cloned()
    }

    pub(crate) fn insert(&self, node: Arc<Node>) {
        self.shard(node.ino).write().insert(node.ino.0, node);
    }

    pub(crate) fn remove(&self, ino: Ino) -> Option<Arc<Node>> {
        let mut shard = self.shard(ino).write();
        let node = shard.remove(&ino.0);
        shrink_sparse(&mut shard, MIN_KEPT, MIN_SLOTS);
        node
    }

    /// Every node, collected shard by shard (not an atomic snapshot).
    pub(crate) fn all(&self) -> Vec<Arc<Node>> {
        self.shards.iter().flat_map(|s| s.read().values().cloned().collect::<Vec<_>>()).collect()
    }
}
