//! A node: immutable identity plus one lock over everything mutable.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::dir::Dir;
use super::types::{Attr, Caller, FileKind, Ino, InodeFlags, Timestamp};
use super::xattr::Xattrs;
use crate::storage::FileData;
use crate::sync::RwLock;

/// Quota bytes charged for every node: the `Node` (200 bytes) in its `Arc`
/// with the allocator's header (224), and its slot in the node table (17
/// bytes, up to 46 at the lowest load the table keeps: 3/8).
pub const NODE_COST: u64 = 272;
/// Quota bytes charged for every directory entry, on top of its name. The
/// worst case of each part (`dir.rs` keeps tombstones below half the live
/// entries and grows its list by half): list slots of 48 bytes, up to 2.25
/// per entry (108); hash slots of 9 bytes, up to 3.5 per entry (31); for a
/// name over 22 bytes its allocation's header and rounding (23).
pub const DENTRY_COST: u64 = 168;
/// Extra quota bytes charged for every directory: what its entry list and
/// index hold whatever the number of entries (a few slots and tombstones,
/// hash control bytes, allocator headers), about 600 bytes at most.
pub const DIR_INDEX_COST: u64 = 640;
/// Quota bytes charged for a symlink target on top of its length (allocator
/// header and rounding).
pub const TARGET_OVERHEAD: u64 = 32;
/// `st_size` of a directory per entry, as tmpfs reports it.
const BOGO_DIRENT_SIZE: u64 = 20;
/// `st_blksize`.
pub(crate) const BLKSIZE: u32 = 4096;

pub(crate) struct Node {
    pub(crate) ino: Ino,
    pub(crate) kind: FileKind,
    /// Attributes, contents and xattrs. Lock order: directories before their
    /// descendants (ties broken by ascending ino, under the rename lock);
    /// directories before non-directories; non-directories by ascending ino.
    pub(crate) state: RwLock<NodeState>,
    /// Lookup references held by the kernel. Incremented only while the
    /// parent directory's lock is held (so never after the last link is
    /// gone), decremented by `forget` without a lock.
    pub(crate) lookups: AtomicU64,
    /// Open handles. Incremented only by callers that hold a lookup reference
    /// or an open handle. (32 bits: the kernel cannot hold 2^32 open files,
    /// and the node is 8 bytes smaller.)
    pub(crate) opens: AtomicU32,
    /// Parent directory, for directories (`..`). Changed only by rename,
    /// under the rename lock, so ancestry walks under that lock are stable.
    pub(crate) parent: AtomicU64,
}

/// Ownership, mode, link count and times.
#[derive(Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) perm: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) nlink: u32,
    pub(crate) rdev: u32,
    pub(crate) atime: Timestamp,
    pub(crate) mtime: Timestamp,
    pub(crate) ctime: Timestamp,
    /// `chattr` flags (in what would be padding: the node stays 200 bytes).
    pub(crate) flags: InodeFlags,
}

impl Meta {
    /// Clears set-user-ID, and set-group-ID where Linux does
    /// (`setattr_should_drop_sgid`): when the file is group-executable, or
    /// when the caller may not keep it, being neither in the file's group
    /// nor privileged. Linux does this when an unprivileged caller writes,
    /// truncates or fallocates a file, and on every change of owner.
    /// `may_keep_sgid` is [`NodeState::may_keep_sgid`] for the caller.
    /// Returns whether a bit was cleared.
    pub(crate) fn kill_suidgid(&mut self, may_keep_sgid: bool) -> bool {
        let perm = u32::from(self.perm);
        let mut clear = libc::S_ISUID;
        if perm & libc::S_IXGRP != 0 || !may_keep_sgid {
            clear |= libc::S_ISGID;
        }
        self.perm = (perm & !clear) as u16;
        perm & clear != 0
    }

    /// Whether an access at `now` moves the access time under relatime (the
    /// kernel's `relatime_need_update`, which tmpfs follows): when it is not
    /// later than the last modification or change, or is a day old.
    pub(crate) fn atime_due(&self, now: Timestamp) -> bool {
        self.atime <= self.mtime || self.atime <= self.ctime || now.secs.saturating_sub(self.atime.secs) >= 86_400
    }
}

pub(crate) enum Content {
    File(FileData),
    Dir(Dir),
    Symlink(Box<[u8]>),
    Special,
}

pub(crate) struct NodeState {
    pub(crate) meta: Meta,
    pub(crate) content: Content,
    pub(crate) xattrs: Xattrs,
    /// Quota bytes charged to this node apart from file data: `NODE_COST`,
    /// a directory's entries, a link target, xattrs.
    pub(crate) charge: u64,
    /// Set once the node has been released; no operation may touch it after.
    pub(crate) freed: bool,
    /// Counted as an orphan (unlinked, closed, not yet released) in the
    /// engine's `Reclaim`.
    pub(crate) orphan: bool,
}

impl Node {
    pub(crate) fn new(ino: Ino, kind: FileKind, parent: Ino, state: NodeState) -> Node {
        Node {
            ino,
            kind,
            state: RwLock::new(state),
            lookups: AtomicU64::new(0),
            opens: AtomicU32::new(0),
            parent: AtomicU64::new(parent.0),
        }
    }

    pub(crate) fn parent(&self) -> Ino {
        Ino(self.parent.load(Ordering::Acquire))
    }

    pub(crate) fn is_dir(&self) -> bool {
        self.kind == FileKind::Directory
    }

    /// Whether anything still references the node besides its links.
    pub(crate) fn referenced(&self) -> bool {
        self.lookups.load(Ordering::Acquire) != 0 || self.opens.load(Ordering::Acquire) != 0
    }
}

impl NodeState {
    /// Every quota byte this node accounts for.
    pub(crate) fn total_charge(&self) -> u64 {
        self.charge + self.file().map_or(0, FileData::charge)
    }

    pub(crate) fn file(&self) -> Option<&FileData> {
        match &self.content {
            Content::File(f) => Some(f),
            _ => None,
        }
    }

    pub(crate) fn dir(&self) -> Option<&Dir> {
        match &self.content {
            Content::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub(crate) fn dir_mut(&mut self) -> Option<&mut Dir> {
        match &mut self.content {
            Content::Dir(d) => Some(d),
            _ => None,
        }
    }

    pub(crate) fn attr(&self, ino: Ino, kind: FileKind) -> Attr {
        let m = &self.meta;
        let (size, stored, shape) = match &self.content {
            Content::File(f) => (f.len(), f.stored(), Some(f.shape())),
            Content::Dir(d) => ((d.len() as u64 + 2) * BOGO_DIRENT_SIZE, 0, None),
            Content::Symlink(t) => (t.len() as u64, 0, None),
            Content::Special => (0, 0, None),
        };
        Attr {
            ino,
            kind,
            perm: m.perm,
            nlink: m.nlink,
            uid: m.uid,
            gid: m.gid,
            rdev: m.rdev,
            size,
            blocks: stored.div_ceil(512),
            blksize: BLKSIZE,
            atime: m.atime,
            mtime: m.mtime,
            ctime: m.ctime,
            crtime: m.ctime,
            shape,
            flags: m.flags,
        }
    }

    /// Data changed: modification and change time.
    pub(crate) fn touch_modified(&mut self, now: Timestamp) {
        self.meta.mtime = now;
        self.meta.ctime = now;
    }

    /// [`Meta::kill_suidgid`] for a change made by `caller`.
    pub(crate) fn kill_suidgid_by(&mut self, caller: &Caller) -> bool {
        let keep = self.may_keep_sgid(caller);
        self.meta.kill_suidgid(keep)
    }

    /// Whether `caller` may keep a set-group-ID bit that is not
    /// group-executable: with `CAP_FSETID`, or as a member of the file's
    /// group. Only the caller's primary group is known here,
    /// so a member through a supplementary group loses the bit where tmpfs
    /// would keep it (the safe side: a privilege dropped, never kept).
    pub(crate) fn may_keep_sgid(&self, caller: &Caller) -> bool {
        caller.fsetid || caller.gid == self.meta.gid
    }
}

#[cfg(test)]
mod tests {
    /// `NODE_COST` counts on the node's size: a change here must be priced.
    #[test]
    fn node_size_is_what_node_cost_assumes() {
        eprintln!("Node {} bytes, Meta {}", std::mem::size_of::<super::Node>(), std::mem::size_of::<super::Meta>());
        assert_eq!(std::mem::size_of::<super::Node>(), 200);
    }
}
