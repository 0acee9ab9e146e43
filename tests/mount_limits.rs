//! Limits from outside the filesystem and from its callers: the memory guard
//! against a real cgroup-v1 memory limit (refusal before the OOM killer, in
//! the foreground and in the background, and what happens without it; the
//! check at mount), and bad input compared errno for errno with tmpfs while
//! nothing already stored changes.

mod common;
mod reliability;

use std::ffi::CString;
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::mount::{BIN, Mount, is_mounted, require_fuse};
use reliability::{Background, Cgroup, alive, errno_name, fnv, mib, outcome, outcome_unit, require_cgroup_v1_memory};

// ---------------------------------------------------------------------------
// 3. The memory guard against a cgroup-v1 memory limit.

const CG_LIMIT: u64 = 200 << 20;
const GUARD_ARGS: [&str; 6] = ["--size", "1G", "--memory-guard", "per-write", "--guard-interval", "100ms"];

/// The byte at `off` of the guard tests' file.
fn pattern(off: u64) -> u8 {
    ((off >> 20) as u8).wrapping_mul(31) ^ (off as u8)
}

/// What writing into a cgroup-confined daemon led to.
struct GuardRun {
    written: u64,
    error: io::Error,
    short_writes: u64,
}

/// Writes `path` in 1 MiB pieces until a write fails (or 2 GiB, which no
/// 200 MiB cgroup can hold).
fn write_until_refused(path: &Path) -> GuardRun {
    let f = std::fs::File::create(path).unwrap();
    let mut piece = vec![0u8; 1 << 20];
    let (mut written, mut short_writes) = (0u64, 0);
    loop {
        for (i, b) in piece.iter_mut().enumerate() {
            *b = pattern(written + i as u64);
        }
        match f.write_at(&piece, written) {
            Ok(n) => {
                short_writes += u64::from(n < piece.len());
                written += n as u64;
            }
            Err(error) => return GuardRun { written, error, short_writes },
        }
        assert!(written < 2 << 30, "2 GiB written into a daemon limited to {}", mib(CG_LIMIT));
    }
}

/// The first `len` bytes of `path` are the pattern, read from the daemon (not the page cache).
fn check_pattern(path: &Path, len: u64) {
    let f = std::fs::File::open(path).unwrap();
    // SAFETY: fadvise on an open descriptor.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    assert_eq!(f.metadata().unwrap().len(), len, "the file holds exactly what was acknowledged");
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let n = f.read_at(&mut buf, off).unwrap();
        assert!(n > 0, "short file at {off}");
        if let Some(i) = (0..n).find(|&i| buf[i] != pattern(off + i as u64)) {
            panic!("byte {} differs after the refusal", off + i as u64);
        }
        off += n as u64;
    }
}

/// Writes past the cgroup limit of a per-write-guarded daemon (pid `pid`,
/// mounted at `mnt`) and checks it refused in time and survived. With
/// `reclaims`, the cgroup holds page cache the kernel reclaims at the limit,
/// so reaching the limit is expected (but never an OOM kill). Returns the
/// bytes written before the refusal.
fn guard_holds(
    cg: &Cgroup,
    mnt: &Path,
    pid: u32,
    stats: impl Fn() -> scratchfs::report::Report,
    reclaims: bool,
) -> u64 {
    cg.add(pid);
    let run = write_until_refused(&mnt.join("fill"));
    let survived = alive(pid);
    eprintln!(
        "  wrote {} in 1 MiB writes ({} short), then: {} ({}); daemon alive: {survived}; cgroup: {}",
        mib(run.written),
        run.short_writes,
        run.error,
        errno_name(run.error.raw_os_error().unwrap_or(0)),
        cg.summary()
    );
    assert!(survived, "the daemon was killed (cgroup: {})", cg.summary());
    assert_eq!(run.error.raw_os_error(), Some(libc::ENOSPC), "writes must end in ENOSPC: {}", run.error);
    assert_eq!(cg.key("memory.oom_control", "oom_kill"), 0, "OOM kills in the cgroup");
    assert_eq!(cg.key("memory.oom_control", "under_oom"), 0);
    if !reclaims {
        assert_eq!(cg.read_u64("memory.failcnt"), 0, "the cgroup never reached its limit: {}", cg.summary());
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
    let r = stats();
    let g = &r.memory_guard;
    eprintln!(
        "  stats: used {}, memory-guard refusals {}, guard's reading {:?} ({:?} ms old), usable {:?}",
        mib(r.quota.used_bytes),
        r.refusals.memory_guard,
        g.available_bytes.map(mib),
        g.reading_age_ms,
        g.usable_bytes.map(mib)
    );
    assert!(r.refusals.memory_guard >= 1, "the guard refused, not the quota");
    // The report refreshed the reading (older than the 100 ms interval), and
    // it is the cgroup's memory, not the host's.
    assert!(g.reading_age_ms.is_some_and(|ms| ms < 100), "a fresh reading: {:?} ms", g.reading_age_ms);
    assert!(g.available_bytes.is_some_and(|a| a <= CG_LIMIT), "the cgroup's figure: {:?}", g.available_bytes);
    assert!(g.usable_bytes.is_some_and(|u| u <= g.available_bytes.unwrap_or(0)));
    assert!(run.written > CG_LIMIT / 2, "the guard let the daemon use most of its cgroup");
    check_pattern(&mnt.join("fill"), run.written);
    // Still serving: listing and stat need no memory.
    assert_eq!(std::fs::read_dir(mnt).unwrap().count(), 1);
    std::fs::remove_file(mnt.join("fill")).unwrap();
    eprintln!("  after deleting the file: cgroup {}", cg.summary());
    run.written
}

#[test]
fn per_write_guard_keeps_a_foreground_daemon_within_its_cgroup_limit() {
    if !require_fuse() || !require_cgroup_v1_memory() {
        return;
    }
    let cg = Cgroup::new("guard-fg", CG_LIMIT);
    let Some(m) = Mount::new(&GUARD_ARGS) else { return };
    eprintln!("foreground daemon, quota 1 GiB, cgroup limit {}:", mib(CG_LIMIT));
    let _ = guard_holds(&cg, &m.path, m.pid(), || m.stats(), false);
    assert!(m.unmount().success());
}

/// The way the README mounts (`scratchfs DIR --size ...` returns once the
/// daemon is ready in the background) must be guarded just the same.
#[test]
fn per_write_guard_keeps_a_background_daemon_within_its_cgroup_limit() {
    if !require_fuse() || !require_cgroup_v1_memory() {
        return;
    }
    let cg = Cgroup::new("guard-bg", CG_LIMIT);
    let bg = Background::new();
    let out = bg.start(&GUARD_ARGS);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid = bg.pid().unwrap();
    eprintln!("background daemon, quota 1 GiB, cgroup limit {}:", mib(CG_LIMIT));
    let stats = || {
        let out = Command::new(BIN).arg("stats").arg("--json").arg(&bg.mnt).output().unwrap();
        scratchfs::report::Report::from_json(&out.stdout).expect("stats")
    };
    let _ = guard_holds(&cg, &bg.mnt, pid, stats, false);
    assert!(bg.stop());
}

/// Page cache that the cgroup's processes brought in is charged to the
/// cgroup, but the kernel reclaims it at the limit before it calls the OOM
/// killer: the guard counts the inactive part as available (it used to count
/// it as used, and refused after 18 MiB in a 200 MiB cgroup that had read a
/// 150 MiB file).
#[test]
fn per_write_guard_counts_the_cgroups_inactive_page_cache_as_available() {
    if !require_fuse() || !require_cgroup_v1_memory() {
        return;
    }
    let cg = Cgroup::new("guard-cache", CG_LIMIT);
    // A file on disk (tmpfs pages are not reclaimable cache), its pages
    // dropped so that reading it charges them to the cgroup.
    let dir = RemoveOnDrop(Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("guard-cache-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let file = dir.0.join("cached");
    let f = std::fs::File::create(&file).unwrap();
    let piece = vec![0x5au8; 1 << 20];
    for i in 0..150u64 {
        f.write_all_at(&piece, i << 20).unwrap();
    }
    f.sync_all().unwrap();
    // SAFETY: fadvise on an open descriptor.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    drop(f);
    let read = Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {}/cgroup.procs && exec cat \"$0\" > /dev/null", cg.path.display()))
        .arg(&file)
        .status()
        .unwrap();
    assert!(read.success());
    let inactive = cg.key("memory.stat", "total_inactive_file");
    eprintln!("cgroup after reading a 150 MiB file: {}, inactive file pages {}", cg.summary(), mib(inactive));
    assert!(inactive >= 100 << 20, "the file's pages were not charged to the cgroup as inactive cache");
    let Some(m) = Mount::new(&GUARD_ARGS) else { return };
    let written = guard_holds(&cg, &m.path, m.pid(), || m.stats(), true);
    // Without the cache, the same daemon writes 160-170 MiB here: the limit
    // less the guard's 32 MiB headroom. Counting the cache as used left 18-92.
    assert!(written >= 120 << 20, "the guard refused after {} although the cache was reclaimable", mib(written));
    assert!(m.unmount().success());
}

/// A directory removed (with what it holds) when the test ends, however it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Documents the failure the guard prevents: without it, the daemon grows
/// until the cgroup's OOM killer takes it (asserts nothing about the kill).
#[test]
fn without_the_guard_the_cgroup_limit_is_met_by_the_oom_killer() {
    if !require_fuse() || !require_cgroup_v1_memory() {
        return;
    }
    let cg = Cgroup::new("guard-none", CG_LIMIT);
    let Some(m) = Mount::new(&["--size", "1G", "--memory-guard", "none"]) else { return };
    let pid = m.pid();
    cg.add(pid);
    let run = write_until_refused(&m.join("fill"));
    let _ = common::mount::wait_until(std::time::Duration::from_secs(3), || !alive(pid) && !is_mounted(&m.path));
    eprintln!(
        "--memory-guard none, quota 1 GiB, cgroup limit {}: wrote {}, then: {} ({}); daemon alive: {}; \
         still mounted: {}; cgroup: {}",
        mib(CG_LIMIT),
        mib(run.written),
        run.error,
        errno_name(run.error.raw_os_error().unwrap_or(0)),
        alive(pid),
        is_mounted(&m.path),
        cg.summary()
    );
    let status = m.unmount();
    eprintln!("  daemon exit status: {status:?}");
}

/// Starts the daemon already inside `cg` (so the check at mount sees the limit).
fn start_in_cgroup(bg: &Background, cg: &Cgroup, args: &[&str]) -> std::process::Output {
    common::mount::become_subreaper();
    Command::new("sh")
        .arg("-c")
        .arg(format!("echo $$ > {}/cgroup.procs && exec \"$@\"", cg.path.display()))
        .arg("sh")
        .arg(BIN)
        .arg(&bg.mnt)
        .arg("--pid-file")
        .arg(&bg.pid_file)
        .arg("--log-file")
        .arg(&bg.log)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn guard_at_mount_refuses_or_warns_when_the_quota_exceeds_the_cgroup_limit() {
    if !require_fuse() || !require_cgroup_v1_memory() {
        return;
    }
    let cg = Cgroup::new("guard-init", CG_LIMIT);
    // deny (the default action), with the init check and with per-write (which also checks at mount).
    for mode in ["init", "per-write"] {
        let bg = Background::new();
        let out = start_in_cgroup(&bg, &cg, &["--size", "1G", "--memory-guard", mode, "--guard-action", "deny"]);
        let err = String::from_utf8_lossy(&out.stderr);
        eprintln!("--memory-guard {mode} --guard-action deny: {}", err.trim());
        assert!(!out.status.success(), "a 1 GiB quota in a {} cgroup must be refused", mib(CG_LIMIT));
        assert!(err.contains("larger than the memory available") && err.contains("--guard-action warn"), "{err}");
        assert!(!is_mounted(&bg.mnt) && bg.pid().is_none());
    }
    // warn: mounts, says so, and serves.
    let bg = Background::new();
    let out = start_in_cgroup(&bg, &cg, &["--size", "1G", "--memory-guard", "init", "--guard-action", "warn"]);
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("--memory-guard init --guard-action warn: {}", err.trim());
    assert!(out.status.success(), "{err}");
    assert!(err.contains("memory is short"), "{err}");
    // And in the daemon's log, which was set up after that was said.
    assert!(bg.log_text().contains("mounted anyway, as --guard-action warn asks"), "{}", bg.log_text());
    let pid = bg.pid().unwrap();
    assert!(cg.procs().contains(&pid), "the daemon runs inside the cgroup");
    std::fs::write(bg.mnt.join("f"), b"served").unwrap();
    assert_eq!(std::fs::read(bg.mnt.join("f")).unwrap(), b"served");
    let out = Command::new(BIN).arg("stats").arg("--json").arg(&bg.mnt).output().unwrap();
    let report = scratchfs::report::Report::from_json(&out.stdout).unwrap();
    assert_eq!(report.memory_guard.warnings, 1);
    assert!(bg.stop());
    // A quota that fits is accepted silently.
    let bg = Background::new();
    let out = start_in_cgroup(&bg, &cg, &["--size", "64M", "--memory-guard", "init"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("memory is short"));
    assert!(bg.stop());
    // So is any percentage: one of what the guard lets the filesystem have
    // (the cgroup's memory less the headroom), 100% included.
    let bg = Background::new();
    let out = start_in_cgroup(&bg, &cg, &["--size", "100%"]);
    assert!(out.status.success(), "--size 100%: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).arg("stats").arg("--json").arg(&bg.mnt).output().unwrap();
    let quota = scratchfs::report::Report::from_json(&out.stdout).unwrap().quota.max_bytes;
    assert!(quota > CG_LIMIT / 2 && quota <= CG_LIMIT - (32 << 20), "quota {} in {}", mib(quota), mib(CG_LIMIT));
    assert!(bg.stop());
}

// ---------------------------------------------------------------------------
// 6. Bad input: the same errno as tmpfs, and nothing stored changes.

fn c(bytes: &[u8]) -> CString {
    CString::new(bytes).unwrap()
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

fn check_size(rc: isize) -> io::Result<isize> {
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(rc) }
}

/// A filesystem root under test, with raw `*at` calls relative to it.
struct Root {
    fd: OwnedFd,
}

impl Root {
    fn open(path: &Path) -> Root {
        let p = reliability::cpath(path);
        // SAFETY: opening a directory.
        let fd =
            check(unsafe { libc::open(p.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) }).unwrap();
        // SAFETY: fd was just opened and is ours.
        Root { fd: unsafe { OwnedFd::from_raw_fd(fd) } }
    }
    fn raw(&self) -> libc::c_int {
        self.fd.as_raw_fd()
    }
    fn create(&self, rel: &[u8]) -> io::Result<OwnedFd> {
        // SAFETY: openat with a valid path.
        let fd = check(unsafe {
            libc::openat(self.raw(), c(rel).as_ptr(), libc::O_CREAT | libc::O_RDWR | libc::O_CLOEXEC, 0o644)
        })?;
        // SAFETY: fd is ours.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }
    fn mkdir(&self, rel: &[u8]) -> io::Result<libc::c_int> {
        // SAFETY: mkdirat with a valid path.
        check(unsafe { libc::mkdirat(self.raw(), c(rel).as_ptr(), 0o755) })
    }
    fn rmdir(&self, rel: &[u8]) -> io::Result<libc::c_int> {
        // SAFETY: unlinkat with a valid path.
        check(unsafe { libc::unlinkat(self.raw(), c(rel).as_ptr(), libc::AT_REMOVEDIR) })
    }
    fn unlink(&self, rel: &[u8]) -> io::Result<libc::c_int> {
        // SAFETY: unlinkat with a valid path.
        check(unsafe { libc::unlinkat(self.raw(), c(rel).as_ptr(), 0) })
    }
    fn stat(&self, rel: &[u8]) -> io::Result<libc::stat> {
        // SAFETY: fstatat into a zeroed struct.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        check(unsafe { libc::fstatat(self.raw(), c(rel).as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
        Ok(st)
    }
    fn rename(&self, from: &[u8], to: &[u8], flags: libc::c_uint) -> io::Result<libc::c_int> {
        // SAFETY: renameat2 with valid paths.
        check(unsafe { libc::renameat2(self.raw(), c(from).as_ptr(), self.raw(), c(to).as_ptr(), flags) })
    }
    fn link(&self, from: &[u8], to: &[u8]) -> io::Result<libc::c_int> {
        // SAFETY: linkat with valid paths.
        check(unsafe { libc::linkat(self.raw(), c(from).as_ptr(), self.raw(), c(to).as_ptr(), 0) })
    }
    fn symlink(&self, target: &[u8], to: &[u8]) -> io::Result<libc::c_int> {
        // SAFETY: symlinkat with valid strings.
        check(unsafe { libc::symlinkat(c(target).as_ptr(), self.raw(), c(to).as_ptr()) })
    }
    /// Sorted names of a directory.
    fn list(&self, rel: &[u8]) -> Vec<Vec<u8>> {
        let dir = self.path_of(rel);
        let mut names: Vec<Vec<u8>> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().as_bytes().to_vec()).collect();
        names.sort();
        names
    }
    fn path_of(&self, rel: &[u8]) -> PathBuf {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", self.raw())).unwrap();
        link.join(std::ffi::OsStr::from_bytes(rel))
    }
}

fn pwrite(fd: &OwnedFd, data: &[u8], off: i64) -> io::Result<isize> {
    // SAFETY: data is valid for data.len() bytes.
    check_size(unsafe { libc::pwrite(fd.as_raw_fd(), data.as_ptr().cast(), data.len(), off) })
}

fn pread(fd: &OwnedFd, len: usize, off: i64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    // SAFETY: buf is valid for len bytes.
    let n = check_size(unsafe { libc::pread(fd.as_raw_fd(), buf.as_mut_ptr().cast(), len, off) })?;
    buf.truncate(n as usize);
    Ok(buf)
}

fn ftruncate(fd: &OwnedFd, len: i64) -> io::Result<libc::c_int> {
    // SAFETY: ftruncate on an open descriptor.
    check(unsafe { libc::ftruncate(fd.as_raw_fd(), len) })
}

fn fallocate(fd: &OwnedFd, mode: libc::c_int, off: i64, len: i64) -> io::Result<libc::c_int> {
    // SAFETY: fallocate on an open descriptor.
    check(unsafe { libc::fallocate(fd.as_raw_fd(), mode, off, len) })
}

fn lseek(fd: &OwnedFd, off: i64, whence: libc::c_int) -> io::Result<i64> {
    // SAFETY: lseek on an open descriptor.
    let r = unsafe { libc::lseek(fd.as_raw_fd(), off, whence) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

fn size_of(fd: &OwnedFd) -> u64 {
    // SAFETY: fstat into a zeroed struct.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) }, 0);
    st.st_size as u64
}

fn setxattr(root: &Root, rel: &[u8], name: &[u8], value: &[u8], flags: libc::c_int) -> io::Result<libc::c_int> {
    let p = c(root.path_of(rel).as_os_str().as_bytes());
    // SAFETY: valid strings and buffer.
    check(unsafe { libc::lsetxattr(p.as_ptr(), c(name).as_ptr(), value.as_ptr().cast(), value.len(), flags) })
}

fn getxattr(root: &Root, rel: &[u8], name: &[u8], size: usize) -> io::Result<(isize, u64)> {
    let p = c(root.path_of(rel).as_os_str().as_bytes());
    let mut buf = vec![0u8; size];
    // SAFETY: buf is valid for size bytes.
    let n = check_size(unsafe { libc::lgetxattr(p.as_ptr(), c(name).as_ptr(), buf.as_mut_ptr().cast(), size) })?;
    buf.truncate(if size == 0 { 0 } else { n as usize });
    Ok((n, fnv(&buf)))
}

fn removexattr(root: &Root, rel: &[u8], name: &[u8]) -> io::Result<libc::c_int> {
    let p = c(root.path_of(rel).as_os_str().as_bytes());
    // SAFETY: valid strings.
    check(unsafe { libc::lremovexattr(p.as_ptr(), c(name).as_ptr()) })
}

/// Runs every probe on both roots and collects the outcomes.
struct Compare<'a> {
    tmpfs: &'a Root,
    scratch: &'a Root,
    rows: Vec<(String, String, String)>,
}

impl Compare<'_> {
    fn probe(&mut self, what: &str, f: impl Fn(&Root) -> String) {
        let a = f(self.tmpfs);
        let b = f(self.scratch);
        self.rows.push((what.to_owned(), a, b));
    }

    fn mismatches(&self) -> Vec<String> {
        self.rows.iter().filter(|(_, a, b)| a != b).map(|(w, a, b)| format!("{w}: tmpfs {a}, scratchfs {b}")).collect()
    }
}

/// The reference file both filesystems hold while the probes run.
fn reference(root: &Root) -> (u64, u64, String) {
    let path = root.path_of(b"reference");
    let data = std::fs::read(&path).unwrap();
    let xattr = getxattr(root, b"reference", b"user.ref", 256).map(|(_, h)| h).unwrap_or(0);
    let st = root.stat(b"reference").unwrap();
    (
        fnv(&data),
        xattr,
        format!("size {} mode {:o} nlink {} mtime {}", st.st_size, st.st_mode, st.st_nlink, st.st_mtime),
    )
}

#[test]
fn bad_input_gets_the_same_errno_as_tmpfs_and_changes_nothing_stored() {
    let Some(m) = Mount::new(&["--size", "512M"]) else { return };
    let t = reliability::Tmpfs::new("512M");
    let (tr, sr) = (Root::open(&t.path), Root::open(&m.path));
    let mut data = vec![0u8; 1 << 20];
    reliability::Rng::new(3).fill(&mut data);
    for root in [&tr, &sr] {
        std::fs::write(root.path_of(b"reference"), &data).unwrap();
        setxattr(root, b"reference", b"user.ref", b"reference value", 0).unwrap();
    }
    let before = (reference(&tr), reference(&sr));
    assert_eq!(before.0.0, before.1.0);
    let used_before = m.stats().quota.used_bytes;
    let mut cmp = Compare { tmpfs: &tr, scratch: &sr, rows: Vec::new() };

    // Names: 255 bytes fit, 256 do not, whatever the call.
    let n255 = vec![b'n'; 255];
    let n256 = vec![b'n'; 256];
    cmp.probe("create a 255-byte name", |r| outcome_unit(&r.create(&n255)));
    cmp.probe("stat a 255-byte name", |r| outcome(&r.stat(&n255).map(|s| s.st_size)));
    cmp.probe("create a 256-byte name", |r| outcome_unit(&r.create(&n256)));
    cmp.probe("mkdir a 256-byte name", |r| outcome(&r.mkdir(&n256)));
    cmp.probe("stat a 256-byte name", |r| outcome_unit(&r.stat(&n256)));
    cmp.probe("rename to a 256-byte name", |r| outcome(&r.rename(&n255, &n256, 0)));
    cmp.probe("link to a 256-byte name", |r| outcome(&r.link(&n255, &n256)));
    cmp.probe("symlink named with 256 bytes", |r| outcome(&r.symlink(b"target", &n256)));
    cmp.probe("unlink a 255-byte name", |r| outcome(&r.unlink(&n255)));

    // Every byte value but '/' and NUL, alone and all together, UTF-8 or not.
    cmp.probe("create each one-byte name 0x01..0xff but '/'", |r| {
        (1..=255u8)
            .filter(|&b| b != b'/')
            .map(|b| format!("{b:02x}:{}", outcome_unit(&r.create(&[b]))))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let all: Vec<u8> = (1..=255u8).filter(|&b| b != b'/').collect();
    cmp.probe("create a name of all 254 bytes", |r| outcome_unit(&r.create(&all)));
    for (label, name) in
        [("invalid UTF-8", &b"\xff\xfe\xc3\x28"[..]), ("overlong UTF-8", b"\xc0\xaf"), ("latin-1", b"caf\xe9")]
    {
        cmp.probe(&format!("mkdir a {label} name"), |r| outcome(&r.mkdir(name)));
    }
    cmp.probe("list the names back", |r| {
        let names = r.list(b"");
        format!("{} names, hash {:x}", names.len(), fnv(&names.concat()))
    });
    cmp.probe("stat and remove every one-byte name", |r| {
        (1..=255u8)
            .filter(|&b| b != b'/' && b != b'.')
            .map(|b| format!("{}{}", outcome_unit(&r.stat(&[b])), outcome_unit(&r.unlink(&[b]))))
            .collect::<Vec<_>>()
            .join(" ")
    });

    // Paths: the kernel's PATH_MAX (4,096 bytes with the NUL) applies to scratchfs as to tmpfs.
    let mut chain = b".".to_vec();
    for i in 0..15u8 {
        chain.push(b'/');
        chain.extend(std::iter::repeat_n(b'a' + i, 255));
        let dir = chain.clone();
        cmp.probe(&format!("mkdir level {i} of the long path"), |r| outcome(&r.mkdir(&dir)));
    }
    let long = |total: usize| {
        let mut p = chain.clone();
        p.push(b'/');
        p.extend(std::iter::repeat_n(b'z', total - p.len()));
        p
    };
    let (p4095, p4096, p5000) = (long(4095), long(4096), long(5000));
    cmp.probe("create at a 4,095-byte path", |r| outcome_unit(&r.create(&p4095)));
    cmp.probe("stat at a 4,095-byte path", |r| outcome(&r.stat(&p4095).map(|s| s.st_nlink)));
    cmp.probe("create at a 4,096-byte path", |r| outcome_unit(&r.create(&p4096)));
    cmp.probe("mkdir at a 4,096-byte path", |r| outcome(&r.mkdir(&p4096)));
    cmp.probe("stat at a 5,000-byte path", |r| outcome_unit(&r.stat(&p5000)));
    cmp.probe("unlink at a 4,095-byte path", |r| outcome(&r.unlink(&p4095)));
    cmp.probe("remove the long path", |r| {
        let mut p = chain.clone();
        let mut out = Vec::new();
        while p.len() > 1 {
            out.push(outcome(&r.rmdir(&p)));
            p.truncate(p.iter().rposition(|&b| b == b'/').unwrap());
        }
        out.join(" ")
    });

    // Directories 1,000 deep: create, stat, remove.
    cmp.probe("create 1,000 nested directories", |r| {
        let mut p = b"deep".to_vec();
        let mut errors = Vec::new();
        for _ in 0..1000 {
            if let Err(e) = r.mkdir(&p) {
                errors.push(errno_name(e.raw_os_error().unwrap_or(0)));
            }
            p.extend_from_slice(b"/d");
        }
        format!("{} errors {errors:?}", errors.len())
    });
    let deepest: Vec<u8> = [&b"deep"[..], &b"/d".repeat(999)].concat();
    cmp.probe("stat the deepest directory", |r| {
        outcome(&r.stat(&deepest).map(|s| (s.st_mode & libc::S_IFMT, s.st_nlink)))
    });
    cmp.probe("create a file at the bottom", |r| outcome_unit(&r.create(&[&deepest[..], b"/f"].concat())));
    cmp.probe("rmdir the top of the nest", |r| outcome(&r.rmdir(b"deep")));
    cmp.probe("remove 1,000 nested directories", |r| {
        let _ = r.unlink(&[&deepest[..], b"/f"].concat());
        let mut p = deepest.clone();
        let mut errors = Vec::new();
        loop {
            if let Err(e) = r.rmdir(&p) {
                errors.push(errno_name(e.raw_os_error().unwrap_or(0)));
            }
            match p.iter().rposition(|&b| b == b'/') {
                Some(i) => p.truncate(i),
                None => break,
            }
        }
        format!("{} errors {errors:?}; {:?}", errors.len(), outcome_unit(&r.stat(b"deep")))
    });

    // Offsets and sizes near 2^63.
    let max = i64::MAX;
    cmp.probe("writes and truncates near 2^63", |r| {
        let fd = r.create(b"huge").unwrap();
        let mut out = vec![
            // Up to 2^63 - 1 works; pos + count past it overflows: EINVAL.
            format!("pwrite 1 at 2^63-1: {}", outcome(&pwrite(&fd, b"x", max))),
            format!("pwrite 0 at 2^63-1: {}", outcome(&pwrite(&fd, b"", max))),
            format!("pwrite 1 at 2^63-2: {}", outcome(&pwrite(&fd, b"x", max - 1))),
            format!("size {}", size_of(&fd)),
            format!("pwrite 8192 at 2^63-12289: {}", outcome(&pwrite(&fd, &[7u8; 8192], max - 4096 - 8192))),
            format!("pwrite 4096 at 2^63-4097: {}", outcome(&pwrite(&fd, &[8u8; 4096], max - 4096))),
            format!("size {}", size_of(&fd)),
            format!("pwrite 100 at 2^63-50: {}", outcome(&pwrite(&fd, &[9u8; 100], max - 150 + 100))),
            format!("size {}", size_of(&fd)),
            format!("pwrite at -1: {}", outcome(&pwrite(&fd, b"x", -1))),
            format!("read at 2^63-4097: {}", outcome(&pread(&fd, 4096, max - 4096).map(|d| (d.len(), fnv(&d))))),
            format!("read past 2^63-1: {}", outcome(&pread(&fd, 8192, max - 4096).map(|d| (d.len(), fnv(&d))))),
            format!("ftruncate 2^63-1: {}", outcome(&ftruncate(&fd, max))),
            format!("size {}", size_of(&fd)),
            format!("ftruncate -1: {}", outcome(&ftruncate(&fd, -1))),
            format!("read at 2^63-16: {}", outcome(&pread(&fd, 64, max - 15).map(|d| (d.len(), fnv(&d))))),
            format!("fallocate past 2^63: {}", outcome(&fallocate(&fd, 0, max - 10, 100))),
            format!("fallocate at 2^62: {}", outcome(&fallocate(&fd, 0, 1 << 62, 4096))),
            format!(
                "punch at 2^63-8192: {}",
                outcome(&fallocate(&fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, max - 8191, 8192))
            ),
            format!("zero-length write at 0: {}", outcome(&pwrite(&fd, b"", 0))),
            format!("zero-length write at 2^63-1: {}", outcome(&pwrite(&fd, b"", max))),
            format!("ftruncate 0: {}", outcome(&ftruncate(&fd, 0))),
            format!("zero-length write on empty: {}", outcome(&pwrite(&fd, b"", 0))),
            format!("size {}", size_of(&fd)),
        ];
        out.push(format!("unlink: {}", outcome(&r.unlink(b"huge"))));
        out.join("; ")
    });

    // lseek beyond EOF, and SEEK_DATA/SEEK_HOLE around holes.
    cmp.probe("lseek beyond EOF", |r| {
        let fd = r.create(b"seek").unwrap();
        pwrite(&fd, &[1u8; 8192], 0).unwrap();
        let tb = 1i64 << 40;
        let out = [
            format!("SEEK_SET 2^40: {}", outcome(&lseek(&fd, tb, libc::SEEK_SET))),
            format!("read there: {}", outcome(&pread(&fd, 10, tb).map(|d| d.len()))),
            format!("SEEK_DATA 2^40: {}", outcome(&lseek(&fd, tb, libc::SEEK_DATA))),
            format!("SEEK_HOLE 2^40: {}", outcome(&lseek(&fd, tb, libc::SEEK_HOLE))),
            format!("SEEK_DATA 0: {}", outcome(&lseek(&fd, 0, libc::SEEK_DATA))),
            format!("SEEK_HOLE 0: {}", outcome(&lseek(&fd, 0, libc::SEEK_HOLE))),
            format!("SEEK_SET -1: {}", outcome(&lseek(&fd, -1, libc::SEEK_SET))),
            format!("SEEK_END 2^62: {}", outcome(&lseek(&fd, 1 << 62, libc::SEEK_END))),
            format!("ftruncate 1 MiB: {}", outcome(&ftruncate(&fd, 1 << 20))),
            format!("SEEK_HOLE 0: {}", outcome(&lseek(&fd, 0, libc::SEEK_HOLE))),
            format!("SEEK_DATA 8192: {}", outcome(&lseek(&fd, 8192, libc::SEEK_DATA))),
            format!("write 4096 at 2^40: {}", outcome(&pwrite(&fd, &[2u8; 4096], tb))),
            format!("SEEK_DATA 8192: {}", outcome(&lseek(&fd, 8192, libc::SEEK_DATA))),
            format!("SEEK_HOLE 2^40: {}", outcome(&lseek(&fd, tb, libc::SEEK_HOLE))),
            format!("SEEK_END 0: {}", outcome(&lseek(&fd, 0, libc::SEEK_END))),
            format!("SEEK_END 2^63-1: {}", outcome(&lseek(&fd, max, libc::SEEK_END))),
            format!("read across the hole: {}", outcome(&pread(&fd, 16384, 4096).map(|d| (d.len(), fnv(&d))))),
            format!("unlink: {}", outcome(&r.unlink(b"seek"))),
        ];
        out.join("; ")
    });

    // Ranges of 2^62 bytes: refused or done at once, whatever the file's
    // shape (the write out of order makes it random-access on scratchfs).
    cmp.probe("fallocate and punch over 2^62 bytes", |r| {
        let fd = r.create(b"vast").unwrap();
        pwrite(&fd, &[3u8; 4096], 1 << 20).unwrap();
        pwrite(&fd, &[4u8; 4096], 0).unwrap();
        let vast = 1i64 << 62;
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        let out = [
            format!("fallocate 2^62 at 0: {}", outcome(&fallocate(&fd, 0, 0, vast))),
            format!("fallocate KEEP_SIZE 2^62 at 0: {}", outcome(&fallocate(&fd, libc::FALLOC_FL_KEEP_SIZE, 0, vast))),
            format!("size {}", size_of(&fd)),
            format!("ftruncate 2^62: {}", outcome(&ftruncate(&fd, vast))),
            format!("punch 2^62 - 8192 from 4096: {}", outcome(&fallocate(&fd, punch, 4096, vast - 8192))),
            format!("read at 0: {}", outcome(&pread(&fd, 4096, 0).map(|d| (d.len(), fnv(&d))))),
            format!("read at 1 MiB: {}", outcome(&pread(&fd, 4096, 1 << 20).map(|d| (d.len(), fnv(&d))))),
            format!("size {}", size_of(&fd)),
            format!("unlink: {}", outcome(&r.unlink(b"vast"))),
        ];
        out.join("; ")
    });

    // Rename loops and hard links to directories.
    for root in [&tr, &sr] {
        root.mkdir(b"a").unwrap();
        root.mkdir(b"a/b").unwrap();
        root.mkdir(b"a/b/c").unwrap();
        std::fs::write(root.path_of(b"a/b/c/file"), b"in c").unwrap();
    }
    cmp.probe("rename a dir into its own subdir", |r| outcome(&r.rename(b"a", b"a/b/c/a", 0)));
    cmp.probe("rename a dir onto its own subdir", |r| outcome(&r.rename(b"a", b"a/b", 0)));
    cmp.probe("rename a/b into a/b/c", |r| outcome(&r.rename(b"a/b", b"a/b/c/x", 0)));
    cmp.probe("rename a subdir onto its ancestor", |r| outcome(&r.rename(b"a/b/c", b"a", 0)));
    cmp.probe("exchange a dir with its subdir", |r| outcome(&r.rename(b"a", b"a/b", libc::RENAME_EXCHANGE)));
    cmp.probe("rename a dir to itself", |r| outcome(&r.rename(b"a", b"a", 0)));
    cmp.probe("rename a dir to its own '.'", |r| outcome(&r.rename(b"a/b", b"a/b/.", 0)));
    cmp.probe("hard link to a directory", |r| outcome(&r.link(b"a", b"a2")));
    cmp.probe("hard link to a subdirectory", |r| outcome(&r.link(b"a/b/c", b"c2")));
    cmp.probe("rmdir a non-empty directory", |r| outcome(&r.rmdir(b"a/b")));
    cmp.probe("the tree is unchanged", |r| {
        let names = [r.list(b""), r.list(b"a"), r.list(b"a/b"), r.list(b"a/b/c")].concat();
        let file = std::fs::read(r.path_of(b"a/b/c/file")).unwrap();
        format!(
            "{:?} {:?}",
            names.iter().map(|n| String::from_utf8_lossy(n).into_owned()).filter(|n| n.len() < 20).collect::<Vec<_>>(),
            String::from_utf8_lossy(&file)
        )
    });

    // Extended attributes at and beyond the limits.
    for root in [&tr, &sr] {
        std::fs::write(root.path_of(b"x"), b"xattr holder").unwrap();
    }
    let name255 = [&b"user."[..], &[b'k'; 250]].concat();
    let name256 = [&b"user."[..], &[b'k'; 251]].concat();
    let v64k: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
    let v64k1 = vec![1u8; 65537];
    cmp.probe("setxattr with a 255-byte name", |r| outcome(&setxattr(r, b"x", &name255, b"v", 0)));
    cmp.probe("getxattr with a 255-byte name", |r| outcome(&getxattr(r, b"x", &name255, 16)));
    cmp.probe("setxattr with a 256-byte name", |r| outcome(&setxattr(r, b"x", &name256, b"v", 0)));
    cmp.probe("getxattr with a 256-byte name", |r| outcome(&getxattr(r, b"x", &name256, 16)));
    cmp.probe("removexattr with a 256-byte name", |r| outcome(&removexattr(r, b"x", &name256)));
    cmp.probe("setxattr a 64 KiB value", |r| outcome(&setxattr(r, b"x", b"user.big", &v64k, 0)));
    cmp.probe("getxattr the 64 KiB value", |r| outcome(&getxattr(r, b"x", b"user.big", 65536)));
    cmp.probe("getxattr size of the 64 KiB value", |r| outcome(&getxattr(r, b"x", b"user.big", 0)));
    cmp.probe("getxattr into a short buffer", |r| outcome(&getxattr(r, b"x", b"user.big", 100)));
    cmp.probe("setxattr a 64 KiB + 1 value", |r| outcome(&setxattr(r, b"x", b"user.bigger", &v64k1, 0)));
    cmp.probe("the 64 KiB value is intact", |r| outcome(&getxattr(r, b"x", b"user.big", 65536)));
    cmp.probe("setxattr an empty value", |r| outcome(&setxattr(r, b"x", b"user.empty", b"", 0)));
    cmp.probe("getxattr an empty value", |r| outcome(&getxattr(r, b"x", b"user.empty", 16)));
    cmp.probe("setxattr an empty name", |r| outcome(&setxattr(r, b"x", b"", b"v", 0)));
    cmp.probe("setxattr 'user.' alone", |r| outcome(&setxattr(r, b"x", b"user.", b"v", 0)));
    cmp.probe("setxattr an unknown namespace", |r| outcome(&setxattr(r, b"x", b"frob.x", b"v", 0)));
    cmp.probe("XATTR_CREATE on an existing name", |r| {
        outcome(&setxattr(r, b"x", b"user.big", b"v", libc::XATTR_CREATE))
    });
    cmp.probe("XATTR_REPLACE on a missing name", |r| {
        outcome(&setxattr(r, b"x", b"user.nope", b"v", libc::XATTR_REPLACE))
    });
    cmp.probe("getxattr a missing name", |r| outcome(&getxattr(r, b"x", b"user.nope", 16)));
    cmp.probe("remove the xattrs", |r| {
        [&name255[..], b"user.big", b"user.empty"]
            .iter()
            .map(|n| outcome(&removexattr(r, b"x", n)))
            .collect::<Vec<_>>()
            .join(" ")
    });

    // Nothing stored changed.
    let after = (reference(&tr), reference(&sr));
    let rows = cmp.rows.clone();
    let mismatches = cmp.mismatches();
    for (what, a, b) in &rows {
        let shown = if a.len() > 1200 { format!("{}... (hash {:x})", &a[..100], fnv(a.as_bytes())) } else { a.clone() };
        eprintln!("  {} {what}: {shown}", if a == b { "same" } else { "DIFF" });
        if a != b {
            eprintln!("       scratchfs: {b}");
        }
    }
    assert!(mismatches.is_empty(), "scratchfs differs from tmpfs:\n  {}", mismatches.join("\n  "));
    assert_eq!(after.0, before.0, "tmpfs reference changed");
    assert_eq!(after.1, before.1, "the scratchfs reference file changed");
    // Everything the probes created is gone again on scratchfs except x, a/b/c/file and the names tree.
    for root in [&tr, &sr] {
        std::fs::remove_dir_all(root.path_of(b"a")).unwrap();
        std::fs::remove_file(root.path_of(b"x")).unwrap();
        std::fs::remove_file(root.path_of(&all)).unwrap();
        for name in [&b"\xff\xfe\xc3\x28"[..], b"\xc0\xaf", b"caf\xe9"] {
            root.rmdir(name).unwrap();
        }
    }
    assert_eq!(sr.list(b""), vec![b"reference".to_vec()]);
    let settle =
        common::mount::wait_until(std::time::Duration::from_secs(5), || m.stats().quota.used_bytes == used_before);
    assert!(settle, "used {} after the probes, {used_before} before", m.stats().quota.used_bytes);
    drop((tr, sr));
    drop(t);
    assert!(m.unmount().success());
}

/// A single write(2) of 2 GiB: the kernel caps it at 0x7ffff000 bytes, on
/// scratchfs as on tmpfs, and every byte arrives.
#[test]
fn a_2_gib_write_is_capped_like_tmpfs_and_arrives_whole() {
    const LIMIT: usize = 0x7fff_f000;
    let Some(m) = Mount::new(&["--size", "3G"]) else { return };
    let mut buf = vec![0u8; 2 << 30];
    for (i, chunk) in buf.chunks_mut(4096).enumerate() {
        chunk.fill((i % 251) as u8);
    }
    let write_once = |path: &Path| {
        let f = std::fs::File::create(path).unwrap();
        // SAFETY: buf is valid for its length.
        let n = unsafe { libc::write(f.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        let r = if n < 0 { Err(io::Error::last_os_error()) } else { Ok(n) };
        (outcome(&r), f.metadata().unwrap().len())
    };
    let tmpfs_result = {
        let t = reliability::Tmpfs::new("3G");
        let r = write_once(&t.path.join("big"));
        std::fs::remove_file(t.path.join("big")).unwrap();
        r
    };
    let scratch_result = write_once(&m.join("big"));
    eprintln!("2 GiB write(2): tmpfs {tmpfs_result:?}, scratchfs {scratch_result:?}");
    assert_eq!(tmpfs_result, (format!("ok:{LIMIT}"), LIMIT as u64));
    assert_eq!(scratch_result, tmpfs_result);
    // Every byte arrived, read from the daemon.
    let f = std::fs::File::open(m.join("big")).unwrap();
    // SAFETY: fadvise on an open descriptor.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    let mut r = io::BufReader::with_capacity(8 << 20, f);
    let mut chunk = vec![0u8; 8 << 20];
    let mut off = 0usize;
    loop {
        let n = r.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        assert!(chunk[..n] == buf[off..off + n], "bytes differ in [{off}, {})", off + n);
        off += n;
    }
    assert_eq!(off, LIMIT);
    drop((r, buf));
    std::fs::remove_file(m.join("big")).unwrap();
    let e = std::fs::metadata(m.join("big")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert!(m.unmount().success());
}
