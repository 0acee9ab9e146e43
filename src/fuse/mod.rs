//! The FUSE adapter: each `fuser` callback decodes its arguments, makes one
//! engine call and replies. It owns no filesystem state; the kernel's
//! identity bookkeeping (lookup counts, handles) lives in the engine.
//!
//! Policies (see `docs/design.md`): write-through (no writeback cache) so a
//! refused write fails the `write(2)` that caused it; 1 MiB requests; long
//! entry/attribute lifetimes and kept page cache, because every change goes
//! through this mount; flush/fsync/fsyncdir answered ENOSYS once so the
//! kernel stops sending them; `FUSE_HANDLE_KILLPRIV_V2` so the kernel does
//! not ask for `security.capability` before every write. A request refused
//! while a deleted node's memory is on its way back waits for it on another
//! thread (`deferred.rs`). On a mount without `default_permissions` each
//! request is first checked against the caller's credentials
//! (`permit.rs`). Each request runs under `catch_unwind`: a panic fails
//! that request with EIO and the filesystem keeps serving.

mod allocating;
mod busy_poll;
mod colocate;
mod convert;
mod counters;
mod creds;
mod deferred;
mod errno;
pub mod mount;
mod permit;
mod threads;

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, BsdFileFlags, CopyFileRangeFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, IoctlFlags, KernelConfig, LockOwner, Notifier, OpenFlags as FuseOpenFlags, PollEvents, PollFlags,
    PollNotifier, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty,
    ReplyEntry, ReplyIoctl, ReplyLseek, ReplyOpen, ReplyPoll, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow,
    WriteFlags,
};
use parking_lot::Mutex;

use crate::engine::access::{self, Capability, Credentials, EXEC, READ, WRITE};
use crate::engine::{
    Caller, Engine, Fallocate, Fh, FsError, Ino, InodeFlags, OpenFlags, RenameMode, SetAttr, WriteOptions, XattrSet,
};
use crate::storage::Seek;
use allocating::Allocating;
use convert::{FlagsIoctl, TTL, attr_ttl, file_attr, file_type, kernel_time, negative_attr, set_time};
use counters::{Op, Requests};
use creds::RequestCreds;
pub use deferred::{DELETE_WAIT, HELD_BYTES};
use deferred::{Deferred, Outcome};

/// The read-only extended attribute on the mount root that carries the
/// engine's stats as JSON (`getfattr -n user.scratchfs.stats --only-values`).
pub const STATS_XATTR: &[u8] = b"user.scratchfs.stats";

/// Options of the adapter itself.
#[derive(Clone, Debug, Default)]
pub struct AdapterOptions {
    /// Test hook: a request naming this entry panics, to prove a panic
    /// fails only its own request.
    pub panic_on_name: Option<Vec<u8>>,
    /// Poll the device while requests come back to back (`src/fuse/busy_poll.rs`).
    pub busy_poll: bool,
    /// While polling, keep idle CPUs polling too with a CPU latency request
    /// where permitted.
    pub cpu_latency: bool,
    /// Longest time a request refused just after a delete waits for the
    /// deleted node's memory (`deferred.rs`); zero refuses at once.
    pub delete_wait: Duration,
    /// Check permissions here: the mount has no `default_permissions`, so
    /// the kernel does not (`docs/design.md`, "Who checks permissions").
    pub check_access: bool,
}

/// A `fuser::Filesystem` over an [`Engine`].
pub struct FuseFs {
    engine: Arc<Engine>,
    opts: AdapterOptions,
    requests: Requests,
    /// Requests being handled right now, across all worker threads.
    in_flight: AtomicUsize,
    busy_poll: Option<busy_poll::BusyPoll>,
    /// Keeps a worker that sleeps between requests on its caller's CPU.
    colocate: Option<colocate::Colocator>,
    /// The kernel opens directories without OPENDIR once told ENOSYS
    /// (`FUSE_NO_OPENDIR_SUPPORT`, offered in INIT since Linux 5.1).
    no_opendir: bool,
    /// Notifications to the kernel, set once the session exists.
    notifier: Arc<OnceLock<Notifier>>,
    /// Requests held back until a deleted node's memory comes back.
    deferred: Option<Deferred>,
}

const GENERATION: Generation = Generation(0);

/// The most one COPY_FILE_RANGE copies. A request runs on the worker that
/// read it, and with busy polling there is one: a 1 GiB copy (1.6–2.7 s
/// here) stalled every other caller of the mount for as long. A short copy
/// is part of `copy_file_range(2)`'s contract, and its callers (`cp`,
/// Go's `io.Copy`) loop; 4 MiB costs 2–4 ms, a round trip a thousandth of
/// that.
const COPY_PER_REQUEST: u64 = 4 << 20;

/// How the kernel should cache an open file. Everything read goes through
/// the page cache, kept across opens (nothing changes a file behind the
/// kernel's back). Write-only opens bypass it (`FOPEN_DIRECT_IO`): the
/// writer's data is copied once, into the request, instead of into fresh
/// page-cache pages first; no page is held twice; and the kernel skips its
/// per-inode `security.capability` probe on the first write (set-uid bits
/// are still cleared, through `FUSE_WRITE_KILL_SUIDGID`, and the kernel's
/// cached mode invalidated: [`Filesystem::write`]). A write-only
/// descriptor cannot be mapped, and the kernel drops cached pages of the
/// range a direct write covers, so readers stay coherent.
fn open_flags(flags: i32) -> FopenFlags {
    if flags & libc::O_ACCMODE == libc::O_WRONLY { FopenFlags::FOPEN_DIRECT_IO } else { FopenFlags::FOPEN_KEEP_CACHE }
}

/// The caller of `req`. Root's tasks are taken to hold `CAP_FSETID`, as
/// nearly all do; where a set-user-ID or set-group-ID bit is at stake the
/// adapter asks (`permit::caller_of`).
fn caller(req: &Request) -> Caller {
    Caller { uid: req.uid(), gid: req.gid(), umask: 0, fsetid: req.uid() == 0 }
}

/// The caller of a CREATE, MKNOD or MKDIR, with the umask the kernel sent:
/// it leaves applying it to us when it sends the mode unmasked
/// (`FUSE_DONT_MASK`, asked for with `--acl`: a directory's default ACL
/// replaces the umask); otherwise the mode came masked already, and
/// masking it again changes nothing.
fn creator(req: &Request, umask: u32) -> Caller {
    Caller { umask: umask & 0o777, ..caller(req) }
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

/// Tells the kernel that `i`'s cached attributes are stale, and makes
/// it drop any older attributes still on their way to its cache.
///
/// Needed after a page-cache writeback WRITE (a shared mapping's
/// pages): the kernel then marks the attributes stale, but without
/// ordering that against a GETATTR answered just before the write and
/// not yet applied, so that answer (with the old mtime) could land
/// after the mark and clear it, and `stat` after `msync(2)` would show
/// the old mtime for as long as attributes are cached (measured: 65 of
/// 3,000 msyncs with `sync(2)` running alongside). An invalidation
/// notice also advances the inode's attribute version, which makes the
/// kernel discard such an older answer. Offset -1: attributes only, no
/// page is touched (the written pages are still under writeback).
fn attributes_changed(notifier: &OnceLock<Notifier>, i: INodeNo) {
    if let Some(n) = notifier.get()
        && let Err(e) = n.inval_inode(i, -1, 0)
    {
        // ENOENT: the kernel no longer holds the inode; nothing is cached.
        log::debug!("attribute invalidation of inode {}: {e}", i.0);
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
    pub fn new(engine: Arc<Engine>, mut opts: AdapterOptions) -> FuseFs {
        // With POSIX ACLs the kernel checks permissions (FUSE_POSIX_ACL
        // implies default_permissions); our checks know only mode bits and
        // would refuse what an ACL grants.
        opts.check_access &= !engine.config().posix_acl;
        let deferred =
            (!opts.delete_wait.is_zero()).then(|| Deferred::start(engine.clone(), opts.delete_wait)).and_then(|d| {
                d.inspect_err(|e| log::warn!("no thread to hold requests back for deleted files' memory: {e}")).ok()
            });
        FuseFs {
            opts,
            requests: Requests::default(),
            in_flight: AtomicUsize::new(0),
            busy_poll: None,
            colocate: colocate::Colocator::start()
                .inspect_err(|e| log::warn!("no thread to keep workers near their callers: {e}"))
                .ok()
                .flatten(),
            no_opendir: false,
            notifier: Arc::default(),
            deferred,
            engine,
        }
    }

    /// Busy-polls through `device`, read by the worker thread named
    /// `reader`, if the options ask for it.
    pub(crate) fn attach_device(&mut self, device: std::os::fd::BorrowedFd<'_>, reader: &str) {
        if self.opts.busy_poll {
            match busy_poll::BusyPoll::start(device, reader, self.opts.cpu_latency) {
                Ok(p) => self.busy_poll = Some(p),
                Err(e) => log::warn!("busy polling off: {e}"),
            }
        }
    }

    /// Where the session's [`Notifier`] goes once the session exists (the
    /// session is built from this adapter, so it cannot be passed in).
    pub(crate) fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    fn maybe_panic(&self, name: &[u8]) {
        if self.opts.panic_on_name.as_deref() == Some(name) {
            panic!("injected panic on {:?}", String::from_utf8_lossy(name));
        }
    }

    fn reply_entry(reply: ReplyEntry, op: &str, r: Result<crate::engine::Attr, FsError>) {
        match r {
            Ok(a) => reply.entry_with_ttls(attr_ttl(&a), &TTL, &file_attr(&a), GENERATION),
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

    /// The stats report as JSON; its list of the largest files (paths that
    /// may lie in directories the caller cannot read) only for root and
    /// the user the daemon runs as.
    fn stats_json(&self, caller_uid: u32) -> Vec<u8> {
        // SAFETY: geteuid has no preconditions.
        let with_files = caller_uid == 0 || caller_uid == unsafe { libc::geteuid() };
        let mut report = crate::report::Report::collect(&self.engine, with_files);
        report.requests = self.requests.snapshot();
        report.busy_poll = self.busy_poll.as_ref().map(busy_poll::BusyPoll::stats);
        report.held_back = self.deferred.as_ref().map(|d| d.counts().snapshot()).unwrap_or_default();
        report.to_json().into_bytes()
    }

    /// Counts a request of kind `op` (and `bytes` of payload) from `req`'s
    /// caller, and keeps a worker that sleeps between requests near its
    /// callers (`colocate.rs`; not while one polls: this may be the poller).
    fn count(&self, req: &Request, op: Op, bytes: usize) {
        self.requests.count(op, bytes);
        if let Some(p) = &self.busy_poll {
            p.on_request();
            if p.polling() {
                return;
            }
        }
        if let Some(c) = &self.colocate {
            c.on_request(req.pid());
        }
    }

    /// Runs one request: counted in flight, panics contained.
    fn run(&self, op: &str, f: impl FnOnce()) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        guarded(op, f);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// Answers a MKNOD, MKDIR or SYMLINK: checks that the caller may add
    /// entries to `parent`, then makes `name` there with `make`, an
    /// allocating call, and replies with the new entry.
    fn new_entry(
        &self,
        req: &Request,
        op: &'static str,
        parent: Ino,
        name: &[u8],
        reply: ReplyEntry,
        make: impl Fn(&Engine, Ino, &[u8]) -> Result<crate::engine::Attr, FsError> + Send + 'static,
    ) {
        if let Err(e) = self.permit_req(req, parent, WRITE | EXEC) {
            return fail!(reply, op, e);
        }
        self.allocating(op, name, move |e, name| make(e, parent, name), move |r| Self::reply_entry(reply, op, r));
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
        if self.engine.config().posix_acl {
            // The kernel enforces the ACLs and leaves the umask to us, so
            // that a default ACL can take its place.
            let acl = InitFlags::FUSE_POSIX_ACL | InitFlags::FUSE_DONT_MASK;
            if !config.capabilities().contains(acl) || config.add_capabilities(acl).is_err() {
                log::error!(
                    "this kernel's FUSE has no POSIX ACL support (FUSE_POSIX_ACL, Linux 4.9); mount without --acl"
                );
                return Err(io::Error::from_raw_os_error(libc::EPROTO));
            }
        }
        log::debug!("FUSE capabilities requested: {offered:?}");
        self.no_opendir = config.capabilities().contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        Ok(())
    }

    fn lookup(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.count(req, Op::Lookup, 0);
        self.run("lookup", || {
            self.maybe_panic(bytes(name));
            if let Err(e) = self.permit_req(req, ino(parent), EXEC) {
                return fail!(reply, "lookup", e);
            }
            match self.engine.lookup(ino(parent), bytes(name)) {
                Ok(a) => reply.entry_with_ttls(attr_ttl(&a), &TTL, &file_attr(&a), GENERATION),
                // A negative entry: the kernel caches the miss.
                Err(FsError::NotFound) => reply.entry_with_ttls(&TTL, &TTL, &negative_attr(), GENERATION),
                Err(e) => fail!(reply, "lookup", e),
            }
        });
    }

    fn forget(&self, req: &Request, i: INodeNo, nlookup: u64) {
        self.count(req, Op::Forget, 0);
        self.run("forget", || self.engine.forget(ino(i), nlookup));
    }

    fn getattr(&self, req: &Request, i: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.count(req, Op::Getattr, 0);
        self.run("getattr", || match self.engine.getattr(ino(i)) {
            Ok(a) => reply.attr(attr_ttl(&a), &file_attr(&a)),
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
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.count(req, Op::Setattr, 0);
        self.run("setattr", || {
            let mut set = SetAttr {
                mode,
                uid,
                gid,
                size,
                atime: atime.map(set_time),
                mtime: mtime.map(set_time),
                ctime: ctime.map(kernel_time),
                through_handle: fh.is_some(),
            };
            let i = ino(i);
            // A chown, chown(f, -1, -1) included (an empty SETATTR), and a
            // truncate may clear set-ID bits.
            let chown = set.uid.is_some() || set.gid.is_some() || set.is_empty();
            let who = if chown || set.size.is_some() {
                permit::caller_of(req, self.engine.getattr(i).ok().as_ref())
            } else {
                caller(req)
            };
            let checked = match self.creds(req) {
                Some(c) => self.engine.getattr(i).and_then(|a| access::check_setattr(&a, &mut set, &c)),
                // Where the kernel checks, it still leaves this one to us.
                None if chown => {
                    let c = RequestCreds::new(req.uid(), req.gid(), req.pid());
                    self.engine.getattr(i).and_then(|a| access::check_chown_clears(&a, &set, &c))
                }
                None => Ok(()),
            };
            let checked = match checked {
                // The kernel clears set-ID bits before a write without asking
                // who may (the same empty SETATTR as chown(f, -1, -1)), and a
                // descriptor opened for writing may outlive the mode that let
                // its caller open it: the write must not fail for that.
                Err(FsError::NotPermitted) if set.is_empty() && self.engine.open_for_writing(i) => Ok(()),
                r => r,
            };
            if let Err(e) = checked {
                return fail!(reply, "setattr", e);
            }
            // Growing a file can be refused.
            self.allocating(
                "setattr",
                &set,
                move |e, set| e.setattr(i, set, &who),
                move |r| match r {
                    Ok(a) => reply.attr(attr_ttl(&a), &file_attr(&a)),
                    Err(e) => fail!(reply, "setattr", e),
                },
            );
        });
    }

    fn readlink(&self, req: &Request, i: INodeNo, reply: ReplyData) {
        self.count(req, Op::Readlink, 0);
        self.run("readlink", || match self.engine.readlink(ino(i)) {
            Ok(t) => reply.data(&t),
            Err(e) => fail!(reply, "readlink", e),
        });
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        self.count(req, Op::Mknod, 0);
        self.run("mknod", || {
            self.maybe_panic(bytes(name));
            let who = creator(req, umask);
            self.new_entry(req, "mknod", ino(parent), bytes(name), reply, move |e, parent, name| {
                e.mknod(parent, name, mode, rdev, &who)
            });
        });
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        self.count(req, Op::Mkdir, 0);
        self.run("mkdir", || {
            self.maybe_panic(bytes(name));
            let who = creator(req, umask);
            self.new_entry(req, "mkdir", ino(parent), bytes(name), reply, move |e, parent, name| {
                e.mkdir(parent, name, mode, &who)
            });
        });
    }

    fn unlink(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.count(req, Op::Unlink, 0);
        self.run("unlink", || {
            let r = self
                .permit_delete(req, ino(parent), bytes(name))
                .and_then(|()| self.engine.unlink(ino(parent), bytes(name)));
            Self::reply_empty(reply, "unlink", r)
        });
    }

    fn rmdir(&self, req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.count(req, Op::Rmdir, 0);
        self.run("rmdir", || {
            let r = self
                .permit_delete(req, ino(parent), bytes(name))
                .and_then(|()| self.engine.rmdir(ino(parent), bytes(name)));
            Self::reply_empty(reply, "rmdir", r)
        });
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        self.count(req, Op::Symlink, 0);
        self.run("symlink", || {
            let (target, who) = (target.as_os_str().as_bytes().to_vec(), caller(req));
            self.new_entry(req, "symlink", ino(parent), bytes(link_name), reply, move |e, parent, name| {
                e.symlink(parent, name, &target, &who)
            });
        });
    }

    fn rename(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.count(req, Op::Rename, 0);
        self.run("rename", || {
            let whiteout = flags.contains(RenameFlags::RENAME_WHITEOUT);
            let mode = match flags - RenameFlags::RENAME_WHITEOUT {
                f if f.is_empty() => RenameMode::Replace,
                RenameFlags::RENAME_NOREPLACE => RenameMode::NoReplace,
                RenameFlags::RENAME_EXCHANGE if !whiteout => RenameMode::Exchange,
                _ => return reply.error(Errno::EINVAL),
            };
            let (parent, newparent) = (ino(parent), ino(newparent));
            let exchange = mode == RenameMode::Exchange;
            if let Err(e) = self.permit_rename(req, (parent, bytes(name)), (newparent, bytes(newname)), exchange) {
                return fail!(reply, "rename", e);
            }
            let newname = bytes(newname).to_vec();
            // A whiteout is owned by the caller, as a node it makes.
            let owner = whiteout.then(|| caller(req));
            self.allocating(
                "rename",
                bytes(name),
                move |e, name| match &owner {
                    Some(caller) => {
                        e.rename_whiteout(parent, name, newparent, &newname, mode == RenameMode::NoReplace, caller)
                    }
                    None => e.rename(parent, name, newparent, &newname, mode),
                },
                move |r| Self::reply_empty(reply, "rename", r),
            );
        });
    }

    fn link(&self, req: &Request, i: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.count(req, Op::Link, 0);
        self.run("link", || {
            let (i, newparent) = (ino(i), ino(newparent));
            if let Err(e) = self.permit_link(req, i, newparent) {
                return fail!(reply, "link", e);
            }
            self.allocating(
                "link",
                bytes(newname),
                move |e, name| e.link(i, newparent, name),
                move |r| Self::reply_entry(reply, "link", r),
            );
        });
    }

    fn open(&self, req: &Request, i: INodeNo, flags: FuseOpenFlags, reply: ReplyOpen) {
        self.count(req, Op::Open, 0);
        self.run("open", || {
            let who = if flags.0 & libc::O_TRUNC != 0 {
                permit::caller_of(req, self.engine.getattr(ino(i)).ok().as_ref())
            } else {
                caller(req)
            };
            let r = self
                .permit(self.creds(req).as_ref(), ino(i), access::open_mask(flags.0))
                .and_then(|()| self.engine.open(ino(i), OpenFlags::from_libc(flags.0), &who));
            match r {
                // Keep the page cache: nothing changes the file behind the kernel's back.
                Ok(fh) => reply.opened(FileHandle(fh.0), open_flags(flags.0)),
                Err(e) => fail!(reply, "open", e),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        _i: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.count(req, Op::Read, size as usize);
        self.run("read", || match self.engine.read(Fh(fh.0), offset, size) {
            // Served straight from the stored extent when possible; no lock is held here.
            Ok(data) => reply.data(&data),
            Err(e) => fail!(reply, "read", e),
        });
    }

    fn write(
        &self,
        req: &Request,
        i: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.count(req, Op::Write, data.len());
        self.run("write", || {
            let opts = WriteOptions {
                kill_suidgid: write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID),
                writer_gid: req.gid(),
                from_page_cache: write_flags.contains(WriteFlags::FUSE_WRITE_CACHE),
                appending: flags.0 & libc::O_APPEND != 0,
            };
            let notifier = opts.from_page_cache.then(|| self.notifier.clone());
            // A write that clears set-ID bits changes the mode, which the
            // kernel does not expect of a WRITE: it marks only size and
            // times stale, and would go on showing (and honouring, on an
            // exec) the old bits for as long as attributes are cached. So
            // they are invalidated before the answer.
            let mode_notifier = opts.kill_suidgid.then(|| self.notifier.clone());
            // A write the caller waits for is answered as soon as it can no
            // longer fail, and the daemon copies the bytes in while the caller
            // goes on (the node stays locked until then: `Engine::write_then`).
            // A page-cache writeback write is answered after its attributes
            // are invalidated, so it waits for the copy.
            let reply = Arc::new(Mutex::new(Some(reply)));
            let early = (!opts.from_page_cache).then(|| reply.clone());
            self.allocating(
                Allocating { op: "write", late: opts.from_page_cache },
                data,
                move |e, data| {
                    e.write_then(Fh(fh.0), offset, data, opts, |n, mode_changed| {
                        if mode_changed && let Some(m) = mode_notifier.as_ref() {
                            attributes_changed(m, i);
                        }
                        if let Some(r) = early.as_ref().and_then(|r| r.lock().take()) {
                            r.written(n);
                        }
                    })
                },
                move |r| {
                    let Some(reply) = reply.lock().take() else {
                        return; // answered when accepted
                    };
                    match r {
                        Ok(n) => {
                            if let Some(n) = notifier {
                                attributes_changed(&n, i);
                            }
                            reply.written(n)
                        }
                        Err(e) => fail!(reply, "write", e),
                    }
                },
            );
        });
    }

    fn flush(&self, req: &Request, _i: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing to flush; ENOSYS makes the kernel skip FLUSH from now on.
        self.count(req, Op::Flush, 0);
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        req: &Request,
        _i: INodeNo,
        fh: FileHandle,
        _flags: FuseOpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.count(req, Op::Release, 0);
        self.run("release", || Self::reply_empty(reply, "release", self.engine.release(Fh(fh.0))));
    }

    fn fsync(&self, req: &Request, _i: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Memory is as durable as it gets; ENOSYS makes fsync succeed in the kernel.
        self.count(req, Op::Fsync, 0);
        reply.error(Errno::ENOSYS);
    }

    fn opendir(&self, req: &Request, _i: INodeNo, _flags: FuseOpenFlags, reply: ReplyOpen) {
        // A directory handle would hold nothing: READDIR works from the
        // inode and a cookie that survives any change to the directory.
        // Where the kernel supports it, ENOSYS tells it so, once: from then
        // on it opens directories without asking and sends no RELEASEDIR,
        // two round trips fewer for every directory opened (`find`,
        // `rm -rf`, sqlite's directory fsync). An older kernel would fail
        // the open instead; it gets an empty handle.
        self.count(req, Op::Opendir, 0);
        if self.no_opendir {
            reply.error(Errno::ENOSYS);
        } else {
            reply.opened(FileHandle(0), FopenFlags::empty());
        }
    }

    fn readdir(&self, req: &Request, i: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        self.count(req, Op::Readdir, 0);
        self.run("readdir", || {
            if let Err(e) = self.permit_req(req, ino(i), READ) {
                return fail!(reply, "readdir", e);
            }
            let r = self.engine.readdir(ino(i), offset, |d| {
                reply.add(INodeNo(d.ino.0), d.cookie, file_type(d.kind), OsStr::from_bytes(d.name))
            });
            match r {
                Ok(()) => reply.ok(),
                Err(e) => fail!(reply, "readdir", e),
            }
        });
    }

    fn readdirplus(&self, req: &Request, i: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        self.count(req, Op::Readdirplus, 0);
        self.run("readdirplus", || {
            if let Err(e) = self.permit_req(req, ino(i), READ) {
                return fail!(reply, "readdirplus", e);
            }
            let r = self.engine.readdirplus(ino(i), offset, |d, attr| {
                let name = OsStr::from_bytes(d.name);
                match attr {
                    // One lifetime for the entry and its attributes here: a
                    // subdirectory's entry is looked up again after a second.
                    Some(a) => reply.add(INodeNo(d.ino.0), d.cookie, name, attr_ttl(a), &file_attr(a), GENERATION),
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

    fn releasedir(&self, req: &Request, _i: INodeNo, _fh: FileHandle, _flags: FuseOpenFlags, reply: ReplyEmpty) {
        // Never sent once OPENDIR has answered ENOSYS; an empty handle
        // (older kernels) has nothing to close.
        self.count(req, Op::Releasedir, 0);
        reply.ok();
    }

    fn fsyncdir(&self, req: &Request, _i: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.count(req, Op::Fsyncdir, 0);
        reply.error(Errno::ENOSYS);
    }

    fn statfs(&self, req: &Request, _i: INodeNo, reply: ReplyStatfs) {
        self.count(req, Op::Statfs, 0);
        self.run("statfs", || {
            self.settle_in_flight();
            let answer = move |e: &Engine| {
                let s = e.statfs();
                reply.statfs(s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.bsize);
            };
            if !(self.delete_pending() && self.admit(0)) {
                return answer(&self.engine);
            }
            // `rm big; df` shows the space back, as on tmpfs: wait for the
            // release the kernel has queued (`src/fuse/deferred.rs`).
            let seen = self.engine.reclaim_generation();
            let mut answer = Some(answer);
            self.hold(
                "statfs",
                0,
                Box::new(move |e: &Engine, last| {
                    if !last && e.reclaim_generation() == seen {
                        return Outcome::Again;
                    }
                    if let Some(a) = answer.take() {
                        a(e);
                    }
                    Outcome::Answered
                }),
            );
        });
    }

    fn setxattr(
        &self,
        req: &Request,
        i: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.count(req, Op::Setxattr, 0);
        self.run("setxattr", || {
            if ino(i) == Ino::ROOT && bytes(name) == STATS_XATTR {
                return reply.error(Errno::EPERM);
            }
            let mode = match flags {
                0 => XattrSet::Upsert,
                libc::XATTR_CREATE => XattrSet::Create,
                libc::XATTR_REPLACE => XattrSet::Replace,
                f if f == libc::XATTR_CREATE | libc::XATTR_REPLACE => XattrSet::CreateAndReplace,
                _ => return reply.error(Errno::EINVAL),
            };
            if let Err(e) = self.permit_xattr(req, ino(i), bytes(name), WRITE) {
                return fail!(reply, "setxattr", e);
            }
            let (i, name) = (ino(i), bytes(name).to_vec());
            // Setting an access ACL clears the set-group-ID bit unless the
            // caller keeps it.
            let keeps_sgid = permit::keeps_sgid(req);
            self.allocating(
                "setxattr",
                value,
                move |e, value| e.setxattr_by(i, &name, value, mode, &keeps_sgid),
                move |r| Self::reply_empty(reply, "setxattr", r),
            );
        });
    }

    fn getxattr(&self, req: &Request, i: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.count(req, Op::Getxattr, 0);
        self.run("getxattr", || {
            let r = if let Err(e) = self.permit_xattr(req, ino(i), bytes(name), READ) {
                Err(e)
            } else if ino(i) == Ino::ROOT && bytes(name) == STATS_XATTR {
                self.settle_in_flight();
                Ok(self.stats_json(req.uid()))
            } else {
                self.engine.getxattr(ino(i), bytes(name))
            };
            Self::reply_xattr(reply, "getxattr", size, r);
        });
    }

    fn listxattr(&self, req: &Request, i: INodeNo, size: u32, reply: ReplyXattr) {
        self.count(req, Op::Listxattr, 0);
        self.run("listxattr", || {
            // Linux lists `trusted.` names only to callers with
            // CAP_SYS_ADMIN, and leaves that to the filesystem. Asked (a
            // capget) under the node's read lock, only of a node that has
            // such a name.
            let privileged = || RequestCreds::new(req.uid(), req.gid(), req.pid()).capable(Capability::SysAdmin);
            Self::reply_xattr(reply, "listxattr", size, self.engine.listxattr(ino(i), privileged));
        });
    }

    fn removexattr(&self, req: &Request, i: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.count(req, Op::Removexattr, 0);
        self.run("removexattr", || {
            if ino(i) == Ino::ROOT && bytes(name) == STATS_XATTR {
                return reply.error(Errno::EPERM);
            }
            // Removing an access ACL clears set-group-ID as setting one does.
            let keeps_sgid = permit::keeps_sgid(req);
            let r = self
                .permit_xattr(req, ino(i), bytes(name), WRITE)
                .and_then(|()| self.engine.removexattr_by(ino(i), bytes(name), keeps_sgid));
            Self::reply_empty(reply, "removexattr", r);
        });
    }

    fn ioctl(
        &self,
        req: &Request,
        i: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        cmd: u32,
        in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // The inode-flag requests of chattr and lsattr are answered; any
        // other is ENOTTY: no file here is a device, as on tmpfs. The kernel
        // forwards every ioctl (it does not remember the answer), and common
        // ones are frequent: Python's open() asks isatty (TCGETS) on each
        // file. fuser's default would log a warning for each.
        self.count(req, Op::Ioctl, 0);
        let Some(request) = convert::flags_ioctl(cmd, in_data) else {
            return reply.error(Errno::ENOTTY);
        };
        self.run("ioctl", || match request {
            Err(e) => reply.error(e),
            Ok(FlagsIoctl::Set(bits)) => {
                // The kernel has checked the caller (`vfs_fileattr_set`);
                // checked again here, as every other change is.
                let who = RequestCreds::new(req.uid(), req.gid(), req.pid());
                let r = InodeFlags::from_bits(bits).ok_or(FsError::NotSupported).and_then(|new| {
                    self.engine.set_inode_flags(ino(i), new, |a| access::check_set_flags(a, new, &who))
                });
                match r {
                    Ok(()) => {
                        // The change time moved behind the kernel's cached attributes.
                        attributes_changed(&self.notifier, i);
                        reply.ioctl(0, &[])
                    }
                    Err(e) => fail!(reply, "ioctl", e),
                }
            }
            Ok(get) => match self.engine.inode_flags(ino(i)) {
                Ok(flags) => reply.ioctl(0, &convert::flags_reply(get, flags)),
                Err(e) => fail!(reply, "ioctl", e),
            },
        });
    }

    fn poll(
        &self,
        req: &Request,
        _i: INodeNo,
        _fh: FileHandle,
        _ph: PollNotifier,
        _events: PollEvents,
        _flags: PollFlags,
        reply: ReplyPoll,
    ) {
        // Regular files are always ready; ENOSYS makes the kernel say so
        // itself from now on (without fuser's warning).
        self.count(req, Op::Poll, 0);
        reply.error(Errno::ENOSYS);
    }

    fn access(&self, req: &Request, i: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with default_permissions, the kernel checks access itself
        // and never asks.
        self.count(req, Op::Access, 0);
        self.run("access", || {
            let mask = u32::try_from(mask.bits()).unwrap_or(0);
            Self::reply_empty(reply, "access", self.permit_req(req, ino(i), mask))
        });
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.count(req, Op::Create, 0);
        self.run("create", || {
            self.maybe_panic(bytes(name));
            let raw_flags = flags;
            let flags = OpenFlags::from_libc(flags);
            let parent = ino(parent);
            let mut who = creator(req, umask);
            if raw_flags & libc::O_TRUNC != 0 {
                who.fsetid = permit::caller_of(req, self.engine.peek(parent, bytes(name)).ok().as_ref()).fsetid;
            }
            if let Err(e) = self.permit_create(req, parent, bytes(name), raw_flags) {
                return fail!(reply, "create", e);
            }
            self.allocating(
                "create",
                bytes(name),
                move |e, name| e.create(parent, name, mode, flags, &who),
                move |r| match r {
                    Ok((a, fh)) => {
                        reply.created(&TTL, &file_attr(&a), GENERATION, FileHandle(fh.0), open_flags(raw_flags));
                    }
                    Err(e) => fail!(reply, "create", e),
                },
            );
        });
    }

    fn fallocate(
        &self,
        req: &Request,
        _i: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.count(req, Op::Fallocate, 0);
        self.run("fallocate", || {
            let keep_size = mode & libc::FALLOC_FL_KEEP_SIZE != 0;
            let how = match mode & !libc::FALLOC_FL_KEEP_SIZE {
                0 => Fallocate::Allocate { keep_size },
                libc::FALLOC_FL_PUNCH_HOLE if keep_size => Fallocate::PunchHole,
                libc::FALLOC_FL_ZERO_RANGE => Fallocate::ZeroRange { keep_size },
                _ => return reply.error(Errno::EOPNOTSUPP),
            };
            self.allocating(
                "fallocate",
                &(),
                move |e, ()| e.fallocate(Fh(fh.0), offset, length, how),
                move |r| Self::reply_empty(reply, "fallocate", r),
            );
        });
    }

    fn lseek(&self, req: &Request, _i: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        self.count(req, Op::Lseek, 0);
        self.run("lseek", || {
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
        req: &Request,
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
        self.count(req, Op::CopyFileRange, 0);
        self.run("copy_file_range", || {
            let len = len.min(COPY_PER_REQUEST);
            self.allocating(
                "copy_file_range",
                &(),
                move |e, ()| e.copy_file_range(Fh(fh_in.0), offset_in, Fh(fh_out.0), offset_out, len),
                move |r| match r {
                    Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
                    Err(e) => fail!(reply, "copy_file_range", e),
                },
            );
        });
    }
}
