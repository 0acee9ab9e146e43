//! Random-access storage: a map of fixed-size blocks, absent block = hole.
//!
//! Block `i` spans `[i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)` and holds one
//! window of that span, `[start, start + len)`, `start` a multiple of a
//! page; the rest of the span reads as zeros. A write touches only the
//! blocks it covers, so it costs O(write size) whatever the file size, and
//! a block is mutated in place. Memory follows the data, as tmpfs's pages
//! do: a small file's block grows geometrically up to `BLOCK_SIZE` as data
//! reaches further into it, and a write into the middle of an empty span
//! holds its own pages, not the span before it (pages written far apart in
//! one span still share a window: see [`BLOCK_SIZE`]).
//!
//! As in `chunks.rs`, each mutation has a `*_cost` twin computed from the
//! unchanged state, so quota is reserved before anything is allocated.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{PAGE, Seek, alloc_overhead, seek_extents, shrink_buffer, zeros};

/// Size of a random-access block; block `i` covers `[i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)`.
/// Smaller blocks hold sparse data closer to its size (a block's window
/// spans the gap between pages written far apart), but make the B-tree
/// larger and every lookup slower: measured on 4 KiB writes at 2,000
/// random pages of a sparse 64 MiB file and fio's 4 KiB random I/O on a
/// promoted 256 MiB file, 64 KiB blocks hold 2.74 times the data at full
/// speed, 32 KiB 1.54 times at 4-5% fewer IOPS, 16 KiB 1.11 times at
/// 6-12% fewer (`docs/design.md`).
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

/// Where a block's buffer lies in its span: from `start` (a multiple of
/// [`PAGE`]), `cap` bytes, of which the first `len` are its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Window {
    start: u64,
    cap: u64,
    len: u64,
}

impl Window {
    /// The window a block needs to hold `[a, b)` of its span (`a < b`) as
    /// well as what it holds now (`None`: no block yet). Upwards it grows
    /// geometrically, so that appends inside a block copy each byte O(1)
    /// times; downwards to the page of `a` exactly, so that memory stays
    /// with the data (at most one copy per page of the span).
    fn covering(now: Option<Window>, a: u64, b: u64) -> Window {
        let (start, top, end) = match now {
            Some(w) => (w.start.min(a / PAGE * PAGE), w.start + w.cap, (w.start + w.len).max(b)),
            None => (a / PAGE * PAGE, a / PAGE * PAGE, b),
        };
        let cap = if end <= top { top - start } else { grown(top - start, end - start).min(BLOCK_SIZE - start) };
        Window { start, cap, len: end - start }
    }
}

/// One block: its window's bytes in a buffer of the window's capacity,
/// zeros past `len`. (24 bytes, as a `Vec` would be.)
#[derive(Default)]
struct Block {
    buf: Box<[u8]>,
    start: u32,
    len: u32,
}

impl Block {
    fn window(&self) -> Window {
        Window { start: u64::from(self.start), cap: self.buf.len() as u64, len: u64::from(self.len) }
    }

    /// Its data, which starts at `start` in the span.
    fn data(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// `[start, end)` of its data in the span.
    fn span(&self) -> (u64, u64) {
        (u64::from(self.start), u64::from(self.start) + u64::from(self.len))
    }

    /// Takes the window `w`, which contains the present one: grows the
    /// buffer where it lies if only its end moves, else moves the data
    /// into a fresh zeroed buffer.
    fn reshape(&mut self, w: Window) {
        if w.cap != self.buf.len() as u64 {
            let fresh = if self.len == 0 {
                vec![0u8; w.cap as usize].into_boxed_slice()
            } else if w.start == u64::from(self.start) {
                let mut v = Vec::from(std::mem::take(&mut self.buf));
                v.reserve_exact(w.cap as usize - v.len());
                v.resize(w.cap as usize, 0);
                v.into_boxed_slice()
            } else {
                let mut fresh = vec![0u8; w.cap as usize].into_boxed_slice();
                let at = (u64::from(self.start) - w.start) as usize;
                fresh[at..at + self.len as usize].copy_from_slice(self.data());
                fresh
            };
            self.buf = fresh;
        }
        // Within a window that starts lower, the data lies further in.
        self.start = w.start as u32;
        self.len = w.len as u32;
    }

    /// Keeps only `[from, to)` of the span (inside its data; `from` a
    /// multiple of a page) and gives the rest of the buffer back, shrinking
    /// it where it lies.
    fn keep(&mut self, from: u64, to: u64) {
        let a = (from - u64::from(self.start)) as usize;
        let b = (to - u64::from(self.start)) as usize;
        let mut v = Vec::from(std::mem::take(&mut self.buf));
        if a > 0 {
            v.copy_within(a..b, 0);
        }
        v.truncate(b - a);
        shrink_buffer(&mut v, b - a);
        self.buf = v.into_boxed_slice();
        self.start = from as u32;
        self.len = (b - a) as u32;
    }

    /// Zeroes `[a, b)` of the span where it meets the data.
    fn zero(&mut self, a: u64, b: u64) {
        let (s, e) = self.span();
        let (a, b) = (a.max(s), b.min(e));
        if a < b {
            self.buf[(a - s) as usize..(b - s) as usize].fill(0);
        }
    }
}

/// A file's bytes as a sparse map of blocks.
#[derive(Default)]
pub(crate) struct BlockMap {
    /// Block index -> its window (never empty). Once empty, replaced by a
    /// fresh map, which allocates nothing (a map emptied by removals keeps
    /// its root leaf).
    blocks: BTreeMap<u64, Block>,
    /// Σ `block_charge` over blocks (the root is charged on top of it).
    charge: u64,
    /// Σ block lengths.
    stored: u64,
    /// The blocks that may have room to spare lie in this range (only a
    /// write that grows a block leaves room), so that `compact`, which
    /// every close of a writer calls, need not visit every block.
    spare: Option<(u64, u64)>,
}

/// The piece of `[off, end)` that falls in block `idx` (which it meets),
/// as offsets in the block.
fn piece_of(idx: u64, off: u64, end: u64) -> (u64, u64) {
    let base = idx * BLOCK_SIZE;
    (off.max(base) - base, end.min(base + BLOCK_SIZE) - base)
}

/// The per-block pieces of `[off, end)`: `(block index, offset in block, end in block)`.
fn pieces(off: u64, end: u64) -> impl Iterator<Item = (u64, u64, u64)> {
    let blocks = (off < end).then(|| off / BLOCK_SIZE..=(end - 1) / BLOCK_SIZE);
    blocks.into_iter().flatten().map(move |idx| {
        let (a, b) = piece_of(idx, off, end);
        (idx, a, b)
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

/// Quota a write of `len` bytes at `off` needs on a map whose blocks in
/// that range are `present` (in order, with their windows); `empty` if
/// the map holds no block yet. The work is the blocks present, not the
/// range: blocks missing from it are priced by counting (a fallocate may
/// ask for the whole quota's worth of them).
pub(crate) fn write_cost_with(present: impl Iterator<Item = (u64, Window)>, empty: bool, off: u64, len: u64) -> u64 {
    if len == 0 {
        return 0;
    }
    let end = off + len;
    let (first, last) = (off / BLOCK_SIZE, (end - 1) / BLOCK_SIZE);
    let new_block = |idx: u64| {
        let (a, b) = piece_of(idx, off, end);
        block_charge(Window::covering(None, a, b).cap)
    };
    // Priced first as if no block were there (the blocks between the
    // first and the last are whole ones), then corrected for those that are.
    let inner = (last - first).saturating_sub(1);
    let mut cost = new_block(first).saturating_add(inner.saturating_mul(block_charge(BLOCK_SIZE)));
    if last > first {
        cost = cost.saturating_add(new_block(last));
    }
    for (idx, w) in present {
        let (a, b) = piece_of(idx, off, end);
        let grows = block_charge(Window::covering(Some(w), a, b).cap) - block_charge(w.cap);
        cost = cost.saturating_sub(new_block(idx)).saturating_add(grows);
    }
    // The first block brings the root.
    cost.saturating_add(root_charge(empty))
}

impl BlockMap {
    pub(crate) fn charge(&self) -> u64 {
        self.charge + root_charge(!self.blocks.is_empty())
    }

    pub(crate) fn stored(&self) -> u64 {
        self.stored
    }

    /// A map of zeroed blocks with the windows of `layout`.
    pub(crate) fn with_layout(layout: &[(u64, Window)]) -> Self {
        let mut map = BlockMap::default();
        for &(idx, w) in layout {
            let block =
                Block { buf: vec![0u8; w.cap as usize].into_boxed_slice(), start: w.start as u32, len: w.len as u32 };
            map.blocks.insert(idx, block);
            map.charge += block_charge(w.cap);
            map.stored += w.len;
        }
        map
    }

    /// Copies one extent into blocks made by [`BlockMap::with_layout`].
    pub(crate) fn fill_extent(&mut self, start: u64, bytes: &[u8]) {
        for (idx, a, b) in pieces(start, start + bytes.len() as u64) {
            let Some(block) = self.blocks.get_mut(&idx) else { unreachable!("the layout covers every extent") };
            let src = (idx * BLOCK_SIZE + a - start) as usize;
            let at = (a - u64::from(block.start)) as usize;
            block.buf[at..at + (b - a) as usize].copy_from_slice(&bytes[src..src + (b - a) as usize]);
        }
    }

    /// The block layout `(index, window)` a set of extents (in order)
    /// needs, and its charge.
    pub(crate) fn layout_for(extents: impl Iterator<Item = (u64, u64)>) -> (Vec<(u64, Window)>, u64) {
        let mut layout: Vec<(u64, Window)> = Vec::new();
        for (s, e) in extents {
            for (idx, a, b) in pieces(s, e) {
                match layout.last_mut() {
                    Some((last, w)) if *last == idx => *w = Window::covering(Some(*w), a, b),
                    _ => layout.push((idx, Window::covering(None, a, b))),
                }
            }
        }
        // Exactly the data: no room to grow into.
        for (_, w) in &mut layout {
            w.cap = w.len;
        }
        let charge = layout.iter().map(|&(_, w)| block_charge(w.cap)).sum::<u64>() + root_charge(!layout.is_empty());
        (layout, charge)
    }

    /// The blocks present among `first..=last`, in order: a lookup each
    /// when they are few, as for an ordinary request (a B-tree range walk
    /// costs several lookups to set up), a range walk when they are many.
    fn present_in(&self, first: u64, last: u64) -> impl Iterator<Item = (u64, &Block)> {
        let few = last - first < 16;
        let looked = few.then(|| (first..=last).filter_map(|i| self.blocks.get(&i).map(|b| (i, b))));
        let walked = (!few).then(|| self.blocks.range(first..=last).map(|(&i, b)| (i, b)));
        looked.into_iter().flatten().chain(walked.into_iter().flatten())
    }

    pub(crate) fn read(&self, off: u64, len: u64) -> Bytes {
        let end = off + len;
        let mut buf: Vec<u8> = Vec::new();
        for (idx, block) in self.present_in(off / BLOCK_SIZE, (end - 1) / BLOCK_SIZE) {
            let base = idx * BLOCK_SIZE;
            let (bs, be) = block.span();
            let s = off.max(base + bs);
            let e = end.min(base + be);
            if s >= e {
                continue;
            }
            if buf.capacity() == 0 {
                buf.reserve_exact(len as usize);
            }
            buf.resize((s - off) as usize, 0);
            buf.extend_from_slice(&block.data()[(s - base - bs) as usize..(e - base - bs) as usize]);
        }
        if buf.is_empty() {
            return zeros(len);
        }
        buf.resize(len as usize, 0);
        Bytes::from(buf)
    }

    pub(crate) fn write_cost(&self, off: u64, len: u64) -> u64 {
        if len == 0 {
            return 0;
        }
        let present = self.present_in(off / BLOCK_SIZE, (off + len - 1) / BLOCK_SIZE).map(|(i, b)| (i, b.window()));
        write_cost_with(present, self.blocks.is_empty(), off, len)
    }

    pub(crate) fn write(&mut self, off: u64, data: &[u8]) {
        for (idx, a, b) in pieces(off, off + data.len() as u64) {
            let src = &data[(idx * BLOCK_SIZE + a - off) as usize..(idx * BLOCK_SIZE + b - off) as usize];
            let block = self.block_covering(idx, a, b);
            let at = (a - u64::from(block.start)) as usize;
            block.buf[at..at + src.len()].copy_from_slice(src);
        }
    }

    /// The block `idx`, created or grown (zero-filled) to cover `[a, b)` of its span.
    fn block_covering(&mut self, idx: u64, a: u64, b: u64) -> &mut Block {
        let block = match self.blocks.entry(idx) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                self.charge += block_charge(0);
                e.insert(Block::default())
            }
        };
        let now = block.window();
        let want = Window::covering((now.len > 0).then_some(now), a, b);
        block.reshape(want);
        self.charge += block_charge(want.cap) - block_charge(now.cap);
        self.stored += want.len - now.len;
        if want.cap > want.len {
            self.spare = Some(self.spare.map_or((idx, idx), |(lo, hi)| (lo.min(idx), hi.max(idx))));
        }
        block
    }

    /// Drops all data at or beyond `size`.
    pub(crate) fn truncate(&mut self, size: u64) {
        let first_gone = size.div_ceil(BLOCK_SIZE);
        for (_, block) in self.blocks.split_off(&first_gone) {
            self.charge -= block_charge(block.buf.len() as u64);
            self.stored -= u64::from(block.len);
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

    /// Drops what block `idx` holds at or past `at` in its span, removing
    /// the block if that leaves nothing.
    fn cut_block(&mut self, idx: u64, at: u64) {
        let Some(block) = self.blocks.get(&idx) else { return };
        let (s, e) = block.span();
        if at >= e {
            return;
        }
        if at <= s {
            self.remove_block(idx);
        } else {
            self.reshape_kept(idx, s, at);
        }
    }

    fn remove_block(&mut self, idx: u64) {
        if let Some(block) = self.blocks.remove(&idx) {
            self.charge -= block_charge(block.buf.len() as u64);
            self.stored -= u64::from(block.len);
            self.free_empty_root();
        }
    }

    /// Keeps `[from, to)` of block `idx` (see [`Block::keep`]), settling
    /// the charge.
    fn reshape_kept(&mut self, idx: u64, from: u64, to: u64) {
        let Some(block) = self.blocks.get_mut(&idx) else { return };
        let was = block.window();
        block.keep(from, to);
        self.charge -= block_charge(was.cap) - block_charge(block.buf.len() as u64);
        self.stored -= was.len - u64::from(block.len);
    }

    /// The pieces of `[off, end)` that fall in blocks present: the work of
    /// punching or zeroing a range is the data in it, not its length (a
    /// sparse file may be 2^63 bytes long).
    fn present(&self, off: u64, end: u64) -> Vec<(u64, u64, u64)> {
        if off >= end {
            return Vec::new();
        }
        self.present_in(off / BLOCK_SIZE, (end - 1) / BLOCK_SIZE)
            .map(|(idx, _)| {
                let (a, b) = piece_of(idx, off, end);
                (idx, a, b)
            })
            .collect()
    }

    /// Turns `[off, end)` into a hole. Needs no quota: a block the range
    /// covers is released, and so are the pages of a block's data it takes
    /// from either end (whole pages at the front); the middle of a block is
    /// zeroed where it lies.
    pub(crate) fn punch(&mut self, off: u64, end: u64) {
        for (idx, a, b) in self.present(off, end) {
            let Some(block) = self.blocks.get_mut(&idx) else { continue };
            let (s, e) = block.span();
            if b >= e {
                self.cut_block(idx, a);
            } else if a <= s && b / PAGE * PAGE > s {
                self.reshape_kept(idx, b / PAGE * PAGE, e);
                if let Some(block) = self.blocks.get_mut(&idx) {
                    block.zero(a, b);
                }
            } else {
                block.zero(a, b);
            }
        }
    }

    /// Quota needed to back `[off, end)` with memory.
    pub(crate) fn allocate_cost(&self, off: u64, end: u64) -> u64 {
        self.write_cost(off, end - off)
    }

    /// Backs `[off, end)` with memory, keeping existing data.
    pub(crate) fn allocate(&mut self, off: u64, end: u64) {
        for (idx, a, b) in pieces(off, end) {
            self.block_covering(idx, a, b);
        }
    }

    /// Overwrites existing data in `[off, end)` with zeros.
    pub(crate) fn zero_existing(&mut self, off: u64, end: u64) {
        for (idx, a, b) in self.present(off, end) {
            if let Some(block) = self.blocks.get_mut(&idx) {
                block.zero(a, b);
            }
        }
    }

    /// Gives back spare block capacity.
    pub(crate) fn compact(&mut self) {
        let Some((lo, hi)) = self.spare.take() else { return };
        let spare: Vec<(u64, u64, u64)> = self
            .blocks
            .range(lo..=hi)
            .filter(|(_, b)| b.buf.len() > b.len as usize)
            .map(|(&idx, b)| (idx, b.span().0, b.span().1))
            .collect();
        for (idx, s, e) in spare {
            self.reshape_kept(idx, s, e);
        }
    }

    pub(crate) fn seek(&self, off: u64, size: u64, whence: Seek) -> Option<u64> {
        let extents = self
            .blocks
            .range(off / BLOCK_SIZE..)
            .map(|(&idx, b)| (idx * BLOCK_SIZE + b.span().0, idx * BLOCK_SIZE + b.span().1))
            .filter(|&(s, e)| e > off && s < size);
        seek_extents(extents, off, size, whence)
    }

    /// Visits every block's data as `(start, bytes)` in order.
    pub(crate) fn for_each_extent(&self, mut f: impl FnMut(u64, &[u8])) {
        for (&idx, block) in &self.blocks {
            f(idx * BLOCK_SIZE + u64::from(block.start), block.data());
        }
    }

    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let mut charge = 0;
        let mut stored = 0;
        for (idx, block) in &self.blocks {
            let w = block.window();
            if w.len == 0 || w.len > w.cap || w.start + w.cap > BLOCK_SIZE || !w.start.is_multiple_of(PAGE) {
                return Err(format!("block {idx} has window {w:?}"));
            }
            if block.buf[w.len as usize..].iter().any(|&b| b != 0) {
                return Err(format!("block {idx} has bytes past its data ({w:?})"));
            }
            if w.cap > w.len && !self.spare.is_some_and(|(lo, hi)| (lo..=hi).contains(idx)) {
                return Err(format!("block {idx} has room to spare ({w:?}) outside {:?}", self.spare));
            }
            charge += block_charge(w.cap);
            stored += w.len;
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
