//! Write-only opens bypass the page cache (FOPEN_DIRECT_IO) while every
//! other open uses it. These tests prove the two stay coherent: a reader
//! that has the old bytes cached, through read(2) or a shared mapping, sees
//! what a write-only writer wrote as soon as the write returns.
//! And a file's times after `msync(2)` of a shared mapping are the ones the
//! writeback set, whatever `stat` calls ran alongside.

mod common;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use common::map::Map;
use common::mount::Mount;

#[test]
fn cached_reader_sees_a_write_only_writer() {
    let Some(m) = Mount::new(&["--size", "64M"]) else { return };
    let path = m.join("f");
    std::fs::write(&path, vec![b'a'; 1 << 20]).unwrap();
    let reader = OpenOptions::new().read(true).open(&path).unwrap();
    let mut old = vec![0u8; 1 << 20];
    reader.read_exact_at(&mut old, 0).unwrap();
    assert!(old.iter().all(|&b| b == b'a'), "the reader now has the file in the page cache");
    // Another process writes through a write-only descriptor.
    let out = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=4096", "count=16", "seek=3", "conv=notrunc", "status=none"])
        .arg(format!("of={}", path.display()))
        .status()
        .unwrap();
    assert!(out.success());
    let mut now = vec![0u8; 1 << 20];
    reader.read_exact_at(&mut now, 0).unwrap();
    assert!(now[..3 * 4096].iter().all(|&b| b == b'a'));
    assert!(now[3 * 4096..19 * 4096].iter().all(|&b| b == 0), "the cached reader sees the new bytes");
    assert!(now[19 * 4096..].iter().all(|&b| b == b'a'));
    // An appending write-only writer, with the file open for reading too.
    let mut w = OpenOptions::new().append(true).open(&path).unwrap();
    w.write_all(b"tail").unwrap();
    let mut r = OpenOptions::new().read(true).open(&path).unwrap();
    r.seek(SeekFrom::End(-4)).unwrap();
    let mut tail = String::new();
    r.read_to_string(&mut tail).unwrap();
    assert_eq!(tail, "tail");
    drop((w, r, reader));
    m.unmount();
}

#[test]
fn shared_mapping_sees_a_write_only_writer() {
    let Some(m) = Mount::new(&["--size", "64M"]) else { return };
    let path = m.join("mapped");
    std::fs::write(&path, vec![b'm'; 64 * 1024]).unwrap();
    let f = OpenOptions::new().read(true).open(&path).unwrap();
    let len = 64 * 1024;
    // SAFETY: a read-only shared mapping of an open file, unmapped below.
    let map = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
    assert_ne!(map, libc::MAP_FAILED);
    // SAFETY: the mapping is `len` bytes long and stays mapped while used.
    let view = unsafe { std::slice::from_raw_parts(map.cast::<u8>(), len) };
    assert!(view.iter().all(|&b| b == b'm'), "the mapping is populated");
    let mut w = OpenOptions::new().write(true).open(&path).unwrap();
    w.seek(SeekFrom::Start(8192)).unwrap();
    w.write_all(&[b'W'; 4096]).unwrap();
    drop(w);
    assert!(view[8192..12288].iter().all(|&b| b == b'W'), "the mapping sees the direct write");
    assert!(view[..8192].iter().all(|&b| b == b'm') && view[12288..].iter().all(|&b| b == b'm'));
    // SAFETY: unmapping what was mapped above.
    unsafe { libc::munmap(map, len) };
    m.unmount();
}

/// Sets `stop` when dropped, so a helper thread ends even if the test fails.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `stat` after `msync(2)` shows the time the writeback set, also when the
/// pages were written back by a sync elsewhere while a `stat` was on its
/// way: the kernel must not keep that GETATTR's older answer in its cache.
#[test]
fn mtime_after_msync_is_never_stale() {
    use std::os::unix::fs::MetadataExt;
    const LEN: usize = 3 * 4096;
    const OLD: u64 = 946_684_800;
    const ROUNDS: usize = 2000;
    let Some(m) = Mount::new(&["--size", "64M"]) else { return };
    let root = std::fs::File::open(&m.path).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let stale = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: syncfs on a descriptor we hold open.
                unsafe { libc::syncfs(root.as_raw_fd()) };
                std::thread::sleep(std::time::Duration::from_micros(500));
            }
        });
        let old = std::time::UNIX_EPOCH + std::time::Duration::from_secs(OLD);
        let mut stale = 0;
        for round in 0..ROUNDS {
            let path = m.join(format!("m{}", round % 4));
            std::fs::write(&path, vec![b'a'; LEN]).unwrap();
            let f = OpenOptions::new().read(true).write(true).open(&path).unwrap();
            f.set_times(std::fs::FileTimes::new().set_accessed(old).set_modified(old)).unwrap();
            let map = Map::shared(&f, LEN);
            map.write(100, b"0123456789");
            std::fs::metadata(&path).unwrap();
            map.msync();
            if std::fs::metadata(&path).unwrap().mtime() as u64 == OLD {
                stale += 1;
            }
        }
        stale
    });
    assert_eq!(stale, 0, "{stale} of {ROUNDS} stat calls after msync showed the mtime from before the stores");
    m.unmount();
}

/// A directory's attributes seen right after a name is added to it or
/// removed from it can be the old ones while other threads `stat` it and
/// list its parent: the kernel re-validates a GETATTR answer read before
/// the change when it applies it after (the caller was slow to run). That
/// must not last longer than a directory's attribute lifetime (a second),
/// where it used to last the hour names are trusted. A run that meets no
/// stale answer checks nothing, and says so.
#[test]
fn stale_directory_attributes_expire_within_a_second() {
    use std::os::unix::fs::MetadataExt;
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    const ROUNDS: usize = 40_000;
    const NAMES: usize = 8;
    const ENOUGH: usize = 3;
    // Two workers answering at once make the race likelier.
    let Some(m) = Mount::new(&["--size", "64M", "--busy-poll", "off", "--threads", "2"]) else { return };
    let dir = m.join("d");
    std::fs::create_dir(&dir).unwrap();
    let (stop, pause) = (AtomicBool::new(false), AtomicBool::new(false));
    let (seen, lasting) = std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for k in 0..3 {
            let (dir, root, stop, pause) = (&dir, &m.path, &stop, &pause);
            s.spawn(move || {
                while !stop.load(Relaxed) {
                    if pause.load(Relaxed) {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    } else if k == 0 {
                        std::fs::read_dir(root).unwrap().for_each(drop);
                    } else {
                        std::fs::metadata(dir).unwrap();
                    }
                }
            });
        }
        let (mut present, mut subdirs) = ([false; NAMES], 0);
        let (mut seen, mut lasting) = (0, Vec::new());
        for round in 0..ROUNDS {
            let before = std::fs::metadata(&dir).unwrap();
            let k = round % NAMES;
            let name = dir.join(format!("n{k}"));
            // Even names are directories (they change the link count), odd
            // ones files (only the times change).
            match (k.is_multiple_of(2), present[k]) {
                (true, false) => std::fs::create_dir(&name).unwrap(),
                (true, true) => std::fs::remove_dir(&name).unwrap(),
                (false, false) => drop(std::fs::File::create(&name).unwrap()),
                (false, true) => std::fs::remove_file(&name).unwrap(),
            }
            present[k] = !present[k];
            if k.is_multiple_of(2) {
                subdirs = if present[k] { subdirs + 1 } else { subdirs - 1 };
            }
            let fresh = |a: &std::fs::Metadata| {
                a.nlink() == 2 + subdirs && (a.mtime(), a.mtime_nsec()) > (before.mtime(), before.mtime_nsec())
            };
            if !fresh(&std::fs::metadata(&dir).unwrap()) {
                seen += 1;
                // Nobody else asks meanwhile (a new answer would hide it).
                pause.store(true, Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(1200));
                let later = std::fs::metadata(&dir).unwrap();
                pause.store(false, Relaxed);
                if !fresh(&later) {
                    lasting.push((round, later.nlink(), 2 + subdirs));
                }
                if seen == ENOUGH {
                    break;
                }
            }
        }
        (seen, lasting)
    });
    eprintln!("stale answers seen right after a change: {seen} (this run checks {seen} of them)");
    assert!(lasting.is_empty(), "stale 1.2 s after the change (round, st_nlink, expected): {lasting:?}");
    m.unmount();
}
