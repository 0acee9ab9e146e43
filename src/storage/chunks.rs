//! Sequential storage: a sorted list of exact-size `Bytes` extents plus one
//! open tail buffer that absorbs appends.
//!
//! Assumptions that justify the simple choices here:
//! - Most files are written front to back, so appends must be cheap and
//!   reads of whole extents must not copy. Extents are cut on a fixed
//!   [`CHUNK_SIZE`] grid, so a page-aligned kernel READ of at most one grid
//!   cell never straddles two extents and is answered with a `Bytes` slice.
//! - Extents hold exactly the bytes that are data; gaps between them are
//!   holes and cost nothing. A frozen extent is always allocated to its exact
//!   length, so its charge is its length plus fixed overheads (`extent_charge`).
//! - Random writes are rare here (under `auto` storage they promote the file
//!   to a block map, up to the promotion limit), but they must still work:
//!   they overwrite extents in place (copying an extent only when a reply
//!   still holds it) and fill holes with new extents. That includes the
//!   2 MiB mappings of streaming writers, which stay mappings: an overwrite
//!   of 4 KiB in a large file costs 4 KiB, not a copy of its cell, and a
//!   truncate or a hole shrinks one where it lies.
//!
//! Every mutating operation has a `*_cost` twin computed from the same state
//! without changing it; the engine reserves that much quota first, then
//! applies the change, which cannot fail.

use std::sync::Arc;

use bytes::Bytes;

use super::hugebuf::{HUGE, HugeBuf};
use super::spares;
use super::{PAGE, Seek, alloc_overhead, grid_end, is_mapped, seek_extents, shrink_buffer, zeros};

/// Extents never cross a multiple of this offset.
pub const CHUNK_SIZE: u64 = HUGE as u64;
/// A write at least this large that starts a grid cell marks a streaming
/// writer: its tail gets a whole cell at once, faulted in with one call.
const STREAM_WRITE: u64 = 256 * 1024;
/// Smallest capacity given to a fresh tail buffer.
const MIN_TAIL: u64 = 4096;
/// Bytes charged per extent on top of its buffer: its `Chunk` slot (40
/// bytes, up to twice that after the list grows) and the shared-buffer
/// header `Bytes` allocates once an extent has been read.
pub const EXTENT_SLOT: u64 = 112;

/// What an extent (or the tail) whose buffer holds `cap` bytes is charged.
pub(crate) fn extent_charge(cap: u64) -> u64 {
    if cap == 0 { 0 } else { cap + alloc_overhead(cap) + EXTENT_SLOT }
}

/// What an extent kept in a mapping of our own holding `len` bytes is
/// charged: its whole pages, as a buffer of that size (a full cell is
/// charged as a mapped heap buffer of 2 MiB would be).
fn huge_charge(len: u64) -> u64 {
    extent_charge(len.next_multiple_of(PAGE))
}

/// An extent's bytes. Replies share them (zero-copy reads); a change made
/// while a reply holds them copies them first, and the reply keeps the old.
enum Data {
    /// An exact-size buffer, from the heap or mapped by glibc when large.
    Heap(Bytes),
    /// A grid cell a streaming writer filled, whole or in part: a 2 MiB
    /// mapping of our own (`HugeBuf`), changed and shrunk in place while no
    /// reply holds it.
    Huge(Arc<HugeBuf>),
}

/// A reply's hold on a huge extent.
struct HugeShare(Arc<HugeBuf>);

impl AsRef<[u8]> for HugeShare {
    fn as_ref(&self) -> &[u8] {
        (*self.0).as_ref()
    }
}

struct Chunk {
    start: u64,
    /// Never empty; length equals the allocation's size.
    data: Data,
}

impl Chunk {
    fn heap(start: u64, data: Bytes) -> Chunk {
        Chunk { start, data: Data::Heap(data) }
    }

    fn bytes(&self) -> &[u8] {
        match &self.data {
            Data::Heap(b) => b,
            Data::Huge(h) => (**h).as_ref(),
        }
    }

    fn end(&self) -> u64 {
        self.start + self.len()
    }

    fn len(&self) -> u64 {
        self.bytes().len() as u64
    }

    fn is_huge(&self) -> bool {
        matches!(self.data, Data::Huge(_))
    }

    /// What the extent is charged.
    fn charge(&self) -> u64 {
        match &self.data {
            Data::Heap(b) => extent_charge(b.len() as u64),
            Data::Huge(h) => huge_charge(h.len() as u64),
        }
    }

    /// The mapping, if the extent has one and no reply holds it.
    fn huge_mut(&mut self) -> Option<&mut HugeBuf> {
        match &mut self.data {
            Data::Huge(h) => Arc::get_mut(h),
            Data::Heap(_) => None,
        }
    }

    /// Bytes `[a, b)` of the extent, without copying.
    fn slice(&self, a: usize, b: usize) -> Bytes {
        match &self.data {
            Data::Heap(bytes) => bytes.slice(a..b),
            Data::Huge(h) => Bytes::from_owner(HugeShare(Arc::clone(h))).slice(a..b),
        }
    }

    /// Changes bytes in place, the length unchanged.
    fn modify(&mut self, f: impl FnOnce(&mut [u8])) {
        if let Some(h) = self.huge_mut() {
            return f(h.as_mut_slice());
        }
        self.edit(|v| f(v));
    }

    /// A mapping shrunk below the size glibc maps moves to the heap, where
    /// a buffer of its size lies. Its pages past its bytes were handed back
    /// first, so mapping and copy together hold less than the mapping did.
    fn settle(&mut self) {
        if let Data::Huge(h) = &self.data
            && !is_mapped(h.len() as u64)
        {
            self.data = Data::Heap(Bytes::copy_from_slice((**h).as_ref()));
        }
    }

    /// Drops the bytes before `at` (inside the chunk).
    fn cut_front(&mut self, at: u64) {
        self.keep((at - self.start) as usize, self.len() as usize);
        self.start = at;
    }

    /// Drops the bytes from `at` (inside the chunk) on.
    fn cut_back(&mut self, at: u64) {
        self.keep(0, (at - self.start) as usize);
    }

    /// Keeps bytes `[a, b)` of the extent, moved to its front and the
    /// buffer shrunk where it lies; a mapping a reply holds has just those
    /// bytes copied out.
    fn keep(&mut self, a: usize, b: usize) {
        if let Some(h) = self.huge_mut() {
            if b < h.len() {
                h.truncate(b);
            }
            if a > 0 {
                h.remove_front(a);
            }
            self.settle();
        } else if self.is_huge() {
            self.data = Data::Heap(Bytes::copy_from_slice(&self.bytes()[a..b]));
        } else {
            self.edit(|v| {
                v.truncate(b);
                if a > 0 {
                    v.copy_within(a.., 0);
                    v.truncate(b - a);
                }
            });
        }
    }

    /// The bytes as a `Vec` to change, then kept exact-size. Zero-copy for a
    /// heap buffer no reply holds; otherwise (a mapping a reply holds) a
    /// copy, and the reply keeps the old bytes.
    fn edit(&mut self, f: impl FnOnce(&mut Vec<u8>)) {
        let mut v = match std::mem::replace(&mut self.data, Data::Heap(Bytes::new())) {
            Data::Heap(b) => Vec::from(b),
            Data::Huge(h) => (*h).as_ref().to_vec(),
        };
        f(&mut v);
        debug_assert!(!v.is_empty());
        let len = v.len();
        shrink_buffer(&mut v, len);
        self.data = Data::Heap(Bytes::from(v));
    }

    /// A heap extent as the open tail again: zero-copy unless a reply holds
    /// it. (Mappings are never reopened: `append_origin`.)
    fn into_tail(self) -> Vec<u8> {
        match self.data {
            Data::Heap(b) => Vec::from(b),
            Data::Huge(h) => (*h).as_ref().to_vec(),
        }
    }
}

/// What splitting an extent around a hole allocates, `head` bytes kept
/// before it and `rest` after: the extent keeps its buffer for one side,
/// shrunk where it lies, and the smaller side is copied out.
fn split_cost(head: u64, rest: u64) -> u64 {
    extent_charge(head.min(rest))
}

/// The open tail's buffer: a growable `Vec`, or, for streaming writers, a
/// whole grid cell, faulted in with one call.
enum TailBuf {
    Small(Vec<u8>),
    Huge(HugeBuf),
}

impl Default for TailBuf {
    fn default() -> Self {
        TailBuf::Small(Vec::new())
    }
}

impl TailBuf {
    fn len(&self) -> usize {
        match self {
            TailBuf::Small(v) => v.len(),
            TailBuf::Huge(h) => h.len(),
        }
    }

    fn capacity(&self) -> usize {
        match self {
            TailBuf::Small(v) => v.capacity(),
            TailBuf::Huge(_) => HUGE,
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn as_slice(&self) -> &[u8] {
        match self {
            TailBuf::Small(v) => v,
            TailBuf::Huge(h) => h.as_ref(),
        }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        match self {
            TailBuf::Small(v) => v,
            TailBuf::Huge(h) => h.as_mut_slice(),
        }
    }

    /// Makes room for `additional` more bytes (a huge buffer always has it).
    fn reserve_exact(&mut self, additional: usize) {
        if let TailBuf::Small(v) = self {
            v.reserve_exact(additional);
        }
    }

    fn extend_from_slice(&mut self, data: &[u8]) {
        match self {
            TailBuf::Small(v) => v.extend_from_slice(data),
            TailBuf::Huge(h) => h.extend_from_slice(data),
        }
    }

    /// What the open tail is charged: its capacity.
    fn charge(&self) -> u64 {
        extent_charge(self.capacity() as u64)
    }

    /// The buffer as an extent, shrunk where it lies to its length.
    fn into_data(self) -> Data {
        match self {
            TailBuf::Small(mut v) => {
                let len = v.len();
                shrink_buffer(&mut v, len);
                Data::Heap(Bytes::from(v))
            }
            TailBuf::Huge(mut h) => {
                let len = h.len();
                h.truncate(len);
                Data::Huge(Arc::new(h))
            }
        }
    }
}

/// A file's bytes as sorted extents plus an open tail.
#[derive(Default)]
pub(crate) struct ChunkList {
    /// Frozen extents, sorted by `start`, non-overlapping, all ending at or
    /// before `tail_start` when the tail is active.
    chunks: Vec<Chunk>,
    /// Open extent `[tail_start, tail_start + tail.len())`; active iff not
    /// empty. Its capacity never reaches past the grid cell of `tail_start`.
    tail: TailBuf,
    tail_start: u64,
    /// Σ (extent length + overhead) + (tail capacity + overhead if active).
    charge: u64,
    /// Σ extent lengths + tail length: bytes that are data, not holes.
    stored: u64,
}

/// One step of growing the tail: copy `take` bytes after making the tail's
/// capacity at least `cap` (a whole 2 MiB mapping if `huge`); freeze it afterwards
/// if its grid cell is full.
struct TailStep {
    take: u64,
    cap: u64,
    huge: bool,
    freeze: bool,
}

/// The tail-append steps for `n` bytes, starting from a tail at `start`
/// holding `len` bytes in `cap` capacity. Shared by the cost and apply paths
/// so both make the same decisions.
fn tail_steps(mut start: u64, mut len: u64, mut cap: u64, mut n: u64, whole_cells: bool) -> Vec<TailStep> {
    let mut steps = Vec::new();
    while n > 0 {
        let cell_end = grid_end(start, CHUNK_SIZE);
        let room = cell_end - (start + len);
        let take = room.min(n);
        let need = len + take;
        // A large write starting a cell: take the whole cell at once.
        let huge = whole_cells && len == 0 && cap == 0 && start.is_multiple_of(CHUNK_SIZE) && take >= STREAM_WRITE;
        if huge {
            cap = CHUNK_SIZE;
        } else if need > cap {
            cap = need.max(cap.saturating_mul(2)).max(MIN_TAIL).min(cell_end - start);
        }
        len += take;
        n -= take;
        let freeze = start + len == cell_end;
        steps.push(TailStep { take, cap, huge, freeze });
        if freeze {
            start = cell_end;
            len = 0;
            cap = 0;
        }
    }
    steps
}

impl ChunkList {
    pub(crate) fn charge(&self) -> u64 {
        self.charge
    }

    pub(crate) fn stored(&self) -> u64 {
        self.stored
    }

    fn tail_active(&self) -> bool {
        !self.tail.is_empty()
    }

    fn tail_end(&self) -> u64 {
        self.tail_start + self.tail.len() as u64
    }

    /// One past the last data byte (holes at the end are not data).
    pub(crate) fn data_end(&self) -> u64 {
        if self.tail_active() { self.tail_end() } else { self.chunks.last().map_or(0, Chunk::end) }
    }

    /// Visits every extent in order as `(start, bytes)`, the tail last.
    pub(crate) fn for_each_extent(&self, mut f: impl FnMut(u64, &[u8])) {
        for c in &self.chunks {
            f(c.start, c.bytes());
        }
        if self.tail_active() {
            f(self.tail_start, self.tail.as_slice());
        }
    }

    /// Index of the first chunk ending after `off`.
    fn first_after(&self, off: u64) -> usize {
        self.chunks.partition_point(|c| c.end() <= off)
    }

    // ---------------------------------------------------------------- read

    /// Bytes `[off, off + len)`; the caller has clamped the range to the file
    /// size. A range inside one frozen extent is returned without copying.
    pub(crate) fn read(&self, off: u64, len: u64) -> Bytes {
        let end = off + len;
        let i = self.first_after(off);
        if let Some(c) = self.chunks.get(i)
            && c.start <= off
            && end <= c.end()
        {
            let a = (off - c.start) as usize;
            return c.slice(a, a + len as usize);
        }
        let mut buf = Vec::with_capacity(len as usize);
        let mut copy = |start: u64, bytes: &[u8]| {
            let s = start.max(off);
            let e = (start + bytes.len() as u64).min(end);
            if s >= e {
                return;
            }
            buf.resize((s - off) as usize, 0);
            buf.extend_from_slice(&bytes[(s - start) as usize..(e - start) as usize]);
        };
        for c in self.chunks[i..].iter().take_while(|c| c.start < end) {
            copy(c.start, c.bytes());
        }
        if self.tail_active() {
            copy(self.tail_start, self.tail.as_slice());
        }
        if buf.is_empty() {
            return zeros(len);
        }
        buf.resize(len as usize, 0);
        Bytes::from(buf)
    }

    // --------------------------------------------------------------- write

    /// The holes inside `[off, end)`, which must lie below `data_end()`.
    fn gaps(&self, off: u64, end: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut pos = off;
        let extents = self.chunks[self.first_after(off)..]
            .iter()
            .map(|c| (c.start, c.end()))
            .chain(self.tail_active().then(|| (self.tail_start, self.tail_end())));
        for (s, e) in extents {
            if pos >= end {
                break;
            }
            if s > pos {
                gaps.push((pos, s.min(end)));
            }
            pos = pos.max(e);
        }
        if pos < end {
            gaps.push((pos, end));
        }
        gaps
    }

    /// Pieces of `[s, e)` cut on the grid.
    fn grid_pieces(s: u64, e: u64) -> impl Iterator<Item = (u64, u64)> {
        let mut p = s;
        std::iter::from_fn(move || {
            (p < e).then(|| {
                let q = grid_end(p, CHUNK_SIZE).min(e);
                let piece = (p, q);
                p = q;
                piece
            })
        })
    }

    fn gap_fill_cost(&self, off: u64, end: u64) -> u64 {
        self.gaps(off, end)
            .into_iter()
            .flat_map(|(s, e)| Self::grid_pieces(s, e))
            .map(|(s, e)| extent_charge(e - s))
            .sum()
    }

    /// The tail state an append at `off` would start from: `(start, len, cap)`.
    /// A frozen last heap extent that ends at `off` inside its grid cell is
    /// reopened as the tail rather than starting a new extent. A mapping
    /// is not (it cannot grow once shrunk): the append starts an extent of
    /// its own after it.
    fn append_origin(&self, off: u64) -> (u64, u64, u64) {
        if self.tail_active() && self.tail_end() == off {
            return (self.tail_start, self.tail.len() as u64, self.tail.capacity() as u64);
        }
        if !self.tail_active()
            && let Some(last) = self.chunks.last()
            && last.end() == off
            && off != grid_end(last.start, CHUNK_SIZE)
            && !last.is_huge()
        {
            return (last.start, last.len(), last.len());
        }
        (off, 0, 0)
    }

    fn append_cost(&self, off: u64, n: u64, whole_cells: bool) -> u64 {
        let (start, len, mut cap) = self.append_origin(off);
        let mut cost = 0;
        // Reopening a frozen extent keeps its charge; a gap-closing freeze only shrinks.
        for step in tail_steps(start, len, cap, n, whole_cells) {
            if step.cap > cap {
                cost += extent_charge(step.cap) - extent_charge(cap);
            }
            cap = if step.freeze { 0 } else { step.cap };
        }
        cost
    }

    /// Quota needed to write `len` bytes at `off`.
    pub(crate) fn write_cost(&self, off: u64, len: u64, whole_cells: bool) -> u64 {
        let end = off + len;
        let de = self.data_end();
        let mut cost = 0;
        if off < de {
            cost += self.gap_fill_cost(off, end.min(de));
        }
        if end > de {
            cost += self.append_cost(off.max(de), end - off.max(de), whole_cells);
        }
        cost
    }

    pub(crate) fn write(&mut self, off: u64, data: &[u8], whole_cells: bool) {
        let end = off + data.len() as u64;
        let de = self.data_end();
        if off < de {
            let inner = end.min(de);
            self.write_inside(off, &data[..(inner - off) as usize]);
        }
        if end > de {
            let start = off.max(de);
            self.append(start, &data[(start - off) as usize..], whole_cells);
        }
    }

    /// Overwrites data and fills holes inside `[off, off + len) ⊆ [0, data_end)`.
    fn write_inside(&mut self, off: u64, data: &[u8]) {
        let end = off + data.len() as u64;
        let src = |s: u64, e: u64| &data[(s - off) as usize..(e - off) as usize];
        // Holes first, computed on the unchanged layout.
        let mut fresh: Vec<Chunk> = self
            .gaps(off, end)
            .into_iter()
            .flat_map(|(s, e)| Self::grid_pieces(s, e))
            .map(|(s, e)| Chunk::heap(s, Bytes::copy_from_slice(src(s, e))))
            .collect();
        let i = self.first_after(off);
        for c in self.chunks[i..].iter_mut().take_while(|c| c.start < end) {
            let (s, e) = (c.start.max(off), c.end().min(end));
            let at = (s - c.start) as usize;
            let was = c.charge();
            c.modify(|v| v[at..at + (e - s) as usize].copy_from_slice(src(s, e)));
            // A mapping a reply holds was copied to the heap: charged less.
            self.charge = self.charge - was + c.charge();
        }
        if self.tail_active() && self.tail_start < end {
            let (s, e) = (self.tail_start.max(off), self.tail_end().min(end));
            if s < e {
                let at = (s - self.tail_start) as usize;
                self.tail.as_mut_slice()[at..at + (e - s) as usize].copy_from_slice(src(s, e));
            }
        }
        if fresh.is_empty() {
            return;
        }
        for c in &fresh {
            self.charge += c.charge();
            self.stored += c.len();
        }
        // Merge the new extents with the old ones of the same range.
        let j = self.chunks.partition_point(|c| c.start < end);
        fresh.extend(self.chunks.drain(i..j));
        fresh.sort_unstable_by_key(|c| c.start);
        self.chunks.splice(i..i, fresh);
        debug_assert!(self.chunks.windows(2).all(|w| w[0].end() <= w[1].start));
    }

    /// Appends at `off >= data_end()`, leaving a hole if `off > data_end()`.
    fn append(&mut self, off: u64, data: &[u8], whole_cells: bool) {
        let (start, len, _) = self.append_origin(off);
        if self.tail_active() && self.tail_start != start {
            self.freeze_tail();
        }
        if !self.tail_active() {
            if len > 0 {
                // Reopen the last frozen extent as the tail (zero-copy when unique).
                let Some(last) = self.chunks.pop() else {
                    unreachable!("append_origin reopens only an existing extent")
                };
                let charged = last.charge();
                self.tail = TailBuf::Small(last.into_tail());
                self.charge = self.charge - charged + self.tail.charge();
            }
            self.tail_start = start;
        }
        let mut rest = data;
        let steps = tail_steps(start, len, self.tail.capacity() as u64, data.len() as u64, whole_cells);
        for step in steps {
            let old_cap = self.tail.capacity() as u64;
            if step.huge && self.tail.is_empty() {
                // A 2 MiB mapping if the system gives one; an ordinary buffer of
                // the same size otherwise (same charge either way).
                self.tail = spares::take().map_or_else(|| TailBuf::Small(Vec::new()), TailBuf::Huge);
            }
            if step.cap > old_cap {
                self.tail.reserve_exact((step.cap - self.tail.len() as u64) as usize);
                self.charge += extent_charge(self.tail.capacity() as u64) - extent_charge(old_cap);
            }
            let (now, later) = rest.split_at(step.take as usize);
            self.tail.extend_from_slice(now);
            self.stored += step.take;
            rest = later;
            if step.freeze {
                let next = self.tail_end();
                self.freeze_tail();
                self.tail_start = next;
            }
        }
    }

    /// Turns the tail into a frozen extent, giving back its spare capacity.
    fn freeze_tail(&mut self) {
        if !self.tail_active() {
            return;
        }
        let v = std::mem::take(&mut self.tail);
        let charged = v.charge();
        let mut c = Chunk { start: self.tail_start, data: v.into_data() };
        c.settle();
        self.charge = self.charge - charged + c.charge();
        self.chunks.push(c);
    }

    /// Gives back the tail's spare capacity (called when the last writer
    /// closes the file). A heap tail stays open for later appends; a
    /// mapping is frozen, shrunk where it lies.
    pub(crate) fn compact(&mut self) {
        let charged = self.tail.charge();
        match &mut self.tail {
            TailBuf::Small(v) if v.capacity() > v.len() => {
                shrink_buffer(v, v.len());
                self.charge = self.charge - charged + self.tail.charge();
            }
            TailBuf::Small(_) => {}
            TailBuf::Huge(_) => self.freeze_tail(),
        }
    }

    // ------------------------------------------------------------ truncate

    /// Drops all data at or beyond `size`. Never needs quota: every buffer
    /// that keeps bytes shrinks where it lies.
    pub(crate) fn truncate(&mut self, size: u64) {
        if self.tail_active() && self.tail_end() > size {
            let charged = self.tail.charge();
            match &mut self.tail {
                TailBuf::Small(v) if self.tail_start < size => {
                    let keep = (size - self.tail_start) as usize;
                    self.stored -= (v.len() - keep) as u64;
                    v.truncate(keep);
                    shrink_buffer(v, keep);
                    self.charge = self.charge - charged + self.tail.charge();
                }
                // A mapping shrinks as a frozen extent, below.
                TailBuf::Huge(_) if self.tail_start < size => self.freeze_tail(),
                _ => {
                    self.stored -= self.tail.len() as u64;
                    self.charge -= charged;
                    self.tail = TailBuf::default();
                }
            }
        }
        let keep = self.chunks.partition_point(|c| c.start < size);
        for c in self.chunks.drain(keep..) {
            self.charge -= c.charge();
            self.stored -= c.len();
        }
        if let Some(last) = self.chunks.last_mut()
            && last.end() > size
        {
            let (charged, cut) = (last.charge(), last.end() - size);
            last.cut_back(size);
            self.charge = self.charge - charged + last.charge();
            self.stored -= cut;
        }
    }

    // ---------------------------------------------------------- punch hole

    /// Quota needed to punch `[off, end)`: only a hole inside one extent
    /// needs any, to split it (`split_cost`).
    pub(crate) fn punch_cost(&self, off: u64, end: u64) -> u64 {
        let inside = |s: u64, e: u64| s < off && e > end;
        if let Some(c) = self.chunks.get(self.first_after(off)).filter(|c| inside(c.start, c.end())) {
            return split_cost(off - c.start, c.end() - end);
        }
        if self.tail_active() && inside(self.tail_start, self.tail_end()) {
            // The tail is frozen where it lies first, then split.
            return split_cost(off - self.tail_start, self.tail_end() - end);
        }
        0
    }

    /// Turns `[off, end)` into a hole, releasing every byte in it.
    pub(crate) fn punch(&mut self, off: u64, end: u64) {
        if off >= end {
            return;
        }
        if self.tail_active() && self.tail_start < end && self.tail_end() > off {
            self.freeze_tail();
        }
        let i = self.first_after(off);
        let j = self.chunks.partition_point(|c| c.start < end);
        let mut kept = Vec::new();
        for mut c in self.chunks.drain(i..j) {
            let (s, e) = (c.start, c.end());
            self.charge -= c.charge();
            self.stored -= c.len();
            if s < off && e > end {
                // As `split_cost` reserved: the smaller side is copied out
                // and the other keeps the buffer.
                if off - s <= e - end {
                    kept.push(Chunk::heap(s, Bytes::copy_from_slice(&c.bytes()[..(off - s) as usize])));
                    c.cut_front(end);
                    kept.push(c);
                } else {
                    let suffix = Chunk::heap(end, Bytes::copy_from_slice(&c.bytes()[(end - s) as usize..]));
                    c.cut_back(off);
                    kept.push(c);
                    kept.push(suffix);
                }
            } else if s < off {
                c.cut_back(off);
                kept.push(c);
            } else if e > end {
                c.cut_front(end);
                kept.push(c);
            }
        }
        for c in &kept {
            self.charge += c.charge();
            self.stored += c.len();
        }
        self.chunks.splice(i..i, kept);
    }

    // ------------------------------------------------------------ allocate

    /// Quota needed to back every hole in `[off, end)` with zeroed memory.
    pub(crate) fn allocate_cost(&self, off: u64, end: u64) -> u64 {
        let de = self.data_end();
        let beyond =
            if end > de { Self::grid_pieces(off.max(de), end).map(|(s, e)| extent_charge(e - s)).sum() } else { 0 };
        self.gap_fill_cost(off, end.min(de)) + beyond
    }

    /// Backs every hole in `[off, end)` with zeroed memory.
    pub(crate) fn allocate(&mut self, off: u64, end: u64) {
        let de = self.data_end();
        let mut holes: Vec<(u64, u64)> = if off < de { self.gaps(off, end.min(de)) } else { Vec::new() };
        if end > de {
            self.freeze_tail();
            holes.push((off.max(de), end));
        }
        let fresh: Vec<Chunk> = holes
            .into_iter()
            .flat_map(|(s, e)| Self::grid_pieces(s, e))
            .map(|(s, e)| Chunk::heap(s, Bytes::from(vec![0u8; (e - s) as usize])))
            .collect();
        for c in fresh {
            self.charge += c.charge();
            self.stored += c.len();
            let at = self.chunks.partition_point(|x| x.start < c.start);
            self.chunks.insert(at, c);
        }
    }

    /// Overwrites existing data in `[off, end)` with zeros (no quota needed).
    pub(crate) fn zero_existing(&mut self, off: u64, end: u64) {
        let i = self.first_after(off);
        for c in self.chunks[i..].iter_mut().take_while(|c| c.start < end) {
            let (s, e) = (c.start.max(off) - c.start, c.end().min(end) - c.start);
            let was = c.charge();
            c.modify(|v| v[s as usize..e as usize].fill(0));
            self.charge = self.charge - was + c.charge();
        }
        if self.tail_active() && self.tail_start < end && self.tail_end() > off {
            let s = off.max(self.tail_start) - self.tail_start;
            let e = end.min(self.tail_end()) - self.tail_start;
            self.tail.as_mut_slice()[s as usize..e as usize].fill(0);
        }
    }

    // ---------------------------------------------------------------- seek

    /// First data (`Seek::Data`) or hole (`Seek::Hole`) offset at or after
    /// `off`, looking only below `size`; `None` if there is none.
    pub(crate) fn seek(&self, off: u64, size: u64, whence: Seek) -> Option<u64> {
        let extents = self.chunks[self.first_after(off)..]
            .iter()
            .map(|c| (c.start, c.end()))
            .chain(self.tail_active().then(|| (self.tail_start, self.tail_end())))
            .filter(|&(s, e)| e > off && s < size);
        seek_extents(extents, off, size, whence)
    }

    /// Whether the layout invariants hold (used by tests).
    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        let mut charge = 0;
        let mut stored = 0;
        let mut prev_end = 0;
        for c in &self.chunks {
            if c.len() == 0 || c.start < prev_end {
                return Err(format!("bad extent at {} (prev end {prev_end})", c.start));
            }
            if grid_end(c.start, CHUNK_SIZE) < c.end() {
                return Err(format!("extent at {} crosses the grid", c.start));
            }
            prev_end = c.end();
            charge += c.charge();
            stored += c.len();
        }
        if self.tail_active() {
            if self.tail_start < prev_end {
                return Err("tail overlaps extents".into());
            }
            if self.tail_start + self.tail.capacity() as u64 > grid_end(self.tail_start, CHUNK_SIZE) {
                return Err("tail capacity crosses the grid".into());
            }
            charge += self.tail.charge();
            stored += self.tail.len() as u64;
        } else if self.tail.capacity() != 0 {
            return Err("inactive tail holds memory".into());
        }
        if charge != self.charge || stored != self.stored {
            return Err(format!(
                "charge {} (tracked {}), stored {} (tracked {})",
                charge, self.charge, stored, self.stored
            ));
        }
        Ok(())
    }
}
