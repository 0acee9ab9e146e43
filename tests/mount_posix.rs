//! POSIX and Linux semantics that pjdfstest does not cover but tools rely
//! on, in the style of go-fuse's posixtest: a named table of cases, each a
//! function given an empty directory on the filesystem under test.
//!
//! Every case runs twice, in one test: on a tmpfs the test mounts (which
//! proves the case's expectations are what Linux really does) and on a
//! fresh scratchfs mount. Each case asserts its contract on both and
//! returns a transcript of what it observed; the transcripts must be equal,
//! except lines starting with `~`, which record known, legitimate
//! differences (hole granularity, O_TMPFILE, ZERO_RANGE, ACLs) and are
//! printed side by side (`cargo test --test mount_posix -- --nocapture`).
//!
//! Cases fork helper processes (for locks, appends, mmap and SIGBUS); a
//! forked child only makes raw system calls on data prepared before the
//! fork, then `_exit`s.

mod common;

use std::collections::{HashMap, HashSet};
use std::ffi::{CStr, CString};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::creds::{CAP_FSETID, CAP_LINUX_IMMUTABLE, CAP_SYS_ADMIN, as_fs_user, without_caps};
use common::map::Map;
use common::mount::{BIN, Mount};

// --- the table -----------------------------------------------------------------

/// A case: works in `fs.dir` (empty, on the filesystem under test) and
/// returns what it observed.
type Case = fn(&Fs) -> Transcript;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case, by name.
        const CASES: &[(&str, Case)] = &[$((stringify!($name), $name)),*];
        /// One test per case: tmpfs, then a fresh scratchfs, transcripts compared.
        mod case {
            $(#[test]
            fn $name() {
                super::run_case(stringify!($name), super::$name);
            })*
        }
    };
}

cases! {
    append_concurrent_writers,
    o_excl,
    o_trunc,
    o_tmpfile,
    seek_data_hole,
    fallocate_modes,
    copy_file_range,
    xattrs,
    xattr_create_and_replace_flags_together,
    flock_between_processes,
    fcntl_locks_between_processes,
    mmap_shared_msync_truncate,
    rename_over_open_file,
    unlinked_open_file,
    utimensat_now_omit,
    access_times_relatime,
    privilege_bits_cleared,
    readdir_100k_entries_while_modified,
    inode_flags,
    write_through_a_descriptor_the_mode_no_longer_allows,
}

// --- running a case --------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Scratchfs,
    Tmpfs,
}

/// Where a case runs.
struct Fs {
    /// The case's own empty directory.
    dir: PathBuf,
    /// The mount root.
    root: PathBuf,
    kind: Kind,
    /// Other cases run on the same mount at the same time (so the
    /// filesystem-wide figures of `report` are not this case's).
    shared: bool,
    /// scratchfs's `--storage` policy (tmpfs: "").
    storage: &'static str,
}

impl Fs {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// scratchfs on a mount of its own only: the `scratchfs stats` report.
    fn report(&self) -> Option<scratchfs::report::Report> {
        if self.kind != Kind::Scratchfs || self.shared {
            return None;
        }
        let out = Command::new(BIN).arg("stats").arg(&self.root).arg("--json").output().unwrap();
        assert!(out.status.success(), "stats: {}", String::from_utf8_lossy(&out.stderr));
        Some(scratchfs::report::Report::from_json(&out.stdout).expect("stats JSON"))
    }

    /// scratchfs only: bytes charged to the quota.
    fn quota_used(&self) -> Option<u64> {
        self.report().map(|r| r.quota.used_bytes)
    }
}

/// What a case observed. Lines starting with `~` may differ between the
/// filesystems (each case asserts what it expects of each).
#[derive(Default, Debug)]
struct Transcript(Vec<String>);

impl Transcript {
    fn same(&mut self, line: impl Into<String>) {
        let line = line.into();
        assert!(!line.starts_with('~'));
        self.0.push(line);
    }

    fn differs(&mut self, line: impl AsRef<str>) {
        self.0.push(format!("~ {}", line.as_ref()));
    }

    fn strict(&self) -> Vec<&str> {
        self.0.iter().filter(|l| !l.starts_with('~')).map(String::as_str).collect()
    }

    fn loose(&self) -> Vec<&str> {
        self.0.iter().filter(|l| l.starts_with('~')).map(String::as_str).collect()
    }
}

/// A tmpfs for comparison: mounted by the test when root, otherwise a
/// directory in /dev/shm (which must then be a tmpfs).
struct Tmpfs {
    _dir: tempfile::TempDir,
    path: PathBuf,
    mounted: bool,
}

impl Tmpfs {
    fn new() -> Tmpfs {
        if let Some(t) = Tmpfs::mounted_with(0) {
            t
        } else {
            let dir = tempfile::Builder::new()
                .prefix("scratchfs-posix-")
                .tempdir_in("/dev/shm")
                .expect("not root: these tests compare with a tmpfs and need /dev/shm");
            // SAFETY: statfs on a valid path with a zeroed out buffer.
            let mut st: libc::statfs = unsafe { std::mem::zeroed() };
            assert_eq!(unsafe { libc::statfs(cstr(dir.path()).as_ptr(), &mut st) }, 0);
            assert_eq!(st.f_type, libc::TMPFS_MAGIC, "/dev/shm is not a tmpfs: run as root");
            let path = dir.path().to_path_buf();
            Tmpfs { _dir: dir, path, mounted: false }
        }
    }

    /// A tmpfs mounted by the test with `flags` besides nosuid and nodev;
    /// `None` unless root.
    fn mounted_with(flags: libc::c_ulong) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("scratchfs-posix-tmpfs").tempdir().unwrap();
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let target = cstr(&path);
        // SAFETY: valid NUL-terminated strings.
        let r = unsafe {
            libc::mount(
                c"scratchfs-posix-tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | flags,
                c"size=1g,mode=1777".as_ptr().cast(),
            )
        };
        assert_eq!(r, 0, "mounting a tmpfs on {}: {}", path.display(), std::io::Error::last_os_error());
        Some(Tmpfs { _dir: dir, path, mounted: true })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if self.mounted {
            let target = cstr(&self.path);
            // SAFETY: valid path.
            unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        }
    }
}

/// scratchfs's storage policies: each case runs on a fresh mount with each.
const POLICIES: [&str; 3] = ["auto", "sequential", "random-access"];

/// Runs a case on a fresh tmpfs, then on a fresh scratchfs mount per
/// storage policy.
fn run_case(name: &str, case: Case) {
    let tmpfs = Tmpfs::new();
    let on_tmpfs = run_in(name, case, &tmpfs.path, Kind::Tmpfs, false, "");
    drop(tmpfs);
    let mut failures = Vec::new();
    for storage in POLICIES {
        let Some(m) = Mount::new(&["--size", "1G", "--storage", storage]) else { return };
        let on_scratchfs = run_in(name, case, &m.path, Kind::Scratchfs, false, storage);
        failures.extend(compare(&format!("{name} (--storage {storage})"), &on_scratchfs, &on_tmpfs).err());
        daemon_ok(m);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every case at the same time, each in its own directory of one scratchfs
/// mount (and of one tmpfs): a mixed concurrent load on one daemon.
#[test]
fn all_cases_at_once_on_one_mount() {
    let tmpfs = Tmpfs::new();
    let Some(m) = Mount::new(&["--size", "1G"]) else { return };
    let all = |root: &Path, kind: Kind, storage: &'static str| -> Vec<Transcript> {
        std::thread::scope(|s| {
            let running: Vec<_> = CASES
                .iter()
                .map(|&(name, case)| s.spawn(move || run_in(name, case, root, kind, true, storage)))
                .collect();
            running.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        })
    };
    let on_tmpfs = all(&tmpfs.path, Kind::Tmpfs, "");
    let on_scratchfs = all(&m.path, Kind::Scratchfs, "auto");
    let failures: Vec<String> = CASES
        .iter()
        .zip(&on_scratchfs)
        .zip(&on_tmpfs)
        .filter_map(|(((name, _), s), t)| compare(name, s, t).err())
        .collect();
    daemon_ok(m);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn run_in(name: &str, case: Case, root: &Path, kind: Kind, shared: bool, storage: &'static str) -> Transcript {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    eprintln!("{name}: on {kind:?} {storage} ({})", dir.display());
    let start = Instant::now();
    let t = case(&Fs { dir, root: root.to_path_buf(), kind, shared, storage });
    eprintln!("{name}: {kind:?} {storage} took {:?}", start.elapsed());
    t
}

/// The strict lines must be equal; differences in the `~` lines are shown.
fn compare(name: &str, on_scratchfs: &Transcript, on_tmpfs: &Transcript) -> Result<(), String> {
    let (s, t) = (on_scratchfs.strict(), on_tmpfs.strict());
    if s != t {
        let mut msg = format!("{name}: scratchfs and tmpfs observed different things\n");
        for i in 0..s.len().max(t.len()) {
            let (a, b) = (s.get(i).copied().unwrap_or("(none)"), t.get(i).copied().unwrap_or("(none)"));
            msg += &format!("{} scratchfs: {a}\n  tmpfs:     {b}\n", if a == b { " " } else { "*" });
        }
        return Err(msg);
    }
    for line in &s {
        eprintln!("{name}: both: {line}");
    }
    let (ls, lt) = (on_scratchfs.loose(), on_tmpfs.loose());
    for i in 0..ls.len().max(lt.len()) {
        let (a, b) = (ls.get(i).copied().unwrap_or("~ (none)"), lt.get(i).copied().unwrap_or("~ (none)"));
        if a == b {
            eprintln!("{name}: both: {}", &a[2..]);
        } else {
            eprintln!("{name}: differs: scratchfs: {}\n{name}: differs: tmpfs:     {}", &a[2..], &b[2..]);
        }
    }
    Ok(())
}

/// The daemon logged no panic or internal error, and exits cleanly at unmount.
fn daemon_ok(m: Mount) {
    let log = m.log_text();
    assert!(!log.contains("panicked") && !log.contains(" ERROR "), "the daemon logged errors:\n{log}");
    let (status, log) = m.unmount_with_log();
    assert!(status.success(), "the daemon exited with {status}; its log:\n{log}");
}

// --- helpers ---------------------------------------------------------------------

fn cstr(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn ename(e: i32) -> String {
    let known = [
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::EBADF, "EBADF"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::EACCES, "EACCES"),
        (libc::EEXIST, "EEXIST"),
        (libc::EXDEV, "EXDEV"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::EFBIG, "EFBIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::ERANGE, "ERANGE"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ENODATA, "ENODATA"),
        (libc::ENXIO, "ENXIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::ESPIPE, "ESPIPE"),
    ];
    known.iter().find(|(n, _)| *n == e).map_or_else(|| format!("errno {e}"), |(_, s)| (*s).to_owned())
}

/// `Ok(r)` for a non-negative system call result, else `Err(errno)`.
fn sys(r: i64) -> Result<i64, i32> {
    if r < 0 { Err(errno()) } else { Ok(r) }
}

/// "ok" or the errno name.
fn outcome(r: Result<i64, i32>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => ename(e),
    }
}

fn open(p: &Path, flags: i32, mode: u32) -> Result<OwnedFd, i32> {
    let c = cstr(p);
    // SAFETY: valid path; the fd is owned by the returned OwnedFd.
    let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    sys(i64::from(fd)).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

fn file(p: &Path, flags: i32) -> File {
    File::from(open(p, flags, 0o644).unwrap_or_else(|e| panic!("open {}: {}", p.display(), ename(e))))
}

/// Deterministic bytes, none of them zero (so holes are recognisable).
fn pattern(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| 1 + ((i * 31 + seed * 17 + (i >> 9)) % 255) as u8).collect()
}

fn pread(f: &File, off: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        let n = f.read_at(&mut buf[done..], off + done as u64).unwrap();
        if n == 0 {
            break;
        }
        done += n;
    }
    buf.truncate(done);
    buf
}

fn whole(f: &File) -> Vec<u8> {
    pread(f, 0, f.metadata().unwrap().len() as usize + 1)
}

fn fsize(f: &File) -> u64 {
    f.metadata().unwrap().len()
}

/// Asserts that two byte strings are equal, showing the first difference.
#[track_caller]
fn same_bytes(what: &str, got: &[u8], want: &[u8]) {
    if got != want {
        let at = got.iter().zip(want).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
        panic!(
            "{what}: {} bytes, want {}; first difference at {at}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            &got[at..got.len().min(at + 16)],
            &want[at..want.len().min(at + 16)]
        );
    }
}

#[track_caller]
fn all_zero(what: &str, bytes: &[u8]) {
    if let Some(i) = bytes.iter().position(|&b| b != 0) {
        panic!("{what}: byte {i} of {} is {:#x}, want 0", bytes.len(), bytes[i]);
    }
}

/// Serialises fork(2) with the lock cases. A forked child gets copies of
/// every descriptor of this (multi-threaded) test process, so a child forked
/// by one case would keep another case's open file description, and its
/// flock/OFD locks, alive after that case closes it.
static FORKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

thread_local! {
    static HOLDS_FORKS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Held by a lock case for its whole run: no other case forks meanwhile.
struct ExclusiveForks(#[allow(dead_code)] std::sync::MutexGuard<'static, ()>);

impl ExclusiveForks {
    fn take() -> ExclusiveForks {
        let g = FORKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        HOLDS_FORKS.with(|h| h.set(true));
        ExclusiveForks(g)
    }
}

impl Drop for ExclusiveForks {
    fn drop(&mut self) {
        HOLDS_FORKS.with(|h| h.set(false));
    }
}

/// Forks; the child runs `f` and `_exit`s with its result. `f` must only
/// make raw system calls on data prepared before the fork.
fn fork(f: impl FnOnce() -> i32) -> libc::pid_t {
    let _guard = (!HOLDS_FORKS.with(std::cell::Cell::get))
        .then(|| FORKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    // SAFETY: the child only runs `f` (raw system calls) and `_exit`s.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        let code = f();
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    }
    pid
}

/// How a child ended: `Ok(exit code)` or `Err(signal)`; `None` while it runs.
fn try_wait(pid: libc::pid_t) -> Option<Result<i32, i32>> {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    assert!(r >= 0, "waitpid: {}", std::io::Error::last_os_error());
    if r == 0 {
        return None;
    }
    Some(if libc::WIFEXITED(status) { Ok(libc::WEXITSTATUS(status)) } else { Err(libc::WTERMSIG(status)) })
}

/// Waits (at most 30 s, then kills it) for a child.
fn wait(pid: libc::pid_t) -> Result<i32, i32> {
    let start = Instant::now();
    loop {
        if let Some(r) = try_wait(pid) {
            return r;
        }
        if start.elapsed() > Duration::from_secs(30) {
            // SAFETY: our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = wait(pid);
            panic!("child {pid} did not finish in 30 s");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How a child that exits with 0 or an errno ended, by name.
fn exit_name(r: Result<i32, i32>) -> String {
    match r {
        Ok(0) => "ok".to_owned(),
        Ok(e) => ename(e),
        Err(sig) => format!("killed by signal {sig}"),
    }
}

/// Retries `check` for up to a second (until it returns `want`): a child
/// process forked meanwhile by std (fork + exec) may briefly hold a copy of
/// a descriptor this case has closed.
fn settles(want: &str, mut check: impl FnMut() -> String) -> String {
    let start = Instant::now();
    loop {
        let got = check();
        if got == want || start.elapsed() > Duration::from_secs(1) {
            return got;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The errno of the calling thread (for use in forked children).
fn child_errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// A one-page shared anonymous mapping: a start flag seen by forked children.
struct SharedFlag(*mut AtomicU32);

impl SharedFlag {
    fn new() -> SharedFlag {
        // SAFETY: anonymous shared mapping of one page.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        SharedFlag(p.cast())
    }

    fn get(&self) -> &AtomicU32 {
        // SAFETY: the mapping lives as long as self; zero-filled is a valid AtomicU32.
        unsafe { &*self.0 }
    }

    /// Waits until the flag is set: true, or false after 30 s (so that
    /// nothing spins on forever if the test fails before setting it).
    /// Only raw system calls: usable in forked children.
    fn wait_set(&self) -> bool {
        let now = || {
            // SAFETY: valid out pointer.
            let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
            unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
            ts.tv_sec
        };
        let deadline = now() + 30;
        while self.get().load(Ordering::Acquire) == 0 {
            if now() > deadline {
                return false;
            }
            // SAFETY: no preconditions.
            unsafe { libc::sched_yield() };
        }
        true
    }
}

impl Drop for SharedFlag {
    fn drop(&mut self) {
        // SAFETY: unmapping our mapping.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}

// SAFETY: the flag is an atomic in shared memory.
unsafe impl Sync for SharedFlag {}
// SAFETY: as above; the mapping may be unmapped from any thread.
unsafe impl Send for SharedFlag {}

fn sh(script: &str, dir: &Path) -> std::process::Output {
    Command::new("bash").arg("-c").arg(script).current_dir(dir).output().unwrap()
}

fn sh_ok(script: &str, dir: &Path) -> String {
    let out = sh(script, dir);
    assert!(
        out.status.success(),
        "`{script}`: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn timespec(m: &std::fs::Metadata) -> [(i64, i64); 3] {
    [(m.atime(), m.atime_nsec()), (m.mtime(), m.mtime_nsec()), (m.ctime(), m.ctime_nsec())]
}

fn realtime() -> (i64, i64) {
    // SAFETY: valid out pointer.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
    (ts.tv_sec, ts.tv_nsec)
}

fn quota_released(fs: &Fs, before: Option<u64>, at_least: u64, what: &str) {
    if let (Some(before), Some(after)) = (before, fs.quota_used()) {
        assert!(
            after + at_least <= before,
            "{what}: the quota should have given back at least {at_least} bytes: {before} -> {after}"
        );
    }
}

/// Like [`quota_released`], for space freed by closing a file. The kernel
/// sends RELEASE without waiting for it, and only once the file's own async
/// requests are answered: readahead still in flight at `close(2)` is
/// answered first, and its RELEASE then queues behind a stats read the
/// caller has issued meanwhile. So the space comes back a moment later,
/// not before `close(2)` returns; poll the stats (up to 5 s) for it.
fn quota_released_after_close(fs: &Fs, before: Option<u64>, at_least: u64, what: &str) {
    let Some(before) = before else { return };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut after = fs.quota_used();
    while after.is_some_and(|a| a + at_least > before) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
        after = fs.quota_used();
    }
    quota_released(fs, Some(before), at_least, what);
}

// --- O_APPEND --------------------------------------------------------------------

const APPEND_THREADS: usize = 4;
const APPEND_PROCS: usize = 4;
const APPEND_RECORDS: usize = 300;
const HEADER: usize = 15;

/// Record `s` of writer `w`: `<ww:sssss:llll:` then filler, `\n`; 32..=4096 bytes.
fn record(w: usize, s: usize) -> Vec<u8> {
    let len = 32 + (w * 7919 + s * 104_729) % (4096 - 32 + 1);
    let mut r = format!("<{w:02}:{s:05}:{len:04}:").into_bytes();
    assert_eq!(r.len(), HEADER);
    r.resize(len - 1, b'a' + ((w * 3 + s) % 26) as u8);
    r.push(b'\n');
    r
}

fn append_concurrent_writers(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let path = fs.path("log");
    std::fs::write(&path, b"").unwrap();
    let writers = APPEND_THREADS + APPEND_PROCS;
    let go = Arc::new(SharedFlag::new());

    // Processes: each opens the file itself with O_APPEND.
    let mut pids = Vec::new();
    for p in 0..APPEND_PROCS {
        let w = APPEND_THREADS + p;
        let recs: Vec<Vec<u8>> = (0..APPEND_RECORDS).map(|s| record(w, s)).collect();
        let c = cstr(&path);
        let go = go.clone();
        pids.push(fork(move || {
            if !go.wait_set() {
                return 12;
            }
            // SAFETY: raw system calls on data prepared before the fork.
            unsafe {
                let fd = libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_APPEND);
                if fd < 0 {
                    return 10;
                }
                for r in &recs {
                    if libc::write(fd, r.as_ptr().cast(), r.len()) != r.len() as isize {
                        return 11;
                    }
                }
                libc::close(fd);
            }
            0
        }));
    }
    // Threads: two with their own descriptor, two sharing one.
    let shared = Arc::new(OpenOptions::new().append(true).open(&path).unwrap());
    let handles: Vec<_> = (0..APPEND_THREADS)
        .map(|w| {
            let f = if w < 2 { Arc::new(OpenOptions::new().append(true).open(&path).unwrap()) } else { shared.clone() };
            let go = go.clone();
            std::thread::spawn(move || {
                assert!(go.wait_set(), "never told to start");
                for s in 0..APPEND_RECORDS {
                    let r = record(w, s);
                    // One write(2) per record.
                    let n = (&*f).write(&r).unwrap();
                    assert_eq!(n, r.len(), "short append");
                }
            })
        })
        .collect();
    go.get().store(1, Ordering::Release);
    for h in handles {
        h.join().unwrap();
    }
    for pid in pids {
        assert_eq!(wait(pid), Ok(0), "appending child failed");
    }

    let data = std::fs::read(&path).unwrap();
    let mut next = vec![0usize; writers];
    let mut pos = 0;
    let mut count = 0;
    while pos < data.len() {
        let head = &data[pos..data.len().min(pos + HEADER)];
        let parse = || -> Option<(usize, usize, usize)> {
            let h = std::str::from_utf8(head).ok()?;
            let h = h.strip_prefix('<')?;
            let mut it = h.split(':');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        };
        let (w, s, len) = parse().unwrap_or_else(|| panic!("no record header at byte {pos}: {head:?}"));
        assert!(w < writers, "writer {w} at {pos}");
        assert!(pos + len <= data.len(), "record of writer {w} seq {s} at {pos} cut short by EOF");
        same_bytes(&format!("record {s} of writer {w} at byte {pos}"), &data[pos..pos + len], &record(w, s));
        assert_eq!(s, next[w], "writer {w}: record {s} at byte {pos} out of order (lost or repeated)");
        next[w] += 1;
        pos += len;
        count += 1;
    }
    assert!(next.iter().all(|&n| n == APPEND_RECORDS), "records per writer: {next:?}");
    let want_len: usize = (0..writers).flat_map(|w| (0..APPEND_RECORDS).map(move |s| record(w, s).len())).sum();
    assert_eq!(data.len(), want_len);
    t.same(format!(
        "{count} records of 32..4096 bytes from {APPEND_THREADS} threads and {APPEND_PROCS} processes: all intact, \
         none lost, in order per writer ({want_len} bytes)"
    ));

    // pwrite(2) on an O_APPEND descriptor appends anyway (Linux; see pwrite(2) BUGS).
    let f = file(&path, libc::O_RDWR | libc::O_APPEND);
    assert_eq!(f.write_at(b"TAIL", 0).unwrap(), 4);
    let after = whole(&f);
    assert_eq!(after.len(), want_len + 4);
    same_bytes("head after pwrite(0) on O_APPEND", &after[..want_len], &data);
    assert_eq!(&after[want_len..], b"TAIL");
    t.same("pwrite(offset 0) on an O_APPEND fd appends");
    t
}

// --- O_EXCL ----------------------------------------------------------------------

fn o_excl(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let excl = libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY;
    let p = fs.path("f");
    t.same(format!("create: {}", outcome(open(&p, excl, 0o640).map(|_| 0))));
    assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o7777, 0o640 & !current_umask());
    t.same(format!("again: {}", outcome(open(&p, excl, 0o640).map(|_| 0))));
    std::fs::create_dir(fs.path("d")).unwrap();
    t.same(format!("on a directory: {}", outcome(open(&fs.path("d"), excl, 0o640).map(|_| 0))));
    std::os::unix::fs::symlink("nowhere", fs.path("dangling")).unwrap();
    t.same(format!("on a dangling symlink: {}", outcome(open(&fs.path("dangling"), excl, 0o640).map(|_| 0))));
    t.same(format!("  its target created: {}", fs.path("nowhere").exists()));
    std::os::unix::fs::symlink("f", fs.path("link")).unwrap();
    t.same(format!("on a symlink to a file: {}", outcome(open(&fs.path("link"), excl, 0o640).map(|_| 0))));
    // Without O_EXCL an existing file just opens.
    t.same(format!("O_CREAT alone on it: {}", outcome(open(&p, libc::O_CREAT | libc::O_WRONLY, 0o600).map(|_| 0))));

    // Racing creators: for each name exactly one of 8 threads wins.
    const THREADS: usize = 8;
    const NAMES: usize = 100;
    let barrier = Arc::new(Barrier::new(THREADS));
    let dir = fs.path("race");
    std::fs::create_dir(&dir).unwrap();
    let handles: Vec<_> = (0..THREADS)
        .map(|id| {
            let (barrier, dir) = (barrier.clone(), dir.clone());
            std::thread::spawn(move || {
                // No panics in here: the others would wait at the barrier forever.
                let mut won = Vec::new();
                let mut errors = Vec::new();
                for n in 0..NAMES {
                    barrier.wait();
                    match open(&dir.join(format!("n{n}")), excl, 0o644) {
                        Ok(fd) => match File::from(fd).write_at(format!("winner {id}").as_bytes(), 0) {
                            Ok(_) => won.push(n),
                            Err(e) => errors.push(format!("thread {id}, name {n}: write: {e}")),
                        },
                        Err(libc::EEXIST) => {}
                        Err(e) => errors.push(format!("thread {id}, name {n}: {}", ename(e))),
                    }
                }
                (won, errors)
            })
        })
        .collect();
    let mut winner = HashMap::new();
    for (id, h) in handles.into_iter().enumerate() {
        let (won, errors) = h.join().unwrap();
        assert!(errors.is_empty(), "O_EXCL race: {errors:?}");
        for n in won {
            assert!(winner.insert(n, id).is_none(), "name n{n} created twice with O_EXCL");
        }
    }
    assert_eq!(winner.len(), NAMES, "every name has a winner");
    for (n, id) in &winner {
        assert_eq!(std::fs::read_to_string(dir.join(format!("n{n}"))).unwrap(), format!("winner {id}"));
    }
    t.same(format!("{THREADS} threads racing O_EXCL on {NAMES} names: exactly one winner each, its data kept"));
    t
}

/// The process's umask (read without changing it, other tests run in parallel).
fn current_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("Umask in /proc/self/status");
    u32::from_str_radix(line.trim(), 8).unwrap()
}

// --- O_TRUNC ---------------------------------------------------------------------

/// Sets both times of `p` to 2000-01-01.
/// What clearing set-user-ID and set-group-ID takes, case by case: the
/// operation, done by another user (fs uid and gid 2000, no supplementary
/// groups, so none of the capabilities that exempt from it), by a member of
/// the file's group, or by root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PrivOp {
    Write,
    /// A write through a read-write descriptor (through the page cache,
    /// not direct I/O): the kernel clears the bits itself first, with an
    /// empty SETATTR whose answer refreshes its cached mode, so the WRITE
    /// finds nothing to clear. Only `Write` (write-only, direct I/O) needs
    /// the daemon's invalidation.
    ReadWrite,
    Truncate,
    Fallocate,
    CopyFileRange,
    ChownNoChange,
    /// `fchown(fd, -1, 2000)` by root without `CAP_FSETID`.
    ChownGroupNoFsetid,
}

/// Set-user-ID and set-group-ID are cleared where Linux clears them: on a
/// write, truncate, fallocate or copy_file_range by a caller without
/// CAP_FSETID (set-group-ID without group-execute only when the caller is
/// not in the file's group), and on every chown of a file, `chown(f, -1,
/// -1)` included. With FUSE_HANDLE_KILLPRIV_V2 the kernel leaves this to
/// the filesystem; the last three reach it as an empty SETATTR.
fn privilege_bits_cleared(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let src = fs.path("src");
    std::fs::write(&src, vec![b'q'; 100]).unwrap();
    let f = fs.path("f");
    let cases: [(PrivOp, u32, u32, Option<u32>); 12] = [
        // (operation, mode, file group, fs gid of the caller; None: root)
        (PrivOp::Write, 0o2767, 1000, Some(2000)),
        (PrivOp::Write, 0o2767, 2000, Some(2000)),
        (PrivOp::Write, 0o6777, 2000, Some(2000)),
        (PrivOp::ReadWrite, 0o6777, 1000, Some(2000)),
        (PrivOp::Truncate, 0o2767, 1000, Some(2000)),
        (PrivOp::Truncate, 0o6767, 2000, Some(2000)),
        (PrivOp::Fallocate, 0o6777, 1000, Some(2000)),
        (PrivOp::CopyFileRange, 0o6777, 1000, Some(2000)),
        (PrivOp::ChownNoChange, 0o6755, 0, None),
        (PrivOp::ChownNoChange, 0o2745, 0, None),
        // Clearing set-user-ID makes a chown a mode change, which keeps a
        // set-group-ID bit only for a member of the new group; without a
        // set-user-ID bit, the group the file had decides.
        (PrivOp::ChownGroupNoFsetid, 0o6745, 0, None),
        (PrivOp::ChownGroupNoFsetid, 0o2745, 0, None),
    ];
    for (op, mode, group, caller_gid) in cases {
        let _ = std::fs::remove_file(&f);
        std::fs::write(&f, b"xyz").unwrap();
        let (fc, srcc) = (cstr(&f), cstr(&src));
        // SAFETY: plain system calls on a path of ours.
        unsafe {
            assert_eq!(libc::chown(fc.as_ptr(), 1000, group), 0);
            assert_eq!(libc::chmod(fc.as_ptr(), mode), 0);
        }
        let pid = fork(|| {
            // SAFETY: raw system calls in the child on data prepared before the fork.
            unsafe {
                if let Some(gid) = caller_gid {
                    if libc::setgroups(0, std::ptr::null()) != 0 {
                        return child_errno();
                    }
                    libc::setfsgid(gid);
                    libc::setfsuid(2000);
                }
                if op == PrivOp::ChownGroupNoFsetid {
                    // A version 3 header (pid 0: this process, single-threaded
                    // after the fork) and (effective, permitted, inheritable) x 2.
                    let mut header: [u32; 2] = [0x2008_0522, 0];
                    let mut data = [0u32; 6];
                    if libc::syscall(libc::SYS_capget, header.as_mut_ptr(), data.as_mut_ptr()) != 0 {
                        return child_errno();
                    }
                    data[0] &= !(1 << CAP_FSETID);
                    if libc::syscall(libc::SYS_capset, header.as_mut_ptr(), data.as_ptr()) != 0 {
                        return child_errno();
                    }
                }
                let flags = match op {
                    PrivOp::ChownNoChange | PrivOp::ChownGroupNoFsetid => libc::O_RDONLY,
                    PrivOp::ReadWrite => libc::O_RDWR,
                    _ => libc::O_WRONLY,
                };
                let fd = libc::open(fc.as_ptr(), flags);
                if fd < 0 {
                    return child_errno();
                }
                let r = match op {
                    PrivOp::Write | PrivOp::ReadWrite => libc::write(fd, b"b".as_ptr().cast(), 1) as i64,
                    PrivOp::Truncate => i64::from(libc::ftruncate(fd, 1)),
                    PrivOp::Fallocate => i64::from(libc::fallocate(fd, 0, 0, 8192)),
                    PrivOp::CopyFileRange => {
                        let sfd = libc::open(srcc.as_ptr(), libc::O_RDONLY);
                        libc::copy_file_range(sfd, std::ptr::null_mut(), fd, std::ptr::null_mut(), 10, 0) as i64
                    }
                    PrivOp::ChownNoChange => i64::from(libc::fchown(fd, u32::MAX, u32::MAX)),
                    PrivOp::ChownGroupNoFsetid => i64::from(libc::fchown(fd, u32::MAX, 2000)),
                };
                if r < 0 { child_errno() } else { 0 }
            }
        });
        let r = exit_name(wait(pid));
        // The mode alone first: a stat that asks for nothing else is
        // answered from the kernel's cache unless the change reached it.
        let alone = statx_mode(&f);
        let after = std::fs::metadata(&f).unwrap().mode() & 0o7777;
        let who = caller_gid.map_or("root".to_owned(), |g| format!("uid 2000 gid {g}"));
        t.same(format!(
            "{op:?} of a {mode:o} file of group {group} by {who}: {r}, mode {after:o} (asked alone {alone:o})"
        ));
    }
    t
}

/// The permission bits of `p`, asking `statx(2)` for the mode only.
fn statx_mode(p: &Path) -> u32 {
    // SAFETY: statx fills the zeroed struct; valid path.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statx(libc::AT_FDCWD, cstr(p).as_ptr(), 0, libc::STATX_MODE, &mut stx) };
    assert_eq!(rc, 0, "statx {}: {}", p.display(), std::io::Error::last_os_error());
    u32::from(stx.stx_mode) & 0o7777
}

fn set_old_times(p: &Path) {
    let ts = [libc::timespec { tv_sec: 946_684_800, tv_nsec: 0 }; 2];
    // SAFETY: valid path and times.
    assert_eq!(unsafe { libc::utimensat(libc::AT_FDCWD, cstr(p).as_ptr(), ts.as_ptr(), 0) }, 0);
}

fn o_trunc(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let p = fs.path("f");
    let data = pattern(100_000, 1);
    std::fs::write(&p, &data).unwrap();
    let reader = file(&p, libc::O_RDONLY);
    same_bytes("before", &whole(&reader), &data); // now in the page cache
    set_old_times(&p);
    let ctime0 = timespec(&std::fs::metadata(&p).unwrap())[2];
    let used0 = fs.quota_used();
    std::thread::sleep(Duration::from_millis(20));

    let w = file(&p, libc::O_WRONLY | libc::O_TRUNC);
    let [_, mtime, ctime] = timespec(&w.metadata().unwrap());
    t.same(format!(
        "O_WRONLY|O_TRUNC: size {}, mtime moved {}, ctime moved {}",
        fsize(&w),
        mtime > (946_684_800, 0),
        ctime > ctime0
    ));
    quota_released(fs, used0, 90_000, "O_TRUNC");
    t.same(format!("open reader then reads {} bytes", pread(&reader, 0, 100).len()));
    w.write_at(b"new", 0).unwrap();
    t.same(format!("after writing 'new': reader sees {:?}", String::from_utf8_lossy(&whole(&reader))));

    // O_RDONLY|O_TRUNC: unspecified by POSIX; Linux truncates.
    std::fs::write(&p, &data).unwrap();
    let r = open(&p, libc::O_RDONLY | libc::O_TRUNC, 0).map(|fd| fsize(&File::from(fd)) as i64);
    t.same(format!("O_RDONLY|O_TRUNC: {:?}", r.map_err(ename)));

    // O_TRUNC on an empty file.
    std::fs::write(&p, b"").unwrap();
    set_old_times(&p);
    let _ = file(&p, libc::O_WRONLY | libc::O_TRUNC);
    let m = std::fs::metadata(&p).unwrap();
    t.same(format!("O_TRUNC on an empty file: mtime moved {}", m.mtime() != 946_684_800));

    // O_CREAT|O_TRUNC on an existing file truncates it; mode is not changed.
    std::fs::write(&p, &data).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let f = file(&p, libc::O_CREAT | libc::O_TRUNC | libc::O_RDWR);
    t.same(format!("O_CREAT|O_TRUNC on existing: size {}, mode {:o}", fsize(&f), f.metadata().unwrap().mode() & 0o777));

    // ftruncate needs a writable descriptor.
    // SAFETY: valid fd.
    let r = sys(i64::from(unsafe { libc::ftruncate(reader.as_raw_fd(), 0) }));
    t.same(format!("ftruncate on an O_RDONLY fd: {}", outcome(r)));
    t
}

// --- O_TMPFILE -------------------------------------------------------------------

fn o_tmpfile(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let r = open(&fs.dir, libc::O_TMPFILE | libc::O_RDWR, 0o600);
    match fs.kind {
        // The kernel sends FUSE_TMPFILE; scratchfs (fuser 0.18) does not
        // implement it, so open(2) fails cleanly and nothing is created.
        Kind::Scratchfs => {
            assert_eq!(r.as_ref().err(), Some(&libc::EOPNOTSUPP), "O_TMPFILE on scratchfs");
            t.differs("O_TMPFILE: EOPNOTSUPP (not supported)");
        }
        Kind::Tmpfs => {
            let f = File::from(r.expect("O_TMPFILE on tmpfs"));
            assert_eq!(f.metadata().unwrap().nlink(), 0);
            f.write_at(b"anonymous", 0).unwrap();
            let src = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
            let dst = cstr(&fs.path("linked"));
            // SAFETY: valid paths.
            let r = unsafe {
                libc::linkat(libc::AT_FDCWD, src.as_ptr(), libc::AT_FDCWD, dst.as_ptr(), libc::AT_SYMLINK_FOLLOW)
            };
            assert_eq!(r, 0, "linkat: {}", ename(errno()));
            assert_eq!(std::fs::read(fs.path("linked")).unwrap(), b"anonymous");
            t.differs("O_TMPFILE: ok (nlink 0, linkat gives it a name)");
        }
    }
    let names: Vec<_> = std::fs::read_dir(&fs.dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    t.same(format!("other names in the directory: {}", names.iter().filter(|n| *n != "linked").count()));
    // A directory cannot be opened for writing, O_TMPFILE aside.
    t.same(format!("O_RDWR on a directory: {}", outcome(open(&fs.dir, libc::O_RDWR, 0).map(|_| 0))));
    t
}

// --- SEEK_DATA / SEEK_HOLE -------------------------------------------------------

fn lseek(f: &File, off: i64, whence: i32) -> Result<i64, i32> {
    // SAFETY: valid fd.
    sys(unsafe { libc::lseek(f.as_raw_fd(), off, whence) })
}

/// Checks the lseek(2) contract at every probe offset against the file's
/// bytes; returns "off:data/hole" for each probe.
fn check_seek_contract(name: &str, f: &File, probes: &[u64]) -> Vec<String> {
    let content = whole(f);
    let size = content.len() as u64;
    let mut out = Vec::new();
    for &off in probes {
        let d = lseek(f, off as i64, libc::SEEK_DATA);
        let h = lseek(f, off as i64, libc::SEEK_HOLE);
        if off >= size {
            assert_eq!((d, h), (Err(libc::ENXIO), Err(libc::ENXIO)), "{name}: at {off} >= size {size}");
        } else {
            // SEEK_DATA: the next data at or after off; everything skipped reads as zeros.
            match d {
                Ok(d) => {
                    let d = d as u64;
                    assert!(d >= off && d < size, "{name}: SEEK_DATA({off}) = {d}, size {size}");
                    all_zero(&format!("{name}: skipped by SEEK_DATA({off}) = {d}"), &content[off as usize..d as usize]);
                }
                // No data after off: the rest is a hole.
                Err(libc::ENXIO) => {
                    all_zero(&format!("{name}: after {off} (SEEK_DATA: ENXIO)"), &content[off as usize..])
                }
                Err(e) => panic!("{name}: SEEK_DATA({off}): {}", ename(e)),
            }
            // SEEK_HOLE: the next hole at or after off (EOF counts); the hole reads as zeros.
            let h = h.unwrap_or_else(|e| panic!("{name}: SEEK_HOLE({off}): {}", ename(e))) as u64;
            assert!(h >= off && h <= size, "{name}: SEEK_HOLE({off}) = {h}, size {size}");
            if content[off as usize] != 0 {
                assert!(h > off, "{name}: SEEK_HOLE({off}) = {off} but that byte is data");
            }
            if h < size {
                let end = match lseek(f, h as i64, libc::SEEK_DATA) {
                    Ok(e) => e as u64,
                    Err(libc::ENXIO) => size,
                    Err(e) => panic!("{name}: SEEK_DATA({h}): {}", ename(e)),
                };
                assert!(end > h, "{name}: the hole at {h} (SEEK_HOLE({off})) is empty: SEEK_DATA({h}) = {end}");
                all_zero(
                    &format!("{name}: hole [{h}, {end}) from SEEK_HOLE({off})"),
                    &content[h as usize..end as usize],
                );
            }
        }
        let show = |r: Result<i64, i32>| r.map_or_else(ename, |v| v.to_string());
        out.push(format!("{off}:{}/{}", show(d), show(h)));
    }
    out
}

fn seek_data_hole(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    const MIB: u64 = 1 << 20;

    // A file written only at its end and extended by ftruncate: stays
    // sequential on scratchfs (auto). Holes come from the extensions.
    let a = file(&fs.path("appended"), libc::O_CREAT | libc::O_RDWR);
    a.write_at(&pattern(10_000, 1), 0).unwrap();
    a.set_len(200_000).unwrap();
    a.write_at(&pattern(10, 2), 200_000).unwrap();
    a.set_len(MIB).unwrap();
    a.write_at(&pattern(65_536, 3), MIB).unwrap();
    a.set_len(3 * MIB + 7).unwrap();
    a.write_at(&pattern(5, 4), 3 * MIB + 7).unwrap();
    a.set_len(4 * MIB).unwrap(); // trailing hole

    // The same bytes written out of order, plus punched holes: promoted to
    // random access on scratchfs (auto).
    let b = file(&fs.path("scattered"), libc::O_CREAT | libc::O_RDWR);
    b.set_len(4 * MIB).unwrap();
    b.write_at(&pattern(5, 4), 3 * MIB + 7).unwrap();
    b.write_at(&pattern(65_536, 3), MIB).unwrap();
    b.write_at(&pattern(10, 2), 200_000).unwrap();
    b.write_at(&pattern(10_000, 1), 0).unwrap();
    b.write_at(&pattern(300_000, 5), 2 * MIB).unwrap();
    // SAFETY: valid fd.
    let punch = |off: u64, len: u64| unsafe {
        libc::fallocate(b.as_raw_fd(), libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, off as i64, len as i64)
    };
    assert_eq!(punch(2 * MIB, 300_000), 0, "punch: {}", ename(errno()));
    b.write_at(&pattern(1, 6), 2 * MIB + 150_000).unwrap(); // one byte back in the punched range
    assert_eq!(punch(MIB + 4096, 8192), 0);

    let mut probes: Vec<u64> = (0..4 * MIB + 8192).step_by(4096).collect();
    for base in [
        0,
        200_000,
        MIB,
        MIB + 4096,
        MIB + 12_288,
        MIB + 65_536,
        2 * MIB,
        2 * MIB + 150_000,
        2 * MIB + 300_000,
        3 * MIB + 7,
        3 * MIB + 12,
        4 * MIB,
    ] {
        probes.extend([base.saturating_sub(1), base, base + 1, base + 9, base + 10, base + 4095]);
    }
    probes.extend([9_999, 10_000, 10_001, 65_535, 65_536, 200_009, 200_010]);
    probes.sort_unstable();
    probes.dedup();

    for (name, f) in [("appended", &a), ("scattered", &b)] {
        let offsets = check_seek_contract(name, f, &probes);
        t.same(format!(
            "{name}: SEEK_DATA/SEEK_HOLE at {} offsets: data never skipped, holes read as zeros, ENXIO at/after EOF",
            probes.len()
        ));
        // Where each filesystem places data and hole boundaries (tmpfs: by
        // page; scratchfs: by byte, data of a random-access file from the
        // page it starts in),
        // at offsets around the extents written.
        let interesting: Vec<&String> = offsets
            .iter()
            .zip(&probes)
            .filter(|(_, p)| {
                [
                    0,
                    9_999,
                    10_000,
                    12_288,
                    65_536,
                    199_999,
                    200_009,
                    200_010,
                    MIB - 1,
                    MIB,
                    MIB + 4096,
                    MIB + 12_288,
                    MIB + 65_536,
                    2 * MIB,
                    2 * MIB + 150_000,
                    2 * MIB + 150_001,
                    3 * MIB + 7,
                    3 * MIB + 12,
                    4 * MIB - 1,
                ]
                .contains(p)
            })
            .map(|(o, _)| o)
            .collect();
        t.differs(format!(
            "{name} off:SEEK_DATA/SEEK_HOLE {}",
            interesting.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
        ));
    }
    if let Some(r) = fs.report() {
        // Under `auto`, the two files cover both shapes.
        let shape =
            |n: &str| r.largest_files.iter().find(|f| f.path.ends_with(n)).map(|f| f.shape.clone()).unwrap_or_default();
        let (appended, scattered) = match fs.storage {
            "auto" => ("sequential", "random-access"),
            other => (other, other),
        };
        assert_eq!(shape("appended"), appended, "shape of the appended file under --storage {}", fs.storage);
        assert_eq!(shape("scattered"), scattered, "shape of the scattered file under --storage {}", fs.storage);
    }
    t
}

// --- fallocate -------------------------------------------------------------------

fn fallocate(f: &File, mode: i32, off: i64, len: i64) -> Result<i64, i32> {
    // SAFETY: valid fd.
    sys(i64::from(unsafe { libc::fallocate(f.as_raw_fd(), mode, off, len) }))
}

fn fallocate_modes(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let keep = libc::FALLOC_FL_KEEP_SIZE;
    let p = fs.path("f");
    let mut want = pattern(200_000, 7);
    std::fs::write(&p, &want).unwrap();
    let f = file(&p, libc::O_RDWR);
    same_bytes("initial", &whole(&f), &want); // in the page cache from here on
    let check = |t: &mut Transcript, what: &str, want: &[u8]| {
        same_bytes(what, &whole(&f), want);
        t.same(format!("{what}: size {}, content as expected", want.len()));
    };

    assert_eq!(fallocate(&f, 0, 300_000, 100_000), Ok(0));
    want.resize(400_000, 0);
    check(&mut t, "mode 0 past EOF grows the file, zeros", &want);
    assert_eq!(fallocate(&f, 0, 0, 1000), Ok(0));
    check(&mut t, "mode 0 over data changes nothing", &want);
    assert_eq!(fallocate(&f, keep, 500_000, 100_000), Ok(0));
    check(&mut t, "KEEP_SIZE past EOF keeps the size", &want);
    // SAFETY: valid fd.
    assert_eq!(unsafe { libc::posix_fallocate(f.as_raw_fd(), 390_000, 20_000) }, 0);
    want.resize(410_000, 0);
    check(&mut t, "posix_fallocate grows the file", &want);
    // Every successful fallocate is a modification (tmpfs: file_modified),
    // whether or not the size changes.
    for (what, mode, off) in
        [("mode 0 inside the file", 0, 0), ("KEEP_SIZE inside", keep, 0), ("KEEP_SIZE past EOF", keep, 700_000)]
    {
        set_old_times(&p);
        let before = std::fs::metadata(&p).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(fallocate(&f, mode, off, 1000), Ok(0));
        let after = std::fs::metadata(&p).unwrap();
        let moved = |a: (i64, i64), b: (i64, i64)| if a == b { "kept" } else { "moved" };
        t.same(format!(
            "{what}: mtime {}, ctime {}",
            moved((before.mtime(), before.mtime_nsec()), (after.mtime(), after.mtime_nsec())),
            moved((before.ctime(), before.ctime_nsec()), (after.ctime(), after.ctime_nsec()))
        ));
    }
    check(&mut t, "after fallocate inside the file", &want);

    assert_eq!(fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE | keep, 10_000, 50_000), Ok(0));
    want[10_000..60_000].fill(0);
    check(&mut t, "PUNCH_HOLE|KEEP_SIZE zeroes the range (cached pages too)", &want);
    assert_eq!(fallocate(&f, libc::FALLOC_FL_PUNCH_HOLE | keep, 409_000, 100_000), Ok(0));
    want[409_000..].fill(0);
    check(&mut t, "PUNCH_HOLE|KEEP_SIZE across EOF keeps the size", &want);

    for (name, mode) in [
        ("PUNCH_HOLE without KEEP_SIZE", libc::FALLOC_FL_PUNCH_HOLE),
        ("COLLAPSE_RANGE", libc::FALLOC_FL_COLLAPSE_RANGE),
        ("INSERT_RANGE", libc::FALLOC_FL_INSERT_RANGE),
        ("UNSHARE_RANGE", libc::FALLOC_FL_UNSHARE_RANGE),
    ] {
        let r = fallocate(&f, mode, 0, 4096);
        assert_eq!(r, Err(libc::EOPNOTSUPP), "{name}");
        t.same(format!("{name}: {}", outcome(r)));
    }
    check(&mut t, "after the refused modes", &want);
    t.same(format!("length 0: {}", outcome(fallocate(&f, 0, 0, 0))));
    t.same(format!("negative offset: {}", outcome(fallocate(&f, 0, -1, 10))));
    let ro = file(&p, libc::O_RDONLY);
    t.same(format!("on an O_RDONLY fd: {}", outcome(fallocate(&ro, 0, 0, 10))));

    // ZERO_RANGE: scratchfs implements it; tmpfs does not.
    let zero = libc::FALLOC_FL_ZERO_RANGE;
    match fs.kind {
        Kind::Scratchfs => {
            assert_eq!(fallocate(&f, zero, 100, 1000), Ok(0));
            want[100..1100].fill(0);
            same_bytes("ZERO_RANGE", &whole(&f), &want);
            assert_eq!(fallocate(&f, zero | keep, 405_000, 100_000), Ok(0));
            want[405_000..].fill(0);
            same_bytes("ZERO_RANGE|KEEP_SIZE across EOF", &whole(&f), &want);
            assert_eq!(fallocate(&f, zero, 405_000, 100_000), Ok(0));
            want.resize(505_000, 0);
            same_bytes("ZERO_RANGE across EOF", &whole(&f), &want);
            t.differs("ZERO_RANGE: ok (zeroes cached pages; grows the file unless KEEP_SIZE)");
        }
        Kind::Tmpfs => {
            assert_eq!(fallocate(&f, zero, 100, 1000), Err(libc::EOPNOTSUPP));
            t.differs("ZERO_RANGE: EOPNOTSUPP");
        }
    }
    t
}

// --- copy_file_range -------------------------------------------------------------

fn cfr(fin: &File, off_in: Option<i64>, fout: &File, off_out: Option<i64>, len: usize) -> Result<i64, i32> {
    let mut oi = off_in.unwrap_or(0);
    let mut oo = off_out.unwrap_or(0);
    let pi: *mut i64 = if off_in.is_some() { &mut oi } else { std::ptr::null_mut() };
    let po: *mut i64 = if off_out.is_some() { &mut oo } else { std::ptr::null_mut() };
    // SAFETY: valid fds and offset pointers (or null).
    sys(unsafe { libc::copy_file_range(fin.as_raw_fd(), pi, fout.as_raw_fd(), po, len, 0) } as i64)
}

fn copy_file_range(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    const MIB: usize = 1 << 20;
    let src_data = pattern(3 * MIB + 123, 11);
    std::fs::write(fs.path("src"), &src_data).unwrap();
    let src = file(&fs.path("src"), libc::O_RDWR);

    // Between files, in a loop as cp does, into a file whose old content is cached.
    let old = pattern(4 * MIB, 12);
    std::fs::write(fs.path("dst"), &old).unwrap();
    let dst = file(&fs.path("dst"), libc::O_RDWR);
    same_bytes("dst before", &whole(&dst), &old);
    let mut off = 0;
    let mut calls = 0;
    loop {
        let n = cfr(&src, Some(off), &dst, Some(off), 4 * MIB).unwrap();
        if n == 0 {
            break;
        }
        off += n;
        calls += 1;
    }
    let mut want = old.clone();
    want[..src_data.len()].copy_from_slice(&src_data);
    same_bytes("dst after copying src over it", &whole(&dst), &want);
    t.same(format!("between files: {off} bytes copied byte for byte, stale cached pages replaced"));
    t.differs(format!("calls needed for {off} bytes, 4 MiB asked each time: {calls}"));

    // One large call: tmpfs copies it whole; scratchfs copies at most 4 MiB
    // per call (one request must not hold the mount's worker for long),
    // and a loop gets it all.
    let big = pattern(24 * MIB + 5, 13);
    std::fs::write(fs.path("big"), &big).unwrap();
    let big_in = file(&fs.path("big"), libc::O_RDONLY);
    let big_out = file(&fs.path("big-copy"), libc::O_CREAT | libc::O_WRONLY);
    let first = cfr(&big_in, Some(0), &big_out, Some(0), 64 * MIB).unwrap();
    match fs.kind {
        Kind::Scratchfs => assert_eq!(first, 4 * MIB as i64),
        Kind::Tmpfs => assert_eq!(first, big.len() as i64),
    }
    let mut off = first;
    loop {
        match cfr(&big_in, Some(off), &big_out, Some(off), 64 * MIB).unwrap() {
            0 => break,
            n => off += n,
        }
    }
    drop(big_out);
    same_bytes("a 24 MiB copy, looped", &std::fs::read(fs.path("big-copy")).unwrap(), &big);
    t.differs(format!("24 MiB asked at once: {first} bytes copied by the first call"));

    // Within one file, non-overlapping.
    assert_eq!(cfr(&src, Some(0), &src, Some(2 * MIB as i64), MIB), Ok(MIB as i64));
    let mut want_src = src_data.clone();
    want_src.copy_within(0..MIB, 2 * MIB);
    same_bytes("src after copying its first MiB to 2 MiB", &whole(&src), &want_src);
    t.same("within a file: 1 MiB copied byte for byte");
    // Overlapping ranges of one file.
    t.same(format!("overlapping ranges: {}", outcome(cfr(&src, Some(0), &src, Some(4096), 8192))));

    // Short at the source's EOF, nothing past it, holes when writing past the destination's EOF.
    let small = file(&fs.path("small"), libc::O_CREAT | libc::O_RDWR);
    let n = cfr(&src, Some(want_src.len() as i64 - 100), &small, Some(5000), 1000);
    t.same(format!("100 bytes before EOF, asked 1000: {n:?}"));
    let mut want_small = vec![0u8; 5000];
    want_small.extend_from_slice(&want_src[want_src.len() - 100..]);
    same_bytes("small", &whole(&small), &want_small);
    t.same(format!("at the source's EOF: {:?}", cfr(&src, Some(want_src.len() as i64), &small, Some(0), 10)));
    t.same(format!("past the source's EOF: {:?}", cfr(&src, Some(want_src.len() as i64 + 10), &small, Some(0), 10)));

    // With the file offsets (NULL offset pointers): both advance.
    let a = file(&fs.path("src"), libc::O_RDONLY);
    let b = file(&fs.path("cursor"), libc::O_CREAT | libc::O_WRONLY);
    assert_eq!(lseek(&a, 1000, libc::SEEK_SET), Ok(1000));
    assert_eq!(cfr(&a, None, &b, None, 5000), Ok(5000));
    assert_eq!(cfr(&a, None, &b, None, 5000), Ok(5000));
    t.same(format!(
        "with file offsets: positions now {:?} and {:?}",
        lseek(&a, 0, libc::SEEK_CUR),
        lseek(&b, 0, libc::SEEK_CUR)
    ));
    same_bytes("cursor copy", &std::fs::read(fs.path("cursor")).unwrap(), &want_src[1000..11_000]);

    // Wrong descriptors.
    let app = file(&fs.path("appendonly"), libc::O_CREAT | libc::O_WRONLY | libc::O_APPEND);
    t.same(format!("to an O_APPEND fd: {}", outcome(cfr(&src, Some(0), &app, Some(0), 10))));
    let wo = file(&fs.path("src"), libc::O_WRONLY);
    t.same(format!("from an O_WRONLY fd: {}", outcome(cfr(&wo, Some(0), &small, Some(0), 10))));
    let dirfd = File::from(open(&fs.dir, libc::O_RDONLY | libc::O_DIRECTORY, 0).unwrap());
    t.same(format!("from a directory: {}", outcome(cfr(&dirfd, Some(0), &small, Some(0), 10))));
    t
}

// --- xattrs ----------------------------------------------------------------------

fn setxattr(p: &Path, name: &str, value: &[u8], flags: i32) -> Result<i64, i32> {
    let n = CString::new(name).unwrap();
    // SAFETY: valid path, name and value.
    sys(i64::from(unsafe { libc::setxattr(cstr(p).as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) }))
}

fn lsetxattr(p: &Path, name: &str, value: &[u8]) -> Result<i64, i32> {
    let n = CString::new(name).unwrap();
    // SAFETY: valid path, name and value.
    sys(i64::from(unsafe { libc::lsetxattr(cstr(p).as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) }))
}

/// getxattr into a buffer of `size` bytes.
fn getxattr(p: &Path, name: &str, size: usize) -> Result<Vec<u8>, i32> {
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; size];
    // SAFETY: valid path, name and buffer.
    let r = sys(unsafe { libc::getxattr(cstr(p).as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), size) } as i64)?;
    buf.truncate(r as usize);
    Ok(buf)
}

fn listxattr(p: &Path, size: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; size];
    // SAFETY: valid path and buffer.
    let r = sys(unsafe { libc::listxattr(cstr(p).as_ptr(), buf.as_mut_ptr().cast(), size) } as i64)?;
    buf.truncate(r as usize);
    Ok(buf)
}

fn xattrs(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let d = &fs.dir;
    std::fs::write(fs.path("f"), b"data").unwrap();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;

    // The tools, as scripts use them.
    sh_ok("setfattr -n user.color -v blue f && setfattr -n user.bin -v 0x00ff10 f", d);
    sh_ok("setfattr -n user.text -v '\"with spaces\"' f", d);
    t.same(format!("getfattr --only-values: {:?}", sh_ok("getfattr -n user.color --only-values f", d)));
    t.same(format!("getfattr -d -e hex:\n{}", sh_ok("getfattr -d -e hex -m '^user\\.' f", d)));
    let ctime0 = std::fs::metadata(fs.path("f")).unwrap().ctime_nsec();
    std::thread::sleep(Duration::from_millis(20));
    sh_ok("setfattr -n user.color -v green f", d);
    t.same(format!("replaced: {:?}", sh_ok("getfattr -n user.color --only-values f", d)));
    let m = std::fs::metadata(fs.path("f")).unwrap();
    t.same(format!("setxattr changes ctime: {}", m.ctime_nsec() != ctime0));
    sh_ok("setfattr -x user.color f", d);
    let missing = sh("getfattr -n user.color f", d);
    t.same(format!(
        "after setfattr -x: getfattr exit {:?}: {}",
        missing.status.code(),
        String::from_utf8_lossy(&missing.stderr).trim()
    ));
    let trusted = sh("setfattr -n trusted.t -v tv f && getfattr -n trusted.t --only-values f", d);
    t.same(format!(
        "trusted.* as {}: {}",
        if root { "root" } else { "a user" },
        if trusted.status.success() { String::from_utf8_lossy(&trusted.stdout).into_owned() } else { "refused".into() }
    ));
    assert_eq!(trusted.status.success(), root);
    std::fs::create_dir(fs.path("dir")).unwrap();
    sh_ok("setfattr -n user.on_dir -v 1 dir", d);
    t.same(format!("on a directory: {:?}", sh_ok("getfattr -n user.on_dir --only-values dir", d)));

    // Flags and limits, through libc.
    let f = fs.path("f");
    let mut try_set = |what: &str, name: &str, value: &[u8], flags: i32| {
        t.same(format!("{what}: {}", outcome(setxattr(&f, name, value, flags))));
    };
    try_set("XATTR_CREATE, new", "user.c", b"1", libc::XATTR_CREATE);
    try_set("XATTR_CREATE, existing", "user.c", b"2", libc::XATTR_CREATE);
    try_set("XATTR_REPLACE, missing", "user.r", b"1", libc::XATTR_REPLACE);
    try_set("XATTR_REPLACE, existing", "user.c", b"3", libc::XATTR_REPLACE);
    try_set("empty value", "user.empty", b"", 0);
    try_set("64 KiB value (XATTR_SIZE_MAX)", "user.big", &pattern(65_536, 3), 0);
    try_set("64 KiB + 1 value", "user.big2", &pattern(65_537, 3), 0);
    try_set("255-byte name", &format!("user.{}", "n".repeat(250)), b"1", 0);
    try_set("256-byte name", &format!("user.{}", "n".repeat(251)), b"1", 0);
    try_set("unknown namespace", "bogus.x", b"1", 0);
    try_set("empty name suffix", "user.", b"1", 0);
    t.same(format!("value of user.c: {:?}", getxattr(&f, "user.c", 100).map(String::from_utf8)));
    t.same(format!("empty value reads back: {:?}", getxattr(&f, "user.empty", 100)));
    let big = getxattr(&f, "user.big", 65_536).unwrap();
    same_bytes("64 KiB value", &big, &pattern(65_536, 3));
    t.same(format!("size query (size 0): {:?}", getxattr(&f, "user.big", 0).map(|_| ()).map_err(ename)));
    // SAFETY: size query with a null buffer.
    let n = unsafe { libc::getxattr(cstr(&f).as_ptr(), c"user.big".as_ptr(), std::ptr::null_mut(), 0) };
    t.same(format!("size query returns {n}"));
    t.same(format!("buffer too small: {:?}", getxattr(&f, "user.big", 100).map(|_| ()).map_err(ename)));
    t.same(format!("missing: {:?}", getxattr(&f, "user.nope", 100).map(|_| ()).map_err(ename)));
    let list = listxattr(&f, 65_536).unwrap();
    let mut names: Vec<String> =
        list.split(|&b| b == 0).filter(|n| !n.is_empty()).map(|n| String::from_utf8_lossy(n).into_owned()).collect();
    names.sort();
    t.same(format!("listxattr: {}", names.iter().map(|n| &n[..n.len().min(24)]).collect::<Vec<_>>().join(" ")));
    t.same(format!("listxattr, buffer too small: {:?}", listxattr(&f, 5).map(|_| ()).map_err(ename)));

    // Symlinks: no user.* (the kernel refuses); trusted.* for root.
    std::os::unix::fs::symlink("f", fs.path("link")).unwrap();
    t.same(format!("user.* on a symlink: {}", outcome(lsetxattr(&fs.path("link"), "user.x", b"1"))));
    t.same(format!("trusted.* on a symlink: {}", outcome(lsetxattr(&fs.path("link"), "trusted.x", b"1"))));

    // trusted.* names are listed only to a caller with CAP_SYS_ADMIN; the
    // size query counts only what the caller may see.
    let sorted_names = |size: usize| {
        listxattr(&f, size).map(|l| {
            let mut n: Vec<String> = l
                .split(|&b| b == 0)
                .filter(|n| !n.is_empty())
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .collect();
            n.sort();
            n.retain(|n| !n.starts_with("user.n") && !n.starts_with("user.big"));
            n.join(" ")
        })
    };
    if root {
        assert_eq!(setxattr(&f, "trusted.t", b"1", 0), Ok(0));
        t.same(format!("listxattr with CAP_SYS_ADMIN: {:?}", sorted_names(65_536)));
        let without = without_caps(&[CAP_SYS_ADMIN], || {
            // SAFETY: size query with a null buffer.
            let size = unsafe { libc::listxattr(cstr(&f).as_ptr(), std::ptr::null_mut(), 0) };
            let full = listxattr(&f, 65_536).map_or(-1, |l| l.len() as isize);
            (sorted_names(65_536), size == full, getxattr(&f, "trusted.t", 100).map_err(ename))
        });
        t.same(format!(
            "without it: names {:?}, size query matches {}, trusted.t: {:?}",
            without.0, without.1, without.2
        ));
        assert_eq!(sorted_names(65_536).map(|n| n.contains("trusted.t")), Ok(true));
    }

    // POSIX ACLs: scratchfs does not store system.* (it could not enforce them).
    let acl =
        [2u8, 0, 0, 0, 1, 0, 6, 0, 255, 255, 255, 255, 4, 0, 4, 0, 255, 255, 255, 255, 32, 0, 4, 0, 255, 255, 255, 255];
    let r = setxattr(&f, "system.posix_acl_access", &acl, 0);
    match fs.kind {
        Kind::Scratchfs => assert_eq!(r, Err(libc::EOPNOTSUPP)),
        Kind::Tmpfs => assert_eq!(r, Ok(0)),
    }
    t.differs(format!("system.posix_acl_access: {}", outcome(r)));

    // Many long names: scratchfs keeps listxattr usable (XATTR_LIST_MAX).
    let g = fs.path("many");
    std::fs::write(&g, b"").unwrap();
    let mut stored = 0;
    let mut last = Ok(0);
    for i in 0..300 {
        last = setxattr(&g, &format!("user.{i:03}{}", "n".repeat(247)), b"v", 0);
        if last.is_err() {
            break;
        }
        stored += 1;
    }
    let list = listxattr(&g, 65_536).map(|l| l.len());
    match fs.kind {
        Kind::Scratchfs => {
            assert_eq!((stored, last), (256, Err(libc::ENOSPC)));
            assert_eq!(list, Ok(65_536));
        }
        Kind::Tmpfs => assert_eq!(stored, 300),
    }
    t.differs(format!("255-byte names: {stored} stored, then {}; listxattr: {:?}", outcome(last), list.map_err(ename)));
    t
}

/// Both flags at once are valid for setxattr(2) (the kernel passes them on);
/// tmpfs and ext4 apply each: EEXIST if the attribute exists, ENODATA if not.
fn xattr_create_and_replace_flags_together(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let f = fs.path("f");
    std::fs::write(&f, b"").unwrap();
    let both = libc::XATTR_CREATE | libc::XATTR_REPLACE;
    assert_eq!(setxattr(&f, "user.x", b"1", 0), Ok(0));
    t.same(format!("existing attribute: {}", outcome(setxattr(&f, "user.x", b"2", both))));
    t.same(format!("missing attribute: {}", outcome(setxattr(&f, "user.y", b"2", both))));
    t.same(format!("values after: {:?} {:?}", getxattr(&f, "user.x", 10), getxattr(&f, "user.y", 10).map_err(ename)));
    t
}

// --- flock and fcntl locks -------------------------------------------------------

/// A child that opens `path` and runs `op` on the fd; exits 0 or with the errno.
fn child_with_fd(path: &Path, op: impl FnOnce(RawFd) -> i32) -> libc::pid_t {
    let c = cstr(path);
    fork(move || {
        // SAFETY: raw system calls.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR) };
        if fd < 0 {
            return 100;
        }
        if op(fd) < 0 { child_errno() } else { 0 }
    })
}

/// Asserts a child is still blocked after 300 ms, runs `release`, and
/// returns how the child then ended.
fn blocked_until(pid: libc::pid_t, release: impl FnOnce()) -> Result<i32, i32> {
    std::thread::sleep(Duration::from_millis(300));
    let early = try_wait(pid);
    release();
    let r = wait(pid);
    assert_eq!(early, None, "the child should block while the lock is held");
    r
}

fn flock_between_processes(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let _forks = ExclusiveForks::take();
    let p = fs.path("lock");
    std::fs::write(&p, b"").unwrap();
    let f = file(&p, libc::O_RDWR);
    let flock = |fd: RawFd, op: i32| -> i32 {
        // SAFETY: valid fd.
        unsafe { libc::flock(fd, op) }
    };
    let child = |op: i32| exit_name(wait(child_with_fd(&p, move |fd| flock(fd, op))));
    let held = |what: &str, t: &mut Transcript| {
        t.same(format!("{what}: other process LOCK_EX|LOCK_NB: {}", child(libc::LOCK_EX | libc::LOCK_NB)));
        t.same(format!("{what}: other process LOCK_SH|LOCK_NB: {}", child(libc::LOCK_SH | libc::LOCK_NB)));
    };

    assert_eq!(flock(f.as_raw_fd(), libc::LOCK_EX), 0);
    held("LOCK_EX held", &mut t);
    let tool = sh("flock -n lock true", &fs.dir);
    t.same(format!("LOCK_EX held: `flock -n` exits {:?}", tool.status.code()));
    // fcntl locks are independent of flock locks.
    let c = child_with_fd(&p, |fd| {
        let mut l: libc::flock = unsafe { std::mem::zeroed() };
        l.l_type = libc::F_WRLCK as i16;
        l.l_whence = libc::SEEK_SET as i16;
        // SAFETY: valid fd and struct.
        unsafe { libc::fcntl(fd, libc::F_SETLK, &l) }
    });
    t.same(format!("LOCK_EX held: other process fcntl F_WRLCK: {}", exit_name(wait(c))));

    // A blocking LOCK_EX waits for the unlock.
    let pid = child_with_fd(&p, move |fd| flock(fd, libc::LOCK_EX));
    let r = blocked_until(pid, || assert_eq!(flock(f.as_raw_fd(), libc::LOCK_UN), 0));
    t.same(format!("blocking LOCK_EX in another process: blocked, then {} after LOCK_UN", exit_name(r)));

    assert_eq!(flock(f.as_raw_fd(), libc::LOCK_SH), 0);
    t.same(format!("LOCK_SH held: other process LOCK_SH|LOCK_NB: {}", child(libc::LOCK_SH | libc::LOCK_NB)));
    t.same(format!("LOCK_SH held: other process LOCK_EX|LOCK_NB: {}", child(libc::LOCK_EX | libc::LOCK_NB)));
    // The lock belongs to the open file description: a second open in this process conflicts too.
    let g = file(&p, libc::O_RDWR);
    t.same(format!(
        "second open file, LOCK_EX|LOCK_NB: {}",
        outcome(sys(i64::from(flock(g.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB))))
    ));
    drop(f);
    drop(g);
    let r = settles("ok", || child(libc::LOCK_EX | libc::LOCK_NB));
    t.same(format!("after closing both: other process LOCK_EX|LOCK_NB: {r}"));
    t
}

fn fl(kind: i32, start: i64, len: i64) -> libc::flock {
    // SAFETY: plain struct.
    let mut l: libc::flock = unsafe { std::mem::zeroed() };
    l.l_type = kind as i16;
    l.l_whence = libc::SEEK_SET as i16;
    l.l_start = start;
    l.l_len = len;
    l
}

fn fcntl_locks_between_processes(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let _forks = ExclusiveForks::take();
    let p = fs.path("lock");
    std::fs::write(&p, pattern(1000, 1)).unwrap();
    let f = file(&p, libc::O_RDWR);
    let setlk = |fd: RawFd, cmd: i32, l: libc::flock| -> i32 {
        // SAFETY: valid fd and struct.
        unsafe { libc::fcntl(fd, cmd, &l) }
    };
    assert_eq!(setlk(f.as_raw_fd(), libc::F_SETLK, fl(libc::F_WRLCK, 0, 100)), 0);
    let child = |kind: i32, start: i64, len: i64| {
        exit_name(wait(child_with_fd(&p, move |fd| setlk(fd, libc::F_SETLK, fl(kind, start, len)))))
    };
    t.same(format!("write lock [0,100) held; other process F_WRLCK [50,60): {}", child(libc::F_WRLCK, 50, 10)));
    t.same(format!("  F_RDLCK [99,100): {}", child(libc::F_RDLCK, 99, 1)));
    t.same(format!("  F_WRLCK [100,200): {}", child(libc::F_WRLCK, 100, 100)));
    t.same(format!("  F_WRLCK whole file: {}", child(libc::F_WRLCK, 0, 0)));

    // F_GETLK in another process reports the holder; the child writes the answer to a pipe.
    let mut pipe = [0; 2];
    // SAFETY: valid array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    let (rd, wr) = (unsafe { OwnedFd::from_raw_fd(pipe[0]) }, unsafe { OwnedFd::from_raw_fd(pipe[1]) });
    let wr_fd = wr.as_raw_fd();
    let pid = child_with_fd(&p, move |fd| {
        let mut l = fl(libc::F_WRLCK, 0, 1000);
        // SAFETY: valid fd and struct; writes the struct's bytes to the pipe.
        unsafe {
            if libc::fcntl(fd, libc::F_GETLK, &mut l) < 0 {
                return -1;
            }
            let bytes = std::ptr::addr_of!(l).cast::<libc::c_void>();
            libc::write(wr_fd, bytes, std::mem::size_of::<libc::flock>()) as i32
        }
    });
    drop(wr);
    assert_eq!(wait(pid), Ok(0));
    let mut buf = [0u8; std::mem::size_of::<libc::flock>()];
    std::io::Read::read_exact(&mut File::from(rd), &mut buf).expect("F_GETLK answer from the child");
    // SAFETY: buf holds a libc::flock written by the child.
    let l: libc::flock = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
    t.same(format!(
        "F_GETLK from another process: type {}, [{}, +{}), held by this process: {}",
        if i32::from(l.l_type) == libc::F_WRLCK { "F_WRLCK" } else { "other" },
        l.l_start,
        l.l_len,
        l.l_pid == std::process::id() as i32
    ));

    // F_SETLKW blocks until the holder unlocks.
    let pid = child_with_fd(&p, move |fd| setlk(fd, libc::F_SETLKW, fl(libc::F_WRLCK, 10, 1)));
    let r = blocked_until(pid, || assert_eq!(setlk(f.as_raw_fd(), libc::F_SETLK, fl(libc::F_UNLCK, 0, 100)), 0));
    t.same(format!("F_SETLKW in another process: blocked, then {} after F_UNLCK", exit_name(r)));

    // Closing any descriptor of the file drops the process's locks (POSIX).
    assert_eq!(setlk(f.as_raw_fd(), libc::F_SETLK, fl(libc::F_WRLCK, 0, 0)), 0);
    t.same(format!("whole-file lock held: other process F_RDLCK: {}", child(libc::F_RDLCK, 0, 1)));
    drop(file(&p, libc::O_RDONLY));
    t.same(format!("after closing another fd of the file: other process F_RDLCK: {}", child(libc::F_RDLCK, 0, 1)));

    // Open file description locks conflict between two descriptors of one process.
    let ofd = |file: &File, kind: i32| {
        let l = fl(kind, 0, 10);
        // SAFETY: valid fd and struct.
        sys(i64::from(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &l) }))
    };
    let (a, b) = (file(&p, libc::O_RDWR), file(&p, libc::O_RDWR));
    assert_eq!(ofd(&a, libc::F_WRLCK), Ok(0));
    t.same(format!("OFD write lock on one fd, F_OFD_SETLK on another: {}", outcome(ofd(&b, libc::F_WRLCK))));
    drop(a);
    let r = settles("ok", || outcome(ofd(&b, libc::F_WRLCK)));
    t.same(format!("after closing the first: {r}"));
    t
}

// --- shared mmap -----------------------------------------------------------------

fn mmap_shared_msync_truncate(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    const PAGE: usize = 4096;
    let p = fs.path("m");
    let mut want = vec![b'a'; 3 * PAGE];
    std::fs::write(&p, &want).unwrap();
    let f = file(&p, libc::O_RDWR);
    let map = Map::shared(&f, 3 * PAGE);

    // Stores in this process; msync; read(2) in other processes.
    set_old_times(&p);
    map.write(100, b"0123456789");
    map.write(PAGE, &[b'M'; PAGE]);
    want[100..110].copy_from_slice(b"0123456789");
    want[PAGE..2 * PAGE].fill(b'M');
    let mtime_moved = || std::fs::metadata(&p).unwrap().mtime() != 946_684_800;
    // POSIX: mtime and ctime change somewhere between the store and msync.
    t.differs(format!("mtime moved right after the stores, before msync: {}", mtime_moved()));
    map.msync();
    t.same(format!("mtime moved by msync: {}", mtime_moved()));
    let cat = Command::new("cat").arg(&p).output().unwrap();
    same_bytes("cat after msync", &cat.stdout, &want);
    t.same("stores + msync(MS_SYNC): another process reads them with read(2)");
    // The filesystem itself has them: copy_file_range is served by it.
    let copy = file(&fs.path("copy"), libc::O_CREAT | libc::O_RDWR);
    assert_eq!(cfr(&f, Some(0), &copy, Some(0), 3 * PAGE), Ok(3 * PAGE as i64));
    same_bytes("copy_file_range after msync", &whole(&copy), &want);
    t.same("  and copy_file_range copies them");

    // A write(2) by another process shows in the mapping at once.
    let c = cstr(&p);
    let pid = fork(move || {
        // SAFETY: raw system calls.
        unsafe {
            let fd = libc::open(c.as_ptr(), libc::O_WRONLY);
            if fd < 0 || libc::pwrite(fd, b"written".as_ptr().cast(), 7, 2 * PAGE as i64 + 5) != 7 {
                return 1;
            }
        }
        0
    });
    assert_eq!(wait(pid), Ok(0));
    want[2 * PAGE + 5..2 * PAGE + 12].copy_from_slice(b"written");
    same_bytes("mapping after another process's pwrite", &map.bytes(0..3 * PAGE), &want);
    t.same("pwrite(2) in another process: visible through the mapping");

    // Truncate (another process) to one page: past EOF the mapping raises SIGBUS.
    sh_ok("truncate -s 4096 m", &fs.dir);
    let ptr = map.addr();
    let pid = fork(move || {
        // SAFETY: deliberately touches the mapping beyond EOF (SIGBUS expected).
        unsafe { std::ptr::read_volatile((ptr + 2 * PAGE) as *const u8) as i32 }
    });
    let r = wait(pid);
    assert_eq!(r, Err(libc::SIGBUS), "touching a mapping past EOF");
    t.same(format!(
        "after truncate to 1 page: touching page 3 of the mapping: {}",
        if r == Err(libc::SIGBUS) { "SIGBUS" } else { "?" }
    ));
    // Grow again: the truncated part comes back as zeros, through the mapping and read(2).
    sh_ok("truncate -s 12288 m", &fs.dir);
    want[PAGE..].fill(0);
    same_bytes("mapping after truncate down and up", &map.bytes(0..3 * PAGE), &want);
    same_bytes("read(2) after truncate down and up", &whole(&f), &want);
    t.same("truncate to 1 page and back: pages 2-3 read as zeros in the mapping and with read(2); page 1 kept");

    // Stores after that reach read(2) too.
    map.write(3 * PAGE - 3, b"end");
    map.msync();
    want[3 * PAGE - 3..].copy_from_slice(b"end");
    same_bytes("after storing at the end", &std::fs::read(&p).unwrap(), &want);
    drop(map);
    t.same("stores into re-grown pages reach read(2) after msync");
    t
}

// --- rename and unlink while open ------------------------------------------------

fn rename_over_open_file(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let old = pattern(1 << 20, 21);
    let new = pattern(300_000, 22);
    std::fs::write(fs.path("target"), &old).unwrap();
    let held = file(&fs.path("target"), libc::O_RDWR);
    same_bytes("before", &pread(&held, 0, 4096), &old[..4096]);
    std::fs::write(fs.path("incoming"), &new).unwrap();
    std::fs::rename(fs.path("incoming"), fs.path("target")).unwrap();

    same_bytes("the open fd after rename over its file", &whole(&held), &old);
    t.same(format!(
        "open fd after rename over it: old content, {} bytes, nlink {}",
        fsize(&held),
        held.metadata().unwrap().nlink()
    ));
    same_bytes("the new name", &std::fs::read(fs.path("target")).unwrap(), &new);
    t.same("the name now holds the new content");
    held.write_at(b"still writable", 0).unwrap();
    same_bytes("the old fd after writing it", &pread(&held, 0, 14), b"still writable");
    same_bytes("the name after writing the old fd", &std::fs::read(fs.path("target")).unwrap(), &new);
    t.same("writes to the old fd do not reach the name");
    let used = fs.quota_used();
    drop(held);
    quota_released_after_close(fs, used, 1 << 20, "closing the last fd of a replaced file");

    // renameat2: RENAME_NOREPLACE and RENAME_EXCHANGE, with an fd open on each file.
    std::fs::write(fs.path("x"), b"x content").unwrap();
    std::fs::write(fs.path("y"), b"y content").unwrap();
    let (fx, fy) = (file(&fs.path("x"), libc::O_RDONLY), file(&fs.path("y"), libc::O_RDONLY));
    let renameat2 = |a: &str, b: &str, flags: u32| {
        let (a, b) = (cstr(&fs.path(a)), cstr(&fs.path(b)));
        // SAFETY: valid paths.
        sys(i64::from(unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags) }))
    };
    t.same(format!("RENAME_NOREPLACE onto an existing name: {}", outcome(renameat2("x", "y", libc::RENAME_NOREPLACE))));
    t.same(format!("RENAME_EXCHANGE: {}", outcome(renameat2("x", "y", libc::RENAME_EXCHANGE))));
    t.same(format!(
        "after exchange: x={:?} y={:?}, fds still read {:?} and {:?}",
        std::fs::read_to_string(fs.path("x")).unwrap(),
        std::fs::read_to_string(fs.path("y")).unwrap(),
        String::from_utf8_lossy(&whole(&fx)),
        String::from_utf8_lossy(&whole(&fy))
    ));
    t.same(format!(
        "RENAME_EXCHANGE with a missing name: {}",
        outcome(renameat2("x", "missing", libc::RENAME_EXCHANGE))
    ));
    t
}

fn unlinked_open_file(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let p = fs.path("gone");
    let mut want = pattern(2 << 20, 31);
    std::fs::write(&p, &want).unwrap();
    let f = file(&p, libc::O_RDWR);
    let used = fs.quota_used();
    std::fs::remove_file(&p).unwrap();

    t.same(format!(
        "after unlink: path {}, nlink {}",
        if p.exists() { "exists" } else { "gone" },
        f.metadata().unwrap().nlink()
    ));
    t.same(format!("directory entries: {}", std::fs::read_dir(&fs.dir).unwrap().count()));
    same_bytes("reading the unlinked file", &whole(&f), &want);
    let extra = pattern(100_000, 32);
    f.write_at(&extra, want.len() as u64).unwrap();
    want.extend_from_slice(&extra);
    f.write_at(b"overwritten", 1000).unwrap();
    want[1000..1011].copy_from_slice(b"overwritten");
    same_bytes("after writing the unlinked file", &whole(&f), &want);
    f.set_len(1 << 20).unwrap();
    want.truncate(1 << 20);
    same_bytes("after truncating the unlinked file", &whole(&f), &want);
    // SAFETY: valid fd.
    assert_eq!(unsafe { libc::fchmod(f.as_raw_fd(), 0o600) }, 0);
    t.same(format!(
        "read/write/truncate/fchmod all work; size {}, mode {:o}",
        fsize(&f),
        f.metadata().unwrap().mode() & 0o777
    ));

    // Reopening through /proc/self/fd reaches the same file.
    let again = file(&PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())), libc::O_RDONLY);
    same_bytes("reopened via /proc/self/fd", &whole(&again), &want);
    t.same("reopened via /proc/self/fd: same content");
    // It cannot get a name back (only O_TMPFILE files can).
    let src = CString::new(format!("/proc/self/fd/{}", f.as_raw_fd())).unwrap();
    // SAFETY: valid paths.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            src.as_ptr(),
            libc::AT_FDCWD,
            cstr(&fs.path("back")).as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    t.same(format!("linkat of the unlinked file: {}", outcome(sys(i64::from(r)))));
    drop(again);
    drop(f);
    quota_released_after_close(fs, used, 2 << 20, "closing the unlinked file");
    t
}

// --- utimensat -------------------------------------------------------------------

fn utimensat(p: &Path, times: Option<[(i64, i64); 2]>, flags: i32) -> Result<i64, i32> {
    let ts = times.map(|t| t.map(|(s, n)| libc::timespec { tv_sec: s, tv_nsec: n }));
    let ptr = ts.as_ref().map_or(std::ptr::null(), |t| t.as_ptr());
    // SAFETY: valid path and times (or null).
    sys(i64::from(unsafe { libc::utimensat(libc::AT_FDCWD, cstr(p).as_ptr(), ptr, flags) }))
}

#[track_caller]
fn near_now(what: &str, got: (i64, i64), before: (i64, i64), after: (i64, i64)) {
    // Kernel timestamps come from a coarse clock: allow 50 ms either side.
    let ns = |(s, n): (i64, i64)| i128::from(s) * 1_000_000_000 + i128::from(n);
    let slack = 50_000_000;
    assert!(
        ns(got) >= ns(before) - slack && ns(got) <= ns(after) + slack,
        "{what}: {got:?} is not between {before:?} and {after:?}"
    );
}

fn utimensat_now_omit(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let p = fs.path("f");
    std::fs::write(&p, b"x").unwrap();
    let t1 = (1_000_000_000, 123_456_789);
    let t2 = (1_500_000_000, 987_654_321);
    let stat = || timespec(&std::fs::symlink_metadata(&p).unwrap());

    assert_eq!(utimensat(&p, Some([t1, t2]), 0), Ok(0));
    let [a, m, c0] = stat();
    t.same(format!("explicit times: atime {a:?}, mtime {m:?}"));

    std::thread::sleep(Duration::from_millis(20));
    let t3 = (-86_400 * 365, 500_000_000); // before 1970, with a fraction
    assert_eq!(utimensat(&p, Some([(0, libc::UTIME_OMIT), t3]), 0), Ok(0));
    let [a, m, c1] = stat();
    t.same(format!("atime UTIME_OMIT, mtime set: atime {a:?}, mtime {m:?}, ctime moved {}", c1 > c0));

    std::thread::sleep(Duration::from_millis(20));
    let before = realtime();
    assert_eq!(utimensat(&p, Some([(0, libc::UTIME_NOW), (0, libc::UTIME_OMIT)]), 0), Ok(0));
    let after = realtime();
    let [a, m, c2] = stat();
    near_now("atime after UTIME_NOW", a, before, after);
    t.same(format!("atime UTIME_NOW, mtime UTIME_OMIT: atime now, mtime {m:?}, ctime moved {}", c2 > c1));

    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(utimensat(&p, Some([(0, libc::UTIME_OMIT), (0, libc::UTIME_OMIT)]), 0), Ok(0));
    let [a2, m2, c3] = stat();
    t.same(format!("both UTIME_OMIT: times unchanged {}, ctime unchanged {}", a2 == a && m2 == m, c3 == c2));

    let before = realtime();
    assert_eq!(utimensat(&p, None, 0), Ok(0));
    let after = realtime();
    let [a, m, c] = stat();
    near_now("atime (NULL times)", a, before, after);
    near_now("mtime (NULL times)", m, before, after);
    near_now("ctime (NULL times)", c, before, after);
    t.same("NULL times: atime, mtime and ctime now");
    assert_eq!(utimensat(&p, Some([(0, libc::UTIME_NOW), (0, libc::UTIME_NOW)]), 0), Ok(0));
    t.same("both UTIME_NOW: ok");
    t.same(format!("nanoseconds out of range: {}", outcome(utimensat(&p, Some([(0, 1_000_000_000), t1]), 0))));

    // futimens on a descriptor.
    let f = file(&p, libc::O_RDONLY);
    let ts = [libc::timespec { tv_sec: t2.0, tv_nsec: t2.1 }, libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT }];
    let [_, m_before, _] = stat();
    // SAFETY: valid fd and times.
    assert_eq!(unsafe { libc::futimens(f.as_raw_fd(), ts.as_ptr()) }, 0);
    let [a, m, _] = stat();
    t.same(format!("futimens(atime, UTIME_OMIT): atime {a:?}, mtime unchanged {}", m == m_before));

    // AT_SYMLINK_NOFOLLOW changes the link, not its target.
    std::os::unix::fs::symlink("f", fs.path("link")).unwrap();
    assert_eq!(utimensat(&fs.path("link"), Some([t1, t1]), libc::AT_SYMLINK_NOFOLLOW), Ok(0));
    let link = timespec(&std::fs::symlink_metadata(fs.path("link")).unwrap());
    let [_, m_target, _] = stat();
    t.same(format!("AT_SYMLINK_NOFOLLOW: link mtime {:?}, target mtime unchanged {}", link[1], m_target == m));
    t
}

// --- access times ----------------------------------------------------------------

/// Reads a file, lists a directory and reads a symbolic link, each twice,
/// after setting its access and modification times to the same past
/// moment: relatime (the default) then moves each access time to now on
/// the first access and leaves it there on the second; `noatime` never
/// moves one. FUSE inodes keep no access times in the kernel (`S_NOATIME`),
/// so on scratchfs the daemon does all of it. The second file read comes
/// from the page cache there and never reaches the daemon; under relatime
/// tmpfs leaves it alone too.
fn access_times(fs: &Fs, noatime: bool) -> Transcript {
    let mut t = Transcript::default();
    // Written through a write-only descriptor, which bypasses scratchfs's
    // page cache: the first read below reaches the daemon.
    std::fs::write(fs.path("f"), b"data").unwrap();
    std::fs::create_dir(fs.path("d")).unwrap();
    std::fs::write(fs.path("d/entry"), b"").unwrap();
    std::os::unix::fs::symlink("f", fs.path("l")).unwrap();
    let past = (946_684_800, 0);
    type Access = fn(&Path);
    let accesses: [(&str, &str, Access); 3] = [
        ("reading a file", "f", |p| assert_eq!(std::fs::read(p).unwrap(), b"data")),
        ("listing a directory", "d", |p| assert_eq!(std::fs::read_dir(p).unwrap().count(), 1)),
        ("reading a symlink", "l", |p| assert_eq!(std::fs::read_link(p).unwrap(), Path::new("f"))),
    ];
    for (what, name, access) in accesses {
        let p = fs.path(name);
        assert_eq!(utimensat(&p, Some([past, past]), libc::AT_SYMLINK_NOFOLLOW), Ok(0));
        // The access time must end up later than the change time just set
        // (tmpfs's clock is coarse).
        std::thread::sleep(Duration::from_millis(20));
        let atime = || timespec(&std::fs::symlink_metadata(&p).unwrap())[0];
        let before = realtime();
        access(&p);
        let after = realtime();
        let first = atime();
        if noatime {
            assert_eq!(first, past, "{what} under noatime");
        } else {
            near_now(&format!("atime after {what}"), first, before, after);
        }
        t.same(format!("{what} whose atime is its mtime: atime moved {}", first != past));
        std::thread::sleep(Duration::from_millis(20));
        access(&p);
        let second = atime();
        assert_eq!(second, first, "{what} again");
        t.same(format!("{what} again: atime moved {}", second != first));
    }
    t
}

fn access_times_relatime(fs: &Fs) -> Transcript {
    access_times(fs, false)
}

/// Like the table's cases, on a scratchfs mounted `-o noatime`, compared
/// with a tmpfs mounted `noatime` (when root; otherwise the case's own
/// assertions, no access time moves, are the contract).
#[test]
fn noatime_leaves_access_times_alone() {
    let name = "noatime_leaves_access_times_alone";
    let case = |fs: &Fs| access_times(fs, true);
    let tmpfs = Tmpfs::mounted_with(libc::MS_NOATIME);
    let on_tmpfs = tmpfs.as_ref().map(|tmpfs| run_in(name, case, &tmpfs.path, Kind::Tmpfs, false, ""));
    drop(tmpfs);
    let Some(m) = Mount::new(&["--size", "64M", "-o", "noatime"]) else { return };
    let on_scratchfs = run_in(name, case, &m.path, Kind::Scratchfs, false, "auto");
    let compared = on_tmpfs.map(|on_tmpfs| compare(name, &on_scratchfs, &on_tmpfs));
    daemon_ok(m);
    match compared {
        Some(r) => r.unwrap_or_else(|msg| panic!("{msg}")),
        None => eprintln!("{name}: not root, so no noatime tmpfs to compare with"),
    }
}

// --- a large directory listed while it changes ------------------------------------

const STABLE: usize = 100_000;
const VOLATILE: usize = 5_000;

fn mknod(p: &Path) {
    // SAFETY: valid path.
    let r = unsafe { libc::mknod(cstr(p).as_ptr(), libc::S_IFREG | 0o644, 0) };
    assert_eq!(r, 0, "mknod {}: {}", p.display(), ename(errno()));
}

/// Lists a directory with opendir/readdir: (name, d_type) of every entry.
fn list(dir: &Path) -> Vec<(Vec<u8>, u8)> {
    let c = cstr(dir);
    // SAFETY: valid path; the DIR is closed below.
    let d = unsafe { libc::opendir(c.as_ptr()) };
    assert!(!d.is_null(), "opendir: {}", ename(errno()));
    let mut out = Vec::new();
    loop {
        // SAFETY: d is open; readdir's entry is valid until the next call.
        let e = unsafe { libc::readdir(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: d_name is NUL-terminated.
        let name = unsafe { CStr::from_ptr((*e).d_name.as_ptr()) }.to_bytes().to_vec();
        out.push((name, unsafe { (*e).d_type }));
    }
    // SAFETY: d is open.
    unsafe { libc::closedir(d) };
    out
}

fn readdir_100k_entries_while_modified(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let dir = fs.path("big");
    std::fs::create_dir(&dir).unwrap();
    let start = Instant::now();
    for i in 0..STABLE {
        mknod(&dir.join(format!("s{i:06}")));
    }
    for i in 0..VOLATILE {
        mknod(&dir.join(format!("v{i:05}")));
    }
    eprintln!("{:?}: {} files created in {:?}", fs.kind, STABLE + VOLATILE, start.elapsed());

    // A modifier removes the v* entries and creates n* entries (each name
    // used once) for as long as the listings run.
    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicU64::new(0));
    let modifier = {
        let (dir, stop, changes) = (dir.clone(), stop.clone(), changes.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                if i < VOLATILE {
                    std::fs::remove_file(dir.join(format!("v{i:05}"))).unwrap();
                }
                mknod(&dir.join(format!("n{i:06}")));
                i += 1;
                changes.fetch_add(1, Ordering::Relaxed);
            }
            i
        })
    };
    let mut passes = 0;
    let mut overlapped = Vec::new();
    while passes < 3 {
        let before = changes.load(Ordering::Relaxed);
        let listing = list(&dir);
        let during = changes.load(Ordering::Relaxed) - before;
        overlapped.push(during);
        passes += 1;
        let mut seen: HashSet<&[u8]> = HashSet::with_capacity(listing.len());
        let mut stable = 0;
        for (name, dtype) in &listing {
            assert!(seen.insert(name), "pass {passes}: {:?} listed twice", String::from_utf8_lossy(name));
            match name.first() {
                Some(b's') => {
                    stable += 1;
                    assert_eq!(*dtype, libc::DT_REG, "d_type of {:?}", String::from_utf8_lossy(name));
                }
                Some(b'v' | b'n') => {}
                _ if name == b"." || name == b".." => assert_eq!(*dtype, libc::DT_DIR),
                _ => panic!("pass {passes}: unexpected name {:?}", String::from_utf8_lossy(name)),
            }
        }
        assert!(seen.contains(&b"."[..]) && seen.contains(&b".."[..]), "pass {passes}: . and .. listed");
        assert_eq!(stable, STABLE, "pass {passes}: each of the {STABLE} unchanged entries exactly once");
    }
    stop.store(true, Ordering::Relaxed);
    let made = modifier.join().unwrap();
    assert!(
        overlapped.iter().all(|&n| n >= 10),
        "the listings must overlap the changes: changes during each pass {overlapped:?}"
    );
    eprintln!("{:?}: 3 listings, changes during each: {overlapped:?}", fs.kind);
    t.same(format!(
        "3 listings of {}+ entries while others are removed and created: each unchanged entry exactly once, no name twice",
        STABLE
    ));

    // Quiet again: exactly the expected names.
    let mut names: Vec<Vec<u8>> = list(&dir).into_iter().map(|(n, _)| n).collect();
    names.sort();
    let mut want: Vec<Vec<u8>> = [b".".to_vec(), b"..".to_vec()]
        .into_iter()
        .chain((0..STABLE).map(|i| format!("s{i:06}").into_bytes()))
        .chain((made.min(VOLATILE)..VOLATILE).map(|i| format!("v{i:05}").into_bytes()))
        .chain((0..made).map(|i| format!("n{i:06}").into_bytes()))
        .collect();
    want.sort();
    assert!(names == want, "quiet listing: {} names, want {}", names.len(), want.len());
    t.same("listed again when quiet: exactly the names that exist");
    t
}

// --- inode flags -------------------------------------------------------------------

const FS_IMMUTABLE_FL: u32 = 0x10;
const FS_APPEND_FL: u32 = 0x20;
const FS_NODUMP_FL: u32 = 0x40;
const FS_NOATIME_FL: u32 = 0x80;
/// `FS_IOC_FSGETXATTR`: `_IOR('X', 31, struct fsxattr)`.
const FS_IOC_FSGETXATTR: libc::c_ulong = 0x801c_581f;

/// The inode flags of `p` (`FS_IOC_GETFLAGS`, as lsattr asks).
fn get_flags(p: &Path) -> Result<u32, i32> {
    let f = open(p, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
    let mut flags: libc::c_int = 0;
    // SAFETY: valid fd and an int for the kernel to fill.
    sys(i64::from(unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags) }))?;
    Ok(flags as u32)
}

/// Sets the inode flags of `p` to `flags` (`FS_IOC_SETFLAGS`, as chattr does).
fn set_flags(p: &Path, flags: u32) -> Result<i64, i32> {
    let f = open(p, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
    let flags = flags as libc::c_int;
    // SAFETY: valid fd and int.
    sys(i64::from(unsafe { libc::ioctl(f.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags) }))
}

/// The `fsx_xflags` of `p` (`FS_IOC_FSGETXATTR`, as xfs_io asks).
fn fsx_xflags(p: &Path) -> Result<u32, i32> {
    let f = open(p, libc::O_RDONLY | libc::O_NONBLOCK, 0)?;
    let mut fsx = [0u32; 7];
    // SAFETY: valid fd and a 28-byte struct fsxattr for the kernel to fill.
    sys(i64::from(unsafe { libc::ioctl(f.as_raw_fd(), FS_IOC_FSGETXATTR, fsx.as_mut_ptr()) }))?;
    Ok(fsx[0])
}

/// Reads `p` after dropping what the page cache holds of it, so that on
/// scratchfs the read reaches the daemon (which keeps the access time).
fn read_uncached(p: &Path) {
    let f = file(p, libc::O_RDONLY);
    // SAFETY: valid fd.
    assert_eq!(unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) }, 0);
    whole(&f);
}

/// "ok" or the errno name of a std call.
fn io<T>(r: std::io::Result<T>) -> String {
    outcome(r.map(|_| 0).map_err(|e| e.raw_os_error().unwrap_or(0)))
}

/// chattr's immutable and append-only flags, which the kernel does not
/// enforce on a FUSE file (it never learns them): every rule below must
/// come out as on tmpfs, for files opened before and after, directories,
/// and callers without the right capability; no-atime and no-dump too.
fn inode_flags(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let (f, g, d) = (fs.path("f"), fs.path("g"), fs.path("d"));
    std::fs::write(&f, b"hello").unwrap();
    std::fs::write(&g, b"hello").unwrap();
    std::fs::create_dir(&d).unwrap();
    std::fs::write(d.join("x"), b"x").unwrap();
    std::fs::write(fs.path("v"), b"v").unwrap();
    let old_f = file(&f, libc::O_RDWR);
    let old_g = file(&g, libc::O_RDWR);
    t.same(format!("new file: flags {:?}", get_flags(&f)));
    t.same(format!("a flag not kept (FS_COMPR_FL): {}", outcome(set_flags(&f, 0x4))));
    let c0 = std::fs::metadata(&f).unwrap().ctime_nsec();
    std::thread::sleep(Duration::from_millis(20));
    t.same(format!("chattr +i f: {}", outcome(set_flags(&f, FS_IMMUTABLE_FL))));
    t.same(format!("ctime moved: {}", std::fs::metadata(&f).unwrap().ctime_nsec() != c0));
    t.same(format!("chattr +a g: {}", outcome(set_flags(&g, FS_APPEND_FL))));
    t.same(format!(
        "flags f {:?} g {:?}; xflags f {:?} g {:?}",
        get_flags(&f),
        get_flags(&g),
        fsx_xflags(&f),
        fsx_xflags(&g)
    ));

    let opens = [
        ("O_RDONLY", libc::O_RDONLY),
        ("O_WRONLY", libc::O_WRONLY),
        ("O_RDWR", libc::O_RDWR),
        ("O_WRONLY|O_APPEND", libc::O_WRONLY | libc::O_APPEND),
        ("O_WRONLY|O_APPEND|O_TRUNC", libc::O_WRONLY | libc::O_APPEND | libc::O_TRUNC),
        ("O_RDONLY|O_TRUNC", libc::O_RDONLY | libc::O_TRUNC),
    ];
    for (p, which) in [(&f, "immutable"), (&g, "append-only")] {
        for (name, flags) in opens {
            t.same(format!("{which}: open {name}: {}", outcome(open(p, flags, 0).map(|_| 0))));
        }
        let now = libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW };
        let c = cstr(p);
        let ops: [(&str, String); 11] = [
            // SAFETY: valid path.
            ("truncate", outcome(sys(i64::from(unsafe { libc::truncate(c.as_ptr(), 1) })))),
            ("chmod", io(std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600)))),
            ("chown to the same owner", io(std::os::unix::fs::chown(p, Some(0), Some(0)))),
            ("chown(-1, -1)", io(std::os::unix::fs::chown(p, None, None))),
            ("utimensat(NULL)", outcome(utimensat(p, None, 0))),
            ("utimensat(UTIME_NOW, UTIME_NOW)", outcome(utimensat(p, Some([(0, now.tv_nsec), (0, now.tv_nsec)]), 0))),
            ("utimensat(explicit)", outcome(utimensat(p, Some([(1, 0), (1, 0)]), 0))),
            ("setxattr", outcome(setxattr(p, "user.x", b"1", 0))),
            // SAFETY: valid path and name.
            ("removexattr", outcome(sys(i64::from(unsafe { libc::removexattr(c.as_ptr(), c"user.x".as_ptr()) })))),
            ("link", io(std::fs::hard_link(p, fs.path("link")))),
            ("rename", io(std::fs::rename(p, fs.path("moved")))),
        ];
        for (name, r) in ops {
            t.same(format!("{which}: {name}: {r}"));
        }
        t.same(format!("{which}: unlink: {}", io(std::fs::remove_file(p))));
        t.same(format!("{which}: rename v over it: {}", io(std::fs::rename(fs.path("v"), p))));
        t.same(format!("{which}: getxattr: {}", outcome(getxattr(p, "user.x", 16).map(|_| 0))));
    }
    // Descriptors opened before the flags were set. tmpfs lets them write
    // anywhere; scratchfs lets an append-only file take appends only (it
    // cannot see F_SETFL or mmap, which tmpfs checks instead: below).
    for (old, which) in [(&old_f, "immutable"), (&old_g, "append-only")] {
        let line = |t: &mut Transcript, line: String| if which == "immutable" { t.same(line) } else { t.differs(line) };
        line(&mut t, format!("{which}, old descriptor: pwrite at 0: {}", io(old.write_at(b"J", 0))));
        t.same(format!("{which}, old descriptor: fallocate: {}", outcome(fallocate(old, 0, 0, 100))));
        t.same(format!(
            "{which}, old descriptor: punch: {}",
            outcome(fallocate(old, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, 1))
        ));
        let src = file(&fs.path("v"), libc::O_RDONLY);
        let copied = outcome(cfr(&src, Some(0), old, Some(1), 1));
        line(&mut t, format!("{which}, old descriptor: copy_file_range into it: {copied}"));
        t.same(format!("{which}, old descriptor: ftruncate: {}", io(old.set_len(4))));
    }
    let shown = |p: &Path| {
        let b = std::fs::read(p).unwrap();
        format!("{} bytes, {:?}", b.len(), String::from_utf8_lossy(&b).trim_matches('\0'))
    };
    t.same(format!("contents: f {}", shown(&f)));
    t.differs(format!("contents: g {}", shown(&g)));
    let kept_by_old = std::fs::read(&g).unwrap().starts_with(b"hello");
    assert_eq!(kept_by_old, fs.kind == Kind::Scratchfs, "only scratchfs refuses a descriptor opened before the flag");
    let appended = open(&g, libc::O_WRONLY | libc::O_APPEND, 0).map(|fd| File::from(fd).write_all(b"+").is_ok());
    t.same(format!(
        "append-only: O_APPEND write: {appended:?}, ends with it: {}",
        std::fs::read(&g).unwrap().ends_with(b"+")
    ));

    // Directories: append-only takes entries and loses none; immutable neither.
    let (x, y) = (d.join("x"), d.join("y"));
    for (flag, which) in [(FS_APPEND_FL, "append-only dir"), (FS_IMMUTABLE_FL, "immutable dir")] {
        t.same(format!("chattr {which}: {}", outcome(set_flags(&d, flag))));
        let ops: [(&str, String); 10] = [
            ("create", io(std::fs::write(d.join(format!("new{flag}")), b"1"))),
            ("mkdir", io(std::fs::create_dir(d.join(format!("sub{flag}"))))),
            ("symlink", io(std::os::unix::fs::symlink("x", d.join(format!("sym{flag}"))))),
            ("link into", io(std::fs::hard_link(fs.path("v"), d.join(format!("lnk{flag}"))))),
            ("rename within", io(std::fs::rename(&x, &y))),
            ("rename out", io(std::fs::rename(&x, fs.path("out")))),
            ("unlink", io(std::fs::remove_file(&x))),
            (
                "write to an entry",
                io(std::fs::OpenOptions::new().append(true).open(&x).and_then(|mut h| h.write_all(b"!"))),
            ),
            ("chmod an entry", io(std::fs::set_permissions(&x, std::fs::Permissions::from_mode(0o600)))),
            ("rmdir it", io(std::fs::remove_dir(&d))),
        ];
        for (name, r) in ops {
            t.same(format!("{which}: {name}: {r}"));
        }
        let mut names: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        t.same(format!("{which}: entries {names:?}"));
        t.same(format!("clear: {}", outcome(set_flags(&d, 0))));
    }

    // No-atime: a read leaves the access time; no-dump is only kept.
    assert_eq!(set_flags(&f, 0), Ok(0));
    assert_eq!(set_flags(&g, 0), Ok(0));
    t.same(format!("chattr +A +d: {}", outcome(set_flags(&f, FS_NOATIME_FL | FS_NODUMP_FL))));
    assert_eq!(utimensat(&f, Some([(1, 0), (1, 0)]), 0), Ok(0), "no-atime and no-dump fix nothing");
    read_uncached(&f);
    t.same(format!("no-atime: atime after a read {}", std::fs::metadata(&f).unwrap().atime()));
    assert_eq!(set_flags(&f, 0), Ok(0));
    read_uncached(&f);
    t.same(format!("cleared: atime moved {}", std::fs::metadata(&f).unwrap().atime() != 1));

    // Found by a differential fuzzer: the rules' order and their corners.
    let (h, sub) = (fs.path("h"), fs.path("sub"));
    std::fs::write(&h, b"hello").unwrap();
    std::fs::create_dir(&sub).unwrap();
    let a_file = fs.path("a_file");
    std::fs::write(&a_file, b"x").unwrap();
    assert_eq!(set_flags(&sub, FS_IMMUTABLE_FL), Ok(0));
    assert_eq!(set_flags(&a_file, FS_APPEND_FL), Ok(0));
    // `may_delete` looks at the flags before the kinds: EPERM on tmpfs,
    // while on FUSE the kernel answers the kinds itself (the engine keeps
    // tmpfs's order where it decides).
    let refusals = [
        ("unlink(immutable dir)", io(std::fs::remove_file(&sub))),
        ("rmdir(append-only file)", io(std::fs::remove_dir(&a_file))),
        ("rename(file, over an immutable dir)", io(std::fs::rename(fs.path("v"), &sub))),
        ("rename(dir, over an append-only file)", io(std::fs::rename(&d, &a_file))),
    ];
    for (what, r) in refusals {
        t.same(format!("{what}: refused {}", r != "ok"));
        t.differs(format!("{what}: {r}"));
    }
    // UTIME_NOW beside UTIME_OMIT is an explicit time, not a touch.
    let (now, omit) = ((0, libc::UTIME_NOW), (0, libc::UTIME_OMIT));
    t.same(format!("append-only: utimensat(NOW, OMIT): {}", outcome(utimensat(&a_file, Some([now, omit]), 0))));
    t.same(format!("append-only: utimensat(OMIT, NOW): {}", outcome(utimensat(&a_file, Some([omit, now]), 0))));
    // Writing an immutable file is refused before its mode bits are read.
    let as_other = as_fs_user(1000, 1000, &[], || {
        outcome(open(&sub.join("new"), libc::O_CREAT | libc::O_WRONLY, 0o644).map(|_| 0))
    });
    t.same(format!("another user, create in an immutable dir it may not write: {as_other}"));
    assert_eq!(set_flags(&sub, 0), Ok(0));
    std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o755)).unwrap();
    // An append-only descriptor stays appending: F_SETFL cannot clear
    // O_APPEND on tmpfs; on scratchfs it can (the kernel does not ask),
    // and the writes that follow are refused instead.
    let opened_before = file(&h, libc::O_RDWR);
    assert_eq!(set_flags(&h, FS_APPEND_FL), Ok(0));
    let appender = file(&h, libc::O_WRONLY | libc::O_APPEND);
    // SAFETY: valid fd.
    let setfl = sys(i64::from(unsafe { libc::fcntl(appender.as_raw_fd(), libc::F_SETFL, 0) }));
    t.differs(format!("F_SETFL clearing O_APPEND: {}", outcome(setfl)));
    t.differs(format!("pwrite at 0 after it: {}", io(appender.write_at(b"XX", 0))));
    let kept = |t: &mut Transcript, what: &str| {
        read_uncached(&h);
        let now = std::fs::read(&h).unwrap();
        t.same(format!("{what}: the existing bytes are still there: {}", now.starts_with(b"hello")));
    };
    kept(&mut t, "after F_SETFL");
    // A shared writable mapping of it, through either descriptor: refused by
    // tmpfs, its writeback by scratchfs (the kernel writes back through
    // whichever writable descriptor it picks).
    let rw_appender = file(&h, libc::O_RDWR | libc::O_APPEND);
    for (which, f) in [("opened with O_APPEND", &rw_appender), ("opened before the flag", &opened_before)] {
        // SAFETY: a fresh shared mapping of an open file, unmapped below; a store only if it succeeded.
        let mapped = unsafe {
            let (rw, shared) = (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED);
            let at = libc::mmap(std::ptr::null_mut(), 4096, rw, shared, f.as_raw_fd(), 0);
            if at == libc::MAP_FAILED {
                Err(errno())
            } else {
                *(at as *mut u8) = b'Z';
                let synced = libc::msync(at, 4096, libc::MS_SYNC);
                libc::munmap(at, 4096);
                Ok(i64::from(synced))
            }
        };
        t.differs(format!("shared writable mmap, {which}: {}", outcome(mapped.map(|_| 0))));
        kept(&mut t, &format!("after the mapping {which}"));
    }
    t.differs(format!("opened before the flag: pwrite at 3: {}", io(opened_before.write_at(b"YY", 3))));
    assert_eq!(set_flags(&h, 0), Ok(0));
    // No-dump and no-atime pass to what is made in the directory; the others do not.
    assert_eq!(set_flags(&sub, FS_NODUMP_FL | FS_NOATIME_FL | FS_APPEND_FL), Ok(0));
    std::fs::write(sub.join("child"), b"c").unwrap();
    std::fs::create_dir(sub.join("subdir")).unwrap();
    t.same(format!(
        "made in a +dAa dir: file {:?}, dir {:?}",
        get_flags(&sub.join("child")),
        get_flags(&sub.join("subdir"))
    ));
    assert_eq!(set_flags(&sub, 0), Ok(0));
    assert_eq!(set_flags(&a_file, 0), Ok(0));

    // Who may: the owner, and for immutable only with CAP_LINUX_IMMUTABLE.
    std::os::unix::fs::chown(&f, Some(1000), Some(1000)).unwrap();
    let (owner_nodump, owner_immutable) =
        as_fs_user(1000, 1000, &[], || (set_flags(&f, FS_NODUMP_FL), set_flags(&f, FS_IMMUTABLE_FL)));
    t.same(format!("owner without capabilities: +d {}, +i {}", outcome(owner_nodump), outcome(owner_immutable)));
    let stranger = as_fs_user(2000, 2000, &[], || set_flags(&f, 0));
    t.same(format!("another user: {}", outcome(stranger)));
    let root_without = without_caps(&[CAP_LINUX_IMMUTABLE], || set_flags(&f, FS_APPEND_FL));
    t.same(format!("root without CAP_LINUX_IMMUTABLE: +a {}", outcome(root_without)));
    t.same(format!("flags {:?}", get_flags(&f)));
    assert_eq!(set_flags(&f, 0), Ok(0));
    t
}

/// A descriptor opened for writing keeps writing after the mode stops
/// allowing its caller to: the kernel clears the set-group-ID bit first
/// (an empty SETATTR from the writer, who no longer may write by the mode),
/// and that must not fail the write. Another user may still not clear the
/// bits by `chown(f, -1, -1)` once no descriptor writes.
fn write_through_a_descriptor_the_mode_no_longer_allows(fs: &Fs) -> Transcript {
    let mut t = Transcript::default();
    let p = fs.path("f");
    std::fs::write(&p, b"hello").unwrap();
    let chmod = |mode| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    let mode = || std::fs::metadata(&p).unwrap().mode() & 0o7777;
    // First, with no descriptor open (a close's RELEASE reaches the daemon
    // after close(2) returns, so this does not come after one).
    chmod(0o2755);
    let chowned = as_fs_user(2000, 2000, &[], || io(std::os::unix::fs::chown(&p, None, None)));
    t.same(format!("chown(-1, -1) by another user who may not write: {chowned}; mode now {:o}", mode()));
    chmod(0o666);
    let f = as_fs_user(1000, 1000, &[], || file(&p, libc::O_RDWR));
    chmod(0o2755);
    let wrote = as_fs_user(1000, 1000, &[], || io(f.write_at(b"J", 0)));
    t.same(format!("write through it: {wrote}; mode now {:o}", mode()));
    chmod(0o2755);
    let fallocated = as_fs_user(1000, 1000, &[], || outcome(fallocate(&f, libc::FALLOC_FL_KEEP_SIZE, 0, 8)));
    t.same(format!("fallocate through it: {fallocated}; mode now {:o}", mode()));
    drop(f);
    read_uncached(&p);
    t.same(format!("contents {:?}", String::from_utf8_lossy(&std::fs::read(&p).unwrap())));
    t
}
