//! Names: lookup, creation, links, removal, rename and directory listing.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::acl;
use super::dir::Dir;
use super::node::{Content, DENTRY_COST, DIR_INDEX_COST, Meta, NODE_COST, Node, NodeState, TARGET_OVERHEAD};
use super::stats::bump;
use super::types::{Attr, Caller, FileKind, Ino, OpenFlags, RenameMode, Timestamp};
use super::xattr::Xattrs;
use super::{Engine, FsError, Result};
use crate::storage::FileData;
use crate::sync::RwLockWriteGuard;

/// Longest name in a directory.
pub const NAME_MAX: usize = 255;
/// Longest symlink target (`PATH_MAX` less its NUL).
pub const TARGET_MAX: usize = 4095;

/// A directory entry handed to a `readdir` callback.
#[derive(Clone, Copy, Debug)]
pub struct Dirent<'a> {
    /// Inode of the entry.
    pub ino: Ino,
    /// Kind of the entry.
    pub kind: FileKind,
    /// Name bytes.
    pub name: &'a [u8],
    /// Pass this back as `offset` to continue after this entry.
    pub cookie: u64,
}

fn dentry_cost(name: &[u8]) -> u64 {
    DENTRY_COST + name.len() as u64
}

/// A name that may be created or removed: 1..=255 bytes, no `/` or NUL,
/// not `.` or `..`.
fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > NAME_MAX {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name == b"." || name == b".." || name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(FsError::InvalidArgument);
    }
    Ok(())
}

/// An ACL a new node starts with: attribute name and value.
type InitialAcl = (&'static [u8], Vec<u8>);

/// What a new node is made of.
struct NewNode<'a> {
    kind: FileKind,
    perm: u32,
    rdev: u32,
    content: Content,
    /// Quota bytes beyond `NODE_COST` (a link target).
    extra: u64,
    op: &'a str,
}

/// How often `create` tries again when the name it found taken is gone
/// by the time it looks it up (each retry means another caller changed
/// the name meanwhile; a bound keeps a pathological race finite).
const CREATE_ATTEMPTS: u32 = 64;

impl Engine {
    pub(super) fn dir_node(&self, ino: Ino) -> Result<Arc<Node>> {
        let node = self.node(ino)?;
        if !node.is_dir() {
            return Err(FsError::NotDir);
        }
        Ok(node)
    }

    /// Looks `name` up in `parent` and takes a lookup reference on the result.
    pub fn lookup(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.attr_of_name(parent, name, true)
    }

    /// Attributes of `name` in `parent`, without taking a lookup reference
    /// (for permission checks that depend on what a name refers to).
    pub fn peek(&self, parent: Ino, name: &[u8]) -> Result<Attr> {
        self.attr_of_name(parent, name, false)
    }

    fn attr_of_name(&self, parent: Ino, name: &[u8], take_reference: bool) -> Result<Attr> {
        let node = self.resolve(parent, name)?;
        let st = node.state.read();
        if st.freed {
            return Err(FsError::NotFound);
        }
        if take_reference {
            node.lookups.fetch_add(1, Ordering::AcqRel);
        }
        Ok(st.attr(node.ino, node.kind))
    }

    /// Finds `name` in `parent` (`.` and `..` included) without taking a
    /// lookup reference. The node may be unlinked by the time it is used.
    pub(crate) fn resolve(&self, parent: Ino, name: &[u8]) -> Result<Arc<Node>> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        let dir = self.dir_node(parent)?;
        match name {
            b"." => return Ok(dir),
            b".." => return self.node(dir.parent()),
            _ => {}
        }
        let st = dir.state.read();
        let entry = st.dir().and_then(|d| d.get(name)).ok_or(FsError::NotFound)?;
        self.table.get(entry.ino).ok_or_else(|| FsError::Internal(format!("dangling entry to inode {}", entry.ino.0)))
    }

    /// Creates a node under `parent`, with one lookup reference.
    fn make_node(&self, parent: Ino, name: &[u8], new: NewNode<'_>, caller: &Caller) -> Result<Arc<Node>> {
        check_name(name)?;
        let pnode = self.dir_node(parent)?;
        let mut pst = pnode.state.write();
        if pst.meta.nlink == 0 {
            return Err(FsError::NotFound);
        }
        let Some(dir) = pst.dir() else { return Err(FsError::NotDir) };
        if dir.get(name).is_some() {
            return Err(FsError::Exists);
        }
        pst.flags().check_add_entry()?;
        let is_dir = new.kind == FileKind::Directory;
        if is_dir && pst.meta.nlink == u32::MAX {
            return Err(FsError::TooManyLinks);
        }
        let (bits, acls) = self.initial_permissions(&pst, &new, caller);
        let nodes = self.quota.reserve_node().map_err(|c| self.refused(c, new.op, parent))?;
        let own = NODE_COST + new.extra + if acls.is_empty() { 0 } else { Xattrs::charge_for(&acls) };
        let bytes = self.reserve(own + dentry_cost(name), new.op, parent)?;

        let now = Timestamp::now();
        let mut perm = (new.perm & 0o7000) | bits;
        let gid = if u32::from(pst.meta.perm) & libc::S_ISGID != 0 {
            if is_dir {
                perm |= libc::S_ISGID;
            }
            pst.meta.gid
        } else {
            caller.gid
        };
        let meta = Meta {
            perm: perm as u16,
            uid: caller.uid,
            gid,
            nlink: if is_dir { 2 } else { 1 },
            rdev: new.rdev,
            atime: now,
            mtime: now,
            ctime: now,
            flags: pst.flags().inherited(),
        };
        let state = NodeState {
            meta,
            content: new.content,
            xattrs: Xattrs::with(acls),
            charge: own,
            freed: false,
            orphan: false,
        };
        let ino = self.table.alloc_ino();
        let node = Arc::new(Node::new(ino, new.kind, parent, state));
        node.lookups.store(1, Ordering::Release);
        self.table.insert(node.clone());
        if let Some(dir) = pst.dir_mut() {
            dir.insert(name, ino, new.kind);
        }
        pst.charge += dentry_cost(name);
        if is_dir {
            pst.meta.nlink += 1;
        }
        pst.touch_modified(now);
        drop(pst);
        bytes.keep();
        nodes.keep();
        bump(match new.kind {
            FileKind::Directory => &self.counters.directories,
            FileKind::RegularFile => self.counters.shape(self.initial_shape()),
            FileKind::Symlink => &self.counters.symlinks,
            _ => &self.counters.specials,
        });
        Ok(node)
    }

    /// The permission bits of a node about to be made in the directory
    /// whose state is `pst`, and the ACLs it starts with. With `posix_acl`
    /// and a default ACL on the directory, the default ACL decides (masked
    /// by the mode asked for) and a new directory inherits it too;
    /// otherwise the caller's umask applies. Symbolic links get neither.
    fn initial_permissions(&self, pst: &NodeState, new: &NewNode<'_>, caller: &Caller) -> (u32, Vec<InitialAcl>) {
        if new.kind == FileKind::Symlink {
            return (new.perm & 0o777, Vec::new());
        }
        let default = if self.cfg.posix_acl { pst.xattrs.get(acl::DEFAULT) } else { None };
        let Some(default) = default else { return (new.perm & 0o777 & !caller.umask, Vec::new()) };
        let mut access = default.to_vec();
        let (bits, equivalent) = acl::inherit(&mut access, new.perm);
        let mut acls = Vec::new();
        if !equivalent {
            acls.push((acl::ACCESS, access));
        }
        if new.kind == FileKind::Directory {
            acls.push((acl::DEFAULT, default.to_vec()));
        }
        (bits, acls)
    }

    fn attr_of(node: &Node) -> Attr {
        node.state.read().attr(node.ino, node.kind)
    }

    /// Creates a regular file, FIFO, socket or device node (`mode` carries
    /// the kind in its `S_IFMT` bits).
    pub fn mknod(&self, parent: Ino, name: &[u8], mode: u32, rdev: u32, caller: &Caller) -> Result<Attr> {
        let kind = FileKind::from_mode(mode).ok_or(FsError::InvalidArgument)?;
        let content = match kind {
            FileKind::RegularFile => Content::File(FileData::new(self.initial_shape())),
            FileKind::NamedPipe | FileKind::Socket | FileKind::CharDevice | FileKind::BlockDevice => Content::Special,
            FileKind::Directory | FileKind::Symlink => return Err(FsError::InvalidArgument),
        };
        let rdev = if matches!(kind, FileKind::CharDevice | FileKind::BlockDevice) { rdev } else { 0 };
        let new = NewNode { kind, perm: mode, rdev, content, extra: 0, op: "mknod" };
        self.make_node(parent, name, new, caller).map(|n| Self::attr_of(&n))
    }

    /// Creates a directory.
    pub fn mkdir(&self, parent: Ino, name: &[u8], mode: u32, caller: &Caller) -> Result<Attr> {
        let new = NewNode {
            kind: FileKind::Directory,
            perm: mode,
            rdev: 0,
            content: Content::Dir(Dir::default()),
            extra: DIR_INDEX_COST,
            op: "mkdir",
        };
        self.make_node(parent, name, new, caller).map(|n| Self::attr_of(&n))
    }

    /// Creates a symbolic link to `target` (1..=4095 bytes).
    pub fn symlink(&self, parent: Ino, name: &[u8], target: &[u8], caller: &Caller) -> Result<Attr> {
        if target.is_empty() {
            return Err(FsError::NotFound);
        }
        if target.len() > TARGET_MAX {
            return Err(FsError::NameTooLong);
        }
        let new = NewNode {
            kind: FileKind::Symlink,
            perm: 0o777,
            rdev: 0,
            content: Content::Symlink(target.into()),
            extra: target.len() as u64 + TARGET_OVERHEAD,
            op: "symlink",
        };
        self.make_node(parent, name, new, caller).map(|n| Self::attr_of(&n))
    }

    /// Creates and opens a regular file. If the name exists and `flags` is
    /// not exclusive, opens the existing file instead (truncating it if
    /// asked), as `open(O_CREAT)` does.
    pub fn create(
        &self,
        parent: Ino,
        name: &[u8],
        mode: u32,
        flags: OpenFlags,
        caller: &Caller,
    ) -> Result<(Attr, super::Fh)> {
        // Without O_EXCL an existing name is opened; if it goes away between
        // the attempt to create and the lookup (an unlink or rename racing
        // us), creating is tried again: open(2) with O_CREAT never fails
        // with ENOENT for a name it may create.
        let mut attempts = 0;
        let node = loop {
            attempts += 1;
            let new = NewNode {
                kind: FileKind::RegularFile,
                perm: mode,
                rdev: 0,
                content: Content::File(FileData::new(self.initial_shape())),
                extra: 0,
                op: "create",
            };
            match self.make_node(parent, name, new, caller) {
                Ok(node) => break node,
                Err(FsError::Exists) if !flags.exclusive => match self.resolve(parent, name) {
                    Ok(node) if node.is_dir() => return Err(FsError::IsDir),
                    Ok(node) => {
                        let st = node.state.read();
                        if !st.freed {
                            node.lookups.fetch_add(1, Ordering::AcqRel);
                            drop(st);
                            break node;
                        }
                    }
                    Err(FsError::NotFound) => {}
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            }
            // The name went away between the two steps.
            if attempts == CREATE_ATTEMPTS {
                return Err(FsError::NotFound);
            }
        };
        let fh = match self.open_node(&node, flags, caller) {
            Ok(fh) => fh,
            Err(e) => {
                self.forget(node.ino, 1);
                return Err(e);
            }
        };
        Ok((Self::attr_of(&node), fh))
    }

    /// Adds the name `newname` in `newparent` for the non-directory `ino`.
    pub fn link(&self, ino: Ino, newparent: Ino, newname: &[u8]) -> Result<Attr> {
        check_name(newname)?;
        let node = self.node(ino)?;
        if node.is_dir() {
            return Err(FsError::NotPermitted);
        }
        let pnode = self.dir_node(newparent)?;
        let mut pst = pnode.state.write();
        let mut st = node.state.write();
        if pst.meta.nlink == 0 || st.meta.nlink == 0 || st.freed {
            return Err(FsError::NotFound);
        }
        if pst.dir().is_some_and(|d| d.get(newname).is_some()) {
            return Err(FsError::Exists);
        }
        st.flags().check_fixed()?;
        pst.flags().check_add_entry()?;
        if st.meta.nlink == u32::MAX {
            return Err(FsError::TooManyLinks);
        }
        let bytes = self.reserve(dentry_cost(newname), "link", newparent)?;
        let now = Timestamp::now();
        if let Some(d) = pst.dir_mut() {
            d.insert(newname, ino, node.kind);
        }
        pst.charge += dentry_cost(newname);
        pst.touch_modified(now);
        st.meta.nlink += 1;
        st.meta.ctime = now;
        node.lookups.fetch_add(1, Ordering::AcqRel);
        bytes.keep();
        Ok(st.attr(ino, node.kind))
    }

    /// Removes the entry `name` (not a directory) from `parent`.
    pub fn unlink(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.remove_entry(parent, name, false)
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&self, parent: Ino, name: &[u8]) -> Result<()> {
        self.remove_entry(parent, name, true)
    }

    fn remove_entry(&self, parent: Ino, name: &[u8], want_dir: bool) -> Result<()> {
        if name.len() > NAME_MAX {
            return Err(FsError::NameTooLong);
        }
        match name {
            b"." => return Err(if want_dir { FsError::InvalidArgument } else { FsError::IsDir }),
            b".." => return Err(if want_dir { FsError::NotEmpty } else { FsError::IsDir }),
            _ => {}
        }
        let pnode = self.dir_node(parent)?;
        let mut pst = pnode.state.write();
        let entry = pst.dir().and_then(|d| d.get(name)).ok_or(FsError::NotFound)?;
        let child = self.node(entry.ino)?;
        let now = Timestamp::now();
        {
            let mut cst = child.state.write();
            // `may_delete`: the flags before the kinds.
            pst.flags().check_remove_entry()?;
            cst.flags().check_fixed()?;
            let is_dir = entry.kind == FileKind::Directory;
            match (want_dir, is_dir) {
                (true, false) => return Err(FsError::NotDir),
                (false, true) => return Err(FsError::IsDir),
                _ => {}
            }
            if cst.dir().is_some_and(|d| !d.is_empty()) {
                return Err(FsError::NotEmpty);
            }
            if let Some(d) = pst.dir_mut() {
                d.remove(name);
            }
            pst.charge -= dentry_cost(name);
            self.quota.release(dentry_cost(name));
            if is_dir {
                pst.meta.nlink -= 1;
                cst.meta.nlink = 0;
            } else {
                cst.meta.nlink -= 1;
            }
            cst.meta.ctime = now;
            self.note_orphan(&child, &mut cst);
        }
        pst.touch_modified(now);
        drop(pst);
        self.maybe_free(&child);
        Ok(())
    }

    /// Whether directory `a` is `d` or one of its ancestors. Walks parent
    /// pointers, which only rename changes: call with the rename lock held.
    fn is_ancestor_or_self(&self, a: Ino, mut d: Ino) -> bool {
        loop {
            if d == a {
                return true;
            }
            if d == Ino::ROOT {
                return false;
            }
            match self.table.get(d) {
                Some(node) => d = node.parent(),
                None => return false,
            }
        }
    }

    /// Renames `parent/name` to `newparent/newname`.
    pub fn rename(&self, parent: Ino, name: &[u8], newparent: Ino, newname: &[u8], mode: RenameMode) -> Result<()> {
        self.rename_leaving(parent, name, newparent, newname, mode, None)
    }

    /// Renames `parent/name` to `newparent/newname` (replacing it unless
    /// `no_replace`) and leaves a whiteout at the old name in the same
    /// step: a character device 0:0 with no permission bits, owned by
    /// `caller` (`RENAME_WHITEOUT`, with which overlayfs hides a lower
    /// file; the kernel has checked the caller's `CAP_MKNOD`). The kernel
    /// learns of the whiteout only when it looks the name up, so it starts
    /// without a lookup reference. Its node and entry are reserved first:
    /// if they do not fit, nothing changes.
    pub fn rename_whiteout(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        no_replace: bool,
        caller: &Caller,
    ) -> Result<()> {
        let mode = if no_replace { RenameMode::NoReplace } else { RenameMode::Replace };
        self.rename_leaving(parent, name, newparent, newname, mode, Some(caller))
    }

    fn rename_leaving(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        mode: RenameMode,
        whiteout: Option<&Caller>,
    ) -> Result<()> {
        check_name(name)?;
        check_name(newname)?;
        let _rename = self.rename_lock.lock();
        let op = self.dir_node(parent)?;
        let np = self.dir_node(newparent)?;
        let same = parent == newparent;
        // Parent locks: an ancestor before its descendant, otherwise ascending ino.
        let new_first = !same
            && (self.is_ancestor_or_self(newparent, parent)
                || (!self.is_ancestor_or_self(parent, newparent) && newparent < parent));
        let mut parents = if new_first {
            let first = np.state.write();
            Parents { first, second: Some(op.state.write()), new_first }
        } else {
            let first = op.state.write();
            Parents { first, second: (!same).then(|| np.state.write()), new_first }
        };
        if parents.old_parent().meta.nlink == 0 || parents.new_parent().meta.nlink == 0 {
            return Err(FsError::NotFound);
        }
        let entry = |st: &NodeState, n: &[u8]| st.dir().and_then(|d| d.get(n)).map(|e| (e.ino, e.kind));
        let src = entry(parents.old_parent(), name).ok_or(FsError::NotFound)?;
        let dst = entry(parents.new_parent(), newname);
        match (mode, dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(FsError::Exists),
            (RenameMode::Exchange, None) => return Err(FsError::NotFound),
            (_, Some((dino, _))) if dino == src.0 => return Ok(()), // two names of one inode
            _ => {}
        }
        let src_dir = src.1 == FileKind::Directory;
        let dst_dir = dst.is_some_and(|d| d.1 == FileKind::Directory);
        if src_dir && !same && self.is_ancestor_or_self(src.0, newparent) {
            return Err(FsError::InvalidArgument); // into its own subtree
        }
        if let Some((dino, _)) = dst
            && dst_dir
            && !same
            && self.is_ancestor_or_self(dino, parent)
        {
            // The target contains the source: not empty, or a loop when exchanging.
            return Err(if mode == RenameMode::Exchange { FsError::InvalidArgument } else { FsError::NotEmpty });
        }
        let src_node = self.node(src.0)?;
        let dst_node = dst.map(|d| self.node(d.0)).transpose()?;
        let (mut sst, mut dst_st) = lock_children(&src_node, dst_node.as_deref());
        // `may_delete` of the source and of a target (their flags before
        // their kinds), `may_create` otherwise.
        parents.old_parent().flags().check_remove_entry()?;
        sst.flags().check_fixed()?;
        match dst_st.as_ref() {
            Some(d) => {
                parents.new_parent().flags().check_remove_entry()?;
                d.flags().check_fixed()?;
            }
            None => parents.new_parent().flags().check_add_entry()?,
        }
        if mode != RenameMode::Exchange && dst.is_some() {
            if src_dir && !dst_dir {
                return Err(FsError::NotDir);
            }
            if !src_dir && dst_dir {
                return Err(FsError::IsDir);
            }
        }
        if mode != RenameMode::Exchange && dst_st.as_ref().is_some_and(|d| d.dir().is_some_and(|d| !d.is_empty())) {
            return Err(FsError::NotEmpty);
        }
        let now = Timestamp::now();
        if mode == RenameMode::Exchange {
            let Some(dst) = dst else { return Err(FsError::NotFound) };
            if let Some(d) = parents.new_parent().dir_mut() {
                d.repoint(newname, src.0, src.1);
            }
            if let Some(d) = parents.old_parent().dir_mut() {
                d.repoint(name, dst.0, dst.1);
            }
            if !same && src_dir != dst_dir {
                // One directory changes parent: its `..` link moves with it.
                let (from, to) = if src_dir { (-1, 1) } else { (1, -1) };
                add_links(parents.old_parent(), from);
                add_links(parents.new_parent(), to);
            }
            if !same && src_dir {
                src_node.parent.store(newparent.0, Ordering::Release);
            }
            if let Some(d) = dst_node.as_ref().filter(|_| !same && dst_dir) {
                d.parent.store(parent.0, Ordering::Release);
            }
            if let Some(d) = dst_st.as_mut() {
                d.meta.ctime = now;
            }
        } else {
            // The target entry (if any) is repointed and keeps its charged
            // name; otherwise a new entry is made. The old entry goes first
            // (its name is freed at once), so only what the new one needs
            // beyond it is reserved: on a full filesystem a rename to a name
            // no longer than the old one still works, as on tmpfs.
            let frees = dentry_cost(name);
            let grow = if dst.is_some() { 0 } else { dentry_cost(newname) };
            let whiteout_room = match whiteout {
                Some(_) => {
                    let node = self.quota.reserve_node().map_err(|c| self.refused(c, "rename", parent))?;
                    Some((node, self.reserve(NODE_COST + frees, "rename", parent)?))
                }
                None => None,
            };
            let bytes = self.reserve(grow.saturating_sub(frees), "rename", newparent)?;
            if let Some(d) = parents.old_parent().dir_mut() {
                d.remove(name);
            }
            parents.old_parent().charge -= frees;
            if let (Some(caller), Some((node, room))) = (whiteout, whiteout_room) {
                self.add_whiteout(parents.old_parent(), parent, name, caller, now);
                parents.old_parent().charge += frees;
                room.keep();
                node.keep();
            }
            let nd = parents.new_parent();
            match nd.dir_mut() {
                Some(d) if dst.is_some() => d.repoint(newname, src.0, src.1),
                Some(d) => d.insert(newname, src.0, src.1),
                None => {}
            }
            nd.charge += grow;
            bytes.settle(frees, grow);
            if dst_dir {
                add_links(parents.new_parent(), -1);
            }
            if src_dir && !same {
                src_node.parent.store(newparent.0, Ordering::Release);
                add_links(parents.old_parent(), -1);
                add_links(parents.new_parent(), 1);
            }
            if let (Some(d), Some(n)) = (dst_st.as_mut(), &dst_node) {
                d.meta.nlink = if dst_dir { 0 } else { d.meta.nlink - 1 };
                d.meta.ctime = now;
                self.note_orphan(n, d);
            }
        }
        sst.meta.ctime = now;
        parents.old_parent().touch_modified(now);
        parents.new_parent().touch_modified(now);
        drop((sst, dst_st, parents));
        if mode != RenameMode::Exchange
            && let Some(d) = &dst_node
        {
            self.maybe_free(d);
        }
        Ok(())
    }

    /// Makes the whiteout `rename_whiteout` leaves at `dir/name` (whose
    /// state is `pst`, its node and entry reserved by the caller).
    fn add_whiteout(&self, pst: &mut NodeState, dir: Ino, name: &[u8], caller: &Caller, now: Timestamp) {
        let gid = if u32::from(pst.meta.perm) & libc::S_ISGID != 0 { pst.meta.gid } else { caller.gid };
        let meta = Meta {
            perm: 0,
            uid: caller.uid,
            gid,
            nlink: 1,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            flags: pst.flags().inherited(),
        };
        let state = NodeState {
            meta,
            content: Content::Special,
            xattrs: Xattrs::default(),
            charge: NODE_COST,
            freed: false,
            orphan: false,
        };
        let ino = self.table.alloc_ino();
        // No lookup reference: the kernel learns of it only by looking it up.
        self.table.insert(Arc::new(Node::new(ino, FileKind::CharDevice, dir, state)));
        if let Some(d) = pst.dir_mut() {
            d.insert(name, ino, FileKind::CharDevice);
        }
        bump(&self.counters.specials);
    }

    /// Lists `ino` from after `offset` (0 = from the start), calling `emit`
    /// for each entry until it returns `true` (its buffer is full). `.` and
    /// `..` come first, with cookies 1 and 2.
    pub fn readdir(&self, ino: Ino, offset: u64, mut emit: impl FnMut(Dirent<'_>) -> bool) -> Result<()> {
        self.list(ino, offset, |d, _| emit(d), false)
    }

    /// Like [`Engine::readdir`], also handing over each entry's attributes
    /// (`None` for `.` and `..`). Every entry `emit` accepts (returns
    /// `false` for), other than `.` and `..`, takes a lookup reference.
    pub fn readdirplus(
        &self,
        ino: Ino,
        offset: u64,
        emit: impl FnMut(Dirent<'_>, Option<&Attr>) -> bool,
    ) -> Result<()> {
        self.list(ino, offset, emit, true)
    }

    fn list(
        &self,
        ino: Ino,
        offset: u64,
        mut emit: impl FnMut(Dirent<'_>, Option<&Attr>) -> bool,
        plus: bool,
    ) -> Result<()> {
        let node = self.dir_node(ino)?;
        let st = node.state.read();
        let Some(dir) = st.dir() else { return Err(FsError::NotDir) };
        self.list_locked(&node, dir, offset, &mut emit, plus);
        // Every getdents(2) on tmpfs is an access of the directory
        // (`iterate_dir`); each READDIR here answers one.
        self.accessed(&node, st);
        Ok(())
    }

    /// Emits the entries of `dir` (the directory `node`, read-locked by the
    /// caller) after `offset`, until `emit` says the reply is full.
    fn list_locked(
        &self,
        node: &Node,
        dir: &Dir,
        offset: u64,
        emit: &mut impl FnMut(Dirent<'_>, Option<&Attr>) -> bool,
        plus: bool,
    ) {
        let dots = [(1, node.ino, b".".as_slice()), (2, node.parent(), b"..".as_slice())];
        for (cookie, dino, name) in dots {
            if offset < cookie && emit(Dirent { ino: dino, kind: FileKind::Directory, name, cookie }, None) {
                return;
            }
        }
        for (cookie, e) in dir.after(offset.max(2)) {
            let d = Dirent { ino: e.ino, kind: e.kind, name: &e.name, cookie };
            if !plus {
                if emit(d, None) {
                    break;
                }
                continue;
            }
            let Some(child) = self.table.get(e.ino) else { continue };
            let attr = child.state.read().attr(child.ino, child.kind);
            if emit(d, Some(&attr)) {
                break;
            }
            child.lookups.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Target of the symbolic link `ino`.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        let st = node.state.read();
        let target = match &st.content {
            Content::Symlink(t) => t.to_vec(),
            _ => return Err(FsError::InvalidArgument),
        };
        // As on tmpfs, reading a link is an access of it.
        self.accessed(&node, st);
        Ok(target)
    }
}

/// The one or two parent directories of a rename, locked in hierarchy order.
struct Parents<'a> {
    first: RwLockWriteGuard<'a, NodeState>,
    second: Option<RwLockWriteGuard<'a, NodeState>>,
    /// Whether `first` is the new parent (and `second` the old one).
    new_first: bool,
}

impl Parents<'_> {
    fn old_parent(&mut self) -> &mut NodeState {
        match (&mut self.second, self.new_first) {
            (Some(s), true) => s,
            _ => &mut self.first,
        }
    }

    fn new_parent(&mut self) -> &mut NodeState {
        match (&mut self.second, self.new_first) {
            (Some(s), false) => s,
            _ => &mut self.first,
        }
    }
}

/// Locks the node `a` and, if given, `b`: directories first, then by ino.
fn lock_children<'a>(
    a: &'a Node,
    b: Option<&'a Node>,
) -> (RwLockWriteGuard<'a, NodeState>, Option<RwLockWriteGuard<'a, NodeState>>) {
    let Some(b) = b else { return (a.state.write(), None) };
    if (!a.is_dir(), a.ino) < (!b.is_dir(), b.ino) {
        let ga = a.state.write();
        (ga, Some(b.state.write()))
    } else {
        let gb = b.state.write();
        (a.state.write(), Some(gb))
    }
}

fn add_links(st: &mut NodeState, delta: i32) {
    st.meta.nlink = st.meta.nlink.saturating_add_signed(delta);
}
