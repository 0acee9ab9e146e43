//! Reliability of a mounted scratchfs under stress: the quota holds for
//! concurrent writer processes at the boundary and every byte a writer was
//! told it wrote is there; the daemon's resident memory stays within the
//! quota plus a fixed baseline through fills and churn; the process lifecycle
//! without auto-unmount and on busy or non-empty mount points; and a panic in
//! a request handler fails only that request.

mod common;
mod reliability;

use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::mount::{BIN, Mount, is_mounted, wait_until};
use reliability::{Background, Rng, alive, mib, rss_of};

// ---------------------------------------------------------------------------
// 1. Quota under concurrency: separate writer processes at the boundary.

/// Environment of a writer process (the test binary re-executed).
const WORKER_DIR: &str = "SCRATCHFS_WORKER_DIR";
const WORKER_SEED: &str = "SCRATCHFS_WORKER_SEED";
const WORKER_SECS: &str = "SCRATCHFS_WORKER_SECS";
/// Files per writer, and the largest logical size a writer gives one.
const WORKER_FILES: usize = 5;
const WORKER_MAX_LEN: u64 = 8 << 20;

/// What one writer did, printed as its last line.
#[derive(Default, Debug)]
struct Counts {
    ops: u64,
    writes: u64,
    bytes: u64,
    enospc: u64,
    short: u64,
    truncates: u64,
    punches: u64,
    allocates: u64,
    creates: u64,
    create_refused: u64,
    deletes: u64,
    reads: u64,
}

/// A writer owning `WORKER_FILES` files in its own directory, with its own
/// record of what each holds. `ENOSPC` means nothing changed; a short write
/// of `n` bytes means exactly the first `n` bytes were written.
struct Writer {
    dir: PathBuf,
    rng: Rng,
    model: Vec<Option<Vec<u8>>>,
    history: VecDeque<String>,
    n: Counts,
}

fn is_enospc(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOSPC)
}

impl Writer {
    fn new(dir: PathBuf, seed: u64) -> Writer {
        let w = Writer {
            dir,
            rng: Rng::new(seed),
            model: vec![None; WORKER_FILES],
            history: VecDeque::new(),
            n: Counts::default(),
        };
        // Files left by an earlier writer in the same directory (the soak restarts writers) are not ours.
        for i in 0..WORKER_FILES {
            let _ = std::fs::remove_file(w.path(i));
        }
        w
    }

    fn path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("f{i}"))
    }

    fn note(&mut self, what: String) {
        if self.history.len() == 40 {
            self.history.pop_front();
        }
        self.history.push_back(what);
    }

    fn fail(&self, msg: String) -> ! {
        let history: Vec<&str> = self.history.iter().map(String::as_str).collect();
        panic!("writer {}: {msg}\nlast operations:\n  {}", self.dir.display(), history.join("\n  "));
    }

    fn open(&self, i: usize) -> std::fs::File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(i))
            .unwrap_or_else(|e| self.fail(format!("open f{i}: {e}")))
    }

    fn len(&self, i: usize) -> u64 {
        self.model[i].as_ref().map_or(0, |v| v.len() as u64)
    }

    fn data(&mut self, len: u64) -> Vec<u8> {
        let mut d = vec![0u8; len as usize];
        self.rng.fill(&mut d);
        d
    }

    /// A write length: mostly small, sometimes several 1 MiB FUSE requests long.
    fn write_len(&mut self) -> u64 {
        match self.rng.below(100) {
            0..=49 => self.rng.range(1, 64 << 10),
            50..=84 => self.rng.range(64 << 10, 1 << 20),
            _ => self.rng.range(1 << 20, 3 << 20),
        }
    }

    /// Records that `data` landed at `off`.
    fn apply(&mut self, i: usize, off: u64, data: &[u8]) {
        let v = self.model[i].as_mut().expect("file exists");
        let end = off as usize + data.len();
        if v.len() < end {
            v.resize(end, 0);
        }
        v[off as usize..end].copy_from_slice(data);
    }

    /// One write(2) of `len` bytes at `off` (or appending with O_APPEND).
    fn write(&mut self, i: usize, off: u64, len: u64, append: bool) {
        let len = len.min(WORKER_MAX_LEN.saturating_sub(off));
        if len == 0 {
            return;
        }
        let data = self.data(len);
        let r = if append {
            let mut f = OpenOptions::new()
                .append(true)
                .open(self.path(i))
                .unwrap_or_else(|e| self.fail(format!("open f{i}: {e}")));
            f.write(&data)
        } else {
            self.open(i).write_at(&data, off)
        };
        self.n.writes += 1;
        match r {
            Ok(0) => self.fail(format!("write of {len} bytes at {off} to f{i} returned 0")),
            Ok(n) => {
                self.note(format!("write f{i} off {off} len {len}{}: {n}", if append { " (append)" } else { "" }));
                if (n as u64) < len {
                    self.n.short += 1;
                }
                self.n.bytes += n as u64;
                self.apply(i, off, &data[..n]);
            }
            Err(e) if is_enospc(&e) => {
                self.note(format!("write f{i} off {off} len {len}: ENOSPC"));
                self.n.enospc += 1;
            }
            Err(e) => self.fail(format!("write of {len} bytes at {off} to f{i}: {e}")),
        }
    }

    fn create(&mut self, i: usize) {
        self.n.creates += 1;
        match OpenOptions::new().write(true).create(true).truncate(true).open(self.path(i)) {
            Ok(_) => {
                self.note(format!("create f{i}"));
                self.model[i] = Some(Vec::new());
                let len = self.write_len();
                self.write(i, 0, len, false);
            }
            Err(e) if is_enospc(&e) && self.model[i].is_none() => {
                self.note(format!("create f{i}: ENOSPC"));
                self.n.create_refused += 1;
                self.n.enospc += 1;
            }
            Err(e) => self.fail(format!("create f{i}: {e}")),
        }
    }

    fn truncate(&mut self, i: usize) {
        let len = self.len(i);
        let new = self.rng.below((len + len / 2 + 4096).min(WORKER_MAX_LEN) + 1);
        self.n.truncates += 1;
        match self.open(i).set_len(new) {
            Ok(()) => {
                self.note(format!("truncate f{i} {len} -> {new}"));
                self.model[i].as_mut().unwrap().resize(new as usize, 0);
            }
            Err(e) if is_enospc(&e) => {
                self.note(format!("truncate f{i} {len} -> {new}: ENOSPC"));
                self.n.enospc += 1;
            }
            Err(e) => self.fail(format!("truncate f{i} to {new}: {e}")),
        }
    }

    fn fallocate(&mut self, i: usize, punch: bool) {
        let len = self.len(i);
        let off = self.rng.below(len + 1);
        let n = self.rng.range(1, 2 << 20).min(WORKER_MAX_LEN - off).max(1);
        let mode = if punch { libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE } else { 0 };
        let f = self.open(i);
        // SAFETY: fallocate on an open descriptor.
        let rc = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, n as i64) };
        let what = if punch { "punch" } else { "allocate" };
        if punch {
            self.n.punches += 1;
        } else {
            self.n.allocates += 1;
        }
        if rc == 0 {
            self.note(format!("{what} f{i} off {off} len {n}"));
            let v = self.model[i].as_mut().unwrap();
            if punch {
                let end = ((off + n) as usize).min(v.len());
                v[off as usize..end].fill(0);
            } else if v.len() < (off + n) as usize {
                v.resize((off + n) as usize, 0);
            }
            return;
        }
        let e = std::io::Error::last_os_error();
        if is_enospc(&e) {
            self.note(format!("{what} f{i} off {off} len {n}: ENOSPC"));
            self.n.enospc += 1;
        } else {
            self.fail(format!("{what} f{i} at {off} len {n}: {e}"));
        }
    }

    fn delete(&mut self, i: usize) {
        self.n.deletes += 1;
        std::fs::remove_file(self.path(i)).unwrap_or_else(|e| self.fail(format!("unlink f{i}: {e}")));
        self.note(format!("unlink f{i}"));
        self.model[i] = None;
    }

    /// Reads a random range and compares it with the record.
    fn read_check(&mut self, i: usize) {
        let len = self.len(i);
        if len == 0 {
            return;
        }
        let off = self.rng.below(len);
        let n = self.rng.range(1, 1 << 20).min(len - off);
        let mut buf = vec![0u8; n as usize];
        self.n.reads += 1;
        if let Err(e) = self.open(i).read_exact_at(&mut buf, off) {
            self.fail(format!("read f{i} at {off} len {n}: {e}"));
        }
        let want = &self.model[i].as_ref().unwrap()[off as usize..(off + n) as usize];
        if buf != want {
            let at = buf.iter().zip(want).position(|(a, b)| a != b).unwrap_or(0) as u64 + off;
            self.fail(format!("f{i}: read at {off} len {n} differs from what was written, first at byte {at}"));
        }
    }

    fn step(&mut self) {
        self.n.ops += 1;
        let i = self.rng.below(WORKER_FILES as u64) as usize;
        if self.model[i].is_none() || self.rng.chance(4) {
            return self.create(i);
        }
        let len = self.len(i);
        match self.rng.below(100) {
            0..=29 => {
                let n = self.write_len();
                let append = self.rng.chance(50);
                self.write(i, len, n, append);
            }
            // In the middle of the file: promotes a sequential file.
            30..=49 => {
                let off = self.rng.below(len.max(1));
                let n = self.rng.range(1, 512 << 10);
                self.write(i, off, n, false);
            }
            // Past the end: leaves a hole.
            50..=56 => {
                let off = len + self.rng.range(1, 1 << 20);
                let n = self.write_len();
                self.write(i, off, n, false);
            }
            57..=66 => self.truncate(i),
            67..=71 => self.fallocate(i, true),
            72..=75 => self.fallocate(i, false),
            76..=82 => self.delete(i),
            _ => self.read_check(i),
        }
    }

    /// Every file holds exactly what the record says, read through the page
    /// cache and again from the daemon; no other file exists.
    fn verify(&mut self) {
        for i in 0..WORKER_FILES {
            let path = self.path(i);
            match (&self.model[i], std::fs::read(&path)) {
                (None, Err(e)) if e.kind() == ErrorKind::NotFound => {}
                (None, r) => self.fail(format!("f{i} should not exist: {:?}", r.map(|d| d.len()))),
                (Some(_), Err(e)) => self.fail(format!("f{i}: {e}")),
                (Some(want), Ok(cached)) => {
                    let f = self.open(i);
                    // SAFETY: fadvise on an open descriptor; drops clean cached pages.
                    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
                    let fresh = std::fs::read(&path).unwrap_or_else(|e| self.fail(format!("f{i}: {e}")));
                    for (how, got) in [("page cache", &cached), ("daemon", &fresh)] {
                        if got != want {
                            let at = got.iter().zip(want.iter()).position(|(a, b)| a != b);
                            self.fail(format!(
                                "f{i} ({how}): {} bytes read, {} expected; first difference at {at:?}",
                                got.len(),
                                want.len()
                            ));
                        }
                    }
                }
            }
        }
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut want: Vec<String> =
            (0..WORKER_FILES).filter(|&i| self.model[i].is_some()).map(|i| format!("f{i}")).collect();
        want.sort();
        if names != want {
            self.fail(format!("directory holds {names:?}, expected {want:?}"));
        }
    }
}

/// The body of a writer process: runs when the test binary is re-executed
/// with `SCRATCHFS_WORKER_DIR` set, does nothing otherwise.
#[test]
#[ignore = "a writer process of quota_holds_for_concurrent_writer_processes and scripts/soak.sh"]
fn concurrent_writer_worker() {
    let Ok(dir) = std::env::var(WORKER_DIR) else { return };
    let seed = std::env::var(WORKER_SEED).ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let secs: f64 = std::env::var(WORKER_SECS).ok().and_then(|s| s.parse().ok()).unwrap_or(10.0);
    let mut w = Writer::new(PathBuf::from(dir), seed);
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < deadline {
        w.step();
    }
    w.verify();
    let n = &w.n;
    println!(
        "WORKER-RESULT ok ops={} writes={} bytes={} enospc={} short={} truncates={} punches={} allocates={} creates={} \
         create_refused={} deletes={} reads={}",
        n.ops,
        n.writes,
        n.bytes,
        n.enospc,
        n.short,
        n.truncates,
        n.punches,
        n.allocates,
        n.creates,
        n.create_refused,
        n.deletes,
        n.reads
    );
}

/// Child processes killed and reaped on every path out.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Re-executes this test binary as a writer process on `dir`.
fn spawn_writer(dir: &Path, seed: u64, secs: f64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["concurrent_writer_worker", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env(WORKER_DIR, dir)
        .env(WORKER_SEED, seed.to_string())
        .env(WORKER_SECS, secs.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("re-exec the test binary")
}

/// Sum of `key=value` fields over the writers' result lines.
fn total(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .flat_map(|l| l.split_whitespace())
        .filter_map(|f| f.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .filter_map(|v| v.parse::<u64>().ok())
        .sum()
}

#[test]
fn quota_holds_for_concurrent_writer_processes() {
    const WRITERS: u64 = 8;
    const QUOTA: u64 = 64 << 20;
    let Some(m) = Mount::new(&["--size", "64M"]) else { return };
    let baseline = m.stats();
    assert_eq!(baseline.quota.max_bytes, QUOTA);
    for w in 0..WRITERS {
        std::fs::create_dir(m.join(format!("w{w}"))).unwrap();
    }
    let start = Instant::now();
    let mut children = Children((0..WRITERS).map(|w| spawn_writer(&m.join(format!("w{w}")), 1000 + w, 10.0)).collect());

    // Sample the daemon's accounting and statfs until the writers are done.
    let done = AtomicBool::new(false);
    let (max_used, samples, statfs_max) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let pids: Vec<u32> = children.0.iter().map(Child::id).collect();
    let outputs = std::thread::scope(|s| {
        // A writer stuck on a hung daemon is killed (and then fails) rather than hanging the test.
        s.spawn(|| {
            let start = Instant::now();
            while !done.load(Ordering::Relaxed) {
                if start.elapsed() > Duration::from_secs(120) {
                    for &pid in &pids {
                        // SAFETY: killing our writer processes.
                        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                    }
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        s.spawn(|| {
            let c = reliability::cpath(&m.path);
            while !done.load(Ordering::Relaxed) {
                let r = m.stats();
                assert!(
                    r.quota.used_bytes <= r.quota.max_bytes,
                    "used {} > quota {}",
                    r.quota.used_bytes,
                    r.quota.max_bytes
                );
                max_used.fetch_max(r.quota.used_bytes, Ordering::Relaxed);
                // SAFETY: statvfs into a zeroed struct.
                let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
                assert_eq!(unsafe { libc::statvfs(c.as_ptr(), &mut st) }, 0);
                let (size, used) = (st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize);
                assert!(size == QUOTA && used <= size, "statfs: size {size}, used {used}");
                statfs_max.fetch_max(used, Ordering::Relaxed);
                samples.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let outputs: Vec<_> = children
            .0
            .iter_mut()
            .map(|c| {
                let (mut stdout, mut stderr) = (c.stdout.take().unwrap(), c.stderr.take().unwrap());
                let err = s.spawn(move || {
                    let mut err = String::new();
                    stderr.read_to_string(&mut err).unwrap();
                    err
                });
                let mut out = String::new();
                stdout.read_to_string(&mut out).unwrap();
                (c.wait().unwrap(), out, err.join().unwrap())
            })
            .collect();
        done.store(true, Ordering::Relaxed);
        outputs
    });
    let elapsed = start.elapsed();
    let mut lines = Vec::new();
    for (w, (status, out, err)) in outputs.iter().enumerate() {
        assert!(status.success(), "writer {w} failed ({status}):\n{out}\n{err}");
        let line =
            out.lines().find(|l| l.starts_with("WORKER-RESULT ok")).unwrap_or_else(|| panic!("writer {w}: {out}"));
        lines.push(line.to_owned());
    }
    assert!(alive(m.pid()), "the daemon survived");
    let after = m.stats();
    let (enospc, short) = (total(&lines, "enospc"), total(&lines, "short"));
    eprintln!(
        "{WRITERS} writer processes for {elapsed:.1?}: {} ops, {} writes ({} written), {enospc} ENOSPC, {short} short writes, \
         {} creates refused; max used {} of {} ({} samples, statfs max {}); daemon: {} quota refusals, {} promotions \
         ({} skipped)",
        total(&lines, "ops"),
        total(&lines, "writes"),
        mib(total(&lines, "bytes")),
        total(&lines, "create_refused"),
        max_used.load(Ordering::Relaxed),
        QUOTA,
        samples.load(Ordering::Relaxed),
        statfs_max.load(Ordering::Relaxed),
        after.refusals.quota,
        after.promotions.done,
        after.promotions.refused,
    );
    // The run was at the boundary, and the mix did what it was meant to.
    assert!(enospc > 0 && after.refusals.quota > 0, "the writers never reached the quota");
    assert!(after.promotions.done > 0, "writes in the middle promoted files");
    assert!(max_used.load(Ordering::Relaxed) > QUOTA * 3 / 4, "usage came near the quota");

    // Deleting everything gives every byte back.
    for w in 0..WRITERS {
        std::fs::remove_dir_all(m.join(format!("w{w}"))).unwrap();
    }
    let back = wait_until(Duration::from_secs(10), || {
        let r = m.stats();
        r.quota.used_bytes == baseline.quota.used_bytes && r.nodes.used == baseline.nodes.used
    });
    let end = m.stats();
    assert!(
        back,
        "usage after deleting everything: {} bytes, {} nodes; right after mount: {} bytes, {} nodes",
        end.quota.used_bytes, end.nodes.used, baseline.quota.used_bytes, baseline.nodes.used
    );
    drop(children);
    assert!(m.unmount().success());
}

// ---------------------------------------------------------------------------
// 2. Resident memory: quota plus a fixed baseline, through fills and churn.

/// Writes 1 MiB pieces to `path` until the quota refuses; returns bytes written.
fn fill_large(path: &Path, rng: &mut Rng) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let mut piece = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        rng.fill(&mut piece[..4096]);
        match f.write(&piece) {
            Ok(n) => total += n as u64,
            Err(e) if is_enospc(&e) => return total,
            Err(e) => panic!("writing {}: {e}", path.display()),
        }
    }
}

/// Creates small files of `size` bytes in `dir` from several threads until
/// the quota refuses; returns how many were created.
fn fill_small(dir: &Path, size: usize, tag: &str) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let count = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..4 {
            let count = &count;
            s.spawn(move || {
                let data = vec![b'a' + t as u8; size];
                for i in 0.. {
                    let path = dir.join(format!("{tag}{t}_{i}"));
                    let r = std::fs::File::create(&path).and_then(|mut f| f.write_all(&data));
                    match r {
                        Ok(()) => count.fetch_add(1, Ordering::Relaxed),
                        Err(e) if is_enospc(&e) => return,
                        Err(e) => panic!("creating {}: {e}", path.display()),
                    };
                }
            });
        }
    });
    count.into_inner()
}

/// Random 4 KiB writes into `files` sparse files of `logical` bytes until the
/// quota refuses; returns how many writes were made.
fn fill_sparse(dir: &Path, files: u64, logical: u64, rng: &mut Rng) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let handles: Vec<std::fs::File> = (0..files)
        .map(|i| {
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(dir.join(format!("sparse{i}")))
                .unwrap();
            f.set_len(logical).unwrap();
            f
        })
        .collect();
    let mut page = vec![0u8; 4096];
    let mut writes = 0;
    loop {
        let f = &handles[rng.below(files) as usize];
        let off = rng.below(logical / 4096) * 4096;
        rng.fill(&mut page[..64]);
        match f.write_at(&page, off) {
            Ok(_) => writes += 1,
            Err(e) if is_enospc(&e) => return writes,
            Err(e) => panic!("sparse write: {e}"),
        }
    }
}

/// Deletes every other entry (by sorted name) of each directory below `root`.
fn delete_half(root: &Path) -> u64 {
    let mut removed = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for (k, p) in entries.into_iter().enumerate() {
            if p.is_dir() {
                stack.push(p);
            } else if k % 2 == 0 {
                std::fs::remove_file(&p).unwrap();
                removed += 1;
            }
        }
    }
    removed
}

fn delete_all(root: &Path) {
    for e in std::fs::read_dir(root).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) }.unwrap();
    }
}

#[test]
fn daemon_memory_stays_within_quota_plus_baseline() {
    const QUOTA: u64 = 256 << 20;
    const THREADS: u64 = 2;
    // fuser reads each request into a per-thread 16 MiB buffer allocated
    // zeroed (calloc: untouched pages cost nothing); the largest request is a
    // 1 MiB WRITE plus its header, so each thread faults in at most 1 MiB + 4 KiB.
    const REQUEST_BUFFER: u64 = (1 << 20) + 4096;
    // A READ that spans extents is assembled in a fresh buffer of up to 1 MiB
    // while its reply is sent: one per thread in flight.
    const REPLY_COPY: u64 = 1 << 20;
    // Append buffers faulted in ahead of streaming writers (storage/spares.rs).
    const SPARES: u64 = scratchfs::storage::SPARE_BYTES;
    // Requests held back just after a delete keep a copy (fuse/deferred.rs).
    const HELD: u64 = scratchfs::fuse::HELD_BYTES;
    let Some(m) = Mount::new(&["--size", "256M", "--threads", "2"]) else { return };
    let pid = m.pid();
    // The binary, its libraries, the engine and the threads as they are right after mount.
    let at_mount = rss_of(pid).rss;
    let at_mount_used = m.stats().quota.used_bytes;
    // The daemon states its baseline: resident memory when ready, a request
    // buffer and a reply copy per thread, the spare append buffers, and a
    // margin for growth between two of its readings. It must be fixed and
    // small, and cover what we see.
    let stated = m.stats().quota.baseline_bytes.expect("the daemon states its memory baseline");
    let ours = at_mount + THREADS * (REQUEST_BUFFER + REPLY_COPY) + SPARES + HELD;
    assert!(stated >= ours && stated <= ours + (8 << 20), "stated baseline {} vs {}", mib(stated), mib(ours));
    let baseline = stated;
    let bound = QUOTA + baseline;
    eprintln!(
        "RSS bound = quota {} + stated baseline {} (RSS at mount {} + {THREADS} threads x (request buffer {} + reply copy {}) + spares {} + held {} + margin)",
        mib(QUOTA),
        mib(baseline),
        mib(at_mount),
        mib(REQUEST_BUFFER),
        mib(REPLY_COPY),
        mib(SPARES),
        mib(HELD)
    );
    let mut rng = Rng::new(7);
    let mut rounds: Vec<(String, u64, reliability::Rss, String)> = Vec::new();
    let mut measure = |name: &str, what: String| {
        let used = m.stats().quota.used_bytes;
        let r = rss_of(pid);
        eprintln!("  {name:<22} used {:>10}  RSS {:>10}  peak {:>10}  ({what})", mib(used), mib(r.rss), mib(r.hwm));
        rounds.push((name.to_owned(), used, r, what));
    };
    let root = m.path.clone();

    let n = fill_large(&root.join("large0"), &mut rng);
    measure("fill: one large file", format!("{} written", mib(n)));
    delete_all(&root);
    // 1,900 bytes each: with node, entry and extent charges (about 2,590
    // bytes per file), a little over 100,000 files fill 256 MiB.
    let n = fill_small(&root.join("small"), 1900, "s");
    assert!(n >= 95_000, "only {n} small files fit");
    measure("fill: small files", format!("{n} files"));
    delete_all(&root);
    let n = fill_sparse(&root.join("sparse"), 8, 256 << 20, &mut rng);
    measure("fill: sparse random", format!("{n} random 4 KiB writes"));
    for round in 1..=3 {
        let removed = delete_half(&root);
        let what = match round % 3 {
            1 => format!("{} in a new large file", mib(fill_large(&root.join(format!("large{round}")), &mut rng))),
            2 => format!("{} new small files", fill_small(&root.join(format!("small{round}")), 2200, "c")),
            _ => format!(
                "{} random 4 KiB writes",
                fill_sparse(&root.join(format!("sparse{round}")), 8, 256 << 20, &mut rng)
            ),
        };
        measure(&format!("churn {round}"), format!("deleted {removed}, refilled: {what}"));
    }
    delete_all(&root);
    // The kernel forgets deleted inodes asynchronously; their memory is freed then.
    let freed = wait_until(Duration::from_secs(10), || m.stats().quota.used_bytes == at_mount_used);
    assert!(freed, "usage after deleting everything: {}, at mount: {at_mount_used}", m.stats().quota.used_bytes);
    measure("empty", "everything deleted".to_owned());
    assert!(alive(pid));
    let over: Vec<String> = rounds
        .iter()
        .filter(|(_, _, r, _)| r.rss > bound || r.hwm > bound)
        .map(|(name, _, r, _)| format!("{name}: RSS {} / peak {} > bound {}", mib(r.rss), mib(r.hwm), mib(bound)))
        .collect();
    assert!(over.is_empty(), "the daemon held more than quota + baseline:\n  {}", over.join("\n  "));
    assert!(m.unmount().success());
}

// ---------------------------------------------------------------------------
// 4. Process lifecycle not covered by mount_basic.rs.

#[test]
fn kill_9_without_auto_unmount_answers_enotconn_until_umount_l() {
    let Some(m) = Mount::new(&["--size", "16M", "--no-auto-unmount"]) else { return };
    std::fs::write(m.join("f"), b"data").unwrap();
    let pid = m.pid();
    // SAFETY: killing our daemon.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(5), || !alive(pid)), "daemon still alive after SIGKILL");
    // Nobody unmounts: the mount stays, and every request fails with ENOTCONN.
    std::thread::sleep(Duration::from_millis(200));
    assert!(is_mounted(&m.path), "without auto-unmount the mount stays after the daemon dies");
    let errno = |r: std::io::Result<()>| r.err().and_then(|e| e.raw_os_error());
    assert_eq!(errno(std::fs::read_dir(&m.path).map(drop)), Some(libc::ENOTCONN), "readdir of the root");
    assert_eq!(errno(std::fs::read(m.join("f")).map(drop)), Some(libc::ENOTCONN), "reading a file");
    assert_eq!(errno(std::fs::write(m.join("g"), b"x")), Some(libc::ENOTCONN), "creating a file");
    let ls = Command::new("ls").arg(&m.path).output().unwrap();
    let ls_err = String::from_utf8_lossy(&ls.stderr);
    assert!(ls_err.contains("Transport endpoint is not connected"), "ls says: {ls_err}");
    // Mounting there again says what is wrong, not that it does not exist.
    let again = Command::new(common::mount::BIN).arg(&m.path).args(["--size", "16M"]).output().unwrap();
    let again_err = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success() && again_err.contains("is a dead mount"), "scratchfs says: {again_err}");
    // umount -l cleans it up: the mount point is an empty directory again.
    let out = Command::new("umount").arg("-l").arg(&m.path).output().unwrap();
    assert!(out.status.success(), "umount -l: {}", String::from_utf8_lossy(&out.stderr));
    assert!(!is_mounted(&m.path));
    assert_eq!(std::fs::read_dir(&m.path).unwrap().count(), 0);
    let status = m.unmount();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
}

/// Puts `/dev/fuse`'s mode back on drop.
struct DevFuseMode(u32);

impl Drop for DevFuseMode {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(self.0));
    }
}

/// A user's mount (through fusermount3, without allow_other) whose daemon
/// is killed is unmounted by the daemon's own watcher: fusermount3's
/// `auto_unmount` cannot do it before libfuse 3.15 (src/fuse/mount.rs).
#[test]
fn a_users_mount_is_unmounted_when_its_daemon_is_killed() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !common::mount::require_fuse() {
        return;
    }
    assert!(
        scratchfs::fuse::mount::fusermount().is_some(),
        "a user's mount needs fusermount3 (the fuse3 package, which scripts/setup.sh installs)"
    );
    // What udev gives /dev/fuse on a Debian install; a container may not.
    let _mode = DevFuseMode(std::fs::metadata("/dev/fuse").unwrap().mode() & 0o7777);
    std::fs::set_permissions("/dev/fuse", std::fs::Permissions::from_mode(0o666)).unwrap();
    let bg = Background::new();
    // nobody's directory, and a copy of the binary it may run wherever the build lives.
    let bin = bg.dir().join("scratchfs");
    std::fs::copy(BIN, &bin).unwrap();
    for p in [bg.dir(), &bg.mnt] {
        std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
    }
    std::fs::set_permissions(bg.dir(), std::fs::Permissions::from_mode(0o755)).unwrap();
    common::mount::become_subreaper();
    let mount = || {
        let out = reliability::as_nobody(bin.to_str().unwrap())
            .arg(&bg.mnt)
            .args(["--size", "16M", "--pid-file"])
            .arg(&bg.pid_file)
            .arg("--log-file")
            .arg(&bg.log)
            .output()
            .unwrap();
        assert!(out.status.success(), "mounting as nobody: {}", reliability::text(&out));
    };
    mount();
    assert!(bg.log_text().contains("auto-unmount on"), "{}", bg.log_text());
    // Only nobody may enter (no allow_other).
    let script = format!("echo hi > {0}/f && cat {0}/f", bg.mnt.display());
    let out = reliability::as_nobody("sh").arg("-c").arg(&script).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\n", "{}", reliability::text(&out));
    let pid = bg.pid().expect("the daemon wrote its pid");
    // SAFETY: killing the daemon this test started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    assert!(
        wait_until(Duration::from_secs(5), || !is_mounted(&bg.mnt)),
        "the dead daemon's mount is still there: nothing unmounted it"
    );
    // Ended cleanly (by fusermount3 -u, or by SIGTERM with a directory of
    // the mount still in use), a daemon's watcher leaves alone the mount
    // its user makes there next.
    for how in ["fusermount3", "SIGTERM while busy"] {
        mount();
        let pid = bg.pid().expect("the daemon wrote its pid");
        let busy = if how == "fusermount3" {
            let out = reliability::as_nobody("fusermount3").arg("-u").arg(&bg.mnt).output().unwrap();
            assert!(out.status.success(), "fusermount3 -u: {}", reliability::text(&out));
            None
        } else {
            let keep = format!("cd {} && exec sleep 10", bg.mnt.display());
            let busy = reliability::as_nobody("sh").arg("-c").arg(keep).spawn().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            // SAFETY: signalling the daemon this test started.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            Some(busy)
        };
        assert!(wait_until(Duration::from_secs(2), || !is_mounted(&bg.mnt)), "{how}: still mounted");
        mount();
        // The first daemon exits (after its grace period, if busy) and its watcher with it.
        assert!(wait_until(Duration::from_secs(5), || reliability::reap(pid)), "{how}: the first daemon lingers");
        std::thread::sleep(Duration::from_millis(300));
        assert!(is_mounted(&bg.mnt), "{how}: the next mount was unmounted when the first daemon ended");
        if let Some(mut busy) = busy {
            let _ = busy.kill();
            let _ = busy.wait();
        }
        let out = reliability::as_nobody("fusermount3").arg("-u").arg(&bg.mnt).output().unwrap();
        assert!(out.status.success(), "{how}: fusermount3 -u: {}", reliability::text(&out));
        assert!(wait_until(Duration::from_secs(5), || !is_mounted(&bg.mnt)));
    }
}

/// Runs `scratchfs MNT ARGS` in the background, then in the foreground
/// (`-f`): whether in the foreground, and the output.
/// (A foreground daemon that mounted after all is killed after 10 s, so
/// that the test fails rather than waits for it.)
fn in_both_modes(mnt: &Path, args: &[&std::ffi::OsStr]) -> [(bool, std::process::Output); 2] {
    [false, true].map(|foreground| {
        let mut cmd = Command::new(BIN);
        cmd.arg(mnt).args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
        if foreground {
            cmd.arg("-f");
        }
        let mut child = cmd.spawn().unwrap();
        if !wait_until(Duration::from_secs(10), || child.try_wait().is_ok_and(|s| s.is_some())) {
            let _ = child.kill();
        }
        (foreground, child.wait_with_output().unwrap())
    })
}

/// A `--log-file` that cannot be opened fails the command and mounts
/// nothing, in the background as in the foreground.
#[test]
fn a_log_file_that_cannot_be_opened_fails_the_mount() {
    if !common::mount::require_fuse() {
        return;
    }
    let bg = Background::new();
    let missing = bg.dir().join("no-such-dir").join("daemon.log");
    for (foreground, out) in
        in_both_modes(&bg.mnt, &["--size".as_ref(), "16M".as_ref(), "--log-file".as_ref(), missing.as_os_str()])
    {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("cannot open log file"), "foreground {foreground}: {err}");
        assert!(!is_mounted(&bg.mnt), "foreground {foreground}: mounted anyway");
    }
}

/// `--pid-file` and `--log-file` given as relative paths name files in the
/// caller's directory, as every path on a command line does.
#[test]
fn relative_pid_and_log_files_are_relative_to_the_callers_directory() {
    if !common::mount::require_fuse() {
        return;
    }
    let bg = Background::new();
    let pid_name = format!("scratchfs-test-{}.pid", std::process::id());
    let (in_cwd, in_root) = (bg.dir().join(&pid_name), Path::new("/").join(&pid_name));
    common::mount::become_subreaper();
    let out = Command::new(BIN)
        .arg(&bg.mnt)
        .args(["--size", "16M", "--pid-file", &pid_name, "--log-file", "daemon-rel.log"])
        .current_dir(bg.dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Wherever the pid file went, stop that daemon and leave nothing behind.
    let pid =
        [&in_cwd, &in_root].iter().find_map(|p| std::fs::read_to_string(p).ok()).and_then(|s| s.trim().parse().ok());
    let misplaced = in_root.exists();
    let written = in_cwd.exists();
    let _ = std::fs::remove_file(&in_root);
    common::mount::force_unmount(&bg.mnt);
    if let Some(pid) = pid {
        assert!(wait_until(Duration::from_secs(5), || reliability::reap(pid)), "daemon {pid} did not exit");
    }
    assert!(bg.dir().join("daemon-rel.log").exists(), "the log file is in the caller's directory");
    assert!(!misplaced, "the pid file was written to {} instead of {}", in_root.display(), in_cwd.display());
    assert!(written, "no pid file in the caller's directory");
    assert!(!in_cwd.exists(), "the daemon removes its pid file when it ends");
}

/// With -f the log goes to stderr, or to `--log-file` when one is given.
#[test]
fn a_foreground_daemon_writes_its_log_to_the_log_file_given() {
    if !common::mount::require_fuse() {
        return;
    }
    let bg = Background::new();
    let log = bg.dir().join("fg.log");
    let mut child = Command::new(BIN)
        .arg(&bg.mnt)
        .args(["--size", "16M", "-f", "--log-file"])
        .arg(&log)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Ready once it has logged so (unmounting before then ends a daemon
    // that is still starting its session, with an error).
    let logged = || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("scratchfs mounted on"));
    let mounted = wait_until(Duration::from_secs(10), logged) && common::mount::is_mounted(&bg.mnt);
    let umount = Command::new("umount").arg(&bg.mnt).status().unwrap();
    common::mount::force_unmount(&bg.mnt);
    let status = common::mount::wait_child(&mut child, Duration::from_secs(10));
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(mounted && umount.success(), "mounted {mounted}, umount {umount}; log: {text}");
    assert!(status.is_some_and(|s| s.success()), "foreground daemon: {status:?}; log: {text}");
    assert!(text.contains("scratchfs mounted on") && text.contains("unmounted"), "log file: {text:?}");
}

/// How many mounts sit on `path` (per /proc/self/mountinfo).
fn mounts_on(path: &Path) -> usize {
    let target = path.canonicalize().unwrap().to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(&target))
        .count()
}

#[test]
fn mounting_on_a_mount_point_is_refused_and_the_mount_keeps_serving() {
    let Some(m) = Mount::new(&["--size", "16M"]) else { return };
    std::fs::write(m.join("keep"), b"still here").unwrap();
    let pid_file = m.path.parent().unwrap().join("second.pid");
    for (_, out) in
        in_both_modes(&m.path, &["--size".as_ref(), "16M".as_ref(), "--pid-file".as_ref(), pid_file.as_os_str()])
    {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "a second mount on a mount point must fail");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains("already a mount point") && err.contains("umount"), "{err}");
        assert!(!pid_file.exists(), "no second daemon started");
    }
    assert_eq!(mounts_on(&m.path), 1, "nothing was stacked on the mount");
    assert_eq!(std::fs::read(m.join("keep")).unwrap(), b"still here");
    std::fs::write(m.join("more"), b"x").unwrap();
    assert!(m.unmount().success());
}

/// Daemons started at once on the same empty directory: one mounts, the
/// others are refused; nothing is stacked. (A race: tried five times.)
#[test]
fn simultaneous_mounts_on_one_directory_stack_nothing() {
    if !common::mount::require_fuse() {
        return;
    }
    const DAEMONS: usize = 4;
    for attempt in 1..=5 {
        let bg = Background::new();
        common::mount::become_subreaper();
        let pid_files: Vec<PathBuf> = (0..DAEMONS).map(|i| bg.dir().join(format!("d{i}.pid"))).collect();
        let children: Vec<Child> = pid_files
            .iter()
            .map(|pid_file| {
                Command::new(BIN)
                    .arg(&bg.mnt)
                    .args(["--size", "16M", "--pid-file"])
                    .arg(pid_file)
                    .arg("--log-file")
                    .arg(&bg.log)
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let results: Vec<_> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
        let stacked = mounts_on(&bg.mnt);
        let succeeded = results.iter().filter(|o| o.status.success()).count();
        // Unmount everything that was mounted, and reap every daemon.
        while is_mounted(&bg.mnt) {
            common::mount::force_unmount(&bg.mnt);
        }
        for pid in pid_files.iter().filter_map(|p| std::fs::read_to_string(p).ok()?.trim().parse::<u32>().ok()) {
            assert!(wait_until(Duration::from_secs(5), || reliability::reap(pid)), "daemon {pid} did not exit");
        }
        eprintln!(
            "attempt {attempt}: {DAEMONS} daemons at once: {succeeded} succeeded, {stacked} mounts on the directory"
        );
        assert_eq!((succeeded, stacked), (1, 1), "exactly one daemon may mount a directory (attempt {attempt})");
    }
}

#[test]
fn mounting_on_a_non_empty_directory_hides_its_contents_until_unmount() {
    if !common::mount::require_fuse() {
        return;
    }
    let bg = Background::new();
    std::fs::write(bg.mnt.join("underneath"), b"original").unwrap();
    std::fs::create_dir(bg.mnt.join("subdir")).unwrap();
    std::fs::write(bg.mnt.join("subdir/deeper"), b"deep").unwrap();
    let out = bg.start(&["--size", "16M"]);
    assert!(
        out.status.success(),
        "mounting on a non-empty directory is allowed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(is_mounted(&bg.mnt));
    assert_eq!(std::fs::read_dir(&bg.mnt).unwrap().count(), 0, "the directory's contents are hidden");
    assert_eq!(std::fs::read(bg.mnt.join("underneath")).unwrap_err().kind(), ErrorKind::NotFound);
    std::fs::write(bg.mnt.join("scratch"), b"discarded").unwrap();
    assert!(bg.stop(), "the daemon exits on unmount");
    assert!(!is_mounted(&bg.mnt));
    let mut names: Vec<String> =
        std::fs::read_dir(&bg.mnt).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["subdir", "underneath"], "the original contents are back, the scratch file is gone");
    assert_eq!(std::fs::read(bg.mnt.join("underneath")).unwrap(), b"original");
    assert_eq!(std::fs::read(bg.mnt.join("subdir/deeper")).unwrap(), b"deep");
}

// ---------------------------------------------------------------------------
// 5. A panic in a request handler fails that request only.

#[test]
fn a_panicking_request_fails_with_eio_and_the_filesystem_keeps_serving() {
    const THREADS: usize = 2;
    let Some(m) = Mount::new(&["--size", "16M", "--threads", "2", "--test-panic-on-name", "boom"]) else { return };
    std::fs::write(m.join("before"), b"written before").unwrap();
    std::fs::create_dir(m.join("d")).unwrap();
    std::fs::write(m.join("d/sibling"), b"sibling").unwrap();
    let eio = |r: std::io::Result<()>, what: &str| {
        let e = r.expect_err(what);
        assert_eq!(e.raw_os_error(), Some(libc::EIO), "{what}: {e}");
    };
    // Many more panics than there are request threads, in the root and in a subdirectory.
    let attempts = 5 * THREADS;
    for i in 0..attempts {
        let dir = if i % 2 == 0 { m.path.clone() } else { m.join("d") };
        eio(std::fs::File::create(dir.join("boom")).map(drop), "create boom");
        eio(std::fs::create_dir(dir.join("boom")), "mkdir boom");
        eio(std::fs::metadata(dir.join("boom")).map(drop), "stat boom");
    }
    let touch = m.sh("touch boom");
    assert!(String::from_utf8_lossy(&touch.stderr).contains("Input/output error"), "touch: {:?}", touch);
    // If the panics had taken the request threads with them, this would block:
    // a killed `cat` turns that into a failure.
    assert_eq!(m.sh_ok("timeout -s KILL 20 cat before"), "written before");
    // Each panic is logged as an error, with the request it failed.
    let log = m.log_text();
    let panics = log.lines().filter(|l| l.contains("ERROR") && l.contains("request handler panicked")).count();
    assert!(panics >= 3 * attempts, "{panics} panic lines in the log:\n{log}");
    // Everything else still works, in the directory where the panics happened too.
    assert_eq!(std::fs::read(m.join("before")).unwrap(), b"written before");
    std::fs::write(m.join("after"), b"written after").unwrap();
    assert_eq!(std::fs::read(m.join("after")).unwrap(), b"written after");
    let d = m.join("d");
    assert_eq!(std::fs::read(d.join("sibling")).unwrap(), b"sibling");
    std::fs::write(d.join("new"), b"new").unwrap();
    std::fs::rename(d.join("new"), d.join("renamed")).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["renamed", "sibling", "sub"]);
    std::fs::remove_dir_all(&d).unwrap();
    // Enough threads remain to serve concurrent work.
    std::thread::scope(|s| {
        for t in 0..4 {
            let m = &m;
            s.spawn(move || {
                for i in 0..50 {
                    let p = m.join(format!("t{t}_{i}"));
                    std::fs::write(&p, format!("{t} {i}")).unwrap();
                    assert_eq!(std::fs::read_to_string(&p).unwrap(), format!("{t} {i}"));
                    std::fs::remove_file(&p).unwrap();
                }
            });
        }
    });
    // An unlinked file's node goes when the kernel's FORGET for it has been
    // handled, which another worker may still be doing as we ask.
    let nodes = || m.stats().nodes.used;
    wait_until(Duration::from_secs(5), || nodes() == 3);
    assert_eq!(nodes(), 3, "root, before, after");
    assert!(alive(m.pid()));
    assert!(m.unmount().success(), "the daemon exits cleanly after the panics");
}
