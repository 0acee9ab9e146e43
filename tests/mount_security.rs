//! Security defaults of a mounted scratchfs: other users are kept out
//! without `--allow-other`; with it the kernel enforces modes and ownership
//! (`default_permissions`); without it, on a mount owned by root, the daemon
//! enforces them for root's tasks that act as another user (`setfsuid(2)`)
//! or without their capabilities; mounts are `nosuid,nodev` so set-uid binaries
//! and device nodes copied in gain nothing (each checked against a mount
//! that asks for `suid,dev`, so the checks would notice); and the daemon
//! holds no host path but its own descriptors, with `/` as its directory.

mod common;
mod reliability;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};

use common::creds::{CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, as_fs_user, without_caps};
use common::mount::{BIN, Mount, become_subreaper, require_fuse};
use reliability::{Background, as_nobody, text};

const NOBODY: u32 = 65534;

/// Lets other users reach the mount point (the test's temporary directory is 0700).
fn open_parent(m: &Mount) {
    std::fs::set_permissions(m.path.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Runs a shell command as `nobody` with the mount as the working directory's parent.
fn nobody_sh(script: &str) -> Output {
    as_nobody("sh").arg("-c").arg(script).output().unwrap()
}

fn denied(out: &Output) -> bool {
    !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied")
}

#[test]
fn other_users_cannot_enter_without_allow_other() {
    let Some(m) = Mount::new(&["--size", "16M"]) else { return };
    open_parent(&m);
    std::fs::write(m.join("f"), b"root's file").unwrap();
    std::fs::set_permissions(m.join("f"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let mnt = m.path.display();
    // The directory above is open to nobody: only the mount refuses.
    let control = nobody_sh(&format!("ls {}", m.path.parent().unwrap().display()));
    assert!(control.status.success(), "{}", text(&control));
    for cmd in [format!("stat {mnt}"), format!("ls {mnt}"), format!("cat {mnt}/f"), format!("touch {mnt}/new")] {
        let out = nobody_sh(&cmd);
        assert!(denied(&out), "`{cmd}` as nobody: {}", text(&out));
    }
    assert!(!m.join("new").exists());
    assert_eq!(std::fs::read(m.join("f")).unwrap(), b"root's file", "root is still served");
    assert!(m.unmount().success());
}

#[test]
fn with_allow_other_the_kernel_enforces_modes_and_ownership() {
    let Some(m) = Mount::new(&["--size", "16M", "--allow-other"]) else { return };
    open_parent(&m);
    let mode = |p: &str, bits: u32| std::fs::set_permissions(m.join(p), std::fs::Permissions::from_mode(bits)).unwrap();
    std::fs::create_dir(m.join("d755")).unwrap();
    mode("d755", 0o755);
    std::fs::create_dir(m.join("d1777")).unwrap();
    mode("d1777", 0o1777);
    std::fs::write(m.join("d1777/roots"), b"root's, in a sticky dir").unwrap();
    std::fs::write(m.join("f600"), b"secret").unwrap();
    mode("f600", 0o600);
    std::fs::write(m.join("f644"), b"public").unwrap();
    mode("f644", 0o644);
    let mnt = m.path.display();
    let run = |cmd: String| (nobody_sh(&cmd), cmd);
    // Allowed.
    for (out, cmd) in [
        run(format!("ls {mnt} >/dev/null")),
        run(format!("cat {mnt}/f644")),
        run(format!("echo mine > {mnt}/d1777/mine")),
        run(format!("cat {mnt}/d1777/mine")),
    ] {
        assert!(out.status.success(), "`{cmd}` as nobody should work: {}", text(&out));
    }
    assert_eq!(std::fs::metadata(m.join("d1777/mine")).unwrap().uid(), NOBODY, "created with the caller's uid");
    // Refused by modes and ownership.
    for (out, cmd) in [
        run(format!("touch {mnt}/d755/x")),
        run(format!("mkdir {mnt}/d755/sub")),
        run(format!("cat {mnt}/f600")),
        run(format!("echo x >> {mnt}/f644")),
        run(format!("truncate -s 0 {mnt}/f644")),
        run(format!("touch {mnt}/f644")),
    ] {
        assert!(denied(&out), "`{cmd}` as nobody must be refused: {}", text(&out));
    }
    for (out, cmd) in [
        run(format!("chmod 666 {mnt}/f644")),
        run(format!("chown nobody {mnt}/f644")),
        run(format!("rm -f {mnt}/d1777/roots")),
    ] {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains("Operation not permitted"), "`{cmd}` as nobody: {}", text(&out));
    }
    assert_eq!(std::fs::read(m.join("f644")).unwrap(), b"public");
    assert_eq!(std::fs::metadata(m.join("f644")).unwrap().mode() & 0o7777, 0o644);
    assert!(m.join("d1777/roots").exists() && !m.join("d755/x").exists());
    assert!(m.unmount().success());
}

/// The mount's options as /proc/self/mounts shows them.
fn mount_options(path: &Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let line = mounts.lines().find(|l| l.split(' ').nth(1) == Some(path.to_str().unwrap())).expect("mounted");
    line.split(' ').nth(3).unwrap().split(',').map(str::to_owned).collect()
}

/// Copies a set-uid-root `id` and a `/dev/null` device node in, runs `id -u`
/// as nobody and writes to the node; returns (`id -u` output, device write worked).
fn try_privileges(m: &Mount) -> (String, bool) {
    open_parent(m);
    // Copied by `cp`, not by this process: a descriptor open for writing here
    // would be inherited by any child another test thread forks meanwhile,
    // and exec would fail with ETXTBSY until that child execs.
    m.sh_ok("cp /usr/bin/id id && chmod 4755 id");
    assert_eq!(std::fs::metadata(m.join("id")).unwrap().mode() & 0o7777, 0o4755);
    let out = as_nobody(m.join("id").to_str().unwrap()).arg("-u").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let euid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    m.sh_ok("mknod null c 1 3 && chmod 666 null");
    let dev = std::fs::OpenOptions::new().write(true).open(m.join("null"));
    if let Err(e) = &dev {
        assert_eq!(e.raw_os_error(), Some(libc::EACCES), "{e}");
    }
    (euid, dev.is_ok())
}

#[test]
fn mounts_are_nosuid_and_nodev_by_default_so_set_uid_and_devices_gain_nothing() {
    let Some(m) = Mount::new(&["--size", "16M", "--allow-other"]) else { return };
    let opts = mount_options(&m.path);
    assert!(opts.contains(&"nosuid".to_owned()) && opts.contains(&"nodev".to_owned()), "{opts:?}");
    let (euid, dev) = try_privileges(&m);
    assert_eq!(euid, NOBODY.to_string(), "a set-uid-root binary on the mount runs as its caller");
    assert!(!dev, "a device node on the mount cannot be opened");
    assert!(m.unmount().success());
    // The same steps on a mount that asks for suid,dev do gain: the checks above can fail.
    let Some(m) = Mount::new(&["--size", "16M", "--allow-other", "-o", "suid,dev"]) else { return };
    let opts = mount_options(&m.path);
    assert!(!opts.contains(&"nosuid".to_owned()), "{opts:?}");
    let (euid, dev) = try_privileges(&m);
    assert_eq!((euid.as_str(), dev), ("0", true), "control mount with suid,dev");
    assert!(m.unmount().success());
}

/// What the daemon's descriptors point at, its working and root directories.
fn descriptors(pid: u32) -> (Vec<String>, String, String) {
    let mut fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    fds.sort();
    let link = |what: &str| std::fs::read_link(format!("/proc/{pid}/{what}")).unwrap().to_string_lossy().into_owned();
    (fds, link("cwd"), link("root"))
}

/// Starts a background daemon on `bg` whose only inherited descriptors are
/// stdio and, if given, `extra` (left open across exec).
fn start_clean(bg: &Background, extra: Option<i32>) -> Output {
    become_subreaper();
    let mut cmd = Command::new(BIN);
    cmd.arg(&bg.mnt).args(["--size", "16M", "--guard-interval", "10ms", "--pid-file"]);
    cmd.arg(&bg.pid_file).arg("--log-file").arg(&bg.log);
    // SAFETY: the closure calls only async-signal-safe functions (close_range, fcntl).
    unsafe {
        cmd.pre_exec(move || {
            // Descriptors the test runner inherited are not the daemon's doing.
            match extra {
                Some(fd) => {
                    libc::close_range(3, (fd - 1) as u32, 0);
                    libc::close_range((fd + 1) as u32, u32::MAX, 0);
                    libc::fcntl(fd, libc::F_SETFD, 0);
                }
                None => {
                    libc::close_range(3, u32::MAX, 0);
                }
            }
            Ok(())
        });
    }
    cmd.output().unwrap()
}

/// Some work that takes memory readings, opens and closes handles, lists directories.
fn workload(mnt: &Path) {
    for i in 0..50 {
        std::fs::write(mnt.join(format!("f{i}")), vec![b'x'; 100_000]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let _f = std::fs::File::open(mnt.join("f0")).unwrap();
    assert_eq!(std::fs::read_dir(mnt).unwrap().count(), 50);
    for i in 0..50 {
        std::fs::remove_file(mnt.join(format!("f{i}"))).unwrap();
    }
}

#[test]
fn the_daemon_holds_no_host_path_and_runs_in_root() {
    if !require_fuse() {
        return;
    }
    let bg = Background::new();
    let out = start_clean(&bg, None);
    assert!(out.status.success(), "{}", text(&out));
    let pid = bg.pid().unwrap();
    workload(&bg.mnt);
    let (fds, cwd, root) = descriptors(pid);
    eprintln!("daemon {pid}: cwd {cwd}, root {root}, descriptors {fds:?}");
    assert_eq!((cwd.as_str(), root.as_str()), ("/", "/"), "the daemon does not keep the caller's directory busy");
    let log = bg.log.to_string_lossy().into_owned();
    let own_proc = format!("/proc/{pid}/");
    let stray: Vec<&String> = fds
        .iter()
        .filter(|f| {
            !(f.as_str() == "/dev/fuse"
                || f.as_str() == "/dev/null"
                // The busy poller's CPU latency request (root only; it
                // keeps nothing busy and dies with the descriptor).
                || f.as_str() == "/dev/cpu_dma_latency"
                || **f == log
                || f.starts_with("socket:[")
                || f.starts_with(&own_proc))
        })
        .collect();
    assert!(
        stray.is_empty(),
        "descriptors beyond /dev/fuse, /dev/null, the CPU latency request, the log and sockets: {stray:?}"
    );
    assert!(fds.iter().any(|f| f == "/dev/fuse") && fds.contains(&log));
    assert!(bg.stop());
}

#[test]
fn the_daemon_does_not_keep_descriptors_it_inherited() {
    if !require_fuse() {
        return;
    }
    let bg = Background::new();
    // A descriptor the caller happened to leave open (no close-on-exec) on a host directory.
    let host = bg.dir().join("host-dir");
    std::fs::create_dir(&host).unwrap();
    let dir = std::fs::File::open(&host).unwrap();
    // SAFETY: dup of an open descriptor; the copy has no close-on-exec flag.
    let inherited = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(&dir)) };
    assert!(inherited >= 0);
    let out = start_clean(&bg, Some(inherited));
    // SAFETY: closing our duplicate.
    unsafe { libc::close(inherited) };
    assert!(out.status.success(), "{}", text(&out));
    let (fds, _, _) = descriptors(bg.pid().unwrap());
    let host = host.to_string_lossy().into_owned();
    eprintln!("daemon descriptors with an inherited one on {host}: {fds:?}");
    assert!(!fds.contains(&host), "the daemon keeps the caller's descriptor on {host} open for its whole life");
    assert!(bg.stop());
}

/// Runs `f` on a thread acting as nobody for the filesystem.
fn as_fs_nobody<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    as_fs_user(NOBODY, NOBODY, &[], f)
}

/// Runs `f` on a thread with root's ids but without CAP_DAC_OVERRIDE and
/// CAP_DAC_READ_SEARCH.
fn as_root_without_dac_override<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    without_caps(&[CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH], f)
}

fn errno_of<T>(r: std::io::Result<T>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn without_allow_other_the_daemon_checks_permissions_for_roots_tasks() {
    // A mount only root can enter is mounted without default_permissions
    // (docs/design.md, "Who checks permissions"): the daemon decides, by
    // the ids and capabilities of the task behind each request.
    let Some(m) = Mount::new(&["--size", "16M"]) else { return };
    assert!(!mount_options(&m.path).iter().any(|o| o == "default_permissions"), "{:?}", mount_options(&m.path));
    permission_probe(&m);
    assert!(m.unmount().success());
    // Asked for, the kernel checks instead, with the same outcomes (before,
    // fuser's own filter refused every request of such a task).
    let Some(m) = Mount::new(&["--size", "16M", "-o", "default_permissions"]) else { return };
    assert!(mount_options(&m.path).iter().any(|o| o == "default_permissions"), "{:?}", mount_options(&m.path));
    permission_probe(&m);
    assert!(m.unmount().success());
}

/// Refusals and grants for a `setfsuid(2)` task and for root without its
/// DAC capabilities, each with the errno tmpfs gives.
fn permission_probe(m: &Mount) {
    // Linux's protected_hardlinks rule is applied only where the sysctl is on (Debian's default).
    assert_eq!(std::fs::read_to_string("/proc/sys/fs/protected_hardlinks").unwrap().trim(), "1");
    let mode = |p: &str, bits: u32| std::fs::set_permissions(m.join(p), std::fs::Permissions::from_mode(bits)).unwrap();
    m.sh_ok(
        "mkdir d755 d711 d700 d1777 d777 d777/sub && echo secret > f600 && echo public > f644 && echo open > f666 \
             && echo inner > d700/f && echo listed > d711/f && echo roots > d1777/roots && : > f000",
    );
    for (p, bits) in [
        ("d755", 0o755),
        ("d711", 0o711),
        ("d700", 0o700),
        ("d1777", 0o1777),
        ("d777", 0o777),
        ("d777/sub", 0o755),
        ("f600", 0o600),
        ("f644", 0o644),
        ("f666", 0o666),
        ("f000", 0o000),
    ] {
        mode(p, bits);
    }
    let p = |rel: &str| m.join(rel);
    let when = filetime_explicit();
    let got = as_fs_nobody(|| {
        use std::fs;
        let write = |rel: &str| fs::OpenOptions::new().write(true).open(p(rel));
        let eacces = Some(libc::EACCES);
        let eperm = Some(libc::EPERM);
        // Refused: each would succeed for root (checked below).
        let refused = [
            ("create in d755", errno_of(fs::write(p("d755/x"), b"x")), eacces),
            ("mkdir in d755", errno_of(fs::create_dir(p("d755/sub"))), eacces),
            ("read f600", errno_of(fs::read(p("f600"))), eacces),
            ("write f644", errno_of(write("f644")), eacces),
            ("truncate f644", errno_of(truncate(&p("f644"))), eacces),
            ("touch f644", errno_of(touch(&p("f644"), None)), eacces),
            ("set times of f666", errno_of(touch(&p("f666"), Some(when))), eperm),
            ("chmod f644", errno_of(fs::set_permissions(p("f644"), fs::Permissions::from_mode(0o666))), eperm),
            ("chown f644", errno_of(std::os::unix::fs::chown(p("f644"), Some(NOBODY), None)), eperm),
            ("unlink in d711", errno_of(fs::remove_file(p("d711/f"))), eacces),
            ("move root's directory to another", errno_of(fs::rename(p("d777/sub"), p("d1777/sub"))), eacces),
            ("rename out of d711", errno_of(fs::rename(p("d711/f"), p("d1777/moved"))), eacces),
            ("list d711", errno_of(fs::read_dir(p("d711")).and_then(|mut d| d.next().transpose())), eacces),
            ("unlink root's file in d1777", errno_of(fs::remove_file(p("d1777/roots"))), eperm),
            ("set user xattr of f644", errno_of(setxattr(&p("f644"))), eacces),
            ("set user xattr of root's sticky d1777", errno_of(setxattr(&p("d1777"))), eperm),
            ("hard link to root's f600", errno_of(fs::hard_link(p("f600"), p("d1777/l600"))), eperm),
            ("access W_OK to f644", errno_of(eaccess(&p("f644"), libc::W_OK)), eacces),
        ];
        // Allowed.
        let allowed = [
            ("read f644", fs::read(p("f644")).map(|_| ())),
            ("read through d711", fs::read(p("d711/f")).map(|_| ())),
            ("write f666", write("f666").map(|_| ())),
            ("touch f666", touch(&p("f666"), None)),
            ("create in d1777", fs::write(p("d1777/mine"), b"mine")),
            ("chmod own file", fs::set_permissions(p("d1777/mine"), fs::Permissions::from_mode(0o600))),
            ("set user xattr of own file", setxattr(&p("d1777/mine"))),
            ("hard link to root's f666", fs::hard_link(p("f666"), p("d1777/l666"))),
            ("access R_OK to f644", eaccess(&p("f644"), libc::R_OK)),
        ];
        (refused, allowed.map(|(what, r)| (what, r.err().map(|e| e.to_string()))))
    });
    let (refused, allowed) = got;
    for (what, got, want) in refused {
        assert_eq!(got, want, "{what} as nobody: errno {got:?}, want {want:?}");
    }
    for (what, err) in allowed {
        assert_eq!(err, None, "{what} as nobody");
    }
    assert_eq!(std::fs::metadata(p("d1777/mine")).unwrap().uid(), NOBODY, "created with the caller's fsuid");
    // A lookup through a directory nobody may not search (with the kernel's
    // cached entries dropped first, so the walk reaches the daemon).
    std::fs::write("/proc/sys/vm/drop_caches", b"2").unwrap();
    let walk = as_fs_nobody(|| errno_of(std::fs::metadata(p("d700/f"))));
    assert_eq!(walk, Some(libc::EACCES), "path walk through d700 as nobody");
    // Root without CAP_DAC_OVERRIDE/CAP_DAC_READ_SEARCH is held to the mode bits too.
    let bare =
        as_root_without_dac_override(|| (errno_of(std::fs::read(p("f000"))), errno_of(std::fs::read(p("f600")))));
    assert_eq!(bare, (Some(libc::EACCES), None), "root without DAC override: f000 refused, own f600 allowed");
    // Root with its capabilities does all of it.
    m.sh_ok(
        "cat f000 f600 d700/f >/dev/null && echo x >> f644 && touch d755/x && mv d711/f d1777/moved \
             && rm d1777/roots && chmod 600 f644 && ls d711 >/dev/null",
    );
    assert_eq!(std::fs::read(p("f644")).unwrap(), b"public\nx\n");
}

fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str())).unwrap()
}

fn check(rc: i32) -> std::io::Result<()> {
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn truncate(p: &Path) -> std::io::Result<()> {
    // SAFETY: a valid C path.
    check(unsafe { libc::truncate(cpath(p).as_ptr(), 0) })
}

fn filetime_explicit() -> libc::timespec {
    libc::timespec { tv_sec: 1_000_000_000, tv_nsec: 0 }
}

/// `utimensat(2)`: both times "now" without `when`, else both `when`.
fn touch(p: &Path, when: Option<libc::timespec>) -> std::io::Result<()> {
    let now = libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW };
    let t = [when.unwrap_or(now); 2];
    // SAFETY: a valid C path and two timespecs.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, cpath(p).as_ptr(), t.as_ptr(), 0) })
}

fn setxattr(p: &Path) -> std::io::Result<()> {
    // SAFETY: a valid C path, name and value.
    check(unsafe { libc::setxattr(cpath(p).as_ptr(), c"user.test".as_ptr(), b"v".as_ptr().cast(), 1, 0) })
}

/// `faccessat(AT_EACCESS)`: checked with the filesystem ids, as the kernel
/// forwards them.
fn eaccess(p: &Path, mode: i32) -> std::io::Result<()> {
    // SAFETY: a valid C path.
    check(unsafe { libc::faccessat(libc::AT_FDCWD, cpath(p).as_ptr(), mode, libc::AT_EACCESS) })
}

#[test]
fn stats_show_file_paths_only_to_root_and_the_owner_and_print_names_escaped() {
    let Some(m) = Mount::new(&["--size", "16M", "--allow-other"]) else { return };
    open_parent(&m);
    m.sh_ok(
        r#"mkdir secret && chmod 700 secret && head -c 1048576 /dev/zero > secret/payroll \
           && printf x > "$(printf 'esc\033[31mred')""#,
    );
    let mine = m.stats();
    assert!(mine.largest_files.iter().any(|f| f.path == "/secret/payroll"), "{:?}", mine.largest_files);
    // Another user cannot list secret/, nor learn its names from the stats;
    // the figures (as `df` shows them) stay.
    // (Read in-process as fs uid nobody: the identity the daemon goes by.)
    let theirs = as_fs_nobody(|| common::mount::stats_at(&m.path));
    assert!(theirs.largest_files.is_empty(), "shown to nobody: {:?}", theirs.largest_files);
    assert!(theirs.quota.used_bytes >= 1 << 20 && theirs.nodes.used == mine.nodes.used, "{theirs:?}");
    // Printed for people, a name's escape sequence shows escaped.
    let out = Command::new(BIN).arg("stats").arg(&m.path).output().unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(!shown.contains('\x1b') && shown.contains(r"/esc\u{1b}[31mred"), "{shown}");
    assert!(m.unmount().success());
}
