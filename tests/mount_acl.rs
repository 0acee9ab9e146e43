//! POSIX ACLs (`--acl`) on a real mount, against tmpfs: the same
//! `setfacl`/`getfacl` session, the same permission decisions for another
//! user, the same inheritance, byte for byte; ACLs charged to the quota;
//! and without the option, ACLs refused as before.

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
r touch sgr; chown 65534:100 sgr; chmod 2664 sgr
r setfacl -m u:1:rw sgr
r as_nobody setfattr -x system.posix_acl_access sgr
r stat -c '%A' sgr
r getfacl -n sgr
r touch sgm; chown 65534:100 sgm; chmod 2664 sgm
r setfacl -m u:1:rw sgm
r setfattr -x system.posix_acl_access sgm
r stat -c '%A' sgm
"#;

fn run_session(root: &std::path::Path) -> String {
    let out = Command::new("bash").arg("-c").arg(SESSION).current_dir(root).output().expect("bash");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn acls_behave_as_on_tmpfs() {
    common::mount::require_acl_tools();
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
    common::mount::require_acl_tools();
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
