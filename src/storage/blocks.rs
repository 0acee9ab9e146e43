//! Random-access storage: a map of fixed-size blocks, absent block = hole.
//!
//! Block `i` covers `[i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)` and holds a
//! prefix of that range (its `len`); the rest of the block reads as zeros.
//! A write touches only the blocks it covers, so it costs O(write size)
//! whatever the file size, and a block is mutated in place. Small files stay
//! small: a block grows geometrically up to `BLOCK_SIZE` as data reaches
//! further into it.
//!
//! As in `chunks.rs`, each mutation has a `*_cost` twin computed from the
//! unchanged state, so quota is reserved before anything is allocated.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{Seek, alloc_overhead, seek_extents, shrink_buffer, zeros};

/// Size of a random-access block; block `i` covers `[i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)`.
pub const BLOCK_SIZE: u64 = 64 * 1024;
/// Bytes charged per block on top of its buffer: its B-tree entry (32 bytes
/// in leaves at least half full, plus inner nodes). The B-tree keeps every
/// node but its root at least half full; the root is [`BLOCK_MAP_COST`].
pub const BLOCK_SLOT: u64 = 80;
/// Bytes charged for a map that holds any block: the B-tree's root node,
/// which may hold a single block (a leaf is 368 bytes, 384 with the
/// allocator's header; an inner node 464, 480 with it).
pub const BLOCK_MAP_COST: u64 = 480;

/// What a block whose buffer holds `cap` bytes is charged.
pub(crate) fn block_charge(cap: u64) -> u64 {
    if cap == 0 { BLOCK_SLOT } else { cap + alloc_overhead(cap) + BLOCK_SLOT }
}
const MIN_BLOCK: u64 = 512;

/// A file's bytes as a sparse map of blocks.
#[derive(Default)]
pub(crate) struct BlockMap {
    /// Block index -> data prefix of that block (never empty). Once empty,
    /// replaced by a fresh map, which allocates nothing (a map emptied by
    /// removals keeps its root leaf).
    blocks: BTreeMap<u64, Vec<u8>>,
    /// Σ `block_charge` over blocks (the root is charged on top of it).
    charge: u64,
    /// Σ block lengths.
    stored: u64,
}

/// The per-block pieces of `[off, end)`: `(block index, offset in block, end in block)`.
fn pieces(off: u64, end: u64) -> impl Iterator<Item = (u64, u64, u64)> {
    let mut pos = off;
    std::iter::from_fn(move || {
        (pos < end).then(|| {
            let idx = pos / BLOCK_SIZE;
            let base = idx * BLOCK_SIZE;
            let stop = (base + BLOCK_SIZE).min(end);
            let piece = (idx, pos - base, stop - base);
            pos = stop;
            piece
        })
    })
}

/// Capacity a block needs to hold `need` bytes, growing from `cap`.
fn grown(cap: u64, need: u64) -> u64 {
    if need <= cap { cap } else { need.max(cap.saturating_mul(2)).clamp(MIN_BLOCK, BLOCK_SIZE) }
}

/// What a map's root is charged: nothing until it holds a block.
fn root_charge(holds_blocks: bool) -> u64 {
    if holds_blocks { BLOCK_MAP_COST } else { 0 }
}

/// Quota a write of `len` bytes at `off` needs on a map whose block
/// capacities `cap_of` reports (`None` = no block); `empty` if the map holds
/// no block yet.
pub(crate) fn write_cost_with(cap_of: impl Fn(u64) -> Option<u64>, empty: bool, off: u64, len: u64) -> u64 {
    let blocks: u64 = pieces(off, off + len)
        .map(|(idx, _, b)| match cap_of(idx) {
            Some(cap) => block_charge(grown(cap, b)) - block_charge(cap),
            None => block_charge(grown(0, b)),
        })
        .sum();
    // The first block brings the root.
    blocks + root_charge(empty && len > 0)
}

impl BlockMap {
    pub(crate) fn charge(&self) -> u64 {
        self.charge + root_charge(!self.blocks.is_empty())
    }

    pub(crate) fn stored(&self) -> u64 {
        self.stored
    }

    /// An empty map with blocks allocated (not yet filled) for `layout`.
    pub(crate) fn with_layout(layout: &[(u64, u64)]) -> Self {
        let mut map = BlockMap::default();
        for &(idx, len) in layout {
            map.blocks.insert(idx, Vec::with_capacity(len as usize));
            map.charge += block_charge(len);
        }
        map
    }

    /// Copies one extent into blocks allocated by [`BlockMap::with_layout`].
    /// Extents must arrive in order.
    pub(crate) fn fill_extent(&mut self, start: u64, bytes: &[u8]) {
        for (idx, a, b) in pieces(start, start + bytes.len() as u64) {
            let Some(block) = self.blocks.get_mut(&idx) else { unreachable!("the layout covers every extent") };
            let before = block.len() as u64;
            block.resize(a as usize, 0);
            let src = idx * BLOCK_SIZE + a - start;
            block.extend_from_slice(&bytes[src as usize..(src + b - a) as usize]);
            self.stored += block.len() as u64 - before;
        }
    }

    /// The block layout `(index, length)` a set of extents needs, and its charge.
    pub(crate) fn layout_for(extents: impl Iterator<Item = (u64, u64)>) -> (Vec<(u64, u64)>, u64) {
        let mut layout: Vec<(u64, u64)> = Vec::new();
        for (s, e) in extents {
            for (idx, _, b) in pieces(s, e) {
                match layout.last_mut() {
                    Some((last, len)) if *last == idx => *len = (*len).max(b),
                    _ => layout.push((idx, b)),
                }
            }
        }
        let charge = layout.iter().map(|&(_, len)| block_charge(len)).sum::<u64>() + root_charge(!layout.is_empty());
        (layout, charge)
    }

    pub(crate) fn read(&self, off: u64, len: u64) -> Bytes {
        let end = off + len;
        let mut buf: Vec<u8> = Vec::new();
        for (&idx, block) in self.blocks.range(off / BLOCK_SIZE..=(end - 1) / BLOCK_SIZE) {
            let base = idx * BLOCK_SIZE;
            let s = off.max(base);
            let e = end.min(base + block.len() as u64);
            if s >= e {
                continue;
            }
            if buf.capacity() == 0 {
                buf.reserve_exact(len as usize);
            }
            buf.resize((s - off) as usize, 0);
            buf.extend_from_slice(&block[(s - base) as usize..(e - base) as usize]);
        }
        if buf.is_empty() {
            return zeros(len);
        }
        buf.resize(len as usize, 0);
        Bytes::from(buf)
    }

    pub(crate) fn write_cost(&self, off: u64, len: u64) -> u64 {
        write_cost_with(|idx| self.blocks.get(&idx).map(|b| b.capacity() as u64), self.blocks.is_empty(), off, len)
    }

    pub(crate) fn write(&mut self, off: u64, data: &[u8]) {
        for (idx, a, b) in pieces(off, off + data.len() as u64) {
            let src = &data[(idx * BLOCK_SIZE + a - off) as usize..(idx * BLOCK_SIZE + b - off) as usize];
            let block = self.block_with_len(idx, b);
            block[a as usize..b as usize].copy_from_slice(src);
        }
    }

    /// The block `idx`, created or grown (zero-filled) to at least `len` bytes.
    fn block_with_len(&mut self, idx: u64, len: u64) -> &mut Vec<u8> {
        let block = match self.blocks.entry(idx) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                self.charge += block_charge(0);
                e.insert(Vec::new())
            }
        };
        let cap = block.capacity() as u64;
        let want = grown(cap, len);
        if want > cap {
            block.reserve_exact((want - block.len() as u64) as usize);
            self.charge += block_charge(block.capacity() as u64) - block_charge(cap);
        }
        if (block.len() as u64) < len {
            self.stored += len - block.len() as u64;
            block.resize(len as usize, 0);
        }
        block
    }

    /// Drops all data at or beyond `size`.
    pub(crate) fn truncate(&mut self, size: u64) {
        let first_gone = size.div_ceil(BLOCK_SIZE);
        for (_, block) in self.blocks.split_off(&first_gone) {
            self.charge -= block_charge(block.capacity() as u64);
            self.stored -= block.len() as u64;
        }
        if !size.is_multiple_of(BLOCK_SIZE) {
            self.cut_block(size / BLOCK_SIZE, size % BLOCK_SIZE);
        }
        self.free_empty_root();
    }

    /// Frees the root leaf a map emptied by removals keeps.
    fn free_empty_root(&mut self) {
        if self.blocks.is_empty() {
            self.blocks = BTreeMap::new();
        }
    }

    /// Shortens block `idx` to `keep` bytes, removing it if that leaves nothing.
    fn cut_block(&mut self, idx: u64, keep: u64) {
        let Some(block) = self.blocks.get_mut(&idx) else { return };
        if block.len() as u64 <= keep {
            return;
        }
        let cap = block.capacity() as u64;
        self.stored -= block.len() as u64 - keep;
        if keep == 0 {
            self.blocks.remove(&idx);
            self.charge -= block_charge(cap);
            self.free_empty_root();
            return;
        }
        block.truncate(keep as usize);
        shrink_buffer(block, keep as usize);
        self.charge -= block_charge(cap) - block_charge(block.capacity() as u64);
    }

    /// The pieces of `[off, end)` that fall in blocks present: the work of
    /// punching or zeroing a range is the data in it, not its length (a
    /// sparse file may be 2^63 bytes long).
    fn present(&self, off: u64, end: u64) -> Vec<(u64, u64, u64)> {
        if off >= end {
            return Vec::new();
        }
        self.blocks
            .range(off / BLOCK_SIZE..=(end - 1) / BLOCK_SIZE)
            .map(|(&idx, _)| {
                let base = idx * BLOCK_SIZE;
                (idx, off.max(base) - base, end.min(base + BLOCK_SIZE) - base)
            })
            .collect()
    }

    /// Turns `[off, end)` into a hole: whole blocks and block tails are
    /// released, the middle of a block is zeroed in place. Needs no quota.
    pub(crate) fn punch(&mut self, off: u64, end: u64) {
        for (idx, a, b) in self.present(off, end) {
            let Some(block) = self.blocks.get_mut(&idx) else { continue };
            if b >= block.len() as u64 {
                self.cut_block(idx, a);
            } else if a < b {
                block[a as usize..b as usize].fill(0);
            }
        }
    }

    /// Quota needed to back `[off, end)` with memory.
    pub(crate) fn allocate_cost(&self, off: u64, end: u64) -> u64 {
        self.write_cost(off, end - off)
    }

    /// Backs `[off, end)` with memory, keeping existing data.
    pub(crate) fn allocate(&mut self, off: u64, end: u64) {
        for (idx, _, b) in pieces(off, end) {
            self.block_with_len(idx, b);
        }
    }

    /// Overwrites existing data in `[off, end)` with zeros.
    pub(crate) fn zero_existing(&mut self, off: u64, end: u64) {
        for (idx, a, b) in self.present(off, end) {
            if let Some(block) = self.blocks.get_mut(&idx) {
                let b = b.min(block.len() as u64);
                if a < b {
                    block[a as usize..b as usize].fill(0);
                }
            }
        }
    }

    /// Gives back spare block capacity.
    pub(crate) fn compact(&mut self) {
        for block in self.blocks.values_mut() {
            let cap = block.capacity() as u64;
            if cap > block.len() as u64 {
                let len = block.len();
                shrink_buffer(block, len);
                self.charge -= block_charge(cap) - block_charge(block.capacity() as u64);
            }
        }
    }

    pub(crate) fn seek(&self, off: u64, size: u64, whence: Seek) -> Option<u64> {
        let extents = self
            .blocks
            .range(off / BLOCK_SIZE..)
            .map(|(&idx, b)| (idx * BLOCK_SIZE, idx * BLOCK_SIZE + b.len() as u64))
            .filter(|&(s, e)| e > off && s < size);
        seek_extents(extents, off, size, whence)
    }

    /// Visits every block's data as `(start, bytes)` in order.
    pub(crate) fn for_each_extent(&self, mut f: impl FnMut(u64, &[u8])) {
        for (&idx, block) in &self.blocks {
            f(idx * BLOCK_SIZE, block);
        }
    }

    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let mut charge = 0;
        let mut stored = 0;
        for (idx, block) in &self.blocks {
            if block.is_empty() || block.len() as u64 > BLOCK_SIZE || block.capacity() as u64 > BLOCK_SIZE {
                return Err(format!("block {idx} has len {} cap {}", block.len(), block.capacity()));
            }
            charge += block_charge(block.capacity() as u64);
            stored += block.len() as u64;
        }
        if charge != self.charge || stored != self.stored {
            return Err(format!(
                "charge {charge} (tracked {}), stored {stored} (tracked {})",
                self.charge, self.stored
            ));
        }
        Ok(())
    }
}
