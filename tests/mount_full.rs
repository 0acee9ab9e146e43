//! A full filesystem still takes what needs no more memory, as a full tmpfs
//! does: on a mount filled to under 100 bytes free (refilled before each
//! step), shorter attribute values and ACLs, renames to names no longer than
//! the old ones, holes punched, truncation, mode and time changes; while
//! anything that grows stays refused with ENOSPC and changes nothing.

mod common;

use common::mount::{Mount, require_acl_tools};

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

/// Files that take the filling attributes; each is given an empty
/// `user.init` first, so that it has its list (room for four) before the
/// quota runs out.
const FILLERS: usize = 64;

/// Fills what is left of the quota with attributes on the filler files,
/// each value as large as fits (found by trying and taking back), three to a
/// file beside `user.init`, so that no list has to grow; returns the bytes
/// left free: less than one more empty attribute would cost.
fn fill_up(m: &Mount, placed: &mut usize) -> u64 {
    let x = vec![b'x'; 65_536];
    loop {
        assert!(*placed < 3 * FILLERS, "out of filler files");
        let file = m.path.join(format!("filler{}", *placed / 3));
        let name = format!("user.fill{placed:03}");
        let fits = |n: usize| set_xattr(&file, &name, &x[..n]).map(|()| remove_xattr(&file, &name)).is_ok();
        if !fits(0) {
            break;
        }
        let (mut lo, mut hi) = (0, x.len() + 1); // fits(lo), !fits(hi)
        while hi - lo > 1 {
            let mid = (lo + hi) / 2;
            if fits(mid) { lo = mid } else { hi = mid }
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
fn a_full_filesystem_still_takes_what_needs_no_more_memory() {
    require_acl_tools();
    let Some(m) = Mount::new(&["--size", "8M", "--acl"]) else { return };
    let names: Vec<String> = (1..=200).map(|u| format!("u:{u}:r")).collect();
    m.sh_ok(&format!("touch f && setfacl -m {} f", names.join(",")));
    m.sh_ok(&format!("touch v && mkdir sub && for i in $(seq 0 {}); do touch filler$i; done", FILLERS - 1));
    for i in 0..FILLERS {
        set_xattr(&m.path.join(format!("filler{i}")), "user.init", b"").unwrap();
    }
    set_xattr(&m.path.join("v"), "user.v", &[b'a'; 2000]).unwrap();
    // Fill the quota: data in 1 MiB writes, then attributes.
    let data = std::fs::File::create(m.path.join("data")).unwrap();
    let mut at = 0u64;
    while let Ok(n @ 1..) = std::os::unix::fs::FileExt::write_at(&data, &[7u8; 1 << 20], at) {
        at += n as u64;
    }
    drop(data);
    let mut placed = 0;
    let full = |placed: &mut usize| {
        let free = fill_up(&m, placed);
        // Less than an empty attribute named `user.fillNNN` costs: less than
        // any new node, entry or extent would need.
        assert!(free < scratchfs::XATTR_COST + 12, "{free} bytes still free after filling");
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

    // Mode and times; new nodes and longer data are refused.
    full(&mut placed);
    assert_eq!(m.sh_ok("chmod 600 g && touch -d @1000000000 g && stat -c '%a %Y' g"), "600 1000000000\n");
    for grow in ["touch new", "mkdir new", "echo more >> sub/w", "ln -s target new"] {
        let out = m.sh(grow);
        assert!(String::from_utf8_lossy(&out.stderr).contains("No space left on device"), "{grow}: {out:?}");
    }
    assert!(std::fs::symlink_metadata(m.path.join("new")).is_err(), "nothing made");
    assert_eq!(std::fs::metadata(m.path.join("sub/w")).unwrap().len(), 0);

    // A hole punched inside one extent of the data file, then the file cut
    // short: both taken, the data intact around them.
    let mut want = vec![7u8; at as usize];
    m.sh_ok("fallocate -p -o 100000 -l 8192 data");
    want[100_000..108_192].fill(0);
    assert!(std::fs::read(m.path.join("data")).unwrap() == want, "data after the punch");
    m.sh_ok("truncate -s 200000 data");
    assert!(std::fs::read(m.path.join("data")).unwrap() == want[..200_000], "data after the truncation");
    assert!(m.unmount().success());
}
