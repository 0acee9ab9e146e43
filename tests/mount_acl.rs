//! POSIX ACLs (`--acl`) on a real mount, against tmpfs: the same
//! `setfacl`/`getfacl` session, the same permission decisions for another
//! user, the same inheritance, byte for byte; ACLs charged to the quota;
//! on a full filesystem, ACLs, attribute values and names that shrink still
//! taken, as on tmpfs; and without the option, ACLs refused as before.

mod common;
mod reliability;

use std::process::Command;

use common::mount::Mount;

/// One session of ACL work, run with the filesystem's root as working
/// directory (relative paths only: the test's temporary directories are
/// closed to the other user). Prints every command with its output and
/// exit status. User 65534 is `nobody`, group 100 `users`.
const SESSION: &str = r#"
umask 022
exec 2>&1
r() { echo "\$ $*"; "$@"; echo "[rc=$?]"; }
as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
r mkdir dir
r setfacl -d -m u:65534:rwx,g:100:rx,m::rwx dir
r getfacl -n dir
r touch dir/file
r getfacl -n dir/file
r mkdir dir/sub
r getfacl -n dir/sub
r stat -c '%A %n' dir dir/file dir/sub
r chmod 640 dir/file
r getfacl -n dir/file
r setfacl -m u:65534:r dir/file
r getfacl -n dir/file
r stat -c '%A' dir/file
r setfacl -b dir/file
r getfacl -n dir/file
r stat -c '%A' dir/file
r touch plain
r setfacl -m u::rwx,g::r,o::- plain
r stat -c '%A' plain
r getfattr -d -m - plain
r setfacl -m u:65534:rw plain
r getfattr -d -m - -e hex plain
r setfacl -m d:u:1:r plain
r setfacl -x u:65534 plain
r getfacl -n plain
echo secret > priv; chmod 600 priv
r as_nobody cat priv
r setfacl -m u:65534:r priv
r as_nobody cat priv
r as_nobody sh -c 'echo more >> priv'
r setfacl -m m::- priv
r as_nobody cat priv
r setfacl -m g:65534:rw,m::rw priv
r as_nobody sh -c 'echo more >> priv'
r cat priv
r ln -s priv link
r setfacl -m u:1:r link
r getfacl -n link
r mkdir -m 2775 sg; chgrp 100 sg
r touch sg/f; chmod 2775 sg/f
r as_nobody setfacl -m u:1:r sg/f
chown 65534 sg/f
r as_nobody setfacl -m u:1:r sg/f
r stat -c '%A' sg/f
r setfacl -d -m u::rwx,g::-,o::- sg
r mkdir sg/d2
r stat -c '%A' sg/d2
r getfacl -n sg/d2
r mkdir open; chmod 700 open
r as_nobody touch open/x
r setfacl -m u:65534:wx open
r as_nobody touch open/x
r as_nobody ls open
r setfacl -m u:65534:rwx open
r as_nobody ls open
umask 077
r touch dir/masked
r stat -c '%A' dir/masked
r touch nodefault
r stat -c '%A' nodefault
r mkfifo dir/fifo
r stat -c '%A' dir/fifo
r getfacl -n dir/fifo
r cp -a dir dir2
r getfacl -n dir2/*
r setfacl -k dir
r touch dir/after-k
r getfacl -n dir/after-k
"#;

fn run_session(root: &std::path::Path) -> String {
    let out = Command::new("bash").arg("-c").arg(SESSION).current_dir(root).output().expect("bash");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn require_acl_tools() {
    let ok = Command::new("setfacl").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "setfacl is missing: install the acl package (scripts/setup.sh does)");
}

#[test]
fn acls_behave_as_on_tmpfs() {
    require_acl_tools();
    // allow_other: the session's second user must be let in at all.
    let Some(m) = Mount::new(&["--size", "64M", "--acl", "--allow-other"]) else { return };
    let t = reliability::Tmpfs::new("64M");
    let want = run_session(&t.path);
    let got = run_session(&m.path);
    if want != got {
        let lines: Vec<String> = want
            .lines()
            .zip(got.lines())
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .take(20)
            .map(|(i, (a, b))| format!("line {}: tmpfs {a:?}, scratchfs {b:?}", i + 1))
            .collect();
        panic!(
            "scratchfs differs from tmpfs ({} against {} lines):\n{}\n--- scratchfs transcript ---\n{got}",
            got.lines().count(),
            want.lines().count(),
            lines.join("\n")
        );
    }
    // The session did what it is about (both filesystems agreeing on
    // failures would not do).
    for expected in [
        "user:65534:rwx\t#effective:rw-", // inherited, masked by the mode asked for
        "default:group:100:r-x",          // a new directory inherits the default ACL
        "\nsecret\n",                     // nobody reads priv through its ACL entry
        "Operation not permitted",        // only the owner sets an ACL
    ] {
        assert!(got.contains(expected), "missing {expected:?} in:\n{got}");
    }
    assert!(got.contains("$ stat -c %A sg/f\n-rwxrwxr-x\n"), "set-group-ID cleared for a non-member:\n{got}");
    let (status, log) = m.unmount_with_log();
    assert!(status.success());
    assert!(log.contains(", POSIX ACLs"), "the start-up line says so: {log}");
}

#[test]
fn acls_are_charged_to_the_quota_and_refused_without_the_option() {
    require_acl_tools();
    let Some(m) = Mount::new(&["--size", "64M", "--acl"]) else { return };
    m.sh_ok("touch f");
    let before = m.stats().quota.used_bytes;
    assert!(m.stats().acl);
    let text = Command::new(common::mount::BIN).arg("stats").arg(&m.path).output().unwrap();
    assert!(String::from_utf8_lossy(&text.stdout).lines().next().is_some_and(|l| l.ends_with(", POSIX ACLs on")));
    let names: Vec<String> = (1..=200).map(|u| format!("u:{u}:r")).collect();
    m.sh_ok(&format!("setfacl -m {} f", names.join(",")));
    let with = m.stats().quota.used_bytes;
    // 200 named entries of 8 bytes, the base entries, the header, the name.
    assert!(with >= before + 200 * 8 + 23, "an ACL of 1.6 KB charged {} bytes", with - before);
    assert!(with < before + 4096, "charged {} bytes", with - before);
    m.sh_ok("setfacl -b f");
    assert_eq!(m.stats().quota.used_bytes, before, "removing the ACL gives its bytes back");
    // Inherited ACLs are charged when the node is made.
    m.sh_ok("mkdir d && setfacl -d -m u:7:rwx d");
    let dir_before = m.stats().quota.used_bytes;
    m.sh_ok("mkdir d/sub && touch d/file && rm -r d/sub d/file");
    assert_eq!(m.stats().quota.used_bytes, dir_before, "inherited ACLs given back with their nodes");
    assert!(m.unmount().success());

    let Some(plain) = Mount::new(&["--size", "64M"]) else { return };
    assert!(!plain.stats().acl);
    let out = plain.sh("touch f && setfacl -m u:1:r f");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Operation not supported"), "{out:?}");
    // The mode bits still work as ACLs of three entries.
    let acl = plain.sh_ok("chmod 640 f && getfacl -n f");
    assert!(acl.contains("user::rw-\ngroup::r--\nother::---"), "{acl}");
    assert!(plain.unmount().success());
}

/// `setxattr(2)` of `name` on `path` (0 flags: create or replace).
fn set_xattr(path: &std::path::Path, name: &str, value: &[u8]) -> std::io::Result<()> {
    let (p, n) = (c_path(path), std::ffi::CString::new(name).unwrap());
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe { libc::setxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) }
}

fn remove_xattr(path: &std::path::Path, name: &str) {
    let (p, n) = (c_path(path), std::ffi::CString::new(name).unwrap());
    // SAFETY: valid C strings.
    assert_eq!(unsafe { libc::removexattr(p.as_ptr(), n.as_ptr()) }, 0, "{}", std::io::Error::last_os_error());
}

fn c_path(path: &std::path::Path) -> std::ffi::CString {
    std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str())).unwrap()
}

/// Fills what is left of the quota with attributes on `filler<k>` files,
/// each value as large as fits (found by trying and taking back), four to a
/// file so that no list has to grow; returns the bytes left free.
fn fill_up(m: &Mount, placed: &mut usize) -> u64 {
    let x = vec![b'x'; 65_536];
    loop {
        let file = m.path.join(format!("filler{}", *placed / 4));
        let name = format!("user.fill{placed:03}");
        let fits = |n: usize| set_xattr(&file, &name, &x[..n]).map(|()| remove_xattr(&file, &name)).is_ok();
        if !fits(0) {
            break;
        }
        let (mut lo, mut hi) = (0, x.len() + 1); // fits(lo), !fits(hi)
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if mid == x.len() + 1 || !fits(mid) { hi = mid } else { lo = mid }
        }
        set_xattr(&file, &name, &x[..lo]).unwrap();
        *placed += 1;
        if lo < x.len() {
            break;
        }
    }
    let q = m.stats().quota;
    q.max_bytes.saturating_sub(q.used_bytes + q.unaccounted_bytes)
}

#[test]
fn a_full_filesystem_still_takes_shorter_acls_attribute_values_and_names() {
    require_acl_tools();
    let Some(m) = Mount::new(&["--size", "8M", "--acl"]) else { return };
    let names: Vec<String> = (1..=200).map(|u| format!("u:{u}:r")).collect();
    m.sh_ok(&format!("touch f && setfacl -m {} f", names.join(",")));
    m.sh_ok("touch v && mkdir sub && for i in $(seq 0 63); do touch filler$i; done");
    set_xattr(&m.path.join("v"), "user.v", &[b'a'; 2000]).unwrap();
    // Fill the quota: data in 1 MiB writes, then attributes.
    let data = std::fs::File::create(m.path.join("data")).unwrap();
    let mut at = 0u64;
    while std::os::unix::fs::FileExt::write_at(&data, &[7u8; 1 << 20], at).is_ok() {
        at += 1 << 20;
    }
    drop(data);
    let mut placed = 0;
    let full = |placed: &mut usize| {
        let free = fill_up(&m, placed);
        // Less than an attribute costs beyond its name and value.
        assert!(free < scratchfs::XATTR_COST, "{free} bytes still free after filling");
    };
    full(&mut placed);

    // A longer value is refused; a shorter one is taken and frees the rest.
    let err = set_xattr(&m.path.join("v"), "user.v", &[b'b'; 3000]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "{err}");
    let before = m.stats().quota.used_bytes;
    set_xattr(&m.path.join("v"), "user.v", &[b'c'; 500]).unwrap();
    assert_eq!(std::fs::read(m.path.join("v")).unwrap(), b"");
    let value = m.sh_ok("getfattr --only-values -n user.v v");
    assert_eq!(value, "c".repeat(500));
    assert_eq!(m.stats().quota.used_bytes, before - 1500);

    // Dropping entries from an ACL shrinks it: taken; adding one is not.
    full(&mut placed);
    let out = m.sh("setfacl -m u:201:r f");
    assert!(String::from_utf8_lossy(&out.stderr).contains("No space left on device"), "{out:?}");
    m.sh_ok("setfacl -x u:1,u:2 f");
    let acl = m.sh_ok("getfacl -n f");
    let named = acl.lines().filter(|l| l.starts_with("user:") && !l.starts_with("user::")).count();
    assert_eq!(named, 198, "{acl}");
    assert!(!acl.contains("user:1:") && !acl.contains("user:2:") && acl.contains("user:3:r--"), "{acl}");

    // Renames to names no longer than the old ones, within the directory
    // and into another; the ACL and the value go with their files.
    full(&mut placed);
    m.sh_ok("mv f g && mv v sub/w && mv filler63 sub/f");
    assert_eq!(m.sh_ok("ls -A sub"), "f\nw\n");
    assert!(m.sh_ok("getfacl -n g").contains("user:3:r--"));
    assert_eq!(m.sh_ok("getfattr --only-values -n user.v sub/w"), "c".repeat(500));
    assert!(m.unmount().success());
}
