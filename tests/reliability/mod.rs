//! Helpers for the reliability, limits and security tests (tests/mount_reliability.rs,
//! tests/mount_limits.rs, tests/mount_security.rs): errno outcomes, daemon memory
//! figures, a background daemon with its own mount point, a tmpfs to compare with,
//! a child memory cgroup, running commands as `nobody`, and a small PRNG.
//!
//! Every guard here undoes what it set up on every path out (unmount, daemon
//! exit, cgroup removal), panics included.
#![allow(dead_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::common::mount::{BIN, become_subreaper, force_unmount, is_mounted, wait_until};

/// The outcome of a system call as a comparable string: `ok`, `ok:<value>` or
/// the errno's name (`ENAMETOOLONG`).
pub fn outcome<T: std::fmt::Debug>(r: &io::Result<T>) -> String {
    match r {
        Ok(v) => format!("ok:{v:?}"),
        Err(e) => errno_name(e.raw_os_error().unwrap_or(-1)),
    }
}

/// Like [`outcome`], ignoring the value.
pub fn outcome_unit<T>(r: &io::Result<T>) -> String {
    match r {
        Ok(_) => "ok".to_owned(),
        Err(e) => errno_name(e.raw_os_error().unwrap_or(-1)),
    }
}

pub fn errno_name(e: i32) -> String {
    let name = match e {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EIO => "EIO",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EEXIST => "EEXIST",
        libc::EXDEV => "EXDEV",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::EFBIG => "EFBIG",
        libc::ENOSPC => "ENOSPC",
        libc::ESPIPE => "ESPIPE",
        libc::EMLINK => "EMLINK",
        libc::ERANGE => "ERANGE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOTEMPTY => "ENOTEMPTY",
        libc::ELOOP => "ELOOP",
        libc::ENODATA => "ENODATA",
        libc::EOVERFLOW => "EOVERFLOW",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::E2BIG => "E2BIG",
        libc::ENXIO => "ENXIO",
        libc::ENOTCONN => "ENOTCONN",
        libc::EBUSY => "EBUSY",
        _ => return format!("errno {e}"),
    };
    name.to_owned()
}

pub fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("no NUL in path")
}

/// A file's bytes hashed (FNV-1a, 64 bits): enough to notice any change.
pub fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// xorshift64*: a small deterministic generator for workloads.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in `[0, n)` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Fills `buf` with pseudo-random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `VmRSS` and `VmHWM` of a process, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Rss {
    pub rss: u64,
    pub hwm: u64,
}

pub fn rss_of(pid: u32) -> Rss {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("daemon /proc status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    };
    Rss { rss: field("VmRSS:"), hwm: field("VmHWM:") }
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
}

/// Whether `pid` is a live process (a zombie counts as dead).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            !matches!(state, Some("Z" | "X"))
        }
        Err(_) => false,
    }
}

/// Reaps `pid` if it is our (or our subreaper's) exited child; true once it is gone.
pub fn reap(pid: u32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on one pid.
    let r = unsafe { libc::waitpid(pid as i32, &mut status, libc::WNOHANG) };
    r == pid as i32 || !alive(pid)
}

/// A mount point in its own temporary directory for daemons the test starts
/// itself (in the background, with `--pid-file` and `--log-file`). On drop it
/// unmounts and waits for the daemon to exit, killing it if it lingers.
pub struct Background {
    tmp: tempfile::TempDir,
    pub mnt: PathBuf,
    pub pid_file: PathBuf,
    pub log: PathBuf,
}

impl Background {
    pub fn new() -> Background {
        let tmp = tempfile::Builder::new().prefix("scratchfs-rel").tempdir().unwrap();
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let pid_file = tmp.path().join("pid");
        let log = tmp.path().join("daemon.log");
        Background { tmp, mnt, pid_file, log }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Runs `scratchfs MNT --pid-file P --log-file L ARGS` and returns its output
    /// (the command returns once the mount is ready or has failed).
    pub fn start(&self, args: &[&str]) -> Output {
        become_subreaper();
        Command::new(BIN)
            .arg(&self.mnt)
            .arg("--pid-file")
            .arg(&self.pid_file)
            .arg("--log-file")
            .arg(&self.log)
            .args(args)
            .output()
            .unwrap()
    }

    /// The daemon's pid, once the pid file is written.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(&self.pid_file).ok().and_then(|s| s.trim().parse().ok())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Unmounts and waits up to 5 s for the daemon to exit; true if it did.
    pub fn stop(&self) -> bool {
        force_unmount(&self.mnt);
        let Some(pid) = self.pid() else { return true };
        if wait_until(Duration::from_secs(5), || reap(pid)) {
            return true;
        }
        // SAFETY: killing the daemon this test started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        wait_until(Duration::from_secs(5), || reap(pid));
        false
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let clean = self.stop();
        if std::thread::panicking() || !clean {
            eprintln!("daemon log ({}):\n{}", self.mnt.display(), self.log_text());
        }
    }
}

/// A tmpfs mounted on a temporary directory, to compare errno values with.
pub struct Tmpfs {
    _tmp: tempfile::TempDir,
    pub path: PathBuf,
}

impl Tmpfs {
    pub fn new(size: &str) -> Tmpfs {
        let tmp = tempfile::Builder::new().prefix("scratchfs-tmpfs").tempdir().unwrap();
        let path = tmp.path().join("tmpfs");
        std::fs::create_dir(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=1777"), "scratchfs-cmp"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount -t tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs { _tmp: tmp, path }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        force_unmount(&self.path);
        assert!(std::thread::panicking() || !is_mounted(&self.path), "tmpfs still mounted");
    }
}

pub const CGROUP_V1_MEMORY: &str = "/sys/fs/cgroup/memory";

/// Whether cgroup-v1 memory tests can run; panics with CI=true if they cannot.
pub fn require_cgroup_v1_memory() -> bool {
    let ok = Path::new(CGROUP_V1_MEMORY).join("memory.limit_in_bytes").exists()
        // SAFETY: geteuid has no preconditions.
        && unsafe { libc::geteuid() } == 0;
    if !ok {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(!ci, "cgroup-v1 memory controller at {CGROUP_V1_MEMORY} (and root) required on CI");
        eprintln!("cgroup test skipped: no writable cgroup-v1 memory controller at {CGROUP_V1_MEMORY}");
    }
    ok
}

/// A child memory cgroup (v1) with a limit; removed on drop (after moving
/// any process still in it back to the root cgroup).
pub struct Cgroup {
    pub path: PathBuf,
}

impl Cgroup {
    pub fn new(tag: &str, limit: u64) -> Cgroup {
        let path = Path::new(CGROUP_V1_MEMORY).join(format!("scratchfs-test-{tag}-{}", std::process::id()));
        if path.exists() {
            let _ = std::fs::remove_dir(&path);
        }
        std::fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        let cg = Cgroup { path };
        cg.write("memory.limit_in_bytes", &limit.to_string());
        // No swap on the test machines, but make sure the limit is not dodged by swapping.
        let _ = std::fs::write(cg.path.join("memory.memsw.limit_in_bytes"), limit.to_string());
        cg
    }

    pub fn write(&self, file: &str, value: &str) {
        std::fs::write(self.path.join(file), value).unwrap_or_else(|e| panic!("write {file}={value}: {e}"));
    }

    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.path.join(file)).unwrap_or_default()
    }

    pub fn read_u64(&self, file: &str) -> u64 {
        self.read(file).trim().parse().unwrap_or(0)
    }

    /// A `key value` line of a flat keyed file (`memory.oom_control`, `memory.stat`).
    pub fn key(&self, file: &str, key: &str) -> u64 {
        self.read(file)
            .lines()
            .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Moves a whole process (all its threads) into this cgroup.
    pub fn add(&self, pid: u32) {
        self.write("cgroup.procs", &pid.to_string());
    }

    pub fn procs(&self) -> Vec<u32> {
        self.read("cgroup.procs").lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// A one-line summary of the cgroup's memory figures.
    pub fn summary(&self) -> String {
        format!(
            "limit {}, usage {}, max usage {}, failcnt {}, under_oom {}, oom_kill {}",
            mib(self.read_u64("memory.limit_in_bytes")),
            mib(self.read_u64("memory.usage_in_bytes")),
            mib(self.read_u64("memory.max_usage_in_bytes")),
            self.read_u64("memory.failcnt"),
            self.key("memory.oom_control", "under_oom"),
            self.key("memory.oom_control", "oom_kill"),
        )
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        let root = Path::new(CGROUP_V1_MEMORY).join("cgroup.procs");
        let gone = wait_until(Duration::from_secs(10), || {
            for pid in self.procs() {
                let _ = std::fs::write(&root, pid.to_string());
            }
            std::fs::remove_dir(&self.path).is_ok() || !self.path.exists()
        });
        if !gone {
            eprintln!("warning: could not remove cgroup {}", self.path.display());
        }
    }
}

/// A command that runs as `nobody:nogroup` without supplementary groups.
pub fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", program]);
    c
}

pub fn text(out: &Output) -> String {
    format!(
        "status {}; stdout: {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    )
}
