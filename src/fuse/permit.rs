//! Permission checks where the kernel does not make them (a mount without
//! `default_permissions`, `docs/design.md`, "Who checks permissions"):
//! which rule each request needs, applied to the attributes the engine
//! holds. The rules themselves are `engine::access`; the caller's
//! credentials come from `creds.rs`.

use fuser::Request;

use super::creds::RequestCreds;
use super::{FuseFs, caller};
use crate::engine::access::{self, Capability, Credentials, EXEC, WRITE};
use crate::engine::{Attr, Caller, FileKind, FsError, Ino};

/// The caller of `req`, about to truncate or chown a node with attributes
/// `a`: where that is a file with a set-user-ID or set-group-ID bit,
/// whether the caller holds `CAP_FSETID` (which keeps them) is asked of the
/// kernel (`capget(2)`) instead of assumed from its uid, as the kernel's
/// `FATTR_KILL_SUIDGID` would say if fuser passed it on.
pub(super) fn caller_of(req: &Request, a: Option<&Attr>) -> Caller {
    let mut who = caller(req);
    if a.is_some_and(|a| a.kind == FileKind::RegularFile && u32::from(a.perm) & 0o6000 != 0) {
        who.fsetid = RequestCreds::new(req.uid(), req.gid(), req.pid()).capable(Capability::Fsetid);
    }
    who
}

/// Whether the caller of `req` keeps a file's set-group-ID bit when it sets
/// or removes the file's access ACL: as a member of the file's group `gid`
/// (supplementary groups included) or a holder of `CAP_FSETID`. The kernel
/// would tell us only through `FUSE_SETXATTR_EXT`, which fuser 0.18 does
/// not parse, and never for a removal.
pub(super) fn keeps_sgid(req: &Request) -> impl Fn(u32) -> bool + Send + 'static {
    let who = RequestCreds::new(req.uid(), req.gid(), req.pid());
    move |gid| who.in_group(gid) || who.capable(Capability::Fsetid)
}

impl FuseFs {
    /// The caller's credentials, where this adapter checks permissions.
    pub(super) fn creds(&self, req: &Request) -> Option<RequestCreds> {
        self.opts.check_access.then(|| RequestCreds::new(req.uid(), req.gid(), req.pid()))
    }

    /// Checks that the caller may access `i` for `mask` (`engine::access`),
    /// where the kernel leaves that to this adapter.
    pub(super) fn permit(&self, creds: Option<&RequestCreds>, i: Ino, mask: u32) -> Result<(), FsError> {
        match creds {
            Some(c) => access::check(&self.engine.getattr(i)?, c, mask),
            None => Ok(()),
        }
    }

    /// Checks that the caller may remove `name` from `dir`: write and
    /// search permission on `dir`, and the sticky-directory rule.
    pub(super) fn permit_delete(&self, req: &Request, dir: Ino, name: &[u8]) -> Result<(), FsError> {
        match self.creds(req) {
            Some(c) => self.permit_removal(&c, dir, name),
            None => Ok(()),
        }
    }

    fn permit_removal(&self, c: &RequestCreds, dir: Ino, name: &[u8]) -> Result<(), FsError> {
        let d = self.engine.getattr(dir)?;
        access::check(&d, c, WRITE | EXEC)?;
        match self.engine.peek(dir, name) {
            Ok(victim) => access::check_sticky(&d, &victim, c),
            Err(_) => Ok(()),
        }
    }

    /// [`FuseFs::permit`] for the caller of `req`.
    pub(super) fn permit_req(&self, req: &Request, i: Ino, mask: u32) -> Result<(), FsError> {
        self.permit(self.creds(req).as_ref(), i, mask)
    }

    /// Checks a CREATE: a new name needs write and search permission on
    /// `parent`; an existing file (no `O_EXCL`) is opened, and needs what
    /// an open with `flags` needs.
    pub(super) fn permit_create(&self, req: &Request, parent: Ino, name: &[u8], flags: i32) -> Result<(), FsError> {
        let Some(c) = self.creds(req) else { return Ok(()) };
        let dir = self.engine.getattr(parent)?;
        access::check(&dir, &c, EXEC)?;
        match self.engine.peek(parent, name) {
            Ok(a) if flags & libc::O_EXCL == 0 => access::check(&a, &c, access::open_mask(flags)),
            Ok(_) => Err(FsError::Exists),
            Err(_) => access::check(&dir, &c, WRITE | EXEC),
        }
    }

    /// Checks a RENAME: write and search permission on both directories,
    /// and write permission on a directory that moves to another parent
    /// (its `..` changes; both, for an exchange), as Linux's `vfs_rename`
    /// asks; the sticky-directory rule for the entry moved and the one
    /// replaced.
    pub(super) fn permit_rename(
        &self,
        req: &Request,
        (parent, name): (Ino, &[u8]),
        (newparent, newname): (Ino, &[u8]),
        exchange: bool,
    ) -> Result<(), FsError> {
        let Some(c) = self.creds(req) else { return Ok(()) };
        self.permit_removal(&c, parent, name)?;
        match self.engine.peek(newparent, newname) {
            Ok(_) => self.permit_removal(&c, newparent, newname)?,
            Err(_) => self.permit(Some(&c), newparent, WRITE | EXEC)?,
        }
        if newparent != parent {
            let moved: &[(Ino, &[u8])] =
                if exchange { &[(parent, name), (newparent, newname)] } else { &[(parent, name)] };
            for &(dir, n) in moved {
                if let Ok(a) = self.engine.peek(dir, n)
                    && a.kind == FileKind::Directory
                {
                    access::check(&a, &c, WRITE)?;
                }
            }
        }
        Ok(())
    }

    /// Checks access to the extended attribute `name` of `i` (read or write
    /// permission on the node, for the namespaces that need it; writes on a
    /// sticky directory only by its owner).
    pub(super) fn permit_xattr(&self, req: &Request, i: Ino, name: &[u8], mask: u32) -> Result<(), FsError> {
        let Some(c) = self.creds(req).filter(|_| access::xattr_needs_permission(name)) else { return Ok(()) };
        let a = self.engine.getattr(i)?;
        if mask & WRITE != 0 { access::check_xattr_write(&a, &c) } else { access::check(&a, &c, mask) }
    }

    /// Checks a LINK: write and search permission on `newparent`, and
    /// Linux's `fs.protected_hardlinks` rule for the node linked.
    pub(super) fn permit_link(&self, req: &Request, i: Ino, newparent: Ino) -> Result<(), FsError> {
        let Some(c) = self.creds(req) else { return Ok(()) };
        self.permit(Some(&c), newparent, WRITE | EXEC)?;
        let protected = || std::fs::read("/proc/sys/fs/protected_hardlinks").is_ok_and(|v| v.trim_ascii() != b"0");
        access::check_hardlink_source(&self.engine.getattr(i)?, &c, protected)
    }
}
