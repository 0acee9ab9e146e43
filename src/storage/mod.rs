//! File contents in one of two shapes, behind one interface.
//!
//! - [`Shape::Sequential`]: exact-size extents plus an append buffer
//!   (`chunks.rs`). Cheap appends, zero-copy reads of whole extents.
//! - [`Shape::RandomAccess`]: a sparse map of 64 KiB blocks (`blocks.rs`).
//!   In-place writes at any offset, block-granular holes.
//!
//! Both shapes support every operation; the shape only changes what each
//! operation costs. Every mutation comes as a pair: `*_cost` says how many
//! bytes of quota the change needs (computed from the unchanged state), and
//! the mutation itself cannot fail. The engine reserves the cost, applies the
//! change, then settles the reservation against [`FileData::charge`].

mod blocks;
mod chunks;
mod hugebuf;
mod spares;

use bytes::Bytes;

pub use blocks::{BLOCK_MAP_COST, BLOCK_SIZE, BLOCK_SLOT};
pub use chunks::{CHUNK_SIZE, EXTENT_SLOT};
pub use hugebuf::HUGE;
pub use spares::SPARE_BYTES;

use blocks::BlockMap;
use chunks::ChunkList;

/// Largest file size and offset, as on tmpfs (`MAX_LFS_FILESIZE`).
pub const MAX_FILE_SIZE: u64 = i64::MAX as u64;

/// How a regular file's bytes are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// Sorted extents plus an append buffer.
    Sequential,
    /// Sparse map of fixed-size blocks.
    RandomAccess,
}

impl Shape {
    /// Lower-case name used in logs and stats.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Sequential => "sequential",
            Shape::RandomAccess => "random-access",
        }
    }
}

/// How a write may use memory beyond what it strictly needs, when the quota
/// has room: the engine asks for the preferred plan first and falls back to
/// [`Plan::PLAIN`], which always needs the least.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Promote a sequential file to random-access before the change.
    pub promote: bool,
    /// Let an append that starts a grid cell with a large write take the
    /// whole cell at once (streaming writers).
    pub whole_cells: bool,
}

impl Plan {
    /// Neither promotion nor whole cells.
    pub const PLAIN: Plan = Plan { promote: false, whole_cells: false };
}

/// What `lseek` looks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seek {
    /// `SEEK_DATA`: the next byte that is data.
    Data,
    /// `SEEK_HOLE`: the next byte in a hole (end of file counts as a hole).
    Hole,
}

/// glibc's mmap threshold as the daemon fixes it (`src/cli/alloc.rs`): a
/// request whose chunk reaches it gets a mapping of its own.
pub const MMAP_THRESHOLD: u64 = 128 * 1024;
/// Granularity of a mapping.
pub(crate) const PAGE: u64 = 4096;

/// `n` rounded up to a multiple of `to` (a power of two); `u64::MAX` if
/// that does not fit.
fn round_up(n: u64, to: u64) -> u64 {
    n.checked_add(to - 1).map_or(u64::MAX, |m| m & !(to - 1))
}

/// The chunk glibc carves for a request of `len` bytes: an 8-byte header,
/// rounded up to 16 bytes, 32 at least.
fn chunk_size(len: u64) -> u64 {
    round_up(len.saturating_add(8), 16).max(32)
}

/// Whether glibc serves a fresh request for `len` bytes with a mapping of
/// its own (it may still serve it from a large free chunk of its heap,
/// which holds less).
fn is_mapped(len: u64) -> bool {
    chunk_size(len) >= MMAP_THRESHOLD
}

/// Bytes the allocator adds to a data buffer of `len` bytes: its header and
/// rounding, or for a buffer glibc maps (`is_mapped`) the rest of the
/// mapping, which holds the chunk and one more header word in whole pages.
pub fn alloc_overhead(len: u64) -> u64 {
    if is_mapped(len) { round_up(chunk_size(len).saturating_add(8), PAGE).saturating_sub(len) } else { 32 }
}

/// Shrinks the capacity of `v` to `cap` (or its length, if longer). glibc
/// shrinks a mapped buffer in place, remapping it in whole pages, so a
/// buffer that would no longer be mapped at its new size is moved to a
/// fresh allocation instead: it then lies in the heap, as its charge
/// ([`alloc_overhead`] of its new size) assumes.
pub(crate) fn shrink_buffer<T>(v: &mut Vec<T>, cap: usize) {
    let cap = cap.max(v.len());
    if cap >= v.capacity() {
        return;
    }
    let bytes = |n: usize| (n as u64).saturating_mul(size_of::<T>() as u64);
    if is_mapped(bytes(v.capacity())) && !is_mapped(bytes(cap)) {
        let mut fresh = Vec::with_capacity(cap);
        fresh.append(v);
        *v = fresh;
    } else {
        v.shrink_to(cap);
    }
}

/// The end of the grid cell of size `cell` that contains `off`.
fn grid_end(off: u64, cell: u64) -> u64 {
    (off / cell + 1) * cell
}

/// `lseek`'s answer over `extents`, the `(start, end)` of each stored
/// extent in order, none ending at or before `off` or starting at or past
/// `size` (the caller filters them). Shared by both shapes.
fn seek_extents(mut extents: impl Iterator<Item = (u64, u64)>, off: u64, size: u64, whence: Seek) -> Option<u64> {
    match whence {
        Seek::Data => extents.next().map(|(s, _)| s.max(off)),
        Seek::Hole => {
            let mut pos = off;
            for (s, e) in extents {
                if s > pos {
                    break;
                }
                pos = e;
            }
            Some(pos.min(size))
        }
    }
}

static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

/// `len` zero bytes, without allocating when possible.
fn zeros(len: u64) -> Bytes {
    match usize::try_from(len) {
        Ok(n) if n <= ZEROS.len() => Bytes::from_static(&ZEROS[..n]),
        _ => Bytes::from(vec![0u8; len as usize]),
    }
}

enum Repr {
    Sequential(ChunkList),
    RandomAccess(BlockMap),
}

/// The contents of one regular file: its size and its bytes.
pub struct FileData {
    size: u64,
    repr: Repr,
}

impl FileData {
    /// An empty file of the given shape.
    pub fn new(shape: Shape) -> Self {
        let repr = match shape {
            Shape::Sequential => Repr::Sequential(ChunkList::default()),
            Shape::RandomAccess => Repr::RandomAccess(BlockMap::default()),
        };
        FileData { size: 0, repr }
    }

    /// File size in bytes.
    pub fn len(&self) -> u64 {
        self.size
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Current storage shape.
    pub fn shape(&self) -> Shape {
        match self.repr {
            Repr::Sequential(_) => Shape::Sequential,
            Repr::RandomAccess(_) => Shape::RandomAccess,
        }
    }

    /// Bytes of memory held (data capacity plus per-extent overhead): what
    /// this file's contents are charged to the quota.
    pub fn charge(&self) -> u64 {
        match &self.repr {
            Repr::Sequential(c) => c.charge(),
            Repr::RandomAccess(b) => b.charge(),
        }
    }

    /// Bytes that are data rather than holes (for `st_blocks`).
    pub fn stored(&self) -> u64 {
        match &self.repr {
            Repr::Sequential(c) => c.stored(),
            Repr::RandomAccess(b) => b.stored(),
        }
    }

    /// Up to `len` bytes from `off`, short at end of file. Holes read as zeros.
    pub fn read(&self, off: u64, len: u64) -> Bytes {
        let len = len.min(self.size.saturating_sub(off));
        if len == 0 {
            return Bytes::new();
        }
        match &self.repr {
            Repr::Sequential(c) => c.read(off, len),
            Repr::RandomAccess(b) => b.read(off, len),
        }
    }

    fn extents(&self) -> Vec<(u64, u64)> {
        let mut v = Vec::new();
        self.for_each_extent(|s, b| v.push((s, s + b.len() as u64)));
        v
    }

    fn for_each_extent(&self, f: impl FnMut(u64, &[u8])) {
        match &self.repr {
            Repr::Sequential(c) => c.for_each_extent(f),
            Repr::RandomAccess(b) => b.for_each_extent(f),
        }
    }

    /// Quota a promotion to [`Shape::RandomAccess`] needs: the whole new
    /// block map, which exists beside the old extents until they are freed.
    /// `None` if the file is already random-access.
    pub fn promote_cost(&self) -> Option<u64> {
        match self.repr {
            Repr::Sequential(_) => Some(BlockMap::layout_for(self.extents().into_iter()).1),
            Repr::RandomAccess(_) => None,
        }
    }

    /// Converts a sequential file to a block map (no-op if already one).
    pub fn promote(&mut self) {
        let Repr::Sequential(chunks) = &self.repr else { return };
        let (layout, _) = BlockMap::layout_for(self.extents().into_iter());
        let mut map = BlockMap::with_layout(&layout);
        chunks.for_each_extent(|s, b| map.fill_extent(s, b));
        self.repr = Repr::RandomAccess(map);
    }

    /// Quota needed to write `len` bytes at `off` under `plan`. The caller
    /// has checked `off + len <= MAX_FILE_SIZE`.
    pub fn write_cost(&self, off: u64, len: u64, plan: Plan) -> u64 {
        if len == 0 {
            return 0;
        }
        match &self.repr {
            Repr::Sequential(_) if plan.promote => {
                let (layout, charge) = BlockMap::layout_for(self.extents().into_iter());
                let (first, last) = (off / BLOCK_SIZE, (off + len - 1) / BLOCK_SIZE);
                let from = layout.partition_point(|&(i, _)| i < first);
                let present = layout[from..].iter().take_while(|&&(i, _)| i <= last).copied();
                charge + blocks::write_cost_with(present, layout.is_empty(), off, len)
            }
            Repr::Sequential(c) => c.write_cost(off, len, plan.whole_cells),
            Repr::RandomAccess(b) => b.write_cost(off, len),
        }
    }

    /// Writes `data` at `off` under `plan`, extending the file if needed.
    pub fn write(&mut self, off: u64, data: &[u8], plan: Plan) {
        if data.is_empty() {
            return;
        }
        if plan.promote {
            self.promote();
        }
        match &mut self.repr {
            Repr::Sequential(c) => c.write(off, data, plan.whole_cells),
            Repr::RandomAccess(b) => b.write(off, data),
        }
        self.size = self.size.max(off + data.len() as u64);
    }

    /// Sets the size; shrinking releases the data beyond it, growing adds a
    /// hole. Needs no quota.
    pub fn truncate(&mut self, size: u64) {
        match &mut self.repr {
            Repr::Sequential(c) => c.truncate(size),
            Repr::RandomAccess(b) => b.truncate(size),
        }
        self.size = size;
    }

    fn clamp(&self, off: u64, len: u64) -> (u64, u64) {
        (off, off.saturating_add(len).min(self.size).max(off))
    }

    /// Quota needed to punch a hole over `[off, off + len)`.
    pub fn punch_cost(&self, off: u64, len: u64, promote: bool) -> u64 {
        let (s, e) = self.clamp(off, len);
        match &self.repr {
            Repr::Sequential(_) if promote => self.promote_cost().unwrap_or(0),
            Repr::Sequential(c) => c.punch_cost(s, e),
            Repr::RandomAccess(_) => 0,
        }
    }

    /// Turns `[off, off + len)` (within the file) into a hole; size unchanged.
    pub fn punch(&mut self, off: u64, len: u64, promote: bool) {
        if promote {
            self.promote();
        }
        let (s, e) = self.clamp(off, len);
        if s >= e {
            return;
        }
        match &mut self.repr {
            Repr::Sequential(c) => c.punch(s, e),
            Repr::RandomAccess(b) => b.punch(s, e),
        }
    }

    /// Makes the stored bytes in `[off, off + len)` read as zeros where they
    /// lie; holes stay holes, the size and the charge stay.
    pub fn zero_stored(&mut self, off: u64, len: u64) {
        let (s, e) = self.clamp(off, len);
        if s >= e {
            return;
        }
        match &mut self.repr {
            Repr::Sequential(c) => c.zero_existing(s, e),
            Repr::RandomAccess(b) => b.zero_existing(s, e),
        }
    }

    /// Quota needed to back `[off, off + len)` with memory.
    pub fn allocate_cost(&self, off: u64, len: u64) -> u64 {
        match &self.repr {
            Repr::Sequential(c) => c.allocate_cost(off, off + len),
            Repr::RandomAccess(b) => b.allocate_cost(off, off + len),
        }
    }

    /// Backs `[off, off + len)` with memory (`fallocate` mode 0); unless
    /// `keep_size`, the file grows to cover the range.
    pub fn allocate(&mut self, off: u64, len: u64, keep_size: bool) {
        match &mut self.repr {
            Repr::Sequential(c) => c.allocate(off, off + len),
            Repr::RandomAccess(b) => b.allocate(off, off + len),
        }
        if !keep_size {
            self.size = self.size.max(off + len);
        }
    }

    /// Makes `[off, off + len)` read as zeros, backed by memory
    /// (`FALLOC_FL_ZERO_RANGE`). Costs what [`FileData::allocate_cost`] says.
    pub fn zero_range(&mut self, off: u64, len: u64, keep_size: bool) {
        match &mut self.repr {
            Repr::Sequential(c) => c.zero_existing(off, off + len),
            Repr::RandomAccess(b) => b.zero_existing(off, off + len),
        }
        self.allocate(off, len, keep_size);
    }

    /// `SEEK_DATA` / `SEEK_HOLE` from `off`; `None` means ENXIO.
    pub fn seek(&self, off: u64, whence: Seek) -> Option<u64> {
        if off >= self.size {
            return None;
        }
        match &self.repr {
            Repr::Sequential(c) => c.seek(off, self.size, whence),
            Repr::RandomAccess(b) => b.seek(off, self.size, whence),
        }
    }

    /// Gives back spare capacity held for further appends.
    pub fn compact(&mut self) {
        match &mut self.repr {
            Repr::Sequential(c) => c.compact(),
            Repr::RandomAccess(b) => b.compact(),
        }
    }

    /// Checks the shape's internal bookkeeping (for tests).
    pub fn check_invariants(&self) -> Result<(), String> {
        match &self.repr {
            Repr::Sequential(c) => c.check_invariants(),
            Repr::RandomAccess(b) => b.check_invariants(),
        }
    }
}

#[cfg(test)]
mod tests;
