//! Open file and directory handles: handle number -> node and flags.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::node::Node;
use super::table::IntMap;
use super::types::{Fh, OpenFlags};
use crate::sync::RwLock;

const SHARDS: usize = 16;

#[derive(Clone)]
pub(crate) struct Handle {
    pub(crate) node: Arc<Node>,
    pub(crate) flags: OpenFlags,
}

pub(crate) struct Handles {
    shards: Box<[RwLock<IntMap<Handle>>]>,
    next: AtomicU64,
}

impl Handles {
    pub(crate) fn new() -> Handles {
        Handles { shards: (0..SHARDS).map(|_| RwLock::new(IntMap::default())).collect(), next: AtomicU64::new(1) }
    }

    fn shard(&self, fh: Fh) -> &RwLock<IntMap<Handle>> {
        &self.shards[(fh.0 as usize) % SHARDS]
    }

    /// Registers an open of `node`; the caller has counted it in `node.opens`.
    pub(crate) fn open(&self, node: Arc<Node>, flags: OpenFlags) -> Fh {
        let fh = Fh(self.next.fetch_add(1, Ordering::Relaxed));
        self.shard(fh).write().insert(fh.0, Handle { node, flags });
        fh
    }

    pub(crate) fn get(&self, fh: Fh) -> Option<Handle> {
        self.shard(fh).read().get(&fh.0).cloned()
    }

    pub(crate) fn close(&self, fh: Fh) -> Option<Handle> {
        self.shard(fh).write().remove(&fh.0)
    }

    pub(crate) fn count(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}
