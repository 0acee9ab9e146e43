//! The quota, the node limit and the memory guard: every refusal names its
//! cause, is counted, and leaves the filesystem and the quota unchanged.

mod common;

use std::time::Duration;

use common::*;
use scratchfs::{
    Engine, Fallocate, FsError, GuardAction, GuardConfig, GuardMode, Ino, NoSpaceCause, RenameMode, Seek,
    StoragePolicy, WriteOptions, XattrSet,
};

const W: WriteOptions = WriteOptions { kill_suidgid: false, writer_gid: 0, from_page_cache: false, appending: false };

fn is_quota(r: &Result<impl std::fmt::Debug, FsError>) -> bool {
    matches!(r, Err(FsError::NoSpace(NoSpaceCause::Quota { .. })))
}

#[test]
fn a_write_that_does_not_fit_changes_nothing() {
    let e = engine(1 << 20, StoragePolicy::Auto);
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", &[1u8; 500_000]);
    let used = e.stats().used_bytes;
    let attr = e.getattr(ino).unwrap();
    let r = e.write(fh, 500_000, &[2u8; 600_000], W);
    assert!(is_quota(&r), "{r:?}");
    assert_eq!(e.stats().used_bytes, used);
    let after = e.getattr(ino).unwrap();
    assert_eq!((after.size, after.mtime), (attr.size, attr.mtime));
    assert_eq!(content(&e, fh), vec![1u8; 500_000]);
    assert_eq!(e.stats().refusals.quota, 1);
    // A write that fits still goes through.
    e.write(fh, 500_000, &[2u8; 100_000], W).unwrap();
    e.release(fh).unwrap();
    invariants(&e);
}

#[test]
fn a_write_is_accepted_only_once_it_cannot_fail_and_stays_locked_until_stored() {
    let e = engine(1 << 20, StoragePolicy::Auto);
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", &[1u8; 500_000]);
    // Refused: never accepted, nothing changed.
    let mut accepted = Vec::new();
    let r = e.write_then(fh, 500_000, &[2u8; 600_000], W, |n, _| accepted.push(n));
    assert!(is_quota(&r), "{r:?}");
    assert!(accepted.is_empty());
    assert_eq!(e.getattr(ino).unwrap().size, 500_000);
    // Accepted before the bytes are stored; a reader started then waits for them.
    std::thread::scope(|s| {
        let mut reader = None;
        let r = e.write_then(fh, 500_000, &[2u8; 100_000], W, |n, mode_changed| {
            assert!(!mode_changed, "no set-ID bit to clear");
            accepted.push(n);
            let h = s.spawn(|| (e.getattr(ino).unwrap().size, content(&e, fh)));
            std::thread::sleep(Duration::from_millis(50));
            assert!(!h.is_finished(), "the node was readable before the write was stored");
            reader = Some(h);
        });
        assert_eq!(r, Ok(100_000));
        let (size, data) = reader.expect("accepted").join().unwrap();
        assert_eq!(size, 600_000);
        assert_eq!(data[..500_000], [1u8; 500_000]);
        assert_eq!(data[500_000..], [2u8; 100_000]);
    });
    assert_eq!(accepted, [100_000]);
    e.release(fh).unwrap();
    invariants(&e);
}

#[test]
fn a_write_that_clears_set_id_bits_says_so_when_accepted() {
    let e = engine(1 << 20, StoragePolicy::Auto);
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", b"abc");
    let set = scratchfs::SetAttr { mode: Some(0o6755), ..Default::default() };
    e.setattr(ino, &set, &ROOT).unwrap();
    let unprivileged = WriteOptions { kill_suidgid: true, writer_gid: 1000, ..W };
    // Refused: the bits stay, and nothing is accepted.
    let mut seen = Vec::new();
    let r = e.write_then(fh, 0, &vec![0u8; 2 << 20], unprivileged, |n, cleared| seen.push((n, cleared)));
    assert!(is_quota(&r), "{r:?}");
    assert_eq!((seen.len(), e.getattr(ino).unwrap().perm), (0, 0o6755));
    // Accepted: cleared (set-group-ID too: it is group-executable, and the
    // writer is not in the file's group), and said so.
    assert_eq!(e.write_then(fh, 3, b"d", unprivileged, |n, cleared| seen.push((n, cleared))), Ok(1));
    assert_eq!(e.getattr(ino).unwrap().perm, 0o755);
    // Nothing left to clear; nor is anything cleared where the kernel did not ask.
    e.write_then(fh, 4, b"e", unprivileged, |n, cleared| seen.push((n, cleared))).unwrap();
    e.setattr(ino, &set, &ROOT).unwrap();
    e.write_then(fh, 5, b"f", W, |n, cleared| seen.push((n, cleared))).unwrap();
    assert_eq!(seen, [(1, true), (1, false), (1, false)]);
    assert_eq!((e.getattr(ino).unwrap().perm, content(&e, fh)), (0o6755, b"abcdef".to_vec()));
    e.release(fh).unwrap();
    invariants(&e);
}

#[test]
fn quota_counts_metadata_names_xattrs_and_link_targets() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    let base = e.stats().used_bytes;
    e.mkdir(Ino::ROOT, b"dir", 0o755, &ROOT).unwrap();
    let after_dir = e.stats().used_bytes;
    // An entry costs its name on top of DENTRY_COST; directories carry their index.
    assert_eq!(after_dir - base, scratchfs::NODE_COST + scratchfs::DIR_INDEX_COST + scratchfs::DENTRY_COST + 3);
    let l = e.symlink(Ino::ROOT, b"l", &[b't'; 1000], &ROOT).unwrap();
    assert_eq!(
        e.stats().used_bytes - after_dir,
        scratchfs::NODE_COST + scratchfs::DENTRY_COST + 1 + 1000 + scratchfs::TARGET_OVERHEAD
    );
    // The first attribute also brings the node's list of attributes, with
    // room for a few more.
    let no_xattrs = e.stats().used_bytes;
    e.setxattr(l.ino, b"trusted.first", b"", XattrSet::Create).unwrap();
    assert!(e.stats().used_bytes - no_xattrs > scratchfs::XATTR_COST + 13);
    let before = e.stats().used_bytes;
    e.setxattr(l.ino, b"trusted.big", &[0u8; 5000], XattrSet::Upsert).unwrap();
    assert_eq!(e.stats().used_bytes - before, scratchfs::XATTR_COST + 11 + 5000);
    e.setxattr(l.ino, b"trusted.big", &[0u8; 10], XattrSet::Replace).unwrap();
    assert_eq!(e.stats().used_bytes - before, scratchfs::XATTR_COST + 11 + 10);
    e.removexattr(l.ino, b"trusted.big").unwrap();
    assert_eq!(e.stats().used_bytes, before);
    e.removexattr(l.ino, b"trusted.first").unwrap();
    assert_eq!(e.stats().used_bytes, no_xattrs);
    invariants(&e);
}

/// An engine whose quota what `make` builds fills exactly (built once on a
/// roomy engine to learn its size), what `make` returned, and the quota.
fn exactly_full<T>(storage: StoragePolicy, make: impl Fn(&Engine) -> T) -> (Engine, T, u64) {
    let roomy = engine(64 << 20, storage);
    make(&roomy);
    let used = roomy.stats().used_bytes;
    let e = engine(used, storage);
    let made = make(&e);
    assert_eq!(e.stats().used_bytes, used, "full");
    (e, made, used)
}

#[test]
fn a_full_quota_still_punches_holes() {
    // One sequential file of 3 MiB.
    let (e, fh, used) = exactly_full(StoragePolicy::Sequential, |e| file_with(e, Ino::ROOT, "f", &[1u8; 3 << 20]).1);
    // Inside one extent: a split would need a copy that does not fit, so
    // the range is zeroed where it lies; no refusal, nothing charged.
    e.fallocate(fh, 100_000, 8192, Fallocate::PunchHole).unwrap();
    let mut want = vec![1u8; 3 << 20];
    want[100_000..108_192].fill(0);
    assert_eq!(content(&e, fh), want);
    assert_eq!((e.stats().used_bytes, e.stats().refusals.quota), (used, 0));
    // Over whole extents and the ends of others: freed as holes.
    e.fallocate(fh, 1 << 20, 2 << 20, Fallocate::PunchHole).unwrap();
    want[1 << 20..].fill(0);
    assert_eq!(content(&e, fh), want);
    assert!(e.stats().used_bytes < used - (2 << 20) + 4096, "the punched megabytes come back");
    assert_eq!(e.lseek(fh, 0, Seek::Hole), Ok(1 << 20));
    e.release(fh).unwrap();
    invariants(&e);
}

#[test]
fn a_full_quota_still_renames_to_a_name_no_longer_than_the_old_one() {
    let (e, d, used) = exactly_full(StoragePolicy::Auto, |e| {
        let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap().ino;
        e.mknod(Ino::ROOT, b"name-of-23-bytes-......", libc::S_IFREG | 0o644, 0, &ROOT).unwrap();
        d
    });
    // The same length, in the same directory and into another one.
    e.rename(Ino::ROOT, b"name-of-23-bytes-......", Ino::ROOT, b"other-name-of-23-bytes.", RenameMode::Replace)
        .unwrap();
    e.rename(Ino::ROOT, b"other-name-of-23-bytes.", d, b"name-of-23-bytes-......", RenameMode::Replace).unwrap();
    assert_eq!(e.stats().used_bytes, used);
    // Shorter: the difference comes back.
    e.rename(d, b"name-of-23-bytes-......", Ino::ROOT, b"f", RenameMode::Replace).unwrap();
    assert_eq!(e.stats().used_bytes, used - 22);
    // Longer than what is free: refused, unchanged.
    let r = e.rename(Ino::ROOT, b"f", d, &[b'x'; 30], RenameMode::Replace);
    assert!(is_quota(&r), "{r:?}");
    assert_eq!(
        (names(&e, Ino::ROOT), names(&e, d), e.stats().used_bytes),
        (vec!["d".into(), "f".into()], vec![], used - 22)
    );
    // Longer by no more than is free: taken.
    e.rename(Ino::ROOT, b"f", d, &[b'x'; 23], RenameMode::Replace).unwrap();
    assert_eq!(e.stats().used_bytes, used);
    invariants(&e);
}

#[test]
fn a_full_quota_still_takes_an_xattr_value_no_longer_than_the_old_one() {
    let (e, f, used) = exactly_full(StoragePolicy::Auto, |e| {
        let f = e.mknod(Ino::ROOT, b"f", libc::S_IFREG | 0o644, 0, &ROOT).unwrap().ino;
        e.setxattr(f, b"user.v", b"abcd", XattrSet::Create).unwrap();
        f
    });
    // Copied over the old value: nothing to reserve.
    e.setxattr(f, b"user.v", b"wxyz", XattrSet::Replace).unwrap();
    assert_eq!(e.getxattr(f, b"user.v").unwrap(), b"wxyz");
    // A longer one holds both values for a moment: refused, unchanged.
    assert!(matches!(e.setxattr(f, b"user.v", b"abcde", XattrSet::Replace), Err(FsError::NoSpace(_))));
    assert_eq!((e.getxattr(f, b"user.v").unwrap(), e.stats().used_bytes), (b"wxyz".to_vec(), used));
    // A shorter one is copied over it and gives the difference back.
    e.setxattr(f, b"user.v", b"ab", XattrSet::Replace).unwrap();
    assert_eq!((e.getxattr(f, b"user.v").unwrap(), e.stats().used_bytes), (b"ab".to_vec(), used - 2));
    e.setxattr(f, b"user.v", b"", XattrSet::Replace).unwrap();
    assert_eq!((e.getxattr(f, b"user.v").unwrap(), e.stats().used_bytes), (Vec::new(), used - 4));
    // Growing back is a replacement by a longer value: refused, unchanged.
    assert!(matches!(e.setxattr(f, b"user.v", b"abcd", XattrSet::Replace), Err(FsError::NoSpace(_))));
    assert_eq!((e.getxattr(f, b"user.v").unwrap(), e.stats().used_bytes), (Vec::new(), used - 4));
    invariants(&e);
}

#[test]
fn refused_creations_leave_no_trace() {
    // Just enough for the root and one more node.
    let dir = scratchfs::NODE_COST + scratchfs::DIR_INDEX_COST;
    let quota = dir + (dir + scratchfs::DENTRY_COST + 1) + 10;
    let e = engine(quota, StoragePolicy::Auto);
    e.mkdir(Ino::ROOT, b"a", 0o755, &ROOT).unwrap();
    let stats = e.stats();
    for r in [
        e.mkdir(Ino::ROOT, b"b", 0o755, &ROOT).map(|_| ()),
        e.mknod(Ino::ROOT, b"c", libc::S_IFREG | 0o644, 0, &ROOT).map(|_| ()),
        e.symlink(Ino::ROOT, b"d", b"target", &ROOT).map(|_| ()),
        e.create(Ino::ROOT, b"e", 0o644, rw(), &ROOT).map(|_| ()),
    ] {
        assert!(is_quota(&r), "{r:?}");
    }
    let now = e.stats();
    assert_eq!((now.used_bytes, now.nodes), (stats.used_bytes, stats.nodes));
    assert_eq!(names(&e, Ino::ROOT), ["a"]);
    assert_eq!(now.refusals.quota, 4);
    invariants(&e);
}

#[test]
fn rename_to_a_longer_name_needs_quota() {
    // After the root and `x`, 100 bytes are left: the old entry is released
    // before the new one is made, so a name up to 100 bytes longer than `x`
    // fits and one 101 bytes longer does not.
    let root = scratchfs::NODE_COST + scratchfs::DIR_INDEX_COST;
    let e = engine(root + scratchfs::NODE_COST + scratchfs::DENTRY_COST + 1 + 100, StoragePolicy::Auto);
    e.mknod(Ino::ROOT, b"x", libc::S_IFREG | 0o644, 0, &ROOT).unwrap();
    let long = [b'y'; 255];
    let r = e.rename(Ino::ROOT, b"x", Ino::ROOT, &long[..102], RenameMode::Replace);
    assert!(is_quota(&r), "{r:?}");
    assert_eq!(names(&e, Ino::ROOT), ["x"]);
    e.rename(Ino::ROOT, b"x", Ino::ROOT, &long[..101], RenameMode::Replace).unwrap();
    assert_eq!(e.stats().used_bytes, e.stats().quota_bytes);
    invariants(&e);
}

#[test]
fn node_limit_is_enforced_on_every_kind_of_creation() {
    let mut cfg = config(64 << 20, StoragePolicy::Auto);
    cfg.max_nodes = Some(3); // the root plus two
    let e = Engine::with_probe(cfg, Box::new(FakeProbe::new(u64::MAX))).unwrap();
    let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap().ino;
    let (f, fh) = file_with(&e, Ino::ROOT, "f", b"x");
    e.release(fh).unwrap();
    let limit = NoSpaceCause::Nodes { limit: 3 };
    assert_eq!(e.mkdir(Ino::ROOT, b"d2", 0o755, &ROOT), Err(FsError::NoSpace(limit)));
    assert_eq!(e.symlink(Ino::ROOT, b"l", b"t", &ROOT), Err(FsError::NoSpace(limit)));
    assert_eq!(e.mknod(Ino::ROOT, b"p", libc::S_IFIFO | 0o644, 0, &ROOT), Err(FsError::NoSpace(limit)));
    // A hard link is not a new node.
    e.link(f, Ino::ROOT, b"f2").unwrap();
    assert_eq!(e.statfs().files, 3);
    assert_eq!(e.statfs().ffree, 0);
    assert_eq!(e.stats().refusals.nodes, 3);
    e.rmdir(Ino::ROOT, b"d").unwrap();
    // The node is gone only once the kernel forgets it.
    assert!(e.mknod(Ino::ROOT, b"p", libc::S_IFIFO | 0o644, 0, &ROOT).is_err());
    e.forget(d, 1);
    e.mknod(Ino::ROOT, b"p", libc::S_IFIFO | 0o644, 0, &ROOT).unwrap();
    invariants(&e);
}

#[test]
fn xattr_limits_and_flags() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    let (ino, _) = file_with(&e, Ino::ROOT, "f", b"");
    assert_eq!(e.setxattr(ino, b"user.a", b"1", XattrSet::Replace), Err(FsError::NoData));
    e.setxattr(ino, b"user.a", b"1", XattrSet::Create).unwrap();
    assert_eq!(e.setxattr(ino, b"user.a", b"2", XattrSet::Create), Err(FsError::Exists));
    e.setxattr(ino, b"user.a", b"2", XattrSet::Replace).unwrap();
    assert_eq!(e.getxattr(ino, b"user.a").unwrap(), b"2");
    let name_255: Vec<u8> = b"user.".iter().copied().chain(std::iter::repeat_n(b'n', 250)).collect();
    e.setxattr(ino, &name_255, &[7u8; 65536], XattrSet::Upsert).unwrap();
    let name_256: Vec<u8> = b"user.".iter().copied().chain(std::iter::repeat_n(b'n', 251)).collect();
    assert_eq!(e.setxattr(ino, &name_256, b"", XattrSet::Upsert), Err(FsError::Range));
    assert_eq!(e.setxattr(ino, b"user.big", &[0u8; 65537], XattrSet::Upsert), Err(FsError::TooBig));
    assert_eq!(e.setxattr(ino, b"nonamespace", b"", XattrSet::Upsert), Err(FsError::NotSupported));
    assert_eq!(e.setxattr(ino, b"system.posix_acl_access", b"", XattrSet::Upsert), Err(FsError::NotSupported));
    let mut list = e.listxattr(ino, || panic!("asked with no trusted. name")).unwrap();
    list.sort_unstable();
    assert_eq!(list.iter().filter(|&&b| b == 0).count(), 2);
    // trusted. names are listed only to a privileged caller, asked once.
    e.setxattr(ino, b"trusted.x", b"1", XattrSet::Create).unwrap();
    e.setxattr(ino, b"trusted.y", b"2", XattrSet::Create).unwrap();
    let mut asked = 0;
    let names = |privileged: bool, asked: &mut u32| {
        let list = e
            .listxattr(ino, || {
                *asked += 1;
                privileged
            })
            .unwrap();
        let mut n: Vec<Vec<u8>> = list.split(|&b| b == 0).filter(|s| !s.is_empty()).map(<[u8]>::to_vec).collect();
        n.sort();
        n
    };
    assert_eq!(names(false, &mut asked), [b"user.a".to_vec(), name_255.clone()]);
    assert_eq!(
        names(true, &mut asked),
        [b"trusted.x".to_vec(), b"trusted.y".to_vec(), b"user.a".to_vec(), name_255.clone()]
    );
    assert_eq!(asked, 2);
    e.removexattr(ino, b"trusted.x").unwrap();
    e.removexattr(ino, b"trusted.y").unwrap();
    e.removexattr(ino, b"user.a").unwrap();
    assert_eq!(e.getxattr(ino, b"user.a"), Err(FsError::NoData));
    assert_eq!(e.removexattr(ino, b"user.a"), Err(FsError::NoData));
    invariants(&e);
}

fn guarded(mode: GuardMode, action: GuardAction, quota: u64, probe: &FakeProbe) -> Result<Engine, FsError> {
    let mut cfg = config(quota, StoragePolicy::Auto);
    cfg.guard = GuardConfig { mode, action, interval: Duration::ZERO, headroom: 1000 };
    Engine::with_probe(cfg, Box::new(probe.clone()))
}

#[test]
fn guard_refuses_a_quota_larger_than_memory_at_creation() {
    let probe = FakeProbe::new(10_000_000);
    let r = guarded(GuardMode::Init, GuardAction::Deny, 20_000_000, &probe);
    assert!(matches!(r, Err(FsError::NoSpace(NoSpaceCause::MemoryGuard { requested: 20_000_000, .. }))));
    let e = guarded(GuardMode::Init, GuardAction::Warn, 20_000_000, &probe).unwrap();
    assert_eq!(e.stats().guard_warnings, 1);
    assert!(guarded(GuardMode::None, GuardAction::Deny, 20_000_000, &probe).is_ok());
    assert!(guarded(GuardMode::PerWrite, GuardAction::Deny, 20_000_000, &probe).is_err());
}

#[test]
fn per_write_guard_refuses_when_memory_runs_short() {
    let probe = FakeProbe::new(100 << 20);
    let e = guarded(GuardMode::PerWrite, GuardAction::Deny, 64 << 20, &probe).unwrap();
    // A streaming writer: its first 1 MiB takes a whole 2 MiB grid cell.
    let cell = scratchfs::storage::CHUNK_SIZE;
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", &vec![1u8; cell as usize]);
    // The host runs short: only 500 kB left. Writing a new cell needs memory.
    probe.set(500_000);
    let r = e.write(fh, cell, &[2u8; 1 << 20], W);
    assert!(matches!(r, Err(FsError::NoSpace(NoSpaceCause::MemoryGuard { .. }))), "{r:?}");
    assert_eq!(e.getattr(ino).unwrap().size, cell, "nothing changed");
    assert_eq!(e.stats().refusals.memory_guard, 1);
    // Reads and in-place overwrites still work.
    e.write(fh, 0, &[3u8; 4096], W).unwrap();
    probe.set(100 << 20);
    e.write(fh, cell, &[2u8; 1 << 20], W).unwrap();
    e.release(fh).unwrap();
    invariants(&e);

    let probe = FakeProbe::new(100 << 20);
    let warn = guarded(GuardMode::PerWrite, GuardAction::Warn, 64 << 20, &probe).unwrap();
    let (_, fh) = file_with(&warn, Ino::ROOT, "f", b"");
    probe.set(0);
    warn.write(fh, 0, &[1u8; 1000], W).unwrap();
    assert_eq!(warn.stats().refusals.memory_guard, 0);
    assert!(warn.stats().guard_warnings >= 1);
}

/// A deleted file whose memory the kernel has not let go of yet (its lookup
/// reference, dropped by FORGET) is *pending*: a refusal may go away soon.
#[test]
fn a_deleted_file_is_pending_until_the_kernel_forgets_it() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    // `create` takes a lookup reference, as the kernel's CREATE does.
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", &[1u8; 10_000]);
    e.unlink(Ino::ROOT, b"f").unwrap();
    assert!(!e.reclaim_pending(), "an open file is not on its way out");
    invariants(&e);
    e.release(fh).unwrap();
    assert!(e.reclaim_pending(), "unlinked and closed, still looked up");
    invariants(&e);
    // Reopened through /proc/self/fd: not on its way out any more.
    let fh = e.open(ino, rw(), &ROOT).unwrap();
    assert!(!e.reclaim_pending());
    assert_eq!(content(&e, fh), vec![1u8; 10_000]);
    invariants(&e);
    e.release(fh).unwrap();
    assert!(e.reclaim_pending());
    let seen = e.reclaim_generation();
    e.forget(ino, 1);
    assert!(!e.reclaim_pending());
    assert_ne!(e.reclaim_generation(), seen, "its release is announced");
    invariants(&e);

    // A directory removed while looked up, and a file replaced by rename.
    let d = e.mkdir(Ino::ROOT, b"d", 0o755, &ROOT).unwrap();
    e.rmdir(Ino::ROOT, b"d").unwrap();
    assert!(e.reclaim_pending());
    e.forget(d.ino, 1);
    assert!(!e.reclaim_pending());
    let (a, fa) = file_with(&e, Ino::ROOT, "a", b"a");
    let (b, fb) = file_with(&e, Ino::ROOT, "b", b"b");
    e.release(fa).unwrap();
    e.release(fb).unwrap();
    e.rename(Ino::ROOT, b"a", Ino::ROOT, b"b", RenameMode::Replace).unwrap();
    assert!(e.reclaim_pending(), "the replaced file");
    invariants(&e);
    e.forget(b, 1);
    assert!(!e.reclaim_pending());
    e.forget(a, 1);
    invariants(&e);
}

/// What the adapter does with a refusal while a deleted file is pending:
/// wait for the kernel's FORGET (here from another thread), try again, and
/// count only the refusal it passes on.
#[test]
fn a_write_refused_while_a_deleted_file_is_pending_fits_once_it_is_released() {
    let e = std::sync::Arc::new(engine(4 << 20, StoragePolicy::Auto));
    let (old, fh) = file_with(&e, Ino::ROOT, "old", &[1u8; 3 << 20]);
    e.release(fh).unwrap();
    let (_, new) = file_with(&e, Ino::ROOT, "new", &[]);
    e.unlink(Ino::ROOT, b"old").unwrap();
    let seen = e.reclaim_generation();
    let r = e.write(new, 0, &[2u8; 3 << 20], W);
    let Err(FsError::NoSpace(cause)) = r else { panic!("expected a refusal, got {r:?}") };
    assert!(e.reclaim_pending());
    e.withdraw_refusal(&cause, false);
    assert_eq!(e.stats().refusals.quota, 0);
    // A page-cache writeback write's refusal is also counted as late.
    let late = WriteOptions { kill_suidgid: false, writer_gid: 0, from_page_cache: true, appending: false };
    let Err(FsError::NoSpace(cause)) = e.write(new, 0, &[2u8; 3 << 20], late) else { panic!("expected a refusal") };
    assert_eq!((e.stats().refusals.quota, e.stats().refusals.late), (1, 1));
    e.withdraw_refusal(&cause, true);
    assert_eq!((e.stats().refusals.quota, e.stats().refusals.late), (0, 0));
    let forgetter = {
        let e = e.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            e.forget(old, 1);
        })
    };
    assert!(e.wait_for_reclaim(seen, std::time::Instant::now() + Duration::from_secs(30)));
    forgetter.join().unwrap();
    assert_eq!(e.write(new, 0, &[2u8; 3 << 20], W).unwrap(), 3 << 20);
    assert_eq!(content(&e, new), vec![2u8; 3 << 20]);
    assert_eq!(e.stats().refusals.quota, 0);
    e.release(new).unwrap();
    invariants(&e);
}

#[test]
fn operations_that_allocate_nothing_go_through_when_measured_waste_fills_the_quota() {
    let q = 1 << 20;
    let e = engine(q, StoragePolicy::Auto);
    let (_, fa) = file_with(&e, Ino::ROOT, "a", b"new");
    let (b, fb) = file_with(&e, Ino::ROOT, "b", b"old");
    e.release(fa).unwrap();
    // The housekeeping thread measures the allocator holding more than
    // what is left of the quota (holes between live allocations).
    let used = e.stats().used_bytes;
    e.note_unaccounted(q - used + 4096, e.released_bytes());
    // Anything that needs memory is refused...
    assert!(is_quota(&e.mknod(Ino::ROOT, b"c", libc::S_IFREG | 0o644, 0, &ROOT)));
    assert!(is_quota(&e.write(fb, 3, &[7u8; 65536], W)));
    let refused = e.stats().refusals.quota;
    // ...what needs none is not: an overwrite in place, and the
    // write-then-rename pattern that replaces a file (it frees memory).
    assert_eq!(e.write(fb, 0, b"OLD", W), Ok(3));
    e.release(fb).unwrap();
    e.rename(Ino::ROOT, b"a", Ino::ROOT, b"b", RenameMode::Exchange).unwrap();
    e.rename(Ino::ROOT, b"a", Ino::ROOT, b"b", RenameMode::Replace).unwrap();
    assert_eq!(names(&e, Ino::ROOT), ["b"]);
    assert_eq!(e.stats().refusals.quota, refused);
    e.forget(b, 1);
    invariants(&e);
}

#[test]
fn a_full_attribute_name_list_is_its_own_error_not_a_quota_refusal() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    let (ino, _) = file_with(&e, Ino::ROOT, "f", b"");
    let mut stored = 0;
    let err = loop {
        match e.setxattr(ino, format!("user.{stored:0>250}").as_bytes(), b"", XattrSet::Upsert) {
            Ok(()) => stored += 1,
            Err(err) => break err,
        }
    };
    assert_eq!(err, FsError::AttrListFull);
    assert_eq!(stored, scratchfs::XATTR_LIST_MAX / 256);
    assert!(e.listxattr(ino, || true).unwrap().len() <= scratchfs::XATTR_LIST_MAX);
    // Not the quota's doing: not counted as a refusal (the adapter holds
    // quota refusals back while deleted memory comes back, and withdraws
    // their count when it does; an uncounted one would wrap the counter).
    assert_eq!(e.stats().refusals, Default::default());
    // Replacing an existing attribute still works.
    e.setxattr(ino, format!("user.{:0>250}", 0).as_bytes(), b"v", XattrSet::Replace).unwrap();
    invariants(&e);
}

#[test]
fn open_handles_beyond_the_baseline_are_charged_and_their_memory_comes_back() {
    use scratchfs::{HANDLE_COST, HANDLES_IN_BASELINE};
    let e = engine(64 << 20, StoragePolicy::Auto);
    let (ino, fh0) = file_with(&e, Ino::ROOT, "f", b"data");
    e.release(fh0).unwrap();
    let (used0, table0) = (e.stats().used_bytes, e.handle_table_bytes());
    let beyond = 1000;
    let fhs: Vec<_> = (0..HANDLES_IN_BASELINE + beyond).map(|_| e.open(ino, rw(), &ROOT).unwrap()).collect();
    assert_eq!(e.stats().used_bytes - used0, beyond * HANDLE_COST, "only handles beyond the baseline are charged");
    let table = e.handle_table_bytes() as u64;
    let per_handle = table / (HANDLES_IN_BASELINE + beyond);
    assert!(per_handle * 3 / 8 <= HANDLE_COST, "a handle costs {per_handle} bytes of table at most load");
    assert!(table <= (HANDLES_IN_BASELINE + beyond) * HANDLE_COST, "table {table} bytes");
    for fh in fhs {
        e.release(fh).unwrap();
    }
    assert_eq!(e.stats().used_bytes, used0);
    // The table gave its memory back (it held about 1.2 MiB).
    assert!(e.handle_table_bytes() <= table0 + 16 * 1024, "{} bytes kept after closing", e.handle_table_bytes());
    assert_eq!(e.open_handles(), 0);
    invariants(&e);
}

#[test]
fn an_open_the_quota_cannot_pay_for_fails_with_enfile_and_changes_nothing() {
    use scratchfs::HANDLES_IN_BASELINE;
    let e = engine(1 << 20, StoragePolicy::Auto);
    let (ino, fh0) = file_with(&e, Ino::ROOT, "f", &[7u8; 1000]);
    let fhs: Vec<_> = (1..HANDLES_IN_BASELINE).map(|_| e.open(ino, rw(), &ROOT).unwrap()).collect();
    // Fill the quota to the last byte.
    let (_, filler) = file_with(&e, Ino::ROOT, "filler", b"");
    let mut chunk = 1 << 19;
    while chunk > 0 {
        let at = e.getattr(e.lookup(Ino::ROOT, b"filler").unwrap().ino).unwrap().size;
        if e.write(filler, at, &vec![1u8; chunk], W).is_err() {
            chunk /= 2;
        }
    }
    // Charged opens take what is left, to the byte.
    let mut charged = Vec::new();
    let refusal = loop {
        match e.open(ino, rw(), &ROOT) {
            Ok(fh) => charged.push(fh),
            Err(err) => break err,
        }
        assert!(charged.len() < 1 << 20, "a million opens beyond the baseline and no refusal");
    };
    assert_eq!(refusal, FsError::TooManyOpenFiles);
    let used = e.stats().used_bytes;
    let attr = e.getattr(ino).unwrap();
    let open = e.open_handles();
    let trunc = scratchfs::OpenFlags { truncate: true, ..rw() };
    assert_eq!(e.open(ino, trunc, &ROOT), Err(FsError::TooManyOpenFiles));
    assert_eq!(e.stats().used_bytes, used);
    let after = e.getattr(ino).unwrap();
    assert_eq!((after.size, after.mtime), (attr.size, attr.mtime), "the refused O_TRUNC open truncated");
    assert_eq!(e.open_handles(), open);
    // Closing a charged handle makes room again.
    e.release(filler).unwrap();
    let fh = e.open(ino, rw(), &ROOT).unwrap();
    for fh in fhs.into_iter().chain(charged).chain([fh, fh0]) {
        e.release(fh).unwrap();
    }
    invariants(&e);
}
