//! Inode flags: the four `chattr` flags tmpfs keeps (immutable, append-only,
//! no-dump, no-atime), and the rules Linux's VFS applies for the first two.
//!
//! On a local filesystem the kernel enforces immutable and append-only
//! itself, from the inode's `i_flags`. Through FUSE it never learns them,
//! so the engine applies the same rules to every request, whoever checks
//! the mode bits. Each rule below names the kernel check it stands in for;
//! the mount test `inode_flags` (tests/mount_posix.rs) holds the outcomes
//! next to tmpfs's.
//!
//! - An *immutable* node cannot be opened for writing, truncated by path,
//!   given a new mode, owner or times, linked, renamed or removed, and has
//!   its xattrs fixed; an immutable directory takes no new entries and
//!   loses none.
//! - An *append-only* node opens for writing only with `O_APPEND`, cannot
//!   be truncated, given a new mode, owner or explicit times (touching it
//!   to now is allowed), linked, renamed or removed, or have its xattrs
//!   changed or its range punched; an append-only directory takes new
//!   entries but loses none.
//! - Immutable does not stop a descriptor opened before the flag was set
//!   from writing or `ftruncate`, as on tmpfs; append-only lets every
//!   descriptor append only (`Engine::check_append` in io.rs says why).
//! - *No-atime*: reads never move the access time. *No-dump* is only kept.

use super::node::NodeState;
use super::types::{Attr, Fallocate, Ino, OpenFlags, SetAttr, SetTime, Timestamp};
use super::{Engine, FsError, Result};

/// The inode flags a node keeps, in Linux's `FS_*_FL` numbering (the
/// `FS_IOC_GETFLAGS` int), which fits in a byte for these four.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InodeFlags(u8);

impl InodeFlags {
    /// `FS_IMMUTABLE_FL` (`chattr +i`).
    pub const IMMUTABLE: u32 = 0x10;
    /// `FS_APPEND_FL` (`chattr +a`).
    pub const APPEND: u32 = 0x20;
    /// `FS_NODUMP_FL` (`chattr +d`).
    pub const NODUMP: u32 = 0x40;
    /// `FS_NOATIME_FL` (`chattr +A`).
    pub const NOATIME: u32 = 0x80;
    /// Every flag kept; tmpfs keeps the same four.
    pub const KEPT: u32 = Self::IMMUTABLE | Self::APPEND | Self::NODUMP | Self::NOATIME;

    /// The flags `bits` names, or `None` if it names one not kept here
    /// (which the caller refuses, as tmpfs does, with EOPNOTSUPP).
    pub fn from_bits(bits: u32) -> Option<InodeFlags> {
        (bits & !Self::KEPT == 0).then_some(InodeFlags(bits as u8))
    }

    /// The flags as `FS_IOC_GETFLAGS` reports them.
    pub fn bits(self) -> u32 {
        u32::from(self.0)
    }

    fn has(self, flag: u32) -> bool {
        self.bits() & flag != 0
    }

    /// `chattr +i`.
    pub fn immutable(self) -> bool {
        self.has(Self::IMMUTABLE)
    }

    /// `chattr +a`.
    pub fn append_only(self) -> bool {
        self.has(Self::APPEND)
    }

    /// `chattr +A`.
    pub fn noatime(self) -> bool {
        self.has(Self::NOATIME)
    }

    /// What a node made in a directory with these flags starts with: its
    /// no-dump and no-atime, as on tmpfs (`SHMEM_FL_INHERITED`).
    pub(crate) fn inherited(self) -> InodeFlags {
        InodeFlags(self.0 & (Self::NODUMP | Self::NOATIME) as u8)
    }

    /// Immutable or append-only: the node's own entries, attributes and
    /// xattrs are fixed.
    pub fn fixed(self) -> bool {
        self.immutable() || self.append_only()
    }

    /// Whether the changes `set` makes are refused (`notify_change`,
    /// `setattr_prepare`, `vfs_truncate` and `do_ftruncate`).
    pub(crate) fn check_setattr(self, set: &SetAttr) -> Result<()> {
        // `vfs_utimes`: only both times to now (or NULL) is a touch; any
        // other change of times is explicit, one of them omitted included.
        let touches = set.atime.is_some() || set.mtime.is_some();
        let touch = set.atime == Some(SetTime::Now) && set.mtime == Some(SetTime::Now);
        let changes_meta = set.mode.is_some() || set.uid.is_some() || set.gid.is_some() || (touches && !touch);
        let refused = (self.fixed() && changes_meta)
            || (self.immutable() && touches)
            || (set.size.is_some() && (self.append_only() || (self.immutable() && !set.through_handle)));
        if refused { Err(FsError::NotPermitted) } else { Ok(()) }
    }

    /// `may_open`: writing an immutable node, writing an append-only one
    /// without `O_APPEND`, truncating either.
    pub(crate) fn check_open(self, flags: OpenFlags) -> Result<()> {
        let refused = (self.immutable() && (flags.write || flags.truncate))
            || (self.append_only() && ((flags.write && !flags.append) || flags.truncate));
        if refused { Err(FsError::NotPermitted) } else { Ok(()) }
    }

    /// `vfs_fallocate`: nothing on an immutable file; on an append-only one
    /// only allocating.
    pub(crate) fn check_fallocate(self, mode: Fallocate) -> Result<()> {
        let allocate = matches!(mode, Fallocate::Allocate { .. });
        if self.immutable() || (self.append_only() && !allocate) { Err(FsError::NotPermitted) } else { Ok(()) }
    }

    /// `may_delete` and `vfs_link` for the node itself, and `xattr_permission`.
    pub(crate) fn check_fixed(self) -> Result<()> {
        if self.fixed() { Err(FsError::NotPermitted) } else { Ok(()) }
    }

    /// `may_create` in a directory with these flags (its write permission).
    pub(crate) fn check_add_entry(self) -> Result<()> {
        if self.immutable() { Err(FsError::NotPermitted) } else { Ok(()) }
    }

    /// `may_delete` in a directory with these flags.
    pub(crate) fn check_remove_entry(self) -> Result<()> {
        self.check_fixed()
    }
}

impl NodeState {
    pub(crate) fn flags(&self) -> InodeFlags {
        self.meta.flags
    }
}

impl Engine {
    /// The inode flags of `ino`.
    pub fn inode_flags(&self, ino: Ino) -> Result<InodeFlags> {
        let node = self.node(ino)?;
        let st = node.state.read();
        if st.freed {
            return Err(FsError::NotFound);
        }
        Ok(st.flags())
    }

    /// Sets the inode flags of `ino` (a file or directory) to `flags` and
    /// its change time to now, if `may` allows it given the node's
    /// attributes, flags included (asked under the node's lock). Who may is
    /// the caller's to decide: the owner or `CAP_FOWNER`, and
    /// `CAP_LINUX_IMMUTABLE` to change immutable or append-only
    /// ([`access::check_set_flags`](super::access::check_set_flags)).
    pub fn set_inode_flags(&self, ino: Ino, flags: InodeFlags, may: impl FnOnce(&Attr) -> Result<()>) -> Result<()> {
        let node = self.node(ino)?;
        let mut st = node.state.write();
        if st.freed {
            return Err(FsError::NotFound);
        }
        if !matches!(node.kind, super::FileKind::RegularFile | super::FileKind::Directory) {
            return Err(FsError::NotSupported);
        }
        may(&st.attr(ino, node.kind))?;
        st.meta.flags = flags;
        st.meta.ctime = Timestamp::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(bits: u32) -> InodeFlags {
        InodeFlags::from_bits(bits).unwrap()
    }

    #[test]
    fn only_the_four_kept_flags_are_accepted() {
        assert_eq!(InodeFlags::from_bits(InodeFlags::KEPT).map(InodeFlags::bits), Some(0xf0));
        assert_eq!(InodeFlags::from_bits(0x1000), None, "FS_INDEX_FL is not kept");
        assert_eq!(InodeFlags::from_bits(0x10 | 0x4000_0000), None);
        assert_eq!(InodeFlags::default().bits(), 0);
    }

    #[test]
    fn open_rules_follow_may_open() {
        let rw = OpenFlags { read: true, write: true, ..Default::default() };
        let append = OpenFlags { append: true, ..rw };
        let read_trunc = OpenFlags { read: true, truncate: true, ..Default::default() };
        let (i, a, none) = (flags(InodeFlags::IMMUTABLE), flags(InodeFlags::APPEND), flags(0));
        assert!(i.check_open(OpenFlags { read: true, ..Default::default() }).is_ok());
        for f in [rw, append, read_trunc] {
            assert_eq!(i.check_open(f), Err(FsError::NotPermitted));
            assert!(none.check_open(f).is_ok());
        }
        assert_eq!(a.check_open(rw), Err(FsError::NotPermitted));
        assert!(a.check_open(append).is_ok());
        assert_eq!(a.check_open(OpenFlags { truncate: true, ..append }), Err(FsError::NotPermitted));
    }

    #[test]
    fn setattr_rules_follow_notify_change() {
        let (i, a) = (flags(InodeFlags::IMMUTABLE), flags(InodeFlags::APPEND));
        let at = SetTime::At(Timestamp { secs: 1, nanos: 0 });
        let refused = Err(FsError::NotPermitted);
        let chmod = SetAttr { mode: Some(0o600), ..Default::default() };
        let touch = SetAttr { atime: Some(SetTime::Now), mtime: Some(SetTime::Now), ..Default::default() };
        let now_and_omit = SetAttr { mtime: Some(SetTime::Now), ..Default::default() };
        let utime = SetAttr { atime: Some(at), mtime: Some(at), ..Default::default() };
        let truncate = SetAttr { size: Some(0), ..Default::default() };
        let ftruncate = SetAttr { through_handle: true, ..truncate };
        for f in [i, a] {
            assert_eq!(f.check_setattr(&chmod), refused);
            assert_eq!(f.check_setattr(&utime), refused);
            assert_eq!(f.check_setattr(&truncate), refused);
            assert!(f.check_setattr(&SetAttr::default()).is_ok(), "chown(f, -1, -1)");
        }
        assert_eq!(i.check_setattr(&touch), refused);
        assert!(a.check_setattr(&touch).is_ok());
        assert_eq!(a.check_setattr(&now_and_omit), refused, "UTIME_NOW beside UTIME_OMIT is explicit");
        assert!(i.check_setattr(&ftruncate).is_ok(), "ftruncate of a descriptor opened before");
        assert_eq!(a.check_setattr(&ftruncate), refused);
        assert!(flags(InodeFlags::NODUMP | InodeFlags::NOATIME).check_setattr(&chmod).is_ok());
    }

    #[test]
    fn fallocate_and_entry_rules() {
        let (i, a) = (flags(InodeFlags::IMMUTABLE), flags(InodeFlags::APPEND));
        let allocate = Fallocate::Allocate { keep_size: false };
        assert!(a.check_fallocate(allocate).is_ok());
        assert!(a.check_fallocate(Fallocate::PunchHole).is_err());
        assert!(i.check_fallocate(allocate).is_err());
        assert!(a.check_add_entry().is_ok() && a.check_remove_entry().is_err());
        assert!(i.check_add_entry().is_err() && i.check_remove_entry().is_err());
        assert!(flags(InodeFlags::NOATIME).check_fixed().is_ok());
    }
}
