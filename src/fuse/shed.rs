//! Shedding the page cache behind a streaming writer.
//!
//! A descriptor opened for reading and writing keeps the page cache
//! (`FOPEN_KEEP_CACHE`), so each byte written through it lands twice: in a
//! page-cache page the kernel fills from the caller's buffer, then in the
//! daemon's storage. tmpfs holds it once. For a program streaming a large
//! file through such a descriptor (fio, a database building a file, a
//! program that opens its output `w+`) the second copy is memory nobody
//! reads soon, and worse, each of its pages is a fresh page: memory this VM
//! has left idle comes back from the host at a fraction of the speed of
//! memory just freed ("Sequential writes: two copies into cold memory" in
//! docs/performance.md). Dropping the pages a stream has left behind hands
//! them back to the allocator warm, and the writer's next pages are those.
//!
//! So after a large WRITE through a page-cached descriptor crosses a
//! [`WINDOW`] boundary, the window before the one it started in is
//! dropped from the kernel's page cache (an inode invalidation notice for
//! that range). The range lies wholly behind the writer: its pages were
//! written through and are clean and unlocked, nothing is lost (the bytes
//! are in the daemon, and a later read fetches them), and the last one or
//! two windows of the stream stay cached. Small writes (a database's pages,
//! random 4 KiB writes) are left alone: they are the ones read back.
//!
//! The notice is sent by a thread of its own, never by a worker: the kernel
//! invalidates the pages inside that `write(2)` to `/dev/fuse`, and must
//! lock each page first; a page locked by a reader waiting for a READ only
//! a worker can answer would otherwise stall that worker for good. The
//! queue is bounded and a full queue drops the notice: shedding is an
//! optimisation, and a dropped window stays cached until the kernel
//! reclaims it.

use std::sync::{Arc, OnceLock};

use crossbeam::channel::{Receiver, Sender};
use fuser::{INodeNo, Notifier};

/// The stream is shed in windows of this size.
pub const WINDOW: u64 = 8 << 20;
/// Writes smaller than this never shed: small writes are read back.
pub const MIN_WRITE: u64 = 256 << 10;
/// Notices waiting for the thread; more are dropped.
const QUEUE: usize = 64;

/// The page-cache range to drop after a write of `len` bytes at `offset`:
/// when the write crosses a [`WINDOW`] boundary, the window before the one
/// it started in, as `(start, len)`.
pub fn behind(offset: u64, len: u64) -> Option<(u64, u64)> {
    if len < MIN_WRITE {
        return None;
    }
    let first = offset / WINDOW;
    let end = offset.checked_add(len)? / WINDOW;
    if end == first || first == 0 {
        return None;
    }
    Some(((first - 1) * WINDOW, WINDOW))
}

/// The workers' side of the shedding thread, which ends when this is
/// dropped.
#[derive(Clone)]
pub struct Shedder {
    notices: Sender<(INodeNo, u64, u64)>,
}

impl Shedder {
    /// Starts the thread; it sends its notices through `notifier` once the
    /// session has set it.
    pub fn start(notifier: Arc<OnceLock<Notifier>>) -> std::io::Result<Shedder> {
        let (notices, rx) = crossbeam::channel::bounded(QUEUE);
        std::thread::Builder::new().name("shed".into()).spawn(move || shed(&rx, &notifier))?;
        Ok(Shedder { notices })
    }

    /// Called after a write of `len` bytes at `offset` through a page-cached
    /// descriptor of `i` was stored.
    pub fn after_write(&self, i: INodeNo, offset: u64, len: u64) {
        if let Some((start, len)) = behind(offset, len) {
            // A full queue drops the notice (see the module's comment).
            let _ = self.notices.try_send((i, start, len));
        }
    }
}

fn shed(rx: &Receiver<(INodeNo, u64, u64)>, notifier: &OnceLock<Notifier>) {
    while let Ok((i, start, len)) = rx.recv() {
        let (Some(n), Ok(start), Ok(len)) = (notifier.get(), i64::try_from(start), i64::try_from(len)) else {
            continue;
        };
        if let Err(e) = n.inval_inode(i, start, len) {
            // ENOENT: the kernel no longer holds the inode; nothing is cached.
            log::debug!("page-cache shedding of inode {}: {e}", i.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn a_stream_sheds_the_window_before_the_one_it_writes_in() {
        // 1 MiB writes from 0: nothing until the write that ends the
        // second window, which drops the first.
        let shed: Vec<(u64, Option<(u64, u64)>)> =
            (0..32).map(|k| (k * MIB, behind(k * MIB, MIB))).filter(|(_, b)| b.is_some()).collect();
        assert_eq!(
            shed,
            vec![
                (15 * MIB, Some((0, WINDOW))),
                (23 * MIB, Some((WINDOW, WINDOW))),
                (31 * MIB, Some((2 * WINDOW, WINDOW)))
            ]
        );
    }

    #[test]
    fn the_range_dropped_lies_wholly_behind_the_write() {
        for offset in [WINDOW - 1, WINDOW + 3, 5 * WINDOW - MIB + 7, 7 * WINDOW - MIN_WRITE] {
            for len in [MIN_WRITE, MIB, 4 * MIB] {
                if let Some((start, n)) = behind(offset, len) {
                    assert!(start + n <= offset, "{offset} {len}: dropped {start}+{n}");
                    assert_eq!(start % WINDOW, 0);
                }
            }
        }
    }

    #[test]
    fn small_writes_and_the_first_window_shed_nothing() {
        assert_eq!(behind(2 * WINDOW - 4096, 8192), None);
        assert_eq!(behind(WINDOW - MIB / 2, MIB), None);
        assert_eq!(behind(u64::MAX - MIB, 2 * MIB), None);
    }
}
