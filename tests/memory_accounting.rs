//! "Every byte the daemon holds for the filesystem is reserved from the
//! quota": checked in-process, with a global allocator that counts what the
//! engine really holds (each allocation's usable size plus the allocator's
//! 8-byte chunk header), against what the quota charged for the same work.
//! This is the engine-level proof behind the daemon's resident-memory bound
//! (tests/mount_reliability.rs): memory the quota does not see is memory the
//! bound does not cover.
//!
//! One test in this binary, so no other test's allocations are counted.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicI64, Ordering};

use scratchfs::{Engine, Fallocate, SetAttr, StoragePolicy, WriteOptions, XattrSet};

/// Bytes held by live allocations, allocator headers included.
static HELD: AtomicI64 = AtomicI64::new(0);

struct Counting;

/// What an allocation at `p` holds: its usable size and the chunk header.
fn held(p: *mut u8) -> i64 {
    // SAFETY: p is a live allocation of the system allocator (malloc family).
    (unsafe { libc::malloc_usable_size(p.cast()) } + 8) as i64
}

// SAFETY: every call is forwarded to the system allocator; only counts are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            HELD.fetch_add(held(p), Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            HELD.fetch_add(held(p), Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        HELD.fetch_sub(held(p), Ordering::Relaxed);
        unsafe { System.dealloc(p, layout) }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let before = held(p);
        let q = unsafe { System.realloc(p, layout, new_size) };
        if !q.is_null() {
            HELD.fetch_add(held(q) - before, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// One scenario's figures.
struct Row {
    what: String,
    objects: u64,
    charged: i64,
    held: i64,
}

/// Runs `work` on a fresh engine and compares what it allocated (still live
/// afterwards) with what the quota charged.
fn measure(what: &str, objects: u64, work: impl FnOnce(&Engine)) -> Row {
    measure_after(StoragePolicy::Auto, what, objects, |_| (), |e, ()| work(e))
}

/// Like [`measure`], on an engine with the given storage policy, counting
/// only what `work` adds to what `setup` made (so that what the nodes `setup`
/// created are over-charged does not hide what the objects under test hold).
fn measure_after<T>(
    storage: StoragePolicy,
    what: &str,
    objects: u64,
    setup: impl FnOnce(&Engine) -> T,
    work: impl FnOnce(&Engine, T),
) -> Row {
    let e = common::engine(1 << 40, storage);
    // The root's name index is charged with the root but allocated on its
    // first entry: allocate it before the baseline.
    let (_, fh) = common::file_with(&e, scratchfs::Ino::ROOT, "warm-up", b"");
    e.release(fh).unwrap();
    let made = setup(&e);
    let used0 = e.stats().used_bytes as i64;
    let held0 = HELD.load(Ordering::Relaxed);
    work(&e, made);
    let held = HELD.load(Ordering::Relaxed) - held0;
    let charged = e.stats().used_bytes as i64 - used0;
    common::invariants(&e);
    Row { what: what.to_owned(), objects, charged, held }
}

fn files(e: &Engine, n: u64, size: usize) {
    let data = vec![b'x'; size];
    for i in 0..n {
        let (ino, fh) = common::file_with(e, scratchfs::Ino::ROOT, &format!("f{i:06}"), &data);
        e.release(fh).unwrap();
        // As the kernel would, once it drops the inode from its cache: an
        // unlinked file is then freed at once.
        e.forget(ino, 1);
    }
}

/// [`measure_after`] of `change` to each of 2,000 empty files, created and
/// left open beforehand: `change(engine, inode, handle)`.
fn measure_on_open_files(
    storage: StoragePolicy,
    what: &str,
    change: impl Fn(&Engine, scratchfs::Ino, scratchfs::Fh),
) -> Row {
    let n = 2_000;
    let open = |e: &Engine| -> Vec<_> {
        (0..n).map(|i| common::file_with(e, scratchfs::Ino::ROOT, &format!("f{i:06}"), b"")).collect()
    };
    measure_after(storage, what, n, open, |e, files| {
        for (ino, fh) in files {
            change(e, ino, fh);
        }
    })
}

/// Like [`files`], changing each file through `change` once it is written
/// and closed.
fn files_then(e: &Engine, n: u64, size: usize, change: impl Fn(scratchfs::Ino)) {
    let data = vec![b'x'; size];
    for i in 0..n {
        let (ino, fh) = common::file_with(e, scratchfs::Ino::ROOT, &format!("f{i:06}"), &data);
        e.release(fh).unwrap();
        change(ino);
        e.forget(ino, 1);
    }
}

/// Punches `[off, off + len)` of `ino` through a handle of its own.
fn punch(e: &Engine, ino: scratchfs::Ino, off: u64, len: u64) {
    let fh = e.open(ino, common::rw(), &common::ROOT).unwrap();
    e.fallocate(fh, off, len, Fallocate::PunchHole).unwrap();
    e.release(fh).unwrap();
}

fn truncate(e: &Engine, ino: scratchfs::Ino, size: u64) {
    e.setattr(ino, &SetAttr { size: Some(size), ..SetAttr::default() }, &common::ROOT).unwrap();
}

fn remove_files(e: &Engine, which: impl Iterator<Item = u64>) {
    for i in which {
        e.unlink(scratchfs::Ino::ROOT, format!("f{i:06}").as_bytes()).unwrap();
    }
}

#[test]
fn what_the_engine_holds_never_exceeds_what_the_quota_charged() {
    // As in the daemon (src/cli/alloc.rs): buffers of 128 KiB and more are
    // mmap-ed. Left dynamic, glibc's threshold moves with earlier frees and
    // the same buffer is charged one way and held another.
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
    let root = scratchfs::Ino::ROOT;
    let rows = vec![
        // Buffers glibc maps. These come first: once earlier scenarios have
        // left large free chunks in the heap, glibc serves such requests from
        // them instead of mapping them. A mapped buffer shrunk below the mmap
        // threshold (by a truncation, by a punch that cuts an extent):
        measure("1 MiB files truncated to 1,000 bytes", 1_000, |e| {
            files_then(e, 1_000, 1 << 20, |ino| truncate(e, ino, 1_000));
        }),
        measure_after(
            StoragePolicy::Sequential,
            "300 KiB files punched to 2,000 bytes",
            1_000,
            |_| (),
            |e, ()| files_then(e, 1_000, 300 << 10, |ino| punch(e, ino, 1_000, (300 << 10) - 2_000)),
        ),
        // Just under 128 KiB, a buffer whose chunk (with its header and
        // rounding) reaches 128 KiB, so glibc maps it.
        measure("131,060-byte files", 1_000, |e| files(e, 1_000, 131_060)),
        measure("empty files", 20_000, |e| files(e, 20_000, 0)),
        measure("100-byte files", 20_000, |e| files(e, 20_000, 100)),
        measure("2,200-byte files", 20_000, |e| files(e, 20_000, 2200)),
        // Tombstones and index slots left by removals (just below the
        // compaction point), and what compaction leaves.
        measure("20,000 files, a third removed", 13_334, |e| {
            files(e, 20_000, 0);
            remove_files(e, (0..20_000).filter(|i| i % 3 == 0));
        }),
        measure("20,000 files, all but 100 removed", 100, |e| {
            files(e, 20_000, 0);
            remove_files(e, (0..20_000).filter(|i| i % 200 != 0));
        }),
        measure("directories", 5_000, |e| {
            for i in 0..5_000 {
                e.mkdir(root, format!("d{i:05}").as_bytes(), 0o755, &common::ROOT).unwrap();
            }
        }),
        measure("symlinks", 20_000, |e| {
            for i in 0..20_000 {
                e.symlink(root, format!("l{i:06}").as_bytes(), b"some/target/path", &common::ROOT).unwrap();
            }
        }),
        measure("files, one directory each", 5_000, |e| {
            for i in 0..5_000 {
                let d = e.mkdir(root, format!("d{i:05}").as_bytes(), 0o755, &common::ROOT).unwrap();
                let (_, fh) = common::file_with(e, d.ino, "f", b"content");
                e.release(fh).unwrap();
            }
        }),
        measure("one 64 MiB file, 1 MiB writes", 1, |e| {
            let (_, fh) = common::file_with(e, root, "big", b"");
            let piece = vec![7u8; 1 << 20];
            for k in 0..64u64 {
                e.write(fh, k << 20, &piece, WriteOptions::default()).unwrap();
            }
            e.release(fh).unwrap();
        }),
        measure("one 8 MiB file, 4 KiB appends, open", 1, |e| {
            let (_, fh) = common::file_with(e, root, "log", b"");
            let piece = vec![7u8; 4096];
            for k in 0..2048u64 {
                e.write(fh, k * 4096, &piece, WriteOptions::default()).unwrap();
            }
        }),
        measure("random 4 KiB writes, 8 sparse files", 8, |e| {
            let mut x = 12345u64;
            let fhs: Vec<_> = (0..8).map(|i| common::file_with(e, root, &format!("s{i}"), b"").1).collect();
            let page = vec![3u8; 4096];
            for _ in 0..4_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let fh = fhs[(x % 8) as usize];
                let off = (x >> 8) % (64 << 20) / 4096 * 4096;
                e.write(fh, off, &page, WriteOptions::default()).unwrap();
            }
            for fh in fhs {
                e.release(fh).unwrap();
            }
        }),
        measure("xattrs, 16-byte values", 2_000, |e| {
            let (ino, fh) = common::file_with(e, root, "x", b"");
            e.release(fh).unwrap();
            for i in 0..2_000 {
                e.setxattr(ino, format!("user.k{i:05}").as_bytes(), b"0123456789abcdef", XattrSet::Create).unwrap();
            }
        }),
        // Values replaced by shorter ones: shrunk where they are.
        measure("xattrs, 4,000-byte values cut to 100", 500, |e| {
            let (ino, fh) = common::file_with(e, root, "x", b"");
            e.release(fh).unwrap();
            for i in 0..500 {
                let name = format!("user.k{i:05}");
                e.setxattr(ino, name.as_bytes(), &[7; 4000], XattrSet::Create).unwrap();
                e.setxattr(ino, name.as_bytes(), &[8; 100], XattrSet::Replace).unwrap();
            }
        }),
        // A node's first attribute brings its list (a box and a few slots).
        measure_on_open_files(StoragePolicy::Auto, "first xattr of 2,000 files", |e, ino, _| {
            e.setxattr(ino, b"user.a", b"1", XattrSet::Create).unwrap();
        }),
        // Removals leave the list's slots behind unless it shrinks.
        measure("6,000 xattrs, all but one removed", 1, |e| {
            let (ino, fh) = common::file_with(e, root, "x", b"");
            e.release(fh).unwrap();
            let name = |i: u32| format!("user.{i:04}");
            for i in 0..6_000 {
                e.setxattr(ino, name(i).as_bytes(), b"0123456789abcdef", XattrSet::Create).unwrap();
            }
            for i in 1..6_000 {
                e.removexattr(ino, name(i).as_bytes()).unwrap();
            }
        }),
        // One block each: a map's first leaf is nearly empty.
        measure_on_open_files(StoragePolicy::RandomAccess, "100 bytes in 2,000 random-access files", |e, _, fh| {
            e.write(fh, 0, &[b'x'; 100], WriteOptions::default()).unwrap();
            e.release(fh).unwrap();
        }),
        // Pages far apart: each block holds from its write's page on.
        measure_on_open_files(StoragePolicy::RandomAccess, "4 KiB at 3 sparse spans, 2,000 files", |e, _, fh| {
            for i in 0..3u64 {
                e.write(fh, i * (1 << 20) + 50_000, &[b'x'; 4096], WriteOptions::default()).unwrap();
            }
            e.release(fh).unwrap();
        }),
        // A map emptied by a truncation.
        measure_after(
            StoragePolicy::RandomAccess,
            "random-access files, truncated to 0",
            2_000,
            |_| (),
            |e, ()| files_then(e, 2_000, 100, |ino| truncate(e, ino, 0)),
        ),
    ];
    let mut over = Vec::new();
    for r in &rows {
        let per = |v: i64| v as f64 / r.objects as f64;
        eprintln!(
            "  {:<38} charged {:>11} held {:>11}  per object: charged {:>9.1} held {:>9.1} ({:+.1})",
            r.what,
            r.charged,
            r.held,
            per(r.charged),
            per(r.held),
            per(r.held - r.charged)
        );
        if r.held > r.charged {
            over.push(format!(
                "{}: holds {} bytes, {} charged ({:.1} bytes per object uncharged)",
                r.what,
                r.held,
                r.charged,
                per(r.held - r.charged)
            ));
        }
    }
    assert!(over.is_empty(), "the engine holds memory the quota did not charge:\n  {}", over.join("\n  "));
}
