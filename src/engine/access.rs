//! Who may do what: the POSIX permission rules as Linux applies them, for a
//! mount on which the kernel does not check them itself (mounted without
//! `default_permissions`, see `docs/design.md`, "Who checks permissions").
//!
//! Pure decisions over a node's attributes and the caller's credentials.
//! The caller's supplementary groups and capabilities are asked for only
//! when the mode bits alone do not decide, through [`Credentials`], so a
//! caller who owns what it touches costs nothing more than a comparison.

use super::{Attr, FileKind, FsError, InodeFlags, Result, SetAttr, SetTime};

/// Read permission (for a directory: listing it).
pub const READ: u32 = 4;
/// Write permission (for a directory: adding and removing entries).
pub const WRITE: u32 = 2;
/// Execute permission (for a directory: searching it).
pub const EXEC: u32 = 1;

const S_ISGID: u32 = 0o2000;
const S_ISVTX: u16 = 0o1000;

/// The capabilities that override the rules below (Linux numbering).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    /// Change any file's owner and group.
    Chown = 0,
    /// Read, write and search anything (execute: where one execute bit is set).
    DacOverride = 1,
    /// Read anything, search any directory.
    DacReadSearch = 2,
    /// Act as the owner of any file (mode, times).
    Fowner = 3,
    /// Keep set-group-ID when changing the mode of a file of another group.
    Fsetid = 4,
    /// Set or clear the immutable and append-only inode flags.
    LinuxImmutable = 9,
    /// See `trusted.` extended attributes.
    SysAdmin = 21,
}

/// The identity a request acts with.
pub trait Credentials {
    /// Filesystem user id.
    fn uid(&self) -> u32;
    /// Filesystem group id (the primary group).
    fn gid(&self) -> u32;
    /// Whether `gid` is the filesystem group id or one of the supplementary groups.
    fn in_group(&self, gid: u32) -> bool;
    /// Whether the caller holds `cap` in its effective set.
    fn capable(&self, cap: Capability) -> bool;
}

/// Checks that `who` may set the inode flags of the node described by
/// `attr` to `new` (`vfs_fileattr_set`): the owner or a caller with
/// `CAP_FOWNER` may, and changing immutable or append-only (either way)
/// also takes `CAP_LINUX_IMMUTABLE`. `EPERM` otherwise.
pub fn check_set_flags(attr: &Attr, new: InodeFlags, who: &impl Credentials) -> Result<()> {
    let fixed = InodeFlags::IMMUTABLE | InodeFlags::APPEND;
    let owner = who.uid() == attr.uid || who.capable(Capability::Fowner);
    if !owner || ((attr.flags.bits() ^ new.bits()) & fixed != 0 && !who.capable(Capability::LinuxImmutable)) {
        return Err(FsError::NotPermitted);
    }
    Ok(())
}

/// Checks that `who` may access the node described by `attr` for `mask`
/// (a combination of [`READ`], [`WRITE`] and [`EXEC`]): the owner's, the
/// group's or the others' bits, whichever class the caller falls in first,
/// then the overriding capabilities. `EACCES` otherwise.
pub fn check(attr: &Attr, who: &impl Credentials, mask: u32) -> Result<()> {
    let mask = mask & (READ | WRITE | EXEC);
    // `inode_permission`: nobody may write an immutable node (`EPERM`),
    // whatever the mode says.
    if mask & WRITE != 0 && attr.flags.immutable() {
        return Err(FsError::NotPermitted);
    }
    let mode = u32::from(attr.perm);
    let class = if who.uid() == attr.uid {
        mode >> 6
    } else if (mode & 0o070) != ((mode << 3) & 0o070) && who.in_group(attr.gid) {
        // Group and other bits differ: membership decides.
        mode >> 3
    } else {
        mode
    };
    if class & mask == mask {
        return Ok(());
    }
    let granted = if attr.kind == FileKind::Directory {
        (mask & WRITE == 0 && who.capable(Capability::DacReadSearch)) || who.capable(Capability::DacOverride)
    } else {
        (mask == READ && who.capable(Capability::DacReadSearch))
            || ((mask & EXEC == 0 || mode & 0o111 != 0) && who.capable(Capability::DacOverride))
    };
    if granted { Ok(()) } else { Err(FsError::AccessDenied) }
}

/// Checks that `who` may remove or replace the entry for `victim` in
/// `dir`, beyond write and search permission on `dir`: in a sticky
/// directory, only the entry's owner, the directory's owner or a caller
/// with `CAP_FOWNER` may (`EPERM`).
pub fn check_sticky(dir: &Attr, victim: &Attr, who: &impl Credentials) -> Result<()> {
    if dir.perm & S_ISVTX == 0 || who.uid() == victim.uid || who.uid() == dir.uid || who.capable(Capability::Fowner) {
        Ok(())
    } else {
        Err(FsError::NotPermitted)
    }
}

/// Checks that `who` may write a `user.` extended attribute of the node
/// described by `attr`, beyond write permission: not of an immutable or
/// append-only node, and on a sticky directory, only its owner or a caller
/// with `CAP_FOWNER` may (`EPERM`).
pub fn check_xattr_write(attr: &Attr, who: &impl Credentials) -> Result<()> {
    attr.flags.check_fixed()?;
    let sticky_dir = attr.kind == FileKind::Directory && attr.perm & S_ISVTX != 0;
    if sticky_dir && who.uid() != attr.uid && !who.capable(Capability::Fowner) {
        return Err(FsError::NotPermitted);
    }
    check(attr, who, WRITE)
}

/// Checks that `who` may make a new hard link to the node described by
/// `attr` where the `fs.protected_hardlinks` sysctl is on (`protected`
/// is asked only when the caller neither owns the node nor has
/// `CAP_FOWNER`): only to a regular file that is neither set-user-ID nor
/// set-group-ID and executable, and that the caller may read and write.
pub fn check_hardlink_source(attr: &Attr, who: &impl Credentials, protected: impl FnOnce() -> bool) -> Result<()> {
    if who.uid() == attr.uid || who.capable(Capability::Fowner) || !protected() {
        return Ok(());
    }
    let mode = u32::from(attr.perm);
    let safe = attr.kind == FileKind::RegularFile
        && mode & 0o4000 == 0
        && mode & 0o2010 != 0o2010
        && check(attr, who, READ | WRITE).is_ok();
    if safe { Ok(()) } else { Err(FsError::NotPermitted) }
}

/// The access an `open(2)` with these flags needs: read and/or write by the
/// access mode, write for `O_TRUNC`, execute alone for the kernel's exec.
pub fn open_mask(flags: i32) -> u32 {
    // The kernel's internal flag for opens made by execve (`__FMODE_EXEC`).
    const FMODE_EXEC: i32 = 0x20;
    if flags & FMODE_EXEC != 0 {
        return EXEC;
    }
    let mut mask = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => READ,
        libc::O_WRONLY => WRITE,
        _ => READ | WRITE,
    };
    if flags & libc::O_TRUNC != 0 {
        mask |= WRITE;
    }
    mask
}

/// Checks that `who` may make the change `set` to the node described by
/// `attr`, and drops set-group-ID from a new mode when the caller may not
/// keep it (as `chmod(2)` does for a file of a group the caller is not in).
/// A size change through an open descriptor (`set.through_handle`) needs
/// no write permission: that was checked when it was opened.
pub fn check_setattr(attr: &Attr, set: &mut SetAttr, who: &impl Credentials) -> Result<()> {
    let owner = who.uid() == attr.uid;
    let owner_or_capable = || owner || who.capable(Capability::Fowner);
    // utimes(NULL) or both UTIME_NOW: the owner or anyone who may write.
    let touch = matches!((set.atime, set.mtime), (Some(SetTime::Now), Some(SetTime::Now)));
    if touch && !owner_or_capable() {
        check(attr, who, WRITE)?;
    }
    if set.size.is_some() && !set.through_handle {
        check(attr, who, WRITE)?;
    }
    if let Some(uid) = set.uid
        && !(owner && uid == attr.uid)
        && !who.capable(Capability::Chown)
    {
        return Err(FsError::NotPermitted);
    }
    if let Some(gid) = set.gid
        && !(owner && (gid == attr.gid || who.in_group(gid)))
        && !who.capable(Capability::Chown)
    {
        return Err(FsError::NotPermitted);
    }
    check_chown_clears(attr, set, who)?;
    if let Some(mode) = set.mode.as_mut() {
        if !owner_or_capable() {
            return Err(FsError::NotPermitted);
        }
        let group = set.gid.unwrap_or(attr.gid);
        if *mode & S_ISGID != 0 && !who.in_group(group) && !who.capable(Capability::Fsetid) {
            *mode &= !S_ISGID;
        }
    }
    if !touch && (set.atime.is_some() || set.mtime.is_some()) && !owner_or_capable() {
        return Err(FsError::NotPermitted);
    }
    Ok(())
}

/// Checks the part of a chown the kernel leaves to the filesystem even
/// when it checks permissions itself (`FUSE_HANDLE_KILLPRIV_V2`): a chown
/// of a file also clears its set-user-ID bit, and its set-group-ID bit where
/// that is executable (or the caller may not keep it), and on tmpfs that
/// mode change needs the owner's rights or `CAP_FOWNER` (`EPERM`).
///
/// `chown(f, -1, -1)` reaches the filesystem as an empty SETATTR, all that
/// is left of the kernel's request once it has stripped the bits to clear.
/// So does the kernel's own request to clear them before a writer's
/// `fallocate(2)` or `copy_file_range(2)` (`file_remove_privs`, which
/// needs no ownership). The two cannot be told apart; an empty SETATTR is
/// therefore granted to the owner, to `CAP_FOWNER`, and to a caller who
/// may write a regular file (who could clear the bits by writing anyway;
/// writing a FIFO or a device clears nothing), and refused to anyone else.
pub fn check_chown_clears(attr: &Attr, set: &SetAttr, who: &impl Credentials) -> Result<()> {
    let empty = set.is_empty();
    if !(empty || set.uid.is_some() || set.gid.is_some()) || attr.kind == FileKind::Directory {
        return Ok(());
    }
    // What the engine will clear (`NodeState::kill_suidgid_by`), which
    // knows the caller's primary group only: a member through a
    // supplementary group is refused where tmpfs would let the bit be.
    let perm = u32::from(attr.perm);
    let clears = perm & 0o4000 != 0
        || (perm & S_ISGID != 0 && (perm & 0o010 != 0 || !(who.gid() == attr.gid || who.capable(Capability::Fsetid))));
    if !clears || who.uid() == attr.uid || who.capable(Capability::Fowner) {
        return Ok(());
    }
    if empty && attr.kind == FileKind::RegularFile && check(attr, who, WRITE).is_ok() {
        return Ok(());
    }
    Err(FsError::NotPermitted)
}

/// Whether reading or writing the extended attribute `name` needs the
/// node's read or write permission: every namespace but `security.` and
/// `system.` (left to the security module and to the filesystem) and
/// `trusted.` (the kernel requires `CAP_SYS_ADMIN` for it itself).
pub fn xattr_needs_permission(name: &[u8]) -> bool {
    ![&b"security."[..], b"system.", b"trusted."].iter().any(|p| name.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Ino, Timestamp};

    struct Who {
        uid: u32,
        groups: &'static [u32],
        caps: &'static [Capability],
    }

    impl Credentials for Who {
        fn uid(&self) -> u32 {
            self.uid
        }
        fn gid(&self) -> u32 {
            self.groups[0]
        }
        fn in_group(&self, gid: u32) -> bool {
            self.groups.contains(&gid)
        }
        fn capable(&self, cap: Capability) -> bool {
            self.caps.contains(&cap)
        }
    }

    const ALL: &[Capability] = &[
        Capability::Chown,
        Capability::DacOverride,
        Capability::DacReadSearch,
        Capability::Fowner,
        Capability::Fsetid,
    ];
    const ROOT: Who = Who { uid: 0, groups: &[0], caps: ALL };
    const ROOT_NO_CAPS: Who = Who { uid: 0, groups: &[0], caps: &[] };
    const ALICE: Who = Who { uid: 1000, groups: &[1000, 50], caps: &[] };
    const BOB: Who = Who { uid: 1001, groups: &[1001], caps: &[] };

    fn attr(kind: FileKind, perm: u16, uid: u32, gid: u32) -> Attr {
        let t = Timestamp::default();
        Attr {
            ino: Ino(2),
            kind,
            perm,
            nlink: 1,
            uid,
            gid,
            rdev: 0,
            size: 0,
            blocks: 0,
            blksize: 4096,
            atime: t,
            mtime: t,
            ctime: t,
            crtime: t,
            shape: None,
            flags: InodeFlags::default(),
        }
    }

    fn file(perm: u16, uid: u32, gid: u32) -> Attr {
        attr(FileKind::RegularFile, perm, uid, gid)
    }

    fn dir(perm: u16, uid: u32, gid: u32) -> Attr {
        attr(FileKind::Directory, perm, uid, gid)
    }

    #[test]
    fn the_first_matching_class_decides() {
        // Owner bits apply to the owner even where others have more.
        assert_eq!(check(&file(0o077, 1000, 1000), &ALICE, READ), Err(FsError::AccessDenied));
        assert_eq!(check(&file(0o400, 1000, 1000), &ALICE, READ), Ok(()));
        assert_eq!(check(&file(0o400, 1000, 1000), &ALICE, WRITE), Err(FsError::AccessDenied));
        // Group bits through a supplementary group, even below the others'.
        assert_eq!(check(&file(0o640, 0, 50), &ALICE, READ), Ok(()));
        assert_eq!(check(&file(0o604, 0, 50), &ALICE, READ), Err(FsError::AccessDenied));
        assert_eq!(check(&file(0o604, 0, 50), &BOB, READ), Ok(()));
        assert_eq!(check(&file(0o640, 0, 50), &BOB, READ), Err(FsError::AccessDenied));
        assert_eq!(check(&dir(0o751, 0, 0), &BOB, EXEC), Ok(()));
        assert_eq!(check(&dir(0o751, 0, 0), &BOB, WRITE | EXEC), Err(FsError::AccessDenied));
    }

    #[test]
    fn capabilities_override_as_in_linux() {
        assert_eq!(check(&file(0o000, 5, 5), &ROOT, READ | WRITE), Ok(()));
        assert_eq!(check(&dir(0o000, 5, 5), &ROOT, READ | WRITE | EXEC), Ok(()));
        // Executing needs one execute bit, even for root.
        assert_eq!(check(&file(0o644, 0, 0), &ROOT, EXEC), Err(FsError::AccessDenied));
        assert_eq!(check(&file(0o001, 5, 5), &ROOT, EXEC), Ok(()));
        // Root without its capabilities is an ordinary owner or other.
        assert_eq!(check(&file(0o000, 0, 0), &ROOT_NO_CAPS, READ), Err(FsError::AccessDenied));
        assert_eq!(check(&file(0o600, 0, 0), &ROOT_NO_CAPS, READ | WRITE), Ok(()));
        // CAP_DAC_READ_SEARCH reads and searches, never writes.
        let reader = Who { uid: 7, groups: &[7], caps: &[Capability::DacReadSearch] };
        assert_eq!(check(&file(0o000, 5, 5), &reader, READ), Ok(()));
        assert_eq!(check(&file(0o000, 5, 5), &reader, WRITE), Err(FsError::AccessDenied));
        assert_eq!(check(&dir(0o000, 5, 5), &reader, READ | EXEC), Ok(()));
        assert_eq!(check(&dir(0o000, 5, 5), &reader, WRITE | EXEC), Err(FsError::AccessDenied));
    }

    #[test]
    fn a_sticky_directory_keeps_others_entries() {
        let sticky = dir(0o1777, 0, 0);
        assert_eq!(check_sticky(&sticky, &file(0o644, 0, 0), &ALICE), Err(FsError::NotPermitted));
        assert_eq!(check_sticky(&sticky, &file(0o644, 1000, 0), &ALICE), Ok(()));
        assert_eq!(check_sticky(&dir(0o1777, 1000, 0), &file(0o644, 0, 0), &ALICE), Ok(()));
        assert_eq!(check_sticky(&dir(0o777, 0, 0), &file(0o644, 0, 0), &ALICE), Ok(()));
        assert_eq!(check_sticky(&sticky, &file(0o644, 5, 5), &ROOT), Ok(()));
        // Without CAP_FOWNER, root is held to the rule in another's directory.
        assert_eq!(check_sticky(&dir(0o1777, 7, 7), &file(0o644, 5, 5), &ROOT_NO_CAPS), Err(FsError::NotPermitted));
        assert_eq!(check_sticky(&sticky, &file(0o644, 5, 5), &ROOT_NO_CAPS), Ok(()), "root owns the directory");
    }

    #[test]
    fn sticky_directory_xattrs_and_protected_hardlinks() {
        let sticky = dir(0o1777, 0, 0);
        assert_eq!(check_xattr_write(&sticky, &ALICE), Err(FsError::NotPermitted));
        assert_eq!(check_xattr_write(&dir(0o1777, 1000, 0), &ALICE), Ok(()));
        assert_eq!(check_xattr_write(&dir(0o777, 0, 0), &ALICE), Ok(()));
        assert_eq!(check_xattr_write(&file(0o644, 0, 0), &ALICE), Err(FsError::AccessDenied));
        let on = || true;
        assert_eq!(check_hardlink_source(&file(0o600, 0, 0), &ALICE, on), Err(FsError::NotPermitted));
        assert_eq!(check_hardlink_source(&file(0o666, 0, 0), &ALICE, on), Ok(()));
        assert_eq!(check_hardlink_source(&file(0o4777, 0, 0), &ALICE, on), Err(FsError::NotPermitted));
        assert_eq!(check_hardlink_source(&file(0o2777, 0, 0), &ALICE, on), Err(FsError::NotPermitted));
        assert_eq!(
            check_hardlink_source(&attr(FileKind::NamedPipe, 0o666, 0, 0), &ALICE, on),
            Err(FsError::NotPermitted)
        );
        assert_eq!(check_hardlink_source(&file(0o600, 1000, 0), &ALICE, on), Ok(()), "the owner may");
        assert_eq!(check_hardlink_source(&file(0o600, 0, 0), &ALICE, || false), Ok(()), "the sysctl is off");
        let mut asked = false;
        assert_eq!(
            check_hardlink_source(&file(0o600, 5, 5), &ROOT, || {
                asked = true;
                true
            }),
            Ok(())
        );
        assert!(!asked, "CAP_FOWNER decides before the sysctl is read");
    }

    #[test]
    fn open_masks() {
        assert_eq!(open_mask(libc::O_RDONLY), READ);
        assert_eq!(open_mask(libc::O_WRONLY | libc::O_APPEND), WRITE);
        assert_eq!(open_mask(libc::O_RDWR), READ | WRITE);
        assert_eq!(open_mask(libc::O_RDONLY | libc::O_TRUNC), READ | WRITE);
        assert_eq!(open_mask(libc::O_RDONLY | 0x20), EXEC);
    }

    fn change(f: impl FnOnce(&mut SetAttr)) -> SetAttr {
        let mut s = SetAttr::default();
        f(&mut s);
        s
    }

    #[test]
    fn ownership_mode_and_times_follow_the_owner_rules() {
        let mine = file(0o644, 1000, 1000);
        let theirs = file(0o666, 1001, 1001);
        // chown: only with CAP_CHOWN, unless nothing changes.
        assert_eq!(check_setattr(&mine, &mut change(|s| s.uid = Some(1001)), &ALICE), Err(FsError::NotPermitted));
        assert_eq!(check_setattr(&mine, &mut change(|s| s.uid = Some(1000)), &ALICE), Ok(()));
        assert_eq!(check_setattr(&mine, &mut change(|s| s.uid = Some(1001)), &ROOT), Ok(()));
        // chgrp: the owner, to a group it is in.
        assert_eq!(check_setattr(&mine, &mut change(|s| s.gid = Some(50)), &ALICE), Ok(()));
        assert_eq!(check_setattr(&mine, &mut change(|s| s.gid = Some(7)), &ALICE), Err(FsError::NotPermitted));
        assert_eq!(check_setattr(&theirs, &mut change(|s| s.gid = Some(1000)), &ALICE), Err(FsError::NotPermitted));
        // chmod: the owner or CAP_FOWNER.
        assert_eq!(check_setattr(&theirs, &mut change(|s| s.mode = Some(0o600)), &ALICE), Err(FsError::NotPermitted));
        assert_eq!(check_setattr(&theirs, &mut change(|s| s.mode = Some(0o600)), &ROOT), Ok(()));
        // Set-group-ID kept only by a member of the group (or CAP_FSETID).
        let mut s = change(|s| s.mode = Some(0o2755));
        assert_eq!(check_setattr(&file(0o755, 1000, 7), &mut s, &ALICE), Ok(()));
        assert_eq!(s.mode, Some(0o755));
        let mut s = change(|s| s.mode = Some(0o2755));
        assert_eq!(check_setattr(&file(0o755, 1000, 50), &mut s, &ALICE), Ok(()));
        assert_eq!(s.mode, Some(0o2755));
        // Explicit times: the owner only; "now": anyone who may write.
        let explicit = |s: &mut SetAttr| s.mtime = Some(SetTime::At(Timestamp::default()));
        let now = |s: &mut SetAttr| (s.atime, s.mtime) = (Some(SetTime::Now), Some(SetTime::Now));
        assert_eq!(check_setattr(&theirs, &mut change(explicit), &ALICE), Err(FsError::NotPermitted));
        assert_eq!(check_setattr(&theirs, &mut change(now), &ALICE), Ok(()));
        assert_eq!(check_setattr(&file(0o644, 1001, 1001), &mut change(now), &ALICE), Err(FsError::AccessDenied));
        assert_eq!(check_setattr(&mine, &mut change(explicit), &ALICE), Ok(()));
        // chown of a set-user-ID (or executable set-group-ID) file clears
        // the bit: the owner's rights (or CAP_FOWNER) are needed as well.
        let chown_only: &[Capability] = &[Capability::Chown, Capability::Fsetid];
        let chowner = Who { uid: 0, groups: &[0], caps: chown_only };
        for perm in [0o4755, 0o2755] {
            let f = file(perm, 5, 5);
            assert_eq!(check_setattr(&f, &mut change(|s| s.uid = Some(6)), &chowner), Err(FsError::NotPermitted));
            assert_eq!(check_setattr(&f, &mut change(|s| s.uid = Some(6)), &ROOT), Ok(()));
        }
        assert_eq!(check_setattr(&file(0o2745, 5, 5), &mut change(|s| s.gid = Some(6)), &chowner), Ok(()));
        assert_eq!(check_setattr(&file(0o755, 5, 5), &mut change(|s| s.uid = Some(6)), &chowner), Ok(()));
        // chown(f, -1, -1) arrives empty: it clears the bits too, so only the
        // owner, CAP_FOWNER, or a caller who may write the file (the same
        // request clears them before a writer's fallocate) gets it.
        for perm in [0o4755, 0o6755, 0o2755] {
            let f = file(perm, 1001, 1001);
            assert_eq!(check_setattr(&f, &mut change(|_| ()), &ALICE), Err(FsError::NotPermitted), "{perm:o}");
            assert_eq!(check_chown_clears(&f, &SetAttr::default(), &ALICE), Err(FsError::NotPermitted), "{perm:o}");
            assert_eq!(check_chown_clears(&f, &SetAttr::default(), &BOB), Ok(()), "the owner");
            assert_eq!(check_chown_clears(&f, &SetAttr::default(), &ROOT), Ok(()), "CAP_FOWNER");
            assert_eq!(check_chown_clears(&file(perm | 0o002, 1001, 1001), &SetAttr::default(), &ALICE), Ok(()));
            // Writing a FIFO clears nothing: its writers get no exemption.
            let fifo = Attr { kind: FileKind::NamedPipe, ..file(perm | 0o002, 1001, 1001) };
            assert_eq!(check_chown_clears(&fifo, &SetAttr::default(), &ALICE), Err(FsError::NotPermitted), "{perm:o}");
        }
        let member_keeps = file(0o2745, 1001, 1000);
        assert_eq!(check_chown_clears(&member_keeps, &SetAttr::default(), &ALICE), Ok(()), "nothing cleared");
        // The engine knows the primary group only and would clear the bit
        // for a supplementary member: refused rather than stripped.
        let supplementary = file(0o2745, 1001, 50);
        assert_eq!(check_chown_clears(&supplementary, &SetAttr::default(), &ALICE), Err(FsError::NotPermitted));
        assert_eq!(
            check_chown_clears(&file(0o2745, 1001, 1001), &SetAttr::default(), &ALICE),
            Err(FsError::NotPermitted)
        );
        assert_eq!(check_chown_clears(&file(0o755, 1001, 1001), &SetAttr::default(), &ALICE), Ok(()));
        // Truncating by name needs write permission; through a descriptor it was checked at open.
        let trunc = |s: &mut SetAttr| s.size = Some(0);
        assert_eq!(check_setattr(&file(0o444, 1000, 1000), &mut change(trunc), &ALICE), Err(FsError::AccessDenied));
        let ftrunc = |s: &mut SetAttr| *s = SetAttr { size: Some(0), through_handle: true, ..SetAttr::default() };
        assert_eq!(check_setattr(&file(0o444, 1000, 1000), &mut change(ftrunc), &ALICE), Ok(()));
    }

    #[test]
    fn xattr_namespaces() {
        assert!(xattr_needs_permission(b"user.mime_type"));
        assert!(!xattr_needs_permission(b"security.capability"));
        assert!(!xattr_needs_permission(b"system.posix_acl_access"));
        assert!(!xattr_needs_permission(b"trusted.overlay.opaque"));
    }

    #[test]
    fn an_immutable_node_refuses_writing_before_its_mode_is_read() {
        let fl = |bits| InodeFlags::from_bits(bits).unwrap();
        let immutable = Attr { flags: fl(InodeFlags::IMMUTABLE), ..file(0o600, 1001, 1001) };
        assert_eq!(check(&immutable, &ALICE, WRITE), Err(FsError::NotPermitted), "not EACCES");
        assert_eq!(check(&immutable, &ROOT, WRITE), Err(FsError::NotPermitted), "whatever the capabilities");
        assert_eq!(check(&immutable, &ALICE, READ), Err(FsError::AccessDenied), "reading: the mode decides");
        assert_eq!(check(&immutable, &BOB, READ), Ok(()));
        let append_only = Attr { flags: fl(InodeFlags::APPEND), ..file(0o666, 1001, 1001) };
        assert_eq!(check(&append_only, &ALICE, WRITE), Ok(()), "opening to append is may_open's to judge");
        assert_eq!(check_xattr_write(&append_only, &ROOT), Err(FsError::NotPermitted), "xattr_permission");
    }

    #[test]
    fn inode_flags_are_the_owners_and_immutable_takes_its_capability() {
        let fl = |bits| InodeFlags::from_bits(bits).unwrap();
        let linux_immutable = Who { uid: 1000, groups: &[1000], caps: &[Capability::LinuxImmutable] };
        let bobs = file(0o644, 1001, 1001);
        assert_eq!(check_set_flags(&bobs, fl(InodeFlags::NODUMP), &BOB), Ok(()), "the owner");
        assert_eq!(check_set_flags(&bobs, fl(InodeFlags::NODUMP), &ALICE), Err(FsError::NotPermitted));
        assert_eq!(check_set_flags(&bobs, fl(InodeFlags::NODUMP), &ROOT), Ok(()), "CAP_FOWNER");
        for bits in [InodeFlags::IMMUTABLE, InodeFlags::APPEND] {
            assert_eq!(check_set_flags(&bobs, fl(bits), &BOB), Err(FsError::NotPermitted), "{bits:#x}");
            assert_eq!(check_set_flags(&bobs, fl(bits), &linux_immutable), Err(FsError::NotPermitted), "not the owner");
            assert_eq!(check_set_flags(&file(0o644, 1000, 1000), fl(bits), &linux_immutable), Ok(()));
            let fixed = Attr { flags: fl(bits), ..bobs };
            assert_eq!(check_set_flags(&fixed, fl(0), &BOB), Err(FsError::NotPermitted), "clearing it too");
            assert_eq!(check_set_flags(&fixed, fl(bits | InodeFlags::NOATIME), &BOB), Ok(()), "keeping it");
        }
    }
}
