//! Names through the engine's inode API: lookup, create, link counts,
//! unlink/rmdir, rename with its flags and edge cases, readdir cursors, and
//! the lifetime of unlinked-but-open and forgotten inodes.

mod common;

use common::*;
use scratchfs::{
    FileKind, FsError, Ino, InodeFlags, OpenFlags, RenameMode, SetAttr, SetTime, StoragePolicy, Timestamp,
    WriteOptions, XattrSet,
};

const Q: u64 = 64 << 20;

#[test]
fn names_are_bytes_up_to_255() {
    let e = engine(Q, StoragePolicy::Auto);
    let weird: Vec<u8> = (1..=255u8).filter(|&b| b != b'/').collect();
    let attr = e.mknod(Ino::ROOT, &weird, libc::S_IFREG | 0o600, 0, &ROOT).unwrap();
    assert_eq!(e.lookup(Ino::ROOT, &weird).unwrap().ino, attr.ino);
    let long = vec![b'x'; 255];
    e.mkdir(Ino::ROOT, &long, 0o755, &ROOT).unwrap();
    assert_eq!(e.mkdir(Ino::ROOT, &[b'x'; 256], 0o755, &ROOT), Err(FsError::NameTooLong));
    assert_eq!(e.lookup(Ino::ROOT, &[b'x'; 256]), Err(FsError::NameTooLong));
    for bad in [&b""[..], b".", b"..", b"a/b", b"nul\0"] {
        assert_eq!(e.mkdir(Ino::ROOT, bad, 0o755, &ROOT), Err(FsError::InvalidArgument), "{bad:?}");
    }
    // `.` and `..` resolve.
    let sub = e.mkdir(Ino::ROOT, b"sub", 0o755, &ROOT).unwrap().ino;
    assert_eq!(e.lookup(sub, b".").unwrap().ino, sub);
    assert_eq!(e.lookup(sub, b"..").unwrap().ino, Ino::ROOT);
    assert_eq!(e.lookup(Ino::ROOT, b"..").unwrap().ino, Ino::ROOT);
    invariants(&e);
}

#[test]
fn every_node_kind_can_be_created() {
    let e = engine(Q, StoragePolicy::Auto);
    let kinds = [
        (libc::S_IFREG, FileKind::RegularFile),
        (libc::S_IFIFO, FileKind::NamedPipe),
        (libc::S_IFSOCK, FileKind::Socket),
        (libc::S_IFCHR, FileKind::CharDevice),
        (libc::S_IFBLK, FileKind::BlockDevice),
    ];
    for (i, (bits, kind)) in kinds.iter().enumerate() {
        let a = e.mknod(Ino::ROOT, format!("n{i}").as_bytes(), bits | 0o640, 0x0801, &USER).unwrap();
        assert_eq!(a.kind, *kind);
        assert_eq!(a.perm, 0o640);
        assert_eq!((a.uid, a.gid), (1000, 1000));
        let dev = matches!(kind, FileKind::CharDevice | FileKind::BlockDevice);
        assert_eq!(a.rdev, if dev { 0x0801 } else { 0 });
    }
    let l = e.symlink(Ino::ROOT, b"link", b"/some/where", &ROOT).unwrap();
    assert_eq!((l.kind, l.size), (FileKind::Symlink, 11));
    assert_eq!(e.readlink(l.ino).unwrap(), b"/some/where");
    assert_eq!(e.symlink(Ino::ROOT, b"l2", &[b'a'; 4096], &ROOT), Err(FsError::NameTooLong));
    assert_eq!(e.mknod(Ino::ROOT, b"d", libc::S_IFDIR | 0o755, 0, &ROOT), Err(FsError::InvalidArgument));
    assert_eq!(e.mknod(Ino::ROOT, b"n0", libc::S_IFREG | 0o755, 0, &ROOT), Err(FsError::Exists));
    invariants(&e);
}

#[test]
fn link_counts_follow_links_and_subdirectories() {
    let e = engine(Q, StoragePolicy::Auto);
    assert_eq!(e.getattr(Ino::ROOT).unwrap().nlink, 2);
    let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap().ino;
    assert_eq!(e.getattr(Ino::ROOT).unwrap().nlink, 3);
    e.mkdir(d, b"e", 0o755, &ROOT).unwrap();
    assert_eq!(e.getattr(d).unwrap().nlink, 3);
    let (f, fh) = file_with(&e, d, "f", b"x");
    e.release(fh).unwrap();
    let a = e.link(f, Ino::ROOT, b"f2").unwrap();
    assert_eq!(a.nlink, 2);
    assert_eq!(e.link(d, Ino::ROOT, b"dirlink"), Err(FsError::NotPermitted));
    assert_eq!(e.link(f, Ino::ROOT, b"f2"), Err(FsError::Exists));
    e.unlink(d, b"f").unwrap();
    assert_eq!(e.getattr(f).unwrap().nlink, 1);
    assert_eq!(e.rmdir(Ino::ROOT, b"d"), Err(FsError::NotEmpty));
    e.rmdir(d, b"e").unwrap();
    assert_eq!(e.getattr(d).unwrap().nlink, 2);
    assert_eq!(e.unlink(Ino::ROOT, b"d"), Err(FsError::IsDir));
    assert_eq!(e.rmdir(Ino::ROOT, b"f2"), Err(FsError::NotDir));
    e.rmdir(Ino::ROOT, b"d").unwrap();
    assert_eq!(e.getattr(Ino::ROOT).unwrap().nlink, 2);
    // Creating in a removed directory fails.
    assert_eq!(e.mkdir(d, b"late", 0o755, &ROOT), Err(FsError::NotFound));
    invariants(&e);
}

#[test]
fn setgid_directory_passes_its_group_down() {
    let e = engine(Q, StoragePolicy::Auto);
    let d = e.mkdir(Ino::ROOT, b"shared", 0o2775, &ROOT).unwrap().ino;
    let sub = e.mkdir(d, b"sub", 0o755, &USER).unwrap();
    assert_eq!((sub.gid, sub.perm & 0o2000), (0, 0o2000));
    let f = e.mknod(d, b"f", libc::S_IFREG | 0o644, 0, &USER).unwrap();
    assert_eq!((f.uid, f.gid), (1000, 0));
}

#[test]
fn rename_replaces_files_and_empty_directories() {
    let e = engine(Q, StoragePolicy::Auto);
    let (a, fa) = file_with(&e, Ino::ROOT, "a", b"AAA");
    let (b, fb) = file_with(&e, Ino::ROOT, "b", b"BBBB");
    e.rename(Ino::ROOT, b"a", Ino::ROOT, b"b", RenameMode::Replace).unwrap();
    assert_eq!(e.lookup(Ino::ROOT, b"b").unwrap().ino, a);
    assert_eq!(e.lookup(Ino::ROOT, b"a"), Err(FsError::NotFound));
    // The replaced file lives on while open, with nlink 0.
    assert_eq!(e.getattr(b).unwrap().nlink, 0);
    assert_eq!(content(&e, fb), b"BBBB");
    e.release(fb).unwrap();
    e.forget(b, 1);
    assert_eq!(e.getattr(b), Err(FsError::NotFound));
    e.release(fa).unwrap();

    let d1 = e.mkdir(Ino::ROOT, b"d1", 0o755, &ROOT).unwrap().ino;
    let d2 = e.mkdir(Ino::ROOT, b"d2", 0o755, &ROOT).unwrap().ino;
    assert_eq!(e.rename(Ino::ROOT, b"b", Ino::ROOT, b"d1", RenameMode::Replace), Err(FsError::IsDir));
    assert_eq!(e.rename(Ino::ROOT, b"d1", Ino::ROOT, b"b", RenameMode::Replace), Err(FsError::NotDir));
    e.mkdir(d2, b"inner", 0o755, &ROOT).unwrap();
    assert_eq!(e.rename(Ino::ROOT, b"d1", Ino::ROOT, b"d2", RenameMode::Replace), Err(FsError::NotEmpty));
    e.rmdir(d2, b"inner").unwrap();
    let nlink_root = e.getattr(Ino::ROOT).unwrap().nlink;
    e.rename(Ino::ROOT, b"d1", Ino::ROOT, b"d2", RenameMode::Replace).unwrap();
    assert_eq!(e.getattr(Ino::ROOT).unwrap().nlink, nlink_root - 1);
    assert_eq!(e.lookup(Ino::ROOT, b"d2").unwrap().ino, d1);
    assert_eq!(e.getattr(d2).unwrap().nlink, 0);
    invariants(&e);
}

#[test]
fn rename_moves_directories_between_parents() {
    let e = engine(Q, StoragePolicy::Auto);
    let p1 = e.mkdir(Ino::ROOT, b"p1", 0o755, &ROOT).unwrap().ino;
    let p2 = e.mkdir(Ino::ROOT, b"p2", 0o755, &ROOT).unwrap().ino;
    let c = e.mkdir(p1, b"c", 0o755, &ROOT).unwrap().ino;
    e.rename(p1, b"c", p2, b"moved", RenameMode::Replace).unwrap();
    assert_eq!(e.getattr(p1).unwrap().nlink, 2);
    assert_eq!(e.getattr(p2).unwrap().nlink, 3);
    assert_eq!(e.lookup(c, b"..").unwrap().ino, p2);
    let mut dotdot = None;
    e.readdir(c, 0, |d| {
        if d.name == b".." {
            dotdot = Some(d.ino);
        }
        false
    })
    .unwrap();
    assert_eq!(dotdot, Some(p2));
    invariants(&e);
}

#[test]
fn rename_refuses_to_move_a_directory_into_itself() {
    let e = engine(Q, StoragePolicy::Auto);
    let a = e.mkdir(Ino::ROOT, b"a", 0o755, &ROOT).unwrap().ino;
    let b = e.mkdir(a, b"b", 0o755, &ROOT).unwrap().ino;
    let c = e.mkdir(b, b"c", 0o755, &ROOT).unwrap().ino;
    assert_eq!(e.rename(Ino::ROOT, b"a", c, b"a", RenameMode::Replace), Err(FsError::InvalidArgument));
    assert_eq!(e.rename(Ino::ROOT, b"a", a, b"x", RenameMode::Replace), Err(FsError::InvalidArgument));
    assert_eq!(e.rename(Ino::ROOT, b"a", c, b"x", RenameMode::Exchange), Err(FsError::NotFound));
    // Replacing an ancestor of the source: it is not empty.
    assert_eq!(e.rename(b, b"c", Ino::ROOT, b"a", RenameMode::Replace), Err(FsError::NotEmpty));
    assert_eq!(e.rename(b, b"c", Ino::ROOT, b"a", RenameMode::Exchange), Err(FsError::InvalidArgument));
    // Moving a directory up is fine.
    e.rename(b, b"c", Ino::ROOT, b"c", RenameMode::Replace).unwrap();
    assert_eq!(e.lookup(c, b"..").unwrap().ino, Ino::ROOT);
    invariants(&e);
}

#[test]
fn rename_noreplace_and_exchange() {
    let e = engine(Q, StoragePolicy::Auto);
    let (x, f) = file_with(&e, Ino::ROOT, "x", b"x");
    e.release(f).unwrap();
    let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap().ino;
    let sub = e.mkdir(Ino::ROOT, b"sub", 0o755, &ROOT).unwrap().ino;
    assert_eq!(e.rename(Ino::ROOT, b"x", Ino::ROOT, b"d", RenameMode::NoReplace), Err(FsError::Exists));
    e.rename(Ino::ROOT, b"x", sub, b"y", RenameMode::NoReplace).unwrap();
    assert_eq!(e.lookup(sub, b"y").unwrap().ino, x);
    // Exchange a file in `sub` with a directory in the root.
    let root_links = e.getattr(Ino::ROOT).unwrap().nlink;
    e.rename(sub, b"y", Ino::ROOT, b"d", RenameMode::Exchange).unwrap();
    assert_eq!(e.lookup(sub, b"y").unwrap().ino, d);
    assert_eq!(e.lookup(Ino::ROOT, b"d").unwrap().ino, x);
    assert_eq!(e.lookup(d, b"..").unwrap().ino, sub);
    assert_eq!(e.getattr(Ino::ROOT).unwrap().nlink, root_links - 1);
    assert_eq!(e.getattr(sub).unwrap().nlink, 3);
    assert_eq!(e.rename(sub, b"y", Ino::ROOT, b"nothing", RenameMode::Exchange), Err(FsError::NotFound));
    // Renaming a name onto another name of the same inode does nothing.
    e.link(x, Ino::ROOT, b"x2").unwrap();
    e.rename(Ino::ROOT, b"d", Ino::ROOT, b"x2", RenameMode::Replace).unwrap();
    assert_eq!(e.lookup(Ino::ROOT, b"d").unwrap().ino, x);
    assert_eq!(e.getattr(x).unwrap().nlink, 2);
    invariants(&e);
}

#[test]
fn rename_whiteout_leaves_a_whiteout_at_the_old_name_or_changes_nothing() {
    // overlayfs's RENAME_WHITEOUT, as tmpfs does it: the source moves and
    // a character device 0:0 with no permission bits takes its old name.
    let e = engine(Q, StoragePolicy::Auto);
    let (x, f) = file_with(&e, Ino::ROOT, "x", b"x");
    e.release(f).unwrap();
    let (y, f) = file_with(&e, Ino::ROOT, "y", b"y");
    e.release(f).unwrap();
    let who = scratchfs::Caller { uid: 1000, gid: 100, ..ROOT };
    let (used, nodes) = (e.stats().used_bytes, e.stats().nodes);
    e.rename_whiteout(Ino::ROOT, b"x", Ino::ROOT, b"y", false, &who).unwrap();
    assert_eq!(e.lookup(Ino::ROOT, b"y").unwrap().ino, x);
    assert_eq!(e.getattr(y).unwrap().nlink, 0, "the replaced file lost its name");
    let w = e.lookup(Ino::ROOT, b"x").unwrap();
    assert_eq!((w.kind, w.perm, w.rdev, w.nlink, w.uid, w.gid), (FileKind::CharDevice, 0, 0, 1, 1000, 100));
    // One node more until the kernel forgets the replaced file; then one
    // node for one, the whiteout costing what the replaced file's node did.
    assert_eq!(e.stats().nodes, nodes + 1);
    e.forget(y, 1);
    assert_eq!(e.stats().nodes, nodes);
    assert!(e.stats().used_bytes < used, "{} >= {used}", e.stats().used_bytes);
    // NOREPLACE: refused onto an existing name, leaving no whiteout.
    let (_, f) = file_with(&e, Ino::ROOT, "z", b"z");
    e.release(f).unwrap();
    assert_eq!(e.rename_whiteout(Ino::ROOT, b"z", Ino::ROOT, b"y", true, &ROOT), Err(FsError::Exists));
    e.rename_whiteout(Ino::ROOT, b"z", Ino::ROOT, b"new", true, &ROOT).unwrap();
    let wz = e.lookup(Ino::ROOT, b"z").unwrap();
    assert_eq!(wz.kind, FileKind::CharDevice);
    // A whiteout has no lookup reference but those lookups take: once
    // they are forgotten, an unlink frees it.
    e.forget(wz.ino, 1);
    let before = e.stats().nodes;
    e.unlink(Ino::ROOT, b"z").unwrap();
    assert_eq!(e.stats().nodes, before - 1);
    invariants(&e);
}

#[test]
fn rename_whiteout_that_does_not_fit_changes_nothing() {
    // The quota and the node limit are checked before anything moves.
    for limit_nodes in [false, true] {
        let mut cfg = config(if limit_nodes { Q } else { 4096 }, StoragePolicy::Auto);
        if limit_nodes {
            cfg.max_nodes = Some(3);
        }
        let e = scratchfs::Engine::with_probe(cfg, Box::new(FakeProbe::new(u64::MAX))).unwrap();
        let (x, f) = file_with(&e, Ino::ROOT, "x", b"");
        e.release(f).unwrap();
        let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap().ino;
        if !limit_nodes {
            // Fill the quota with a name that fits no whiteout beside it.
            let mut n = 1;
            while e.mknod(Ino::ROOT, format!("{n:0>200}").as_bytes(), libc::S_IFIFO | 0o644, 0, &ROOT).is_ok() {
                n += 1;
            }
        }
        let (used, nodes) = (e.stats().used_bytes, e.stats().nodes);
        let r = e.rename_whiteout(Ino::ROOT, b"x", d, b"x", false, &ROOT);
        assert!(matches!(r, Err(FsError::NoSpace(_))), "limit_nodes {limit_nodes}: {r:?}");
        assert_eq!(e.lookup(Ino::ROOT, b"x").unwrap().ino, x);
        assert_eq!(e.lookup(d, b"x").map(|_| ()), Err(FsError::NotFound));
        assert_eq!((e.stats().used_bytes, e.stats().nodes), (used, nodes));
        // A plain rename still fits.
        e.rename(Ino::ROOT, b"x", d, b"x", RenameMode::Replace).unwrap();
        invariants(&e);
    }
}

#[test]
fn readdir_cursor_is_stable_under_concurrent_insert_and_remove() {
    let e = engine(Q, StoragePolicy::Auto);
    let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap().ino;
    let keep: Vec<String> = (0..2000).map(|i| format!("keep{i:05}")).collect();
    for n in &keep {
        e.mknod(d, n.as_bytes(), libc::S_IFREG | 0o644, 0, &ROOT).unwrap();
    }
    std::thread::scope(|s| {
        let churn = s.spawn(|| {
            for round in 0..20 {
                for i in 0..200 {
                    let n = format!("tmp{round}-{i}");
                    e.mknod(d, n.as_bytes(), libc::S_IFREG | 0o644, 0, &ROOT).unwrap();
                }
                for i in 0..200 {
                    e.unlink(d, format!("tmp{round}-{i}").as_bytes()).unwrap();
                }
            }
        });
        for _ in 0..20 {
            // Read in small batches, resuming from the last cookie each time.
            let mut seen = Vec::new();
            let mut cookie = 0;
            loop {
                let mut batch = 0;
                e.readdir(d, cookie, |ent| {
                    batch += 1;
                    cookie = ent.cookie;
                    seen.push(String::from_utf8_lossy(ent.name).into_owned());
                    batch == 37
                })
                .unwrap();
                if batch < 37 {
                    break;
                }
            }
            let survivors: Vec<&String> = seen.iter().filter(|n| n.starts_with("keep")).collect();
            assert_eq!(survivors.len(), keep.len(), "each survivor exactly once");
            assert!(survivors.iter().zip(&keep).all(|(a, b)| *a == b));
        }
        churn.join().unwrap();
    });
    invariants(&e);
}

#[test]
fn unlinked_open_file_lives_until_release_and_forget() {
    let e = engine(Q, StoragePolicy::Auto);
    let base = e.stats().used_bytes;
    let (ino, fh) = file_with(&e, Ino::ROOT, "victim", &[7u8; 100_000]);
    let fh2 = e.open(ino, OpenFlags { read: true, ..OpenFlags::default() }, &ROOT).unwrap();
    e.unlink(Ino::ROOT, b"victim").unwrap();
    assert_eq!(e.lookup(Ino::ROOT, b"victim"), Err(FsError::NotFound));
    // Still readable and writable through the handles and the inode.
    e.write(fh, 100_000, b"tail", WriteOptions::default()).unwrap();
    assert_eq!(content(&e, fh2).len(), 100_004);
    assert_eq!(e.getattr(ino).unwrap().nlink, 0);
    assert!(e.stats().used_bytes > base + 100_000);
    e.release(fh).unwrap();
    e.release(fh2).unwrap();
    assert!(e.getattr(ino).is_ok(), "the kernel still holds a lookup reference");
    e.forget(ino, 1);
    assert_eq!(e.getattr(ino), Err(FsError::NotFound));
    assert_eq!(e.stats().used_bytes, base, "every byte given back");
    assert_eq!(e.open_handles(), 0);
    invariants(&e);
}

#[test]
fn forgotten_inode_with_links_stays_and_lookups_are_counted() {
    let e = engine(Q, StoragePolicy::Auto);
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", b"data");
    e.release(fh).unwrap();
    e.lookup(Ino::ROOT, b"f").unwrap();
    e.lookup(Ino::ROOT, b"f").unwrap();
    e.forget(ino, 3);
    assert!(e.getattr(ino).is_ok(), "still linked");
    e.lookup(Ino::ROOT, b"f").unwrap();
    e.unlink(Ino::ROOT, b"f").unwrap();
    assert!(e.getattr(ino).is_ok(), "one lookup reference left");
    e.forget(ino, 1);
    assert_eq!(e.getattr(ino), Err(FsError::NotFound));
    invariants(&e);
}

#[test]
fn create_opens_existing_unless_exclusive() {
    let e = engine(Q, StoragePolicy::Auto);
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", b"hello");
    e.release(fh).unwrap();
    let excl = OpenFlags { exclusive: true, ..rw() };
    assert!(matches!(e.create(Ino::ROOT, b"f", 0o644, excl, &ROOT), Err(FsError::Exists)));
    let (a, fh) = e.create(Ino::ROOT, b"f", 0o644, OpenFlags { truncate: true, ..rw() }, &ROOT).unwrap();
    assert_eq!((a.ino, a.size), (ino, 0));
    e.release(fh).unwrap();
    assert!(names(&e, Ino::ROOT).contains(&"f".to_string()));
}

#[test]
fn times_follow_posix_rules() {
    let e = engine(Q, StoragePolicy::Auto);
    let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let (f, fh) = file_with(&e, d.ino, "f", b"");
    let d2 = e.getattr(d.ino).unwrap();
    assert!(d2.mtime > d.mtime && d2.ctime > d.ctime, "creating updates the directory");
    let a1 = e.getattr(f).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(5));
    e.write(fh, 0, b"x", WriteOptions::default()).unwrap();
    let a2 = e.getattr(f).unwrap();
    assert!(a2.mtime > a1.mtime && a2.ctime > a1.ctime);
    std::thread::sleep(std::time::Duration::from_millis(5));
    e.link(f, Ino::ROOT, b"f2").unwrap();
    let a3 = e.getattr(f).unwrap();
    assert!(a3.ctime > a2.ctime && a3.mtime == a2.mtime, "link changes ctime only");
    std::thread::sleep(std::time::Duration::from_millis(5));
    e.rename(d.ino, b"f", Ino::ROOT, b"g", RenameMode::Replace).unwrap();
    let a4 = e.getattr(f).unwrap();
    assert!(a4.ctime > a3.ctime, "rename changes the ctime of the moved inode");
    e.release(fh).unwrap();
}

/// Sets the access and modification times of `ino` (the change time becomes now).
fn set_times(e: &scratchfs::Engine, ino: Ino, atime: Timestamp, mtime: Timestamp) {
    let set = SetAttr { atime: Some(SetTime::At(atime)), mtime: Some(SetTime::At(mtime)), ..Default::default() };
    e.setattr(ino, &set, &ROOT).unwrap();
}

/// One access: what it is, the node it accesses, and how.
type Access = (&'static str, Ino, Box<dyn Fn(&scratchfs::Engine)>);

/// The accesses that move an access time, on fresh nodes of `e`: reading a
/// file (with `read` or as the source of `copy_file_range`), listing a
/// directory (READDIR and READDIRPLUS, at any offset), reading a link.
fn accesses(e: &scratchfs::Engine) -> Vec<Access> {
    let (f, fh) = file_with(e, Ino::ROOT, "f", b"data");
    let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap().ino;
    for n in ["a", "b"] {
        e.mknod(d, n.as_bytes(), libc::S_IFREG | 0o644, 0, &ROOT).unwrap();
    }
    let l = e.symlink(Ino::ROOT, b"l", b"f", &ROOT).unwrap().ino;
    let (_, copy) = file_with(e, Ino::ROOT, "copy", b"");
    vec![
        ("read", f, Box::new(move |e| drop(e.read(fh, 0, 4).unwrap()))),
        ("copy_file_range", f, Box::new(move |e| assert_eq!(e.copy_file_range(fh, 0, copy, 0, 4).unwrap(), 4))),
        ("readdir", d, Box::new(move |e| e.readdir(d, 0, |_| false).unwrap())),
        ("readdir resumed", d, Box::new(move |e| e.readdir(d, 3, |_| false).unwrap())),
        ("readdirplus", d, Box::new(move |e| e.readdirplus(d, 0, |_, _| true).unwrap())),
        ("readlink", l, Box::new(move |e| assert_eq!(e.readlink(l).unwrap(), b"f"))),
    ]
}

#[test]
fn reads_listings_and_link_reads_move_the_access_time_by_relatime() {
    // tmpfs on Linux, mounted with its default (relatime): an access moves
    // the access time when it is not later than the last modification or
    // change (or is a day old), and only then. FUSE inodes keep no access
    // time in the kernel, so the engine must apply the rule to every kind
    // of access, not to file reads only.
    let e = engine(Q, StoragePolicy::Auto);
    let old = Timestamp { secs: 946_684_800, nanos: 0 };
    let older = Timestamp { secs: 946_598_400, nanos: 0 };
    for (what, ino, access) in accesses(&e) {
        set_times(&e, ino, old, old);
        let before = Timestamp::now();
        access(&e);
        let a = e.getattr(ino).unwrap();
        assert!(a.atime >= before, "{what}: an access time equal to the mtime moves to now: {:?}", a.atime);
        access(&e);
        assert_eq!(e.getattr(ino).unwrap().atime, a.atime, "{what}: once later than mtime and ctime, it stays");

        set_times(&e, ino, old, older);
        access(&e);
        assert!(e.getattr(ino).unwrap().atime >= before, "{what}: an access time before the ctime moves");

        let later = Timestamp { secs: Timestamp::now().secs + 3600, nanos: 0 };
        set_times(&e, ino, later, old);
        access(&e);
        assert_eq!(e.getattr(ino).unwrap().atime, later, "{what}: an access time later than both stays");
    }
    invariants(&e);
}

#[test]
fn noatime_leaves_every_access_time_alone() {
    // tmpfs mounted `-o noatime`: no access moves an access time.
    let mut cfg = config(Q, StoragePolicy::Auto);
    cfg.noatime = true;
    let e = scratchfs::Engine::with_probe(cfg, Box::new(FakeProbe::new(u64::MAX))).unwrap();
    let old = Timestamp { secs: 946_684_800, nanos: 0 };
    for (what, ino, access) in accesses(&e) {
        set_times(&e, ino, old, old);
        access(&e);
        assert_eq!(e.getattr(ino).unwrap().atime, old, "{what} under noatime");
    }
    // Explicit times are still set.
    let f = e.lookup(Ino::ROOT, b"f").unwrap().ino;
    let new = Timestamp { secs: 1_000_000_000, nanos: 5 };
    set_times(&e, f, new, old);
    assert_eq!(e.getattr(f).unwrap().atime, new);
    invariants(&e);
}

#[test]
fn posix_acls_keep_the_mode_in_step_and_are_inherited() {
    const ACCESS: &[u8] = ACL_ACCESS;
    const DEFAULT: &[u8] = ACL_DEFAULT;
    const X: u32 = u32::MAX;
    let no_acls = engine(Q, StoragePolicy::Auto);
    let f = no_acls.mknod(Ino::ROOT, b"f", libc::S_IFREG | 0o600, 0, &ROOT).unwrap().ino;
    let base = acl(&[(1, 6, X), (4, 4, X), (0x20, 0, X)]);
    assert_eq!(no_acls.setxattr(f, ACCESS, &base, XattrSet::Upsert), Err(FsError::NotSupported));
    assert_eq!(no_acls.getxattr(f, ACCESS), Err(FsError::NotSupported));

    let e = acl_engine(Q);
    let f = e.mknod(Ino::ROOT, b"f", libc::S_IFREG | 0o2770, 0, &ROOT).unwrap().ino;
    // Base entries only: the mode changes and no attribute is kept.
    e.setxattr(f, ACCESS, &base, XattrSet::Create).unwrap();
    assert_eq!(e.getattr(f).unwrap().perm, 0o2640);
    assert_eq!(e.getxattr(f, ACCESS), Err(FsError::NoData));
    // A named user and a mask: kept, and the group bits show the mask.
    // A caller outside the file's group loses the set-group-ID bit.
    let named = acl(&[(1, 7, X), (2, 5, 1000), (4, 4, X), (0x10, 5, X), (0x20, 1, X)]);
    let used = e.stats().used_bytes;
    e.setxattr_by(f, ACCESS, &named, XattrSet::Upsert, |_| false).unwrap();
    assert_eq!(e.getattr(f).unwrap().perm, 0o751);
    assert_eq!(e.getxattr(f, ACCESS).unwrap(), named);
    assert!(e.stats().used_bytes > used + named.len() as u64);
    // chmod rewrites owner, mask and others.
    let chmod = SetAttr { mode: Some(0o640), ..SetAttr::default() };
    e.setattr(f, &chmod, &ROOT).unwrap();
    assert_eq!(e.getxattr(f, ACCESS).unwrap(), acl(&[(1, 6, X), (2, 5, 1000), (4, 4, X), (0x10, 4, X), (0x20, 0, X)]));
    // Invalid ACLs change nothing; files have no default ACL; removal frees.
    let invalid = acl(&[(1, 7, X), (2, 5, 1000), (4, 4, X), (0x20, 1, X)]);
    assert_eq!(e.setxattr(f, ACCESS, &invalid, XattrSet::Upsert), Err(FsError::InvalidArgument));
    assert_eq!(e.setxattr(f, DEFAULT, &named, XattrSet::Upsert), Err(FsError::AccessDenied));
    assert_eq!(e.getattr(f).unwrap().perm, 0o640);
    e.removexattr(f, ACCESS).unwrap();
    e.removexattr(f, ACCESS).unwrap();
    assert_eq!(e.stats().used_bytes, used);
    invariants(&e);

    // A default ACL decides a new node's bits instead of the umask, and a
    // new directory inherits it as its own default.
    let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap().ino;
    let default = acl(&[(1, 7, X), (2, 7, 1000), (4, 5, X), (0x10, 7, X), (0x20, 5, X)]);
    e.setxattr(d, DEFAULT, &default, XattrSet::Upsert).unwrap();
    let umask = scratchfs::Caller { umask: 0o077, ..ROOT };
    let file = e.mknod(d, b"file", libc::S_IFREG | 0o666, 0, &umask).unwrap();
    assert_eq!(file.perm, 0o664);
    assert_eq!(
        e.getxattr(file.ino, ACCESS).unwrap(),
        acl(&[(1, 6, X), (2, 7, 1000), (4, 5, X), (0x10, 6, X), (0x20, 4, X)])
    );
    let sub = e.mkdir(d, b"sub", 0o777, &umask).unwrap();
    assert_eq!(sub.perm, 0o775);
    assert_eq!(e.getxattr(sub.ino, DEFAULT).unwrap(), default);
    let link = e.symlink(d, b"link", b"file", &umask).unwrap();
    assert_eq!((link.perm, e.getxattr(link.ino, ACCESS)), (0o777, Err(FsError::NoData)));
    // Without a default ACL the umask applies.
    let plain = e.mknod(Ino::ROOT, b"plain", libc::S_IFREG | 0o666, 0, &umask).unwrap();
    assert_eq!(plain.perm, 0o600);
    invariants(&e);
    // Everything made under the default ACL gives its charges back.
    let before = e.stats().used_bytes;
    for name in [&b"file"[..], b"link"] {
        e.unlink(d, name).unwrap();
    }
    e.rmdir(d, b"sub").unwrap();
    for ino in [file.ino, sub.ino, link.ino] {
        e.forget(ino, 1);
    }
    assert!(e.stats().used_bytes < before);
    invariants(&e);
}

/// The engine's own view of inode flags (the mount test `inode_flags`
/// compares every rule with tmpfs): flags are kept on files and
/// directories only, an exchange is refused when either side is fixed, a
/// whiteout may not be left in an immutable directory, and a refusal
/// changes nothing.
#[test]
fn inode_flags_fix_entries_and_refusals_change_nothing() {
    let e = engine(Q, StoragePolicy::Auto);
    let flags = |bits| InodeFlags::from_bits(bits).unwrap();
    let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap().ino;
    let (a, afh) = e.create(d, b"a", 0o644, rw(), &ROOT).unwrap();
    let (b, _) = e.create(Ino::ROOT, b"b", 0o644, rw(), &ROOT).unwrap();
    let l = e.symlink(Ino::ROOT, b"l", b"b", &ROOT).unwrap().ino;
    assert_eq!(e.set_inode_flags(l, flags(InodeFlags::NODUMP), |_| Ok(())), Err(FsError::NotSupported));
    assert_eq!(e.inode_flags(l), Ok(InodeFlags::default()));

    e.set_inode_flags(a.ino, flags(InodeFlags::APPEND), |_| Ok(())).unwrap();
    assert_eq!(e.getattr(a.ino).unwrap().flags, flags(InodeFlags::APPEND));
    // Only appends: page-cache writeback is refused, and is no space refusal.
    let writeback = WriteOptions { from_page_cache: true, ..WriteOptions::default() };
    assert_eq!(e.write(afh, 0, b"x", writeback), Err(FsError::NotPermitted));
    assert_eq!(e.write(afh, 0, b"x", WriteOptions { appending: true, ..WriteOptions::default() }), Ok(1));
    let refusals = e.stats().refusals;
    assert_eq!((refusals.quota, refusals.late), (0, 0), "{refusals:?}");
    let exchange = e.rename(d, b"a", Ino::ROOT, b"b", RenameMode::Exchange);
    assert_eq!(exchange, Err(FsError::NotPermitted), "the fixed side of an exchange");
    let other_way = e.rename(Ino::ROOT, b"b", d, b"a", RenameMode::Exchange);
    assert_eq!(other_way, Err(FsError::NotPermitted));
    assert_eq!(e.lookup(d, b"a").unwrap().ino, a.ino);
    assert_eq!(e.lookup(Ino::ROOT, b"b").unwrap().ino, b.ino);

    e.set_inode_flags(a.ino, flags(0), |_| Ok(())).unwrap();
    e.set_inode_flags(d, flags(InodeFlags::IMMUTABLE), |_| Ok(())).unwrap();
    // The caller's check sees the flags it would change, and its refusal keeps them.
    let refuse_fixed = |a: &scratchfs::Attr| if a.flags.fixed() { Err(FsError::NotPermitted) } else { Ok(()) };
    assert_eq!(e.set_inode_flags(d, flags(0), refuse_fixed), Err(FsError::NotPermitted));
    assert_eq!(e.inode_flags(d), Ok(flags(InodeFlags::IMMUTABLE)));
    let used = e.stats().used_bytes;
    let whiteout = e.rename_whiteout(d, b"a", Ino::ROOT, b"c", false, &ROOT);
    assert_eq!(whiteout, Err(FsError::NotPermitted));
    assert_eq!(e.mknod(d, b"p", libc::S_IFIFO | 0o644, 0, &ROOT), Err(FsError::NotPermitted));
    assert_eq!(e.link(b.ino, d, b"b2"), Err(FsError::NotPermitted));
    assert_eq!(e.stats().used_bytes, used, "refusals hold nothing");
    e.set_inode_flags(d, flags(InodeFlags::APPEND), |_| Ok(())).unwrap();
    e.link(b.ino, d, b"b2").unwrap();
    assert_eq!(e.unlink(d, b"b2"), Err(FsError::NotPermitted), "an append-only directory keeps its entries");
    e.set_inode_flags(d, flags(0), |_| Ok(())).unwrap();
    e.unlink(d, b"b2").unwrap();
    invariants(&e);
}
