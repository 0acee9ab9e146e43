//! The command and the daemon: readiness in the background, clean exits on
//! signals and unmount, the mount.fuse3 (fstab) path, `df`, clear errors
//! for bad input, and std::fs round trips through a mount.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::mount::{BIN, Mount, become_subreaper, force_unmount, is_mounted, require_fuse, wait_until};

/// A mount point for tests that start the daemon themselves.
struct Dir {
    _tmp: tempfile::TempDir,
    mnt: PathBuf,
    pid_file: PathBuf,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let pid_file = tmp.path().join("pid");
        Dir { _tmp: tmp, mnt, pid_file }
    }

    fn pid(&self) -> i32 {
        std::fs::read_to_string(&self.pid_file).unwrap().trim().parse().unwrap()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        force_unmount(&self.mnt);
    }
}

/// Whether process `pid` has exited (reaped, or a zombie we then reap).
fn exited(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on a pid; we are its subreaper.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    r == pid || (r == -1 && !Path::new(&format!("/proc/{pid}")).exists())
}

fn daemon(dir: &Dir, extra: &[&str]) -> std::process::Output {
    become_subreaper();
    Command::new(BIN).arg(&dir.mnt).arg("--pid-file").arg(&dir.pid_file).args(extra).output().unwrap()
}

/// The daemon's threads that do not block SIGHUP, SIGINT and SIGTERM. Only
/// the one that takes them with sigwait(2) may: the kernel hands a
/// process-directed signal to any thread that does not block it, and on any
/// other thread its default action would end the daemon without unmounting.
/// (A thread in sigwait shows them unblocked while it waits.)
fn threads_taking_shutdown_signals(pid: i32) -> Vec<String> {
    const SHUTDOWN: u64 = 1 << (libc::SIGHUP - 1) | 1 << (libc::SIGINT - 1) | 1 << (libc::SIGTERM - 1);
    let mut open = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path();
        // A thread that exited since the listing takes no signals.
        let Ok(status) = std::fs::read_to_string(path.join("status")) else { continue };
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).unwrap_or("").trim().to_owned();
        let blocked = u64::from_str_radix(&field("SigBlk:"), 16).unwrap_or(0);
        if blocked & SHUTDOWN != SHUTDOWN {
            open.push(field("Name:"));
        }
    }
    open
}

#[test]
fn background_mount_is_ready_when_the_command_returns_and_sigterm_unmounts() {
    if !require_fuse() {
        return;
    }
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let dir = Dir::new();
        // One shell line: the mount must be usable the moment the command returns.
        let script = format!(
            "{BIN} {mnt} --size 16M --pid-file {pid} && echo ready > {mnt}/x && cat {mnt}/x",
            mnt = dir.mnt.display(),
            pid = dir.pid_file.display()
        );
        become_subreaper();
        let out = Command::new("bash").arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ready\n");
        let pid = dir.pid();
        // The signals thread shows them unblocked only while it waits in
        // sigwait(2), which it may reach a moment after the mount is ready
        // (a signal sent before then stays pending: every thread blocks
        // it). No other thread may ever show them unblocked.
        assert!(
            wait_until(Duration::from_secs(2), || {
                let open = threads_taking_shutdown_signals(pid);
                assert!(open.iter().all(|name| name == "signals"), "threads a shutdown signal would kill: {open:?}");
                open == ["signals"]
            }),
            "the signals thread never waited for a signal"
        );
        let start = Instant::now();
        // SAFETY: sending a signal to our daemon.
        unsafe { libc::kill(pid, signal) };
        assert!(wait_until(Duration::from_secs(2), || !is_mounted(&dir.mnt)), "still mounted after signal {signal}");
        assert!(wait_until(Duration::from_secs(2), || exited(pid)), "daemon alive after signal {signal}");
        eprintln!("signal {signal}: unmounted and exited in {:?}", start.elapsed());
    }
}

#[test]
fn umount_ends_the_daemon() {
    if !require_fuse() {
        return;
    }
    for how in ["umount", "fusermount3 -u"] {
        let dir = Dir::new();
        let out = daemon(&dir, &["--size", "16M"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let pid = dir.pid();
        let status = Command::new("bash").arg("-c").arg(format!("{how} {}", dir.mnt.display())).status().unwrap();
        assert!(status.success(), "{how}");
        assert!(wait_until(Duration::from_secs(3), || exited(pid)), "daemon still running after {how}");
        assert!(!dir.pid_file.exists(), "a daemon that ended removes its pid file");
    }
}

#[test]
fn kill_9_leaves_no_hung_mount_with_fusermount3() {
    if !require_fuse() {
        return;
    }
    let dir = Dir::new();
    let out = daemon(&dir, &["--size", "16M"]);
    assert!(out.status.success());
    std::fs::write(dir.mnt.join("f"), b"x").unwrap();
    // SAFETY: killing our daemon.
    unsafe { libc::kill(dir.pid(), libc::SIGKILL) };
    assert!(wait_until(Duration::from_secs(3), || !is_mounted(&dir.mnt)), "the fusermount3 watcher must unmount");
    assert!(std::fs::read_dir(&dir.mnt).unwrap().next().is_none(), "the mount point is an empty directory again");
}

#[test]
fn mount_helper_and_fstab_style_options() {
    if !require_fuse() {
        return;
    }
    let dir = Dir::new();
    // mount(8) runs helpers with no PATH, so an fstab line needs scratchfs
    // installed (scripts/install.sh); here mount.fuse3's `program#source`
    // form names the binary under test by its path.
    become_subreaper();
    let out = Command::new("mount")
        .args(["-t", "fuse"])
        .arg(format!("{BIN}#tmpscratch"))
        .arg(&dir.mnt)
        .arg("-o")
        .arg(format!("nosuid,nodev,size=32M,nr_inodes=1k,mode=0750,pid_file={}", dir.pid_file.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "mount -t fuse: {}", String::from_utf8_lossy(&out.stderr));
    // (mount.fuse3 adds `dev,suid` to an fstab line that does not say
    // `nosuid,nodev`, as mount(8) does for tmpfs: the documented fstab line says it.)
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts.lines().find(|l| l.contains(dir.mnt.to_str().unwrap())).unwrap();
    assert!(line.starts_with("tmpscratch ") && line.contains(" fuse.scratchfs "), "{line}");
    assert!(line.contains("nosuid") && line.contains("nodev"), "safe defaults: {line}");
    let md = std::fs::metadata(&dir.mnt).unwrap();
    assert_eq!(md.permissions().mode() & 0o7777, 0o750);
    let df = Command::new("df").args(["-B1", "--output=size,itotal"]).arg(&dir.mnt).output().unwrap();
    let df = String::from_utf8_lossy(&df.stdout);
    assert_eq!(df.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>(), ["33554432", "1024"]);
    // `mount -o remount,ro DIR` with the line in fstab: mount(8) merges the
    // line's options (quota, node limit, mode) into the remount.
    let fstab = dir.mnt.parent().unwrap().join("fstab");
    std::fs::write(
        &fstab,
        format!("{BIN}#tmpscratch {} fuse nosuid,nodev,size=32M,nr_inodes=1k,mode=0750 0 0\n", dir.mnt.display()),
    )
    .unwrap();
    let remount =
        |how: &str| Command::new("mount").arg("-T").arg(&fstab).args(["-o", how]).arg(&dir.mnt).output().unwrap();
    let out = remount("remount,ro");
    assert!(out.status.success(), "mount -o remount,ro: {}", String::from_utf8_lossy(&out.stderr));
    let erofs = std::fs::write(dir.mnt.join("f"), b"x").unwrap_err();
    assert_eq!(erofs.raw_os_error(), Some(libc::EROFS));
    let out = remount("remount,rw");
    assert!(out.status.success(), "mount -o remount,rw: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(dir.mnt.join("f"), b"x").unwrap();
    let out = remount("remount,ro,size=64M");
    assert!(!out.status.success(), "a different quota on a remount is refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not this mount's quota"));
    std::fs::remove_file(dir.mnt.join("f")).unwrap();
    let pid = dir.pid();
    assert!(Command::new("umount").arg(&dir.mnt).status().unwrap().success());
    assert!(wait_until(Duration::from_secs(3), || exited(pid)));
}

#[test]
fn remount_switches_ro_and_rw_of_scratchfs_mounts_and_nothing_else() {
    let Some(m) = Mount::new(&["--size", "64M"]) else { return };
    let remount = |opts: &str, flags: &[&str]| {
        let out = Command::new(BIN).arg("none").arg(&m.path).args(["-o", opts]).args(flags).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    assert_eq!(remount("remount,ro", &[]), (Some(0), String::new()));
    let erofs = std::fs::write(m.join("x"), b"1").unwrap_err();
    assert_eq!(erofs.raw_os_error(), Some(libc::EROFS));
    // Without an fstab line mount(8) passes the kernel's options back.
    assert_eq!(remount("rw,nosuid,nodev,relatime,remount,user_id=0,group_id=0", &[]), (Some(0), String::new()));
    std::fs::write(m.join("x"), b"1").unwrap();
    assert_eq!(remount("ro,nosuid,nodev,relatime,remount,user_id=0,group_id=0", &[]), (Some(0), String::new()));
    let erofs = std::fs::write(m.join("x"), b"2").unwrap_err();
    assert_eq!(erofs.raw_os_error(), Some(libc::EROFS));
    // comment= only annotates (mount(8), fstab): not a setting.
    assert_eq!(remount("remount,rw,comment=x-gvfs-show", &[]), (Some(0), String::new()));
    std::fs::write(m.join("x"), b"1").unwrap();
    // Settings are fixed, whether given as -o options or as flags; the
    // quota may be repeated as it is (mount(8) passes an fstab line's).
    assert_eq!(remount("remount,rw,size=64M", &[]), (Some(0), String::new()));
    assert_eq!(remount("remount,rw", &["--size", "64M"]), (Some(0), String::new()));
    for (opts, flags) in [
        ("remount,ro,size=1G", &[][..]),
        ("remount,ro", &["--size", "1G"][..]),
        ("remount,ro", &["--max-nodes", "5"][..]),
        ("remount,ro,mode=0700", &[][..]),
        ("remount,ro", &["--storage", "random-access"][..]),
    ] {
        let (code, err) = remount(opts, flags);
        assert_eq!(code, Some(1), "{opts} {flags:?}");
        assert!(err.contains("can only switch between ro and rw"), "{opts} {flags:?}: {err}");
    }
    // The daemon keeps access times: a remount may repeat the mount's
    // atime option (as mount(8) does from fstab), not change it.
    assert_eq!(remount("remount,rw,relatime", &[]), (Some(0), String::new()));
    let (code, err) = remount("remount,ro,noatime", &[]);
    assert_eq!(code, Some(1));
    assert!(err.contains("is relatime: a remount cannot switch it to noatime"), "{err}");
    // So with ACL support: repeated as it is, yes; switched, no.
    assert_eq!(remount("remount,rw,noacl", &[]), (Some(0), String::new()));
    for (opts, flags) in [("remount,ro,acl", &[][..]), ("remount,ro", &["--acl"][..])] {
        let (code, err) = remount(opts, flags);
        assert_eq!(code, Some(1), "{opts} {flags:?}");
        assert!(err.contains("acl is not this mount's (noacl)"), "{opts} {flags:?}: {err}");
    }
    std::fs::write(m.join("y"), b"still read-write").unwrap();
    assert_eq!(m.stats().quota.max_bytes, 64 << 20);
    // Another filesystem is not ours to remount. The tmpfs lives in a
    // private mount namespace, so it goes away with the shell.
    let tmp = tempfile::tempdir().unwrap();
    let script = r#"mount -t tmpfs scratchfs-remount-probe "$1" || exit 9
"$2" none "$1" -o remount,ro; echo "rc=$?"; findmnt -no FSTYPE,OPTIONS "$1""#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(tmp.path())
        .arg(BIN)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("rc=1") && stdout.contains("tmpfs") && stdout.contains("rw,"), "{stdout}{stderr}");
    assert!(stderr.contains("is a tmpfs mount, not scratchfs"), "{stderr}");
}

#[test]
fn a_remount_keeps_noatime() {
    let Some(m) = Mount::new(&["--size", "16M", "-o", "noatime"]) else { return };
    let remount = |opts: &str| {
        let out = Command::new(BIN).arg("none").arg(&m.path).args(["-o", opts]).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let noatime = || {
        let target = std::ffi::CString::new(m.path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: statvfs fills a zeroed struct for a valid path.
        let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::statvfs(target.as_ptr(), &mut vfs) }, 0);
        vfs.f_flag & libc::ST_NOATIME != 0
    };
    assert!(noatime(), "the kernel mount is noatime");
    assert_eq!(remount("remount,ro,noatime"), (Some(0), String::new()));
    assert_eq!(remount("remount,rw"), (Some(0), String::new()));
    for opts in ["remount,rw,atime", "remount,rw,relatime", "remount,rw,strictatime"] {
        let (code, err) = remount(opts);
        assert_eq!(code, Some(1), "{opts}");
        assert!(err.contains("is noatime: a remount cannot switch it to atime"), "{opts}: {err}");
    }
    assert!(noatime(), "still noatime after the remounts");
    std::fs::write(m.join("x"), b"read-write again").unwrap();
}

#[test]
fn stats_ends_when_its_output_does() {
    let Some(m) = Mount::new(&["--size", "16M"]) else { return };
    let mnt = m.path.to_str().unwrap();
    // A reader that goes away ends --watch (it used to loop for ever:
    // timeout's 124).
    let watch = Command::new("bash")
        .args(["-c", r#"timeout 20 "$1" stats --watch "$2" | head -c 10 >/dev/null; echo "${PIPESTATUS[0]}""#])
        .args(["bash", BIN, mnt])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&watch.stdout).trim(), "0", "stats --watch | head: its exit status");
    // A write that fails is an error, not a success.
    let full =
        Command::new(BIN).args(["stats", mnt]).stdout(std::fs::File::create("/dev/full").unwrap()).output().unwrap();
    assert_eq!(full.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&full.stderr).contains("cannot write the report"));
}

fn error_of(args: &[&str]) -> String {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} should fail");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    err
}

#[test]
fn bad_invocations_fail_with_one_clear_line() {
    if !require_fuse() {
        return;
    }
    let dir = Dir::new();
    let file = dir.mnt.parent().unwrap().join("file");
    std::fs::write(&file, b"").unwrap();
    let mnt = dir.mnt.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["/nonexistent/scratch"], "does not exist: create it first"),
        (vec![file.to_str().unwrap()], "is not a directory"),
        (vec![mnt, "--size", "12Q"], "invalid size '12Q'"),
        (vec![mnt, "-o", "size=lots"], "invalid size 'lots'"),
        (vec![mnt, "-o", "frobnicate"], "unknown mount option 'frobnicate'"),
        (vec![mnt, "--size", "900T"], "larger than the memory available"),
        (vec![mnt, "--size", "1K"], "too small"),
        (vec![mnt, "--size", "18446744073709551616"], "too large"),
        // Nothing stays mounted when the pid file cannot be written (the
        // next case mounts here).
        (vec![mnt, "--size", "16M", "--pid-file", "/nonexistent-dir/x.pid"], "cannot write pid file"),
    ];
    for (args, expect) in cases {
        let err = error_of(&args);
        assert!(err.contains(expect), "{args:?}: {err}");
    }
    // A bad value is the same mistake as a flag or as an -o option: the
    // same status, mount(8)'s "incorrect invocation".
    for args in [&[mnt, "--size", "12Q"][..], &[mnt, "-o", "size=12Q"], &[mnt, "--frobnicate"]] {
        assert_eq!(Command::new(BIN).args(args).output().unwrap().status.code(), Some(1), "{args:?}");
    }
    // Too few descriptors for the worker threads: refused before mounting
    // (the command used to succeed, then the daemon ended).
    let out = Command::new("sh")
        .args(["-c", r#"ulimit -n 40 && exec "$0" "$1" --size 16M --threads 100 --busy-poll off"#, BIN, mnt])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("need about 164 open files"), "{err}");
    assert!(!is_mounted(&dir.mnt));
    // Too big for memory, but the guard only warns: it mounts.
    let out = daemon(&dir, &["--size", "900T", "--guard-action", "warn", "--memory-guard", "init"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("memory is short"));
    // Already mounted.
    let err = error_of(&[mnt]);
    assert!(err.contains("already a mount point"), "{err}");
    let pid = dir.pid();
    assert!(Command::new("umount").arg(&dir.mnt).status().unwrap().success());
    assert!(wait_until(Duration::from_secs(3), || exited(pid)));
    // Stats of a directory that is not a scratchfs mount.
    let err = error_of(&["stats", "/tmp"]);
    assert!(err.contains("not a scratchfs mount point"), "{err}");
}

#[test]
fn std_fs_round_trips_and_df() {
    let Some(m) = Mount::new(&["--size", "100M", "--max-nodes", "1000"]) else { return };
    let p = |s: &str| m.join(s);
    std::fs::create_dir_all(p("a/b/c")).unwrap();
    std::fs::write(p("a/b/c/file"), b"hello").unwrap();
    std::fs::rename(p("a/b/c/file"), p("a/moved")).unwrap();
    assert_eq!(std::fs::read(p("a/moved")).unwrap(), b"hello");
    std::os::unix::fs::symlink("moved", p("a/link")).unwrap();
    assert_eq!(std::fs::read(p("a/link")).unwrap(), b"hello");
    std::fs::hard_link(p("a/moved"), p("a/hard")).unwrap();
    assert_eq!(std::fs::metadata(p("a/moved")).unwrap().nlink(), 2);
    std::fs::set_permissions(p("a/moved"), std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(std::fs::metadata(p("a/hard")).unwrap().mode() & 0o7777, 0o640);
    assert!(std::fs::remove_dir(p("a")).is_err());
    std::fs::remove_dir_all(p("a")).unwrap();
    let df = m.sh_ok("df -B1 --output=size,itotal . | tail -1");
    assert_eq!(df.split_whitespace().collect::<Vec<_>>(), ["104857600", "1000"]);
    assert_eq!(m.stats().nodes.used, 1);
    m.unmount();
}

/// Kernel release as (major, minor), from /proc.
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit()).map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Directories open without a round trip: the kernel asks OPENDIR once, is
/// told ENOSYS, and from then on opens directories itself and never sends
/// RELEASEDIR (Linux 5.1+). Listings stay exact, handle or not, through
/// changes made between them.
#[test]
fn directories_open_without_requests_and_list_exactly() {
    let Some(m) = Mount::new(&[]) else { return };
    let dir = m.join("d");
    std::fs::create_dir(&dir).unwrap();
    let mut expect = std::collections::BTreeSet::new();
    const ROUNDS: u64 = 60;
    for round in 0..ROUNDS {
        let name = format!("f{round}");
        std::fs::write(dir.join(&name), round.to_string()).unwrap();
        expect.insert(name);
        if round % 3 == 2 {
            let gone = format!("f{}", round / 2);
            if expect.remove(&gone) {
                std::fs::remove_file(dir.join(&gone)).unwrap();
            }
        }
        let listed: std::collections::BTreeSet<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(listed, expect, "listing {round}");
    }
    let requests = m.stats().requests;
    let count = |op: &str| requests.get(op).copied().unwrap_or(0);
    if kernel_version() >= (5, 1) {
        assert!(count("opendir") <= 1, "{} OPENDIR requests for {ROUNDS} listings", count("opendir"));
        assert_eq!(count("releasedir"), 0, "RELEASEDIR after OPENDIR answered ENOSYS");
    } else {
        assert!(count("opendir") >= ROUNDS, "an older kernel opens each directory through the daemon");
    }
    m.unmount();
}
