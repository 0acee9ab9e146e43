//! Many threads writing, appending, overwriting (forcing promotions),
//! truncating, creating and deleting near the quota boundary. A monitor
//! samples the quota throughout: `used` never exceeds `max`. Every writer
//! keeps its own record of what each file must hold; at the end every file
//! matches, and deleting everything returns the quota to its baseline.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::*;
use scratchfs::{Engine, Fallocate, FsError, Ino, NoSpaceCause, SetAttr, StoragePolicy, WriteOptions};

const QUOTA: u64 = 24 << 20;
const THREADS: u64 = 8;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

fn worker(e: &Engine, id: u64, stop: &AtomicBool, refusals: &AtomicU64) -> HashMap<String, Vec<u8>> {
    let dir = e.mkdir(Ino::ROOT, format!("w{id}").as_bytes(), 0o755, &ROOT).unwrap().ino;
    let mut rng = Rng(0x9E37_79B9 ^ ((id + 1) * 7919));
    let mut files: HashMap<String, (Ino, Vec<u8>)> = HashMap::new();
    let no_space = |r: &Result<(), FsError>| {
        if let Err(FsError::NoSpace(NoSpaceCause::Quota { .. })) = r {
            refusals.fetch_add(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    };
    while !stop.load(Ordering::Relaxed) {
        let name = format!("f{}", rng.below(6));
        match rng.below(10) {
            0 if !files.contains_key(&name) => {
                match e.create(dir, name.as_bytes(), 0o644, rw(), &ROOT) {
                    Ok((a, fh)) => {
                        e.release(fh).unwrap();
                        // Drop the lookup reference as the kernel eventually
                        // would, so an unlinked file is freed at once.
                        e.forget(a.ino, 1);
                        files.insert(name, (a.ino, Vec::new()));
                    }
                    Err(FsError::NoSpace(_)) => {
                        refusals.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(err) => panic!("create: {err}"),
                }
            }
            1 => {
                if files.remove(&name).is_some() {
                    e.unlink(dir, name.as_bytes()).unwrap();
                }
            }
            2 => {
                if let Some((ino, data)) = files.get_mut(&name) {
                    let size = rng.below(data.len() as u64 + 100_000);
                    e.setattr(*ino, &SetAttr { size: Some(size), ..SetAttr::default() }, &ROOT).unwrap();
                    data.resize(size as usize, 0);
                }
            }
            3 => {
                if let Some((ino, data)) = files.get_mut(&name) {
                    let off = rng.below(data.len() as u64 + 1);
                    let len = 1 + rng.below(200_000);
                    let fh = e.open(*ino, rw(), &ROOT).unwrap();
                    let r = e.fallocate(fh, off, len, Fallocate::PunchHole);
                    e.release(fh).unwrap();
                    if !no_space(&r) {
                        r.unwrap();
                        let end = ((off + len) as usize).min(data.len());
                        data[off as usize..end].fill(0);
                    }
                }
            }
            _ => {
                if let Some((ino, data)) = files.get_mut(&name) {
                    // Appends, overwrites in the middle (promotion), writes past the end.
                    let off = match rng.below(3) {
                        0 => data.len() as u64,
                        1 => rng.below(data.len() as u64 + 1),
                        _ => data.len() as u64 + rng.below(300_000),
                    };
                    let span = if rng.below(4) == 0 { 1 << 20 } else { 8192 };
                    let len = 1 + rng.below(span);
                    let byte = (rng.below(255) + 1) as u8;
                    let buf = vec![byte; len as usize];
                    let fh = e.open(*ino, rw(), &ROOT).unwrap();
                    let r = e.write(fh, off, &buf, WriteOptions::default()).map(drop);
                    e.release(fh).unwrap();
                    if !no_space(&r) {
                        r.unwrap();
                        let end = (off + len) as usize;
                        if data.len() < end {
                            data.resize(end, 0);
                        }
                        data[off as usize..end].fill(byte);
                    }
                }
            }
        }
    }
    // Verify against the writer's own record.
    for (name, (ino, data)) in &files {
        let fh = e.open(*ino, rw(), &ROOT).unwrap();
        assert!(content(e, fh) == *data, "worker {id}: {name} differs from what was written");
        e.release(fh).unwrap();
    }
    files.into_iter().map(|(n, (_, d))| (n, d)).collect()
}

#[test]
fn quota_holds_under_concurrent_writers_and_returns_to_baseline() {
    let e = engine(QUOTA, StoragePolicy::Auto);
    let baseline = e.stats().used_bytes;
    let stop = AtomicBool::new(false);
    let refusals = AtomicU64::new(0);
    let peak = AtomicU64::new(0);
    let samples = AtomicU64::new(0);
    let run_for =
        Duration::from_millis(std::env::var("CONCURRENCY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(4000));
    let records = std::thread::scope(|s| {
        let monitor = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                let used = e.stats().used_bytes;
                assert!(used <= QUOTA, "used {used} exceeds quota {QUOTA}");
                peak.fetch_max(used, Ordering::Relaxed);
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::yield_now();
            }
        });
        let workers: Vec<_> = (0..THREADS)
            .map(|id| {
                s.spawn({
                    let (e, stop, refusals) = (&e, &stop, &refusals);
                    move || worker(e, id, stop, refusals)
                })
            })
            .collect();
        let start = Instant::now();
        while start.elapsed() < run_for {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop.store(true, Ordering::Relaxed);
        monitor.join().unwrap();
        workers.into_iter().map(|w| w.join().unwrap()).collect::<Vec<_>>()
    });
    let stats = e.stats();
    eprintln!(
        "peak {} of {QUOTA} bytes over {} samples; {} refusals; {} promotions; {} files kept",
        peak.load(Ordering::Relaxed),
        samples.load(Ordering::Relaxed),
        refusals.load(Ordering::Relaxed),
        stats.promotions,
        records.iter().map(HashMap::len).sum::<usize>()
    );
    assert!(refusals.load(Ordering::Relaxed) > 0, "the run must reach the quota boundary");
    assert!(peak.load(Ordering::Relaxed) > QUOTA * 3 / 4, "the run must come near the quota");
    assert!(stats.promotions > 0, "overwrites must promote files");
    invariants(&e);
    // Delete everything: usage returns to the baseline.
    for (id, files) in records.iter().enumerate() {
        let dir = e.lookup(Ino::ROOT, format!("w{id}").as_bytes()).unwrap().ino;
        for name in files.keys() {
            e.unlink(dir, name.as_bytes()).unwrap();
        }
        e.rmdir(Ino::ROOT, format!("w{id}").as_bytes()).unwrap();
        e.forget(dir, 2);
    }
    assert_eq!(e.stats().used_bytes, baseline);
    assert_eq!(e.stats().nodes, 1);
    invariants(&e);
}

/// A node being released (its charges given back, not yet out of the
/// table) must refuse attribute changes: a setxattr that slipped in charged
/// bytes nothing would ever give back, a removexattr gave its bytes back
/// twice. Through FUSE the kernel's lookup reference rules this out; the
/// in-process API, which holds none, raced with an unlink.
#[test]
fn attribute_changes_racing_the_release_of_a_node_keep_the_books() {
    use scratchfs::XattrSet;
    let e = std::sync::Arc::new(engine(64 << 20, StoragePolicy::Auto));
    let start = e.stats().used_bytes;
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut round = 0u32;
    while Instant::now() < deadline {
        round += 1;
        let remove = round.is_multiple_of(2);
        let a = e.mknod(Ino::ROOT, b"f", libc::S_IFREG | 0o644, 0, &ROOT).unwrap();
        e.forget(a.ino, 1); // no kernel reference, as through the path API
        if remove {
            e.setxattr(a.ino, b"user.k", &[0u8; 1000], XattrSet::Create).unwrap();
        }
        let go = std::sync::Arc::new(std::sync::Barrier::new(2));
        let (e2, go2, ino) = (e.clone(), go.clone(), a.ino);
        let racer = std::thread::spawn(move || {
            go2.wait();
            for _ in 0..50 {
                let r = if remove {
                    e2.removexattr(ino, b"user.k")
                } else {
                    e2.setxattr(ino, b"user.k", &[0u8; 1000], XattrSet::Upsert)
                };
                if r == Err(FsError::NotFound) {
                    break;
                }
            }
        });
        go.wait();
        e.unlink(Ino::ROOT, b"f").unwrap();
        racer.join().unwrap();
        let used = e.stats().used_bytes;
        assert_eq!(
            used,
            start,
            "round {round} ({}): {:?}",
            if remove { "removexattr" } else { "setxattr" },
            e.check_invariants()
        );
    }
    eprintln!("{round} rounds");
}

/// open(2) with O_CREAT and without O_EXCL never fails with ENOENT: when
/// the name `create` found taken is unlinked before it could open it, it
/// creates it instead.
#[test]
fn create_without_excl_racing_unlink_never_reports_a_missing_name() {
    let e = std::sync::Arc::new(engine(64 << 20, StoragePolicy::Auto));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let (e2, stop2) = (e.clone(), stop.clone());
    let unlinker = std::thread::spawn(move || {
        let mut removed = 0u64;
        while !stop2.load(Ordering::Relaxed) {
            if e2.unlink(Ino::ROOT, b"f").is_ok() {
                removed += 1;
            }
        }
        removed
    });
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut creates = 0u64;
    while Instant::now() < deadline {
        match e.create(Ino::ROOT, b"f", 0o644, rw(), &ROOT) {
            Ok((attr, fh)) => {
                e.release(fh).unwrap();
                e.forget(attr.ino, 1);
                creates += 1;
            }
            Err(err) => {
                stop.store(true, Ordering::Relaxed);
                panic!("create without O_EXCL failed after {creates} creates: {err:?}");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let removed = unlinker.join().unwrap();
    eprintln!("{creates} creates, {removed} unlinks");
    assert!(removed > 0, "the race never ran");
    invariants(&e);
}
