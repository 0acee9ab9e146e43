//! The FUSE adapter: each `fuser` callback decodes its arguments, makes one
//! engine call and replies. It owns no filesystem state; the kernel's
//! identity bookkeeping (lookup counts, handles) lives in the engine.
//!
//! Policies (see `docs/design.md`): write-through (no writeback cache) so a
//! refused write fails the `write(2)` that caused it; 1 MiB requests; long
//! entry/attribute lifetimes and kept page cache, because every change goes
//! through this mount; flush/fsync/fsyncdir answered ENOSYS once so the
//! kernel stops sending them; `FUSE_HANDLE_KILLPRIV_V2` so the kernel does
//! not ask for `security.capability` before every write. Each request runs
//! under `catch_unwind`: a panic fails that request with EIO and the
//! filesystem keeps serving.

mod convert;
mod errno;
pub mod mount;

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenFlags as FuseOpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::engine::{
    Caller, Engine, Fallocate, Fh, FsError, Ino, OpenFlags, RenameMode, SetAttr, WriteOptions, XattrSet,
};
use crate::storage::Seek;
use convert::{TTL, file_attr, file_type, kernel_time, negative_attr, set_time};

/// The read-only extended attribute on the mount root that carries the
/// engine's stats as JSON (`getfattr -n user.scratchfs.stats --only-values`).
pub const STATS_XATTR: &[u8] = b"user.scratchfs.stats";

/// Options of the adapter itself.
#[derive(Clone, Debug, Default)]
pub struct AdapterOptions {
    /// Test hook: a request naming this entry panics, to prove a panic
    /// fails only its own request.
    pub panic_on_name: Option<Vec<u8>>,
}

/// A `fuser::Filesystem` over an [`Engine`].
pub struct FuseFs {
    engine: Arc<Engine>,
    opts: AdapterOptions,
}

const GENERATION: Generation = Generation(0);

fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid() }
}

fn ino(i: INodeNo) -> Ino {
    Ino(i.0)
}

fn bytes(name: &OsStr) -> &[u8] {
    name.as_bytes()
}

/// Runs one request, turning a panic into an EIO reply (the unsent reply's
/// drop answers EIO) and a log line.
fn guarded(op: &str, f: impl FnOnce()) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(f)) {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        log::error!("{op}: request handler panicked ({what}); answered EIO, still serving");
    }
}

/// Replies with the errno of `err`, logging it by class.
macro_rules! fail {
    ($reply:expr, $op:expr, $err:expr) => {{
        let err: FsError = $err;
        errno::log($op, &err);
        $reply.error(errno::errno(&err))
    }};
}

impl FuseFs {
    /// An adapter serving `engine`.
    pub fn new(engine: Arc<Engine>, opts: AdapterOptions) -> FuseFs {
        FuseFs { engine, opts }
    }

    fn maybe_panic(&self, name: &[u8]) {
        if self.opts.panic_on_name.as_deref() == Some(name) {
            panic!("injected panic on {:?}", String::from_utf8_lossy(name));
        }
    }

    fn reply_entry(reply: ReplyEntry, op: &str, r: Result<crate::engine::Attr, FsError>) {
        match r {
            Ok(a) => reply.entry_with_ttls(&TTL, &TTL, &file_attr(&a), GENERATION),
            Err(e) => fail!(reply, op, e),
        }
    }

    fn reply_empty(reply: ReplyEmpty, op: &str, r: Result<(), FsError>) {
        match r {
            Ok(()) => reply.ok(),
            Err(e) => fail!(reply, op, e),
        }
    }

    fn reply_xattr(reply: ReplyXattr, op: &str, size: u32, r: Result<Vec<u8>, FsError>) {
        match r {
            Ok(v) if size == 0 => reply.size(u32::try_from(v.len()).unwrap_or(u32::MAX)),
            Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
            Ok(v) => reply.data(&v),
            Err(e) => fail!(reply, op, e),
        }
    }

    fn stats_json(&self) -> Vec<u8> {
        crate::report::Report::collect(&self.engine).to_json().into_bytes()
    }
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // 1 MiB requests (the kernel clamps to its max_pages limit).
        let _ = config.set_max_write(1 << 20);
        let _ = config.set_max_background(64);
        let wanted = InitFlags::FUSE_HANDLE_KILLPRIV_V2
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_CACHE_SYMLINKS;
        let offered = config.capabilities() & wanted;
        if let Err(missing) = config.add_capabilities(offered) {
            log::warn!("kernel refused FUSE capabilities {missing:?}");
        }
        log::debug!("FUSE capabilities requested: {offered:?}");
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        guarded("lookup", || {
            self.maybe_panic(bytes(name));
            match self.engine.lookup(ino(parent), bytes(name)) {
                Ok(a) => reply.entry_with_ttls(&TTL, &TTL, &file_attr(&a), GENERATION),
                // A negative entry: the kernel caches the miss.
                Err(FsError::NotFound) => reply.entry_with_ttls(&TTL, &TTL, &negative_attr(), GENERATION),
                Err(e) => fail!(reply, "lookup", e),
            }
        });
    }

    fn forget(&self, _req: &Request, i: INodeNo, nlookup: u64) {
        guarded("forget", || self.engine.forget(ino(i), nlookup));
    }

    fn getattr(&self, _req: &Request, i: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        guarded("getattr", || match self.engine.getattr(ino(i)) {
            Ok(a) => reply.attr(&TTL, &file_attr(&a)),
            Err(e) => fail!(reply, "getattr", e),
        });
    }

    fn setattr(
        &self,
        req: &Request,
        i: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        guarded("setattr", || {
            let set = SetAttr {
                mode,
                uid,
                gid,
                size,
                atime: atime.map(set_time),
                mtime: mtime.map(set_time),
                ctime: ctime.map(kernel_time),
            };
            match self.engine.setattr(ino(i), &set, &caller(req)) {
                Ok(a) => reply.attr(&TTL, &file_attr(&a)),
                Err(e) => fail!(reply, "setattr", e),
            }
        });
    }

    fn readlink(&self, _req: &Request, i: INodeNo, reply: ReplyData) {
        guarded("readlink", || match self.engine.readlink(ino(i)) {
            Ok(t) => reply.data(&t),
            Err(e) => fail!(reply, "readlink", e),
        });
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        guarded("mknod", || {
            self.maybe_panic(bytes(name));
            let r = self.engine.mknod(ino(parent), bytes(name), mode, rdev, &caller(req));
            Self::reply_entry(reply, "mknod", r);
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        guarded("mkdir", || {
            self.maybe_panic(bytes(name));
            let r = self.engine.mkdir(ino(parent), bytes(name), mode, &caller(req));
            Self::reply_entry(reply, "mkdir", r);
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guarded("unlink", || Self::reply_empty(reply, "unlink", self.engine.unlink(ino(parent), bytes(name))));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guarded("rmdir", || Self::reply_empty(reply, "rmdir", self.engine.rmdir(ino(parent), bytes(name))));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        guarded("symlink", || {
            let target = target.as_os_str().as_bytes();
            let r = self.engine.symlink(ino(parent), bytes(link_name), target, &caller(req));
            Self::reply_entry(reply, "symlink", r);
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        guarded("rename", || {
            let mode = if flags.is_empty() {
                RenameMode::Replace
            } else if flags == RenameFlags::RENAME_NOREPLACE {
                RenameMode::NoReplace
            } else if flags == RenameFlags::RENAME_EXCHANGE {
                RenameMode::Exchange
            } else {
                return reply.error(Errno::EINVAL);
            };
            let r = self.engine.rename(ino(parent), bytes(name), ino(newparent), bytes(newname), mode);
            Self::reply_empty(reply, "rename", r);
        });
    }

    fn link(&self, _req: &Request, i: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        guarded("link", || {
            let r = self.engine.link(ino(i), ino(newparent), bytes(newname));
            Self::reply_entry(reply, "link", r);
        });
    }

    fn open(&self, req: &Request, i: INodeNo, flags: FuseOpenFlags, reply: ReplyOpen) {
        guarded("open", || match self.engine.open(ino(i), OpenFlags::from_libc(flags.0), &caller(req)) {
            // Keep the page cache: nothing changes the file behind the kernel's back.
            Ok(fh) => reply.opened(FileHandle(fh.0), FopenFlags::FOPEN_KEEP_CACHE),
            Err(e) => fail!(reply, "open", e),
        });
    }

    fn read(
        &self,
        _req: &Request,
        _i: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        guarded("read", || match self.engine.read(Fh(fh.0), offset, size) {
            // Served straight from the stored extent when possible; no lock is held here.
            Ok(data) => reply.data(&data),
            Err(e) => fail!(reply, "read", e),
        });
    }

    fn write(
        &self,
        _req: &Request,
        _i: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        guarded("write", || {
            let opts = WriteOptions {
                kill_suidgid: write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID),
                from_page_cache: write_flags.contains(WriteFlags::FUSE_WRITE_CACHE),
            };
            match self.engine.write(Fh(fh.0), offset, data, opts) {
                Ok(n) => reply.written(n),
                Err(e) => fail!(reply, "write", e),
            }
        });
    }

    fn flush(&self, _req: &Request, _i: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing to flush; ENOSYS makes the kernel skip FLUSH from now on.
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _i: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        guarded("release", || Self::reply_empty(reply, "release", self.engine.release(Fh(fh.0))));
    }

    fn fsync(&self, _req: &Request, _i: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Memory is as durable as it gets; ENOSYS makes fsync succeed in the kernel.
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, _req: &Request, i: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        guarded("opendir", || match self.engine.opendir(ino(i)) {
            Ok(fh) => reply.opened(FileHandle(fh.0), FopenFlags::empty()),
            Err(e) => fail!(reply, "opendir", e),
        });
    }

    fn readdir(&self, _req: &Request, i: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        guarded("readdir", || {
            let r = self.engine.readdir(ino(i), offset, |d| {
                reply.add(INodeNo(d.ino.0), d.cookie, file_type(d.kind), OsStr::from_bytes(d.name))
            });
            match r {
                Ok(()) => reply.ok(),
                Err(e) => fail!(reply, "readdir", e),
            }
        });
    }

    fn readdirplus(&self, _req: &Request, i: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        guarded("readdirplus", || {
            let r = self.engine.readdirplus(ino(i), offset, |d, attr| {
                let name = OsStr::from_bytes(d.name);
                match attr {
                    Some(a) => reply.add(INodeNo(d.ino.0), d.cookie, name, &TTL, &file_attr(a), GENERATION),
                    // `.` and `..`: the kernel ignores their attributes.
                    None => {
                        let mut dot = negative_attr();
                        dot.ino = INodeNo(d.ino.0);
                        dot.kind = fuser::FileType::Directory;
                        reply.add(INodeNo(d.ino.0), d.cookie, name, &TTL, &dot, GENERATION)
                    }
                }
            });
            match r {
                Ok(()) => reply.ok(),
                Err(e) => fail!(reply, "readdirplus", e),
            }
        });
    }

    fn releasedir(&self, _req: &Request, _i: INodeNo, fh: FileHandle, _flags: FuseOpenFlags, reply: ReplyEmpty) {
        guarded("releasedir", || Self::reply_empty(reply, "releasedir", self.engine.releasedir(Fh(fh.0))));
    }

    fn fsyncdir(&self, _req: &Request, _i: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.error(Errno::ENOSYS);
    }

    fn statfs(&self, _req: &Request, _i: INodeNo, reply: ReplyStatfs) {
        guarded("statfs", || {
            let s = self.engine.statfs();
            reply.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize);
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        i: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        guarded("setxattr", || {
            if ino(i) == Ino::ROOT && bytes(name) == STATS_XATTR {
                return reply.error(Errno::EPERM);
            }
            let mode = match flags {
                0 => XattrSet::Upsert,
                libc::XATTR_CREATE => XattrSet::Create,
                libc::XATTR_REPLACE => XattrSet::Replace,
                _ => return reply.error(Errno::EINVAL),
            };
            Self::reply_empty(reply, "setxattr", self.engine.setxattr(ino(i), bytes(name), value, mode));
        });
    }

    fn getxattr(&self, _req: &Request, i: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        guarded("getxattr", || {
            let r = if ino(i) == Ino::ROOT && bytes(name) == STATS_XATTR {
                Ok(self.stats_json())
            } else {
                self.engine.getxattr(ino(i), bytes(name))
            };
            Self::reply_xattr(reply, "getxattr", size, r);
        });
    }

    fn listxattr(&self, _req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        guarded("listxattr", || Self::reply_xattr(reply, "listxattr", size, self.engine.listxattr(ino(i))));
    }

    fn removexattr(&self, _req: &Request, i: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guarded("removexattr", || {
            if ino(i) == Ino::ROOT && bytes(name) == STATS_XATTR {
                return reply.error(Errno::EPERM);
            }
            Self::reply_empty(reply, "removexattr", self.engine.removexattr(ino(i), bytes(name)));
        });
    }

    fn access(&self, _req: &Request, _i: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions, the kernel checks access itself.
        reply.ok();
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        guarded("create", || {
            self.maybe_panic(bytes(name));
            let flags = OpenFlags::from_libc(flags);
            match self.engine.create(ino(parent), bytes(name), mode, flags, &caller(req)) {
                Ok((a, fh)) => {
                    reply.created(&TTL, &file_attr(&a), GENERATION, FileHandle(fh.0), FopenFlags::FOPEN_KEEP_CACHE);
                }
                Err(e) => fail!(reply, "create", e),
            }
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        _i: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        guarded("fallocate", || {
            let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
            let how = match mode & !libc::FALLOC_FL_KEEP_SIZE {
                0 => Fallocate::Allocate { keep_size },
                libc::FALLOC_FL_PUNCH_HOLE if keep_size => Fallocate::PunchHole,
                libc::FALLOC_FL_ZERO_RANGE => Fallocate::ZeroRange { keep_size },
                _ => return reply.error(Errno::EOPNOTSUPP),
            };
            Self::reply_empty(reply, "fallocate", self.engine.fallocate(Fh(fh.0), offset, length, how));
        });
    }

    fn lseek(&self, _req: &Request, _i: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        guarded("lseek", || {
            let how = match whence {
                libc::SEEK_DATA => Seek::Data,
                libc::SEEK_HOLE => Seek::Hole,
                _ => return reply.error(Errno::EINVAL),
            };
            let Ok(off) = u64::try_from(offset) else { return reply.error(Errno::ENXIO) };
            match self.engine.lseek(Fh(fh.0), off, how) {
                Ok(at) => reply.offset(i64::try_from(at).unwrap_or(i64::MAX)),
                Err(e) => fail!(reply, "lseek", e),
            }
        });
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        guarded("copy_file_range", || {
            let len = len.min(u64::from(u32::MAX));
            match self.engine.copy_file_range(Fh(fh_in.0), offset_in, Fh(fh_out.0), offset_out, len) {
                Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
                Err(e) => fail!(reply, "copy_file_range", e),
            }
        });
    }
}
