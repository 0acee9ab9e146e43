//! Mount helpers: a [`Mount`] runs the real `scratchfs` binary on a fresh
//! temporary directory and unmounts on every path out, panics included.
//!
//! FUSE is required. Without it these tests fail with a message saying why;
//! `SCRATCHFS_SKIP_MOUNT_TESTS=1` skips them explicitly, which is refused
//! when `CI=true`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_scratchfs");

/// Whether mount tests should run; panics if they cannot and must.
pub fn require_fuse() -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    if std::env::var("SCRATCHFS_SKIP_MOUNT_TESTS").is_ok_and(|v| v == "1") {
        assert!(!ci, "SCRATCHFS_SKIP_MOUNT_TESTS=1 is not allowed with CI=true");
        eprintln!("mount test skipped: SCRATCHFS_SKIP_MOUNT_TESTS=1");
        return false;
    }
    let usable = std::fs::OpenOptions::new().read(true).write(true).open("/dev/fuse").is_ok();
    assert!(
        usable,
        "FUSE is unavailable (/dev/fuse cannot be opened){}: mount tests need it; install fuse3, load the fuse module, \
         or set SCRATCHFS_SKIP_MOUNT_TESTS=1 to skip them explicitly",
        if ci { " on CI" } else { "" }
    );
    true
}

/// Panics unless `setfacl` (Debian's acl package) is installed.
pub fn require_acl_tools() {
    let ok = Command::new("setfacl").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "setfacl is missing: install the acl package (scripts/setup.sh does)");
}

/// Makes this test process the reaper of orphaned daemons, so that a
/// backgrounded daemon's exit can be observed (and nothing is left as a
/// zombie of an init that does not reap).
pub fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes one integer argument.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    });
}

/// Whether `path` is a mount point (per /proc/self/mountinfo).
pub fn is_mounted(path: &Path) -> bool {
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let target = canon.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(target.as_str()))
}

/// Lazily unmounts `path` if mounted.
pub fn force_unmount(path: &Path) {
    if is_mounted(path) {
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: c is a valid path string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// The stats of the mount at `path`, read in-process from its root's
/// stats attribute (quicker than `scratchfs stats`; as whoever calls it).
pub fn stats_at(path: &Path) -> scratchfs::report::Report {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(scratchfs::fuse::STATS_XATTR).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for its length.
    let n = unsafe { libc::getxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n > 0, "stats xattr: {}", std::io::Error::last_os_error());
    scratchfs::report::Report::from_json(&buf[..n as usize]).expect("stats JSON")
}

pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

/// Waits for a child with a timeout.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A scratchfs daemon in the foreground, mounted on a temporary directory.
pub struct Mount {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Mount {
    /// Mounts with the given extra arguments (e.g. `["--size", "64M"]`).
    /// Returns `None` only when mount tests are explicitly skipped.
    pub fn new(args: &[&str]) -> Option<Mount> {
        if !require_fuse() {
            return None;
        }
        let dir = tempfile::Builder::new().prefix("scratchfs-test").tempdir().expect("tempdir");
        let path = dir.path().join("mnt");
        std::fs::create_dir(&path).unwrap();
        let log = dir.path().join("daemon.log");
        let logfile = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("-f")
            .arg(&path)
            .args(args)
            .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(logfile)
            .spawn()
            .expect("spawn scratchfs");
        let mut m = Mount { _dir: dir, path, log, child: Some(child) };
        let up = wait_until(Duration::from_secs(20), || {
            is_mounted(&m.path) || m.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
        });
        assert!(up && is_mounted(&m.path), "scratchfs did not mount; its log:\n{}", m.log_text());
        Some(m)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Path of an entry inside the mount.
    pub fn join(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path.join(rel)
    }

    /// Runs a shell command with the mount as working directory.
    pub fn sh(&self, script: &str) -> Output {
        Command::new("bash").arg("-c").arg(script).current_dir(&self.path).output().expect("bash")
    }

    /// Like `sh`, panicking (with output) unless it succeeds.
    pub fn sh_ok(&self, script: &str) -> String {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "`{script}` failed: {}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The daemon's stats report.
    pub fn stats(&self) -> scratchfs::report::Report {
        let out = Command::new(BIN).arg("stats").arg(&self.path).arg("--json").output().unwrap();
        assert!(out.status.success(), "stats failed: {}", String::from_utf8_lossy(&out.stderr));
        scratchfs::report::Report::from_json(&out.stdout).expect("stats JSON")
    }

    /// Unmounts and waits for the daemon to exit; returns its exit status.
    pub fn unmount(self) -> ExitStatus {
        self.unmount_with_log().0
    }

    /// Unmounts; the daemon's exit status and everything it logged.
    pub fn unmount_with_log(mut self) -> (ExitStatus, String) {
        let status = self.stop().expect("daemon exit status");
        (status, self.log_text())
    }

    fn stop(&mut self) -> Option<ExitStatus> {
        force_unmount(&self.path);
        let mut child = self.child.take()?;
        if let Some(status) = wait_child(&mut child, Duration::from_secs(5)) {
            return Some(status);
        }
        eprintln!("scratchfs did not exit after unmount; killing it. Log:\n{}", self.log_text());
        let _ = child.kill();
        child.wait().ok()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let status = self.stop();
        if std::thread::panicking() {
            eprintln!("scratchfs log ({status:?}):\n{}", self.log_text());
        }
    }
}
