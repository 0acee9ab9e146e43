//! Real tools on a real mount: `cp -a` and `tar` of real trees compared
//! byte for byte with their source, git, compilers and linkers (their
//! output compared with the same build elsewhere), sqlite3 (rollback
//! journal and WAL),
//! the quota and node limit as programs see them, and stats.

mod common;

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::Duration;

use common::mount::{Mount, wait_until};
use common::tree::{assert_same, snapshot};

/// A tree with the awkward cases: sizes around page and block boundaries,
/// a sparse file, modes with special bits, symlinks (relative, absolute,
/// dangling), hard links, a FIFO, non-UTF-8 and 255-byte names, and times
/// before 1970 with a fractional second.
fn build_tree(root: &Path) {
    let d = |p: &str| {
        let path = root.join(p);
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    let sub = d("sub/deeper/deepest");
    d("empty");
    for (i, size) in
        [0usize, 1, 4095, 4096, 4097, 65_535, 65_536, 65_537, 1 << 20, (3 << 20) + 17].into_iter().enumerate()
    {
        let data: Vec<u8> = (0..size).map(|j| (j * 7 + i * 13) as u8).collect();
        std::fs::write(root.join(format!("size_{size}")), &data).unwrap();
        std::fs::write(sub.join(format!("f{i}")), &data[..size.min(1000)]).unwrap();
    }
    std::fs::write(root.join("sub/script.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(root.join("sub/script.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(root.join("size_1"), std::fs::Permissions::from_mode(0o4750)).unwrap();
    std::fs::set_permissions(root.join("size_0"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(d("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(d("shared"), std::fs::Permissions::from_mode(0o2775)).unwrap();
    symlink("size_4096", root.join("rel_link")).unwrap();
    symlink("/etc/hostname", root.join("abs_link")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    std::fs::hard_link(root.join("size_65537"), root.join("sub/hard_link")).unwrap();
    let weird = std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9 and spaces");
    std::fs::write(root.join(weird), b"non-UTF-8 name").unwrap();
    std::fs::write(root.join("n".repeat(255)), b"long name").unwrap();
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(10 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&sparse, b"middle", 5 << 20).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(root.join("fifo")).status().unwrap().success());
    // Times before 1970 with a fraction, and one in the far future.
    let touch = |when: &str, p: &str| {
        assert!(
            std::process::Command::new("touch").args(["-h", "-d", when]).arg(root.join(p)).status().unwrap().success()
        );
    };
    touch("1960-01-01 00:00:00.5", "size_4097");
    touch("1969-12-31 23:59:59.25", "sub/deeper/deepest/f3");
    touch("2200-01-01 12:00:00.123456789", "size_0");
}

use std::os::unix::ffi::OsStrExt;

#[test]
fn cp_a_and_tar_copy_trees_byte_for_byte() {
    let Some(m) = Mount::new(&["--size", "1G"]) else { return };
    let src = tempfile::tempdir().unwrap();
    build_tree(src.path());
    let want = snapshot(src.path());

    // cp -a keeps everything, directory times included.
    let out = std::process::Command::new("cp").arg("-a").arg(src.path()).arg(m.join("cp")).output().unwrap();
    assert!(out.status.success(), "cp -a: {}", String::from_utf8_lossy(&out.stderr));
    assert_same(&want, &snapshot(&m.join("cp")), true);

    // tar in POSIX format keeps sub-second times.
    let archive = src.path().parent().unwrap().join(format!("tree-{}.tar", std::process::id()));
    let tar = |args: &[&str], dir: &Path| {
        let out = std::process::Command::new("tar").args(args).current_dir(dir).output().unwrap();
        assert!(out.status.success(), "tar {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    tar(&["--format=posix", "-cf", archive.to_str().unwrap(), "."], src.path());
    std::fs::create_dir(m.join("tar")).unwrap();
    tar(&["-xpf", archive.to_str().unwrap()], &m.join("tar"));
    assert_same(&want, &snapshot(&m.join("tar")), true);
    // And back out of the mount: the archive made from the mount extracts to the same tree.
    let back = tempfile::tempdir().unwrap();
    let archive2 = back.path().join("from-mount.tar");
    tar(&["--format=posix", "-cf", archive2.to_str().unwrap(), "."], &m.join("tar"));
    std::fs::create_dir(back.path().join("x")).unwrap();
    tar(&["-xpf", archive2.to_str().unwrap()], &back.path().join("x"));
    assert_same(&want, &snapshot(&back.path().join("x")), true);
    std::fs::remove_file(archive).unwrap();
    m.unmount();
}

#[test]
fn cp_a_of_usr_include_is_identical() {
    let Some(m) = Mount::new(&["--size", "2G"]) else { return };
    let src = Path::new("/usr/include");
    let out = std::process::Command::new("cp").arg("-a").arg(src).arg(m.join("include")).output().unwrap();
    assert!(out.status.success(), "cp -a: {}", String::from_utf8_lossy(&out.stderr));
    assert_same(&snapshot(src), &snapshot(&m.join("include")), true);
    // rm -rf gives every byte back.
    let used_full = m.stats().quota.used_bytes;
    m.sh_ok("rm -rf include");
    let used_empty = m.stats().quota.used_bytes;
    assert!(used_full > 50 << 20 && used_empty < 4096, "used {used_full} then {used_empty}");
    m.unmount();
}

#[test]
fn git_works_inside_the_mount() {
    let Some(m) = Mount::new(&["--size", "512M"]) else { return };
    let src = tempfile::tempdir().unwrap();
    build_tree(src.path());
    m.sh_ok(&format!("cp -a {}/. repo && rm repo/fifo", src.path().display()));
    let git = "git -c user.name=t -c user.email=t@example.invalid -c init.defaultBranch=main";
    m.sh_ok(&format!("cd repo && {git} init -q && {git} add -A && {git} commit -qm first"));
    m.sh_ok(&format!("cd repo && echo change >> size_4096 && {git} commit -qam second && git mv size_1 moved"));
    m.sh_ok(&format!("cd repo && {git} commit -qm third && git gc -q && git fsck --strict"));
    let log = m.sh_ok("cd repo && git log --oneline | wc -l");
    assert_eq!(log.trim(), "3");
    let status = m.sh_ok("cd repo && git status --porcelain");
    assert_eq!(status, "", "clean work tree");
    let show = m.sh_ok("cd repo && git show HEAD~1:size_4096 | tail -c 7");
    assert_eq!(show, "change\n");
    m.unmount();
}

/// A C program of three files with a Makefile, a static library (`ar`
/// rewrites its archive in place) and a Rust program.
const BUILD_SCRIPT: &str = r#"set -e
mkdir -p proj && cd proj
cat > util.h <<'C'
int scale(int x);
int offset(int x);
C
cat > scale.c <<'C'
#include "util.h"
int scale(int x) { return x * 3; }
C
cat > offset.c <<'C'
#include "util.h"
int offset(int x) { return x + 7; }
C
cat > main.c <<'C'
#include <stdio.h>
#include "util.h"
int main(void) { long s = 0; for (int i = 0; i < 1000; i++) s += offset(scale(i)); printf("%ld\n", s); return 0; }
C
cat > Makefile <<'M'
CFLAGS = -O2
all: prog prog-gold
libutil.a: scale.o offset.o
	ar rcsD $@ $^
prog: main.o libutil.a
	$(CC) -o $@ main.o -L. -lutil
prog-gold: main.o libutil.a
	$(CC) -fuse-ld=gold -o $@ main.o -L. -lutil
M
make -s
# ar replaces a member of the existing archive in place.
cp scale.o scale-copy.o && ar rsD libutil.a scale-copy.o
cat > hello.rs <<'R'
fn main() {
    let v: Vec<u64> = (1..=100).map(|x| x * x).collect();
    println!("{}", v.iter().sum::<u64>());
}
R
"$RUSTC" -O hello.rs -o hello
"#;

/// Compilers and linkers (GNU ld writes its output, gold maps it shared
/// and writes through the mapping) produce on scratchfs exactly the bytes
/// they produce elsewhere, and the programs run from the mount.
#[test]
fn programs_compile_link_and_run_inside_the_mount() {
    let Some(m) = Mount::new(&["--size", "512M"]) else { return };
    // rustc sits beside the cargo running the tests.
    let rustc = std::env::var_os("CARGO")
        .map(|c| Path::new(&c).with_file_name("rustc"))
        .filter(|r| r.exists())
        .unwrap_or_else(|| "rustc".into());
    let reference = tempfile::tempdir().unwrap();
    for dir in [reference.path(), m.path.as_path()] {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(BUILD_SCRIPT)
            .current_dir(dir)
            .env("RUSTC", &rustc)
            .output()
            .unwrap();
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "build in {}: {log}", dir.display());
    }
    for f in ["scale.o", "offset.o", "main.o", "libutil.a", "prog", "prog-gold", "hello"] {
        let (want, got) = (reference.path().join("proj").join(f), m.join("proj").join(f));
        assert!(
            std::fs::read(&want).unwrap() == std::fs::read(&got).unwrap(),
            "{f} differs from the one built in {}",
            want.display()
        );
    }
    assert_eq!(m.sh_ok("proj/prog && proj/prog-gold && proj/hello"), "1505500\n1505500\n338350\n");
    assert_eq!(m.sh_ok("ar t proj/libutil.a"), "scale.o\noffset.o\nscale-copy.o\n");
    m.unmount();
}

#[test]
fn sqlite_big_and_small_transactions_in_both_journal_modes() {
    let Some(m) = Mount::new(&["--size", "512M"]) else { return };
    for mode in ["delete", "wal"] {
        let db = format!("{mode}.db");
        let mut script = format!(
            "PRAGMA journal_mode={mode};\nCREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT, n INTEGER);\n\
             BEGIN;\nWITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 200000)\n\
             INSERT INTO t(v, n) SELECT printf('row %d %s', x, hex(randomblob(16))), x FROM c;\nCOMMIT;\n"
        );
        for i in 0..2000 {
            script.push_str(&format!("INSERT INTO t(v, n) VALUES ('single {i}', {i});\n"));
        }
        script.push_str("UPDATE t SET n = n + 1 WHERE id % 97 = 0;\nDELETE FROM t WHERE id % 1000 = 0;\n");
        std::fs::write(m.join(format!("{mode}.sql")), script).unwrap();
        m.sh_ok(&format!("sqlite3 {db} < {mode}.sql"));
        let check = m.sh_ok(&format!(
            "sqlite3 {db} 'PRAGMA integrity_check; SELECT count(*), sum(n) FROM t; PRAGMA journal_mode;'"
        ));
        let lines: Vec<&str> = check.lines().collect();
        assert_eq!(lines[0], "ok", "{mode}: {check}");
        // 202,000 rows less the 202 deleted (every 1000th id).
        assert!(lines[1].starts_with("201798|"), "{mode}: {check}");
        assert_eq!(lines[2], mode, "{mode}: journal mode");
    }
    assert!(m.stats().promotions.done > 0, "sqlite rewrites pages in place: files were promoted");
    m.unmount();
}

#[test]
fn quota_refuses_with_enospc_and_keeps_what_was_written() {
    let Some(m) = Mount::new(&["--size", "64M"]) else { return };
    m.sh_ok("head -c 10485760 /dev/urandom > keep && sha256sum keep > keep.sum");
    let out = m.sh("dd if=/dev/zero of=big bs=1M count=100 2>&1");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("No space left on device"), "{text}");
    let big = std::fs::metadata(m.join("big")).unwrap().len();
    assert!(big <= 64 << 20 && big > 40 << 20, "big is {big} bytes");
    m.sh_ok("sha256sum -c --quiet keep.sum");
    let df = m.sh_ok("df -B1 --output=size,used,avail . | tail -1");
    let v: Vec<u64> = df.split_whitespace().map(|x| x.parse().unwrap()).collect();
    assert_eq!(v[0], 64 << 20, "df size");
    assert!(v[1] > 63 << 20 && v[2] < 1 << 20, "df agrees the quota is full: {df}");
    let stats = m.stats();
    assert!(stats.refusals.quota >= 1);
    assert!(stats.quota.used_bytes <= stats.quota.max_bytes);
    // The space comes back when the daemon handles the kernel's FORGET for
    // `big`. The kernel queues it before `rm` returns but may hand up to 8
    // later requests out first (its forget batching); the daemon holds
    // `statfs` and refused writes back until then, so df right after rm
    // shows the space, and the next write fits.
    let used = m.sh_ok("rm big && df -B1 --output=used . | tail -1").trim().parse::<u64>().unwrap();
    assert!(used < 11 << 20, "deleting frees the space: {used}");
    m.sh_ok("head -c 40000000 /dev/zero > again");
    assert!(m.log_text().contains("refused write on inode"), "the refusal is logged with its cause");
    m.unmount();
}

#[test]
fn a_write_retried_against_a_full_quota_is_counted_every_time_and_logged_a_burst_a_second() {
    let Some(m) = Mount::new(&["--size", "8M"]) else { return };
    // Filled until a write was refused.
    assert!(!m.sh("head -c 8M /dev/zero > fill").status.success());
    let before = m.stats().refusals.quota;
    let f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(m.join("retry")).unwrap();
    // One request (the mount's largest), larger than what is left.
    let chunk = vec![7u8; 1 << 20];
    let write = || {
        let e = std::os::unix::fs::FileExt::write_at(&f, &chunk, 0).expect_err("1 MiB cannot fit in what is left");
        assert_eq!(e.raw_os_error(), Some(libc::ENOSPC));
    };
    let started = std::time::Instant::now();
    let tries = 5_000;
    for _ in 0..tries {
        write();
    }
    let seconds = started.elapsed().as_secs() + 1;
    assert_eq!(m.stats().refusals.quota - before, tries, "every refusal is counted");
    // One more refusal after a quiet second tells how many were held back.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write();
    drop(f);
    let log = m.log_text();
    let refusals: Vec<&str> = log.lines().filter(|l| l.contains(" refused ")).collect();
    assert!(refusals.iter().all(|l| l.contains("refused write on inode")), "only writes were refused:\n{log}");
    let lines = refusals.len() as u64;
    // Windows of 1 s, each opened by a line after the last one's end.
    assert!(lines >= 10 && lines <= 10 * (seconds + 2), "{lines} refusal lines in {seconds} s:\n{log}");
    let held_back: u64 = refusals
        .iter()
        .filter_map(|l| l.strip_suffix(" earlier not logged)").and_then(|head| head.rsplit_once(" (")))
        .map(|(_, n)| n.parse::<u64>().unwrap())
        .sum();
    assert!(held_back > 0, "the last line tells of those held back:\n{log}");
    // One writer, so no refusal was withdrawn and tried again: the lines
    // logged and those told of add up to the counter.
    let all = m.stats().refusals.quota;
    assert_eq!(lines + held_back, all, "each refusal either logged or told of:\n{log}");
    m.unmount();
}

/// The mount root's stats, read in-process (quicker than `scratchfs stats`).
fn stats_now(m: &Mount) -> scratchfs::report::Report {
    common::mount::stats_at(&m.path)
}

/// Opens `path` with `O_PATH`: the kernel keeps the file (and the daemon its
/// memory) after it is deleted, until the descriptor is closed.
fn hold(path: &Path) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is NUL-terminated; a valid descriptor is owned by the OwnedFd.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    assert!(fd >= 0, "O_PATH open: {}", std::io::Error::last_os_error());
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// A write refused for space just after a delete waits for the deleted
/// file's memory, and goes ahead once the kernel lets go of the file; if it
/// does not within the wait, the write is refused and changes nothing.
/// (The kernel usually lets go during the delete, but may answer a few
/// later requests first; an `O_PATH` descriptor stands in for that delay
/// here, closed while the write waits.)
#[test]
fn a_write_refused_just_after_a_delete_waits_for_the_deleted_files_memory() {
    let Some(m) = Mount::new(&["--size", "64M", "--delete-wait", "2s"]) else { return };
    let mib = |n: usize| vec![7u8; n << 20];

    // The file stays held: the write waits 2 s, then is refused.
    std::fs::write(m.join("big"), mib(50)).unwrap();
    let held = hold(&m.join("big"));
    std::fs::remove_file(m.join("big")).unwrap();
    let err = std::fs::write(m.join("new"), mib(40)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    let s = stats_now(&m);
    // (After the short write, `write_all` tries the rest: refused at once.)
    assert_eq!((s.held_back.requests, s.held_back.went_ahead), (1, 0));
    let refused = s.refusals.quota;
    assert!(refused >= 1);
    let kept = std::fs::metadata(m.join("new")).unwrap().len();
    assert!(kept < 14 << 20, "new holds what fitted: {kept}");
    drop(held);
    assert!(
        wait_until(Duration::from_secs(2), || stats_now(&m).quota.used_bytes < 15 << 20),
        "closing the descriptor frees the deleted file"
    );
    std::fs::remove_file(m.join("new")).unwrap();

    // This time the descriptor is closed while the write waits.
    std::fs::write(m.join("big"), mib(50)).unwrap();
    let held = hold(&m.join("big"));
    std::fs::remove_file(m.join("big")).unwrap();
    let writer = {
        let path = m.join("new");
        std::thread::spawn(move || std::fs::write(path, mib(40)))
    };
    assert!(
        wait_until(Duration::from_secs(10), || stats_now(&m).held_back.requests == 2),
        "the write is held back: {:?}",
        stats_now(&m).held_back
    );
    drop(held);
    writer.join().unwrap().expect("the held-back write goes ahead");
    assert_eq!(std::fs::read(m.join("new")).unwrap(), mib(40));
    let s = stats_now(&m);
    assert_eq!((s.held_back.requests, s.held_back.went_ahead, s.refusals.quota), (2, 1, refused));
    assert!(m.sh_ok(&format!("{} stats .", common::mount::BIN)).contains("2 requests refused just after a delete"));
    m.unmount();
}

/// A caller killed while its request is held back leaves nothing behind:
/// the kernel waits for the answer before the task dies, so a create that
/// goes ahead is opened, closed by the dying task, and can be deleted.
#[test]
fn a_caller_killed_while_its_create_waits_leaves_nothing_behind() {
    let Some(m) = Mount::new(&["--size", "64M", "--max-nodes", "5", "--delete-wait", "10s"]) else { return };
    m.sh_ok("touch a b c d");
    let held = hold(&m.join("a"));
    std::fs::remove_file(m.join("a")).unwrap();
    let mut child = std::process::Command::new("touch").arg(m.join("new")).spawn().unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || stats_now(&m).held_back.requests == 1),
        "the create (over the node limit) is held back"
    );
    child.kill().unwrap();
    drop(held);
    let status = child.wait().unwrap();
    assert!(!status.success(), "touch was killed: {status}");
    // The daemon counts a held request that went ahead just after answering
    // it, so the count may trail the child's exit a moment.
    let went_ahead = || {
        let s = stats_now(&m);
        (s.held_back.went_ahead, s.nodes.used)
    };
    assert!(
        wait_until(Duration::from_secs(5), || went_ahead() == (1, 5)),
        "the create went ahead once `a` was released: {:?}",
        went_ahead()
    );
    std::fs::remove_file(m.join("new")).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || stats_now(&m).nodes.used == 4),
        "the killed task's handle was released: {:?}",
        stats_now(&m).nodes
    );
    m.unmount();
}

#[test]
fn node_limit_refuses_with_enospc() {
    let Some(m) = Mount::new(&["--size", "64M", "--max-nodes", "50"]) else { return };
    let out = m.sh("for i in $(seq 1 60); do touch f$i || exit 3; done");
    assert_eq!(out.status.code(), Some(3), "creation must fail");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No space left on device"));
    let n = std::fs::read_dir(&m.path).unwrap().count();
    assert_eq!(n, 49, "the root plus 49 files");
    let inodes = m.sh_ok("df --output=itotal,iused,iavail . | tail -1");
    assert_eq!(inodes.split_whitespace().collect::<Vec<_>>(), ["50", "50", "0"]);
    m.sh_ok("rm f1 && touch again && mkdir -p d || true");
    assert_eq!(m.stats().refusals.nodes, 2);
    assert!(m.log_text().contains("node limit of 50 reached"));
    m.unmount();
}

#[test]
fn stats_show_promotions_and_shapes() {
    let Some(m) = Mount::new(&["--size", "256M"]) else { return };
    m.sh_ok("head -c 4000000 /dev/urandom > seq && head -c 3000000 /dev/urandom > promoted");
    let before = m.stats();
    assert_eq!((before.files.sequential, before.files.random_access, before.promotions.done), (2, 0, 0));
    m.sh_ok("dd if=/dev/zero of=promoted bs=4k seek=10 count=1 conv=notrunc status=none");
    let after = m.stats();
    assert_eq!((after.files.sequential, after.files.random_access, after.promotions.done), (1, 1, 1));
    let largest = &after.largest_files[0];
    assert_eq!((largest.path.as_str(), largest.size, largest.shape.as_str()), ("/seq", 4_000_000, "sequential"));
    let human = m.sh_ok(&format!("{} stats .", common::mount::BIN));
    assert!(human.contains("1 sequential, 1 random-access") && human.contains("1 promoted"), "{human}");
    m.unmount();
}

/// A file at the end of a path far longer than `PATH_MAX` (300 directories
/// of 255-byte names, made through directory descriptors) is still listed
/// by `scratchfs stats`, its path shortened in the middle: the report is
/// served as an xattr, which the kernel caps at 64 KiB.
#[test]
fn stats_list_a_file_at_the_end_of_a_path_longer_than_path_max() {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let Some(m) = Mount::new(&["--size", "64M"]) else { return };
    let open_dir = |at: libc::c_int, name: &std::ffi::CStr| {
        // SAFETY: `name` is NUL-terminated; a valid descriptor is owned by the OwnedFd.
        let fd = unsafe { libc::openat(at, name.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
        assert!(fd >= 0, "openat: {}", std::io::Error::last_os_error());
        unsafe { OwnedFd::from_raw_fd(fd) }
    };
    let mut dir = open_dir(libc::AT_FDCWD, &std::ffi::CString::new(m.path.as_os_str().as_encoded_bytes()).unwrap());
    for i in 0..300 {
        let name = std::ffi::CString::new(format!("{}{:03}", "d".repeat(252), i)).unwrap();
        // SAFETY: `name` is NUL-terminated and `dir` is open.
        assert_eq!(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) }, 0);
        dir = open_dir(dir.as_raw_fd(), &name);
    }
    // SAFETY: as above.
    let fd = unsafe {
        libc::openat(dir.as_raw_fd(), c"big".as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC, 0o644)
    };
    assert!(fd >= 0, "create: {}", std::io::Error::last_os_error());
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    std::io::Write::write_all(&mut &file, &vec![7u8; 1 << 20]).unwrap();
    drop((file, dir));
    let largest = &m.stats().largest_files[0];
    assert_eq!(largest.size, 1 << 20);
    let start = format!("/{}000/{}001/", "d".repeat(252), "d".repeat(252));
    assert!(largest.path.starts_with(&start[..128]), "{}", largest.path);
    assert!(
        largest.path.contains("/…/") && largest.path.ends_with(&format!("{}299/big", "d".repeat(252))),
        "{}",
        largest.path
    );
    assert!(largest.path.len() <= 512, "{} bytes", largest.path.len());
    let human = m.sh_ok(&format!("{} stats .", common::mount::BIN));
    assert!(human.contains("299/big"), "{human}");
    m.unmount();
}

/// An overlayfs mount over a lower directory (a `TempDir` elsewhere) with
/// its upper and work directories on a scratchfs mount; unmounted on drop,
/// before the scratchfs mount under it (declare it after that one).
struct Overlay {
    dirs: tempfile::TempDir,
}

impl Overlay {
    fn mount(lower: &Path, upper: &Path, work: &Path) -> Overlay {
        let dirs = tempfile::Builder::new().prefix("scratchfs-overlay").tempdir().unwrap();
        let merged = dirs.path().join("merged");
        std::fs::create_dir(&merged).unwrap();
        let opts = format!("lowerdir={},upperdir={},workdir={}", lower.display(), upper.display(), work.display());
        let out = std::process::Command::new("mount")
            .args(["-t", "overlay", "overlay", "-o", &opts])
            .arg(&merged)
            .output()
            .unwrap();
        let dmesg = || {
            String::from_utf8_lossy(&std::process::Command::new("dmesg").output().unwrap().stdout)
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert!(out.status.success(), "overlay mount: {}\n{}", String::from_utf8_lossy(&out.stderr), dmesg());
        Overlay { dirs }
    }

    fn merged(&self) -> std::path::PathBuf {
        self.dirs.path().join("merged")
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        common::mount::force_unmount(&self.merged());
    }
}

/// scratchfs as overlayfs's upper directory, as a container's scratch
/// layer: overlayfs asks an upper filesystem like ours (a FUSE one, whose
/// entries the kernel revalidates) for RENAME_WHITEOUT, trusted xattrs
/// and file types, and refuses to mount without them. Deleting and
/// replacing lower files and directories through the merged view leaves
/// whiteouts (character devices 0:0) and opaque directories in the upper
/// layer, and the merged view shows exactly the changes.
#[test]
fn overlayfs_mounts_with_its_upper_layer_on_scratchfs() {
    let Some(m) = Mount::new(&["--size", "64M"]) else { return };
    let lower = tempfile::Builder::new().prefix("scratchfs-lower").tempdir().unwrap();
    let l = lower.path();
    std::fs::write(l.join("gone"), b"lower gone").unwrap();
    std::fs::write(l.join("kept"), b"lower kept").unwrap();
    std::fs::write(l.join("changed"), b"lower changed").unwrap();
    std::fs::create_dir_all(l.join("dir/sub")).unwrap();
    std::fs::write(l.join("dir/sub/f"), b"lower f").unwrap();
    let used_before = m.stats().quota.used_bytes;
    m.sh_ok("mkdir upper work");
    let ovl = Overlay::mount(l, &m.join("upper"), &m.join("work"));
    let merged = ovl.merged();
    let sh = |script: &str| {
        let out = std::process::Command::new("sh").arg("-ec").arg(script).current_dir(&merged).output().unwrap();
        assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    sh(
        "rm gone && echo upper > changed && echo new > new && rm -r dir && mkdir dir && echo again > dir/f2 && mv new renamed",
    );
    assert_eq!(sh("find . -printf '%P %y\\n' | sort"), " d\nchanged f\ndir d\ndir/f2 f\nkept f\nrenamed f\n");
    assert_eq!(sh("cat kept; echo; cat changed renamed dir/f2"), "lower kept\nupper\nnew\nagain\n");
    // In the upper layer: whiteouts for what went, an opaque directory for
    // the one made anew, the changed and new files.
    let whiteout = |name: &str| {
        let md = std::fs::symlink_metadata(m.join("upper").join(name)).unwrap();
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        md.file_type().is_char_device() && md.rdev() == 0
    };
    assert!(whiteout("gone"), "a whiteout hides the deleted lower file");
    assert!(!m.join("upper/dir/sub").exists());
    let opaque = m.sh_ok("getfattr --only-values -n trusted.overlay.opaque upper/dir");
    assert_eq!(opaque, "y");
    assert_eq!(std::fs::read(m.join("upper/changed")).unwrap(), b"upper\n");
    drop(ovl);
    // Everything the layer held goes back to the quota when deleted.
    m.sh_ok("rm -rf upper work");
    assert!(
        wait_until(Duration::from_secs(5), || m.stats().quota.used_bytes == used_before),
        "{} != {used_before}",
        m.stats().quota.used_bytes
    );
    m.unmount();
}

/// `lsattr` and `chattr` (e2fsprogs) with the four flags tmpfs keeps: what
/// chattr sets lsattr shows, and the shell's own writes, moves and
/// removals meet immutable and append-only as on tmpfs (the rules one by
/// one are tests/mount_posix.rs's `inode_flags`); other flags are refused.
#[test]
fn chattr_sets_the_flags_tmpfs_keeps_and_they_hold() {
    let Some(m) = Mount::new(&["--size", "16M"]) else { return };
    m.sh_ok("echo x > f && mkdir d");
    assert_eq!(m.sh_ok("lsattr f && lsattr -d d"), "---------------------- f\n---------------------- d\n");
    m.sh_ok("chattr +i f && chattr +dA d");
    assert_eq!(m.sh_ok("lsattr f && lsattr -d d"), "----i----------------- f\n------dA-------------- d\n");
    for refused in ["echo y >> f", "rm f", "mv f g", "chmod 600 f", "touch f"] {
        let out = m.sh(refused);
        assert!(!out.status.success(), "{refused} on an immutable file: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not permitted"), "{refused}: {out:?}");
    }
    m.sh_ok("chattr -i +a f && echo y >> f && touch f");
    let truncating = m.sh("echo z > f");
    assert!(!truncating.status.success(), "an append-only file opened without O_APPEND: {truncating:?}");
    assert_eq!(m.sh_ok("lsattr f && cat f"), "-----a---------------- f\nx\ny\n");
    let unsupported = m.sh("chattr +c f");
    assert!(String::from_utf8_lossy(&unsupported.stderr).contains("Operation not supported"), "{unsupported:?}");
    m.sh_ok("chattr -a f && rm f && chattr -dA d && rmdir d");
    m.unmount();
}
