//! The daemon's permission checks against tmpfs's, case by case.
//!
//! On a mount owned by root without `--allow-other` the daemon checks
//! permissions, not the kernel (docs/design.md, "Who checks permissions").
//! The same fixture (files and directories of many modes and owners) is
//! built on such a mount and in a directory on `/dev/shm` (tmpfs), and the
//! same operations run on both as a task acting as another user
//! (`setfsuid`/`setfsgid` and a supplementary group, all per thread) and as
//! root without its DAC capabilities. Every errno must match tmpfs's.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::creds::{CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER, CAP_FSETID, as_fs_user, without_caps};
use common::mount::Mount;

const NOBODY: u32 = 65534;
/// A supplementary group of the probing task (and the group of some files).
const GROUP: u32 = 4242;

const FILE_MODES: &[u32] =
    &[0o000, 0o400, 0o200, 0o100, 0o600, 0o640, 0o604, 0o060, 0o006, 0o666, 0o755, 0o4755, 0o2755];
const DIR_MODES: &[u32] = &[0o000, 0o700, 0o711, 0o755, 0o730, 0o703, 0o770, 0o777, 0o1777, 0o1733];
const OWNERS: &[(u32, u32)] = &[(0, 0), (NOBODY, NOBODY), (0, GROUP), (NOBODY, GROUP)];

fn cpath(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// The errno of a libc call's return value, `None` for success.
fn errno(rc: i32) -> Option<i32> {
    (rc != 0).then(|| std::io::Error::last_os_error().raw_os_error().unwrap_or(-1))
}

fn io_errno<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().map(|e| e.raw_os_error().unwrap_or(-1))
}

fn chown(p: &Path, uid: u32, gid: u32) {
    // SAFETY: a valid C path.
    assert_eq!(errno(unsafe { libc::lchown(cpath(p).as_ptr(), uid, gid) }), None, "{}", p.display());
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Builds the fixture under `base` as root: for every mode and owner a file
/// `f<mode>-<uid>-<gid>` and a directory `d<mode>-<uid>-<gid>` holding a
/// file of root's (`r`) and one of nobody's (`n`), and an open directory
/// `links` for new hard links.
fn build(base: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    std::fs::create_dir(base).unwrap();
    chmod(base, 0o777);
    std::fs::create_dir(base.join("links")).unwrap();
    chmod(&base.join("links"), 0o777);
    let (mut files, mut dirs) = (Vec::new(), Vec::new());
    for &(uid, gid) in OWNERS {
        for &mode in FILE_MODES {
            let f = base.join(format!("f{mode:o}-{uid}-{gid}"));
            std::fs::write(&f, b"data").unwrap();
            chown(&f, uid, gid);
            chmod(&f, mode);
            files.push(f);
        }
        for &mode in DIR_MODES {
            let d = base.join(format!("d{mode:o}-{uid}-{gid}"));
            std::fs::create_dir(&d).unwrap();
            for (name, owner) in [("r", 0), ("n", NOBODY)] {
                std::fs::write(d.join(name), b"child").unwrap();
                chown(&d.join(name), owner, owner);
            }
            chown(&d, uid, gid);
            chmod(&d, mode);
            dirs.push(d);
        }
    }
    (files, dirs)
}

/// Runs every operation on the fixture and returns what each gave.
fn probe(files: &[PathBuf], dirs: &[PathBuf], links: &Path) -> Vec<(String, Option<i32>)> {
    let mut out = Vec::new();
    let name = |p: &Path| p.file_name().unwrap().to_string_lossy().into_owned();
    let open = |p: &Path, flags: i32| {
        // SAFETY: a valid C path; the descriptor is closed at once.
        let fd = unsafe { libc::open(cpath(p).as_ptr(), flags | libc::O_CLOEXEC) };
        if fd >= 0 {
            // SAFETY: our descriptor.
            unsafe { libc::close(fd) };
            None
        } else {
            errno(-1)
        }
    };
    let access = |p: &Path, mode: i32| {
        // SAFETY: a valid C path.
        errno(unsafe { libc::faccessat(libc::AT_FDCWD, cpath(p).as_ptr(), mode, libc::AT_EACCESS) })
    };
    let utime = |p: &Path, explicit: bool| {
        let t = if explicit {
            libc::timespec { tv_sec: 1_000_000_000, tv_nsec: 0 }
        } else {
            libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW }
        };
        // SAFETY: a valid C path and two timespecs.
        errno(unsafe { libc::utimensat(libc::AT_FDCWD, cpath(p).as_ptr(), [t, t].as_ptr(), 0) })
    };
    let setxattr = |p: &Path| {
        // SAFETY: a valid C path, name and value.
        errno(unsafe { libc::setxattr(cpath(p).as_ptr(), c"user.t".as_ptr(), b"v".as_ptr().cast(), 1, 0) })
    };
    let getxattr = |p: &Path| {
        let mut buf = [0u8; 8];
        // SAFETY: a valid C path and name, and a buffer of the given size.
        let n = unsafe { libc::getxattr(cpath(p).as_ptr(), c"user.t".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 { None } else { errno(-1) }
    };
    let truncate = |p: &Path| {
        // SAFETY: a valid C path.
        errno(unsafe { libc::truncate(cpath(p).as_ptr(), 4) })
    };
    let lchown = |p: &Path, uid: u32, gid: u32| {
        // SAFETY: a valid C path.
        errno(unsafe { libc::lchown(cpath(p).as_ptr(), uid, gid) })
    };
    for f in files {
        let mode = std::fs::symlink_metadata(f).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0);
        let n = name(f);
        let mut op = |what: &str, r: Option<i32>| out.push((format!("{n} {what}"), r));
        op("open read", open(f, libc::O_RDONLY));
        op("open write", open(f, libc::O_WRONLY));
        op("open read-write", open(f, libc::O_RDWR));
        op("access R", access(f, libc::R_OK));
        op("access W", access(f, libc::W_OK));
        op("access X", access(f, libc::X_OK));
        op("getxattr", getxattr(f));
        op("setxattr", setxattr(f));
        op("link", io_errno(std::fs::hard_link(f, links.join(format!("{n}.link")))));
        op("utime now", utime(f, false));
        op("utime explicit", utime(f, true));
        op("truncate", truncate(f));
        op("open truncate", open(f, libc::O_WRONLY | libc::O_TRUNC));
        op("chmod same", io_errno(std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode))));
        op("chown to -1, -1", lchown(f, u32::MAX, u32::MAX));
        op("chgrp to the supplementary group", lchown(f, u32::MAX, GROUP));
        op("chown to nobody", lchown(f, NOBODY, u32::MAX));
    }
    for d in dirs {
        let mode = std::fs::symlink_metadata(d).map(|m| m.permissions().mode() & 0o7777).unwrap_or(0);
        let n = name(d);
        let mut op = |what: &str, r: Option<i32>| out.push((format!("{n} {what}"), r));
        op("list", io_errno(std::fs::read_dir(d).and_then(|mut i| i.next().transpose())));
        op("stat child", io_errno(std::fs::metadata(d.join("r"))));
        op("read child", io_errno(std::fs::read(d.join("r"))));
        op("access W", access(d, libc::W_OK));
        op("access X", access(d, libc::X_OK));
        op("create", io_errno(std::fs::write(d.join("new"), b"new")));
        op("mkdir", io_errno(std::fs::create_dir(d.join("newdir"))));
        op("symlink", io_errno(std::os::unix::fs::symlink("r", d.join("sym"))));
        op("setxattr", setxattr(d));
        op("rename nobody's within", io_errno(std::fs::rename(d.join("n"), d.join("n2"))));
        op("unlink root's", io_errno(std::fs::remove_file(d.join("r"))));
        op("move a directory out", io_errno(std::fs::rename(d.join("newdir"), links.join(format!("{n}.moved")))));
        op("chmod same", io_errno(std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode))));
    }
    out
}

/// Who probes.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// Nobody's filesystem ids, with the supplementary group [`GROUP`].
    Nobody,
    /// Root's ids without CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER.
    RootWithoutDac,
}

/// Builds a fixture under `base` and probes it as `who` after dropping the
/// kernel's cached entries (so each path walk reaches the filesystem).
fn run(base: &Path, who: Who) -> Vec<(String, Option<i32>)> {
    let (files, dirs) = build(base);
    std::fs::write("/proc/sys/vm/drop_caches", b"2").unwrap();
    let links = base.join("links");
    let go = || probe(&files, &dirs, &links);
    match who {
        Who::Nobody => as_fs_user(NOBODY, NOBODY, &[GROUP], go),
        Who::RootWithoutDac => without_caps(&[CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER], go),
    }
}

#[test]
fn the_daemon_gives_the_errno_tmpfs_gives() {
    compare_with_tmpfs(&[]);
}

#[test]
fn the_kernel_gives_the_errno_tmpfs_gives_with_default_permissions() {
    // The same probe where the kernel checks: scratchfs's answers to what
    // it lets through must not differ either.
    compare_with_tmpfs(&["-o", "default_permissions"]);
}

/// Root without `CAP_FSETID` loses set-user-ID and set-group-ID bits where
/// tmpfs takes them: a truncate, an `O_TRUNC` open, a change of group (the
/// daemon asks for the capability where a bit is at stake instead of
/// taking uid 0 to hold it). With the daemon checking and with the kernel.
#[test]
fn root_without_cap_fsetid_loses_set_id_bits_as_on_tmpfs() {
    for options in [&[][..], &["-o", "default_permissions"][..]] {
        let Some(m) = Mount::new(&[&["--size", "16M"], options].concat()) else { return };
        let shm = tempfile::Builder::new().prefix("scratchfs-fsetid").tempdir_in("/dev/shm").unwrap();
        let reference = set_id_probe(shm.path());
        let ours = set_id_probe(&m.path);
        assert!(reference.iter().any(|(_, before, after)| before != after), "tmpfs cleared something");
        assert!(reference.iter().any(|(_, before, after)| before == after), "and kept something");
        assert_eq!(ours, reference, "modes after each operation, {options:?}");
        assert!(m.unmount().success());
    }
}

/// `(operation, mode before, mode after)` for set-ID files of several
/// modes, each changed once by root without `CAP_FSETID`.
fn set_id_probe(base: &Path) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    for mode in [0o4755, 0o6755, 0o2755, 0o2745] {
        for op in ["truncate", "open O_TRUNC", "chgrp", "chown -1 -1"] {
            let f = base.join(format!("{op}-{mode:o}").replace(' ', "_"));
            std::fs::write(&f, b"contents").unwrap();
            chmod(&f, mode);
            let r = without_caps(&[CAP_FSETID], || match op {
                "truncate" => io_errno(std::fs::OpenOptions::new().write(true).open(&f).and_then(|h| h.set_len(3))),
                "open O_TRUNC" => io_errno(std::fs::OpenOptions::new().write(true).truncate(true).open(&f)),
                // SAFETY: a valid C path.
                "chgrp" => errno(unsafe { libc::lchown(cpath(&f).as_ptr(), u32::MAX, GROUP) }),
                // SAFETY: as above.
                _ => errno(unsafe { libc::lchown(cpath(&f).as_ptr(), u32::MAX, u32::MAX) }),
            });
            assert_eq!(r, None, "{op} of a {mode:o} file");
            let after = std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777;
            out.push((op.to_string(), mode, after));
        }
    }
    out
}

fn compare_with_tmpfs(options: &[&str]) {
    let Some(m) = Mount::new(&[&["--size", "64M"], options].concat()) else { return };
    let checked_by_kernel = std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(1) == m.path.to_str() && l.contains("default_permissions"));
    assert_eq!(checked_by_kernel, !options.is_empty(), "mount options");
    let shm = tempfile::Builder::new().prefix("scratchfs-perm").tempdir_in("/dev/shm").unwrap();
    assert_eq!(
        std::fs::read_to_string("/proc/sys/fs/protected_hardlinks").unwrap().trim(),
        "1",
        "the fixture's hard links assume Debian's default"
    );
    for who in [Who::Nobody, Who::RootWithoutDac] {
        let reference = run(&shm.path().join(format!("{who:?}")), who);
        let ours = run(&m.join(format!("{who:?}")), who);
        assert_eq!(reference.len(), ours.len());
        let differ: Vec<String> = reference
            .iter()
            .zip(&ours)
            .filter(|(a, b)| a != b)
            .map(|((what, t), (_, s))| format!("{what}: tmpfs {t:?}, scratchfs {s:?}"))
            .collect();
        let refused = reference.iter().filter(|(_, r)| r.is_some()).count();
        eprintln!("as {who:?}: {} operations, {refused} refused on tmpfs, {} differ", reference.len(), differ.len());
        assert!(refused > reference.len() / 5 && refused < reference.len(), "the fixture exercises both outcomes");
        assert!(differ.is_empty(), "as {who:?}, scratchfs differs from tmpfs:\n{}", differ.join("\n"));
    }
    assert!(m.unmount().success());
}
