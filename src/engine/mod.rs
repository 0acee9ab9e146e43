//! The engine: an in-memory node tree whose every allocation is gated by
//! the hard quota, the node limit and the memory guard. It knows nothing of
//! FUSE: its API is inode-based and returns values; the adapter replies.
//!
//! Every mutating operation follows one order: resolve the nodes, lock them,
//! validate, ask storage what the change costs, reserve that (guard, then
//! quota), apply the change (which cannot fail), then settle the
//! reservation. A refused operation therefore changes nothing.
//!
//! Lock hierarchy (see `docs/locking.md`): rename lock -> directory node
//! locks (ancestor first; otherwise ascending ino) -> other node locks
//! (ascending ino) -> table and handle shard locks -> quota/stats atomics.

pub mod access;
mod acl;
mod cgroup;
mod config;
mod dir;
mod error;
mod flags;
mod guard;
mod handles;
mod io;
mod meminfo;
mod namespace;
mod node;
pub mod path;
mod quota;
mod reclaim;
mod stats;
mod table;
mod types;
mod xattr;

use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use config::{EngineConfig, GuardAction, GuardConfig, GuardMode, StoragePolicy};
pub use error::{FsError, NoSpaceCause, Result};
pub use handles::{HANDLE_COST, HANDLES_IN_BASELINE};
pub use meminfo::{MemoryProbe, MemoryReading, SystemProbe};
pub use node::{DENTRY_COST, DIR_INDEX_COST, NODE_COST, TARGET_OVERHEAD};
pub use stats::{Refusals, Stats};
pub use types::{
    Attr, Caller, DirEntry, Fallocate, Fh, FileKind, Ino, InodeFlags, OpenFlags, RenameMode, SetAttr, SetTime, StatFs,
    Timestamp, WriteOptions, XattrSet,
};
pub use xattr::{XATTR_COST, XATTR_LIST_MAX, XATTR_NAME_MAX, XATTR_SIZE_MAX};

pub use guard::GuardStatus;
use guard::{MemoryGuard, Verdict};
use handles::Handles;
use node::{Content, Meta, Node, NodeState};
use quota::{Quota, Reservation};
pub use reclaim::RECENT;
use reclaim::Reclaim;
use stats::{Counters, bump, drop_one};
use table::NodeTable;

use crate::ratelimit::LogBudget;
use crate::storage::{FileData, MAX_FILE_SIZE, Shape};
use crate::sync::{Mutex, RwLockReadGuard};

/// An in-memory filesystem. `Send + Sync`: share it with an `Arc`.
pub struct Engine {
    cfg: EngineConfig,
    table: NodeTable,
    handles: Handles,
    quota: Quota,
    guard: MemoryGuard,
    counters: Counters,
    /// Held by every rename, so the ancestry checks that keep a directory
    /// from moving into its own subtree see a tree that cannot change.
    rename_lock: Mutex<()>,
    /// Called to take a fresh memory measurement before refusing an
    /// allocation that a stale one might be blocking.
    remeasure: crate::sync::RwLock<Option<Box<dyn Fn() + Send + Sync>>>,
    /// The process's memory as last reported (`note_process_memory`).
    process: ProcessMemory,
    /// Deleted nodes whose memory the kernel has not let go of yet.
    reclaim: Reclaim,
    /// Bounds the refusals logged (`src/ratelimit.rs`).
    refusal_log: LogBudget,
}

#[derive(Default)]
struct ProcessMemory {
    resident: std::sync::atomic::AtomicU64,
    baseline: std::sync::atomic::AtomicU64,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Engine>();
};

/// A memory probe for hosts where sysinfo cannot read memory: never limits.
struct NoProbe;

impl MemoryProbe for NoProbe {
    fn read(&self) -> Option<MemoryReading> {
        None
    }
}

impl Engine {
    /// An engine reading memory through [`SystemProbe`].
    ///
    /// Fails with `NoSpace(MemoryGuard)` if the guard is on with action
    /// `Deny` and the quota exceeds available memory, or with
    /// `NoSpace(Quota)` if the quota cannot hold the root directory.
    pub fn new(cfg: EngineConfig) -> Result<Engine> {
        let probe: Box<dyn MemoryProbe> = match SystemProbe::new() {
            Some(p) => Box::new(p),
            None => Box::new(NoProbe),
        };
        Engine::with_probe(cfg, probe)
    }

    /// An engine whose memory guard reads `probe`.
    pub fn with_probe(cfg: EngineConfig, probe: Box<dyn MemoryProbe>) -> Result<Engine> {
        let engine = Engine {
            cfg,
            table: NodeTable::new(),
            handles: Handles::new(),
            quota: Quota::new(cfg.max_bytes, cfg.max_nodes),
            guard: MemoryGuard::new(cfg.guard, probe),
            counters: Counters::default(),
            rename_lock: Mutex::new(()),
            process: ProcessMemory::default(),
            reclaim: Reclaim::new(),
            refusal_log: LogBudget::new(module_path!()),
            remeasure: crate::sync::RwLock::new(None),
        };
        match engine.guard.check_quota(cfg.max_bytes).0 {
            Verdict::Deny(cause) => return Err(FsError::NoSpace(cause)),
            Verdict::Warned => bump(&engine.counters.guard_warnings),
            Verdict::Allow => {}
        }
        engine.make_root()?;
        Ok(engine)
    }

    fn make_root(&self) -> Result<()> {
        let nodes = self.quota.reserve_node()?;
        let bytes = self.quota.reserve(NODE_COST + node::DIR_INDEX_COST)?;
        let ino = self.table.alloc_ino();
        debug_assert_eq!(ino, Ino::ROOT);
        let now = Timestamp::now();
        let meta = Meta {
            perm: (self.cfg.root_mode & 0o7777) as u16,
            uid: self.cfg.root_uid,
            gid: self.cfg.root_gid,
            nlink: 2,
            rdev: 0,
            atime: now,
            mtime: now,
            ctime: now,
            flags: InodeFlags::default(),
        };
        let state = NodeState {
            meta,
            content: Content::Dir(dir::Dir::default()),
            xattrs: xattr::Xattrs::default(),
            charge: NODE_COST + node::DIR_INDEX_COST,
            freed: false,
            orphan: false,
        };
        self.table.insert(Arc::new(Node::new(ino, FileKind::Directory, ino, state)));
        bump(&self.counters.directories);
        nodes.keep();
        bytes.keep();
        Ok(())
    }

    /// The configuration the engine was built with.
    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    /// Records an access to `node` (a read, a listing, a link read), whose
    /// read lock `st` the caller holds and hands over. Unless the mount is
    /// `noatime`, relatime decides under the read lock; only an access time
    /// that must move takes the write lock, and is checked again under it
    /// (another access may have moved it meanwhile).
    fn accessed(&self, node: &Node, st: RwLockReadGuard<'_, NodeState>) {
        if self.cfg.noatime || st.flags().noatime() {
            return;
        }
        let now = Timestamp::now();
        if !st.meta.atime_due(now) {
            return;
        }
        drop(st);
        let mut st = node.state.write();
        if st.meta.atime_due(now) {
            st.meta.atime = now;
        }
    }

    fn node(&self, ino: Ino) -> Result<Arc<Node>> {
        self.table.get(ino).ok_or(FsError::NotFound)
    }

    /// Logs and counts a refusal, and turns it into an error. Quietly while
    /// a deleted node's memory is on its way back: the adapter may then try
    /// again (and logs a refusal it passes on). Every refusal is counted;
    /// the log takes a burst in each second (`src/ratelimit.rs`).
    fn refused(&self, cause: NoSpaceCause, op: &str, ino: Ino) -> FsError {
        self.counters.refusal(&cause);
        if self.reclaim.pending() {
            log::debug!("refused {op} on inode {} while deleted nodes are being released: {cause}", ino.0);
        } else {
            self.refusal_log.warn(format_args!("refused {op} on inode {}: {cause}", ino.0));
        }
        FsError::NoSpace(cause)
    }

    /// Reserves `bytes` for `op` on `ino`: memory guard first, then quota.
    fn reserve(&self, bytes: u64, op: &str, ino: Ino) -> Result<Reservation<'_>> {
        self.reserve_quiet(bytes).map_err(|cause| self.refused(cause, op, ino))
    }

    /// Like `reserve`, without logging or counting a refusal.
    fn reserve_quiet(&self, bytes: u64) -> std::result::Result<Reservation<'_>, NoSpaceCause> {
        match self.guard.check(bytes, self.quota.used()) {
            Verdict::Deny(cause) => return Err(cause),
            Verdict::Warned => bump(&self.counters.guard_warnings),
            Verdict::Allow => {}
        }
        match self.quota.reserve(bytes) {
            Err(_) if self.quota.measurement_pending() => {
                self.remeasure();
                self.quota.reserve(bytes)
            }
            r => r,
        }
    }

    /// Drops the node's `security.capability` attribute (a write, truncate
    /// or change of owner does) and gives back its charge.
    fn kill_capability(&self, st: &mut NodeState) {
        if !st.xattrs.is_empty() {
            let _ = self.drop_xattr(st, b"security.capability");
        }
    }

    fn remeasure(&self) {
        if let Some(remeasure) = &*self.remeasure.read() {
            remeasure();
        }
    }

    /// Installs the function that takes a fresh memory measurement (it
    /// should end in [`Engine::note_unaccounted`]). Called before an
    /// allocation is refused while a measurement might be stale.
    pub fn set_remeasure(&self, f: Box<dyn Fn() + Send + Sync>) {
        *self.remeasure.write() = Some(f);
    }

    /// The shape a new regular file starts with.
    fn initial_shape(&self) -> Shape {
        match self.cfg.storage {
            StoragePolicy::RandomAccess => Shape::RandomAccess,
            StoragePolicy::Auto | StoragePolicy::Sequential => Shape::Sequential,
        }
    }

    /// Releases a node that nothing references any more: no link, no kernel
    /// lookup, no open handle. Safe to call at any time from any thread.
    ///
    /// Contents are not released earlier (at the last unlink of a closed
    /// file): a process holding an `O_PATH` descriptor can still reopen the
    /// file through `/proc/self/fd`, and must find its data, as on tmpfs.
    fn maybe_free(&self, node: &Arc<Node>) {
        if node.referenced() {
            return;
        }
        let mut st = node.state.write();
        if st.freed || st.meta.nlink != 0 || node.referenced() || node.ino == Ino::ROOT {
            return;
        }
        st.freed = true;
        let was_orphan = std::mem::take(&mut st.orphan);
        let charge = st.total_charge();
        let content = std::mem::replace(&mut st.content, Content::Special);
        drop(st);
        self.table.remove(node.ino);
        match &content {
            Content::File(f) => drop_one(self.counters.shape(f.shape())),
            Content::Dir(_) => drop_one(&self.counters.directories),
            Content::Symlink(_) => drop_one(&self.counters.symlinks),
            Content::Special => drop_one(&self.counters.specials),
        }
        drop(content);
        self.quota.release(charge);
        self.quota.release_node();
        if was_orphan {
            self.reclaim.released();
        }
    }

    /// Keeps the orphan count in step with `st` (unlinked, closed, not
    /// released); call with the node's lock held after its links or opens
    /// changed. Releasing an orphan is counted by `maybe_free`.
    fn note_orphan(&self, node: &Node, st: &mut NodeState) {
        let orphan = !st.freed && st.meta.nlink == 0 && node.opens.load(Ordering::Acquire) == 0;
        if orphan == st.orphan {
            return;
        }
        st.orphan = orphan;
        if orphan {
            self.reclaim.orphaned();
        } else {
            self.reclaim.reopened();
        }
    }

    /// Whether memory of a node deleted a moment ago (within the window,
    /// [`RECENT`] by default) is still held, waiting for the kernel to let
    /// go of the node (`src/engine/reclaim.rs`). A refusal might then go
    /// away shortly.
    pub fn reclaim_pending(&self) -> bool {
        self.reclaim.pending()
    }

    /// Sets how long after a delete [`Engine::reclaim_pending`] may say yes.
    pub fn set_reclaim_window(&self, window: std::time::Duration) {
        self.reclaim.set_window(window);
    }

    /// Deleted nodes released so far; pass it to [`Engine::wait_for_reclaim`].
    pub fn reclaim_generation(&self) -> u64 {
        self.reclaim.generation()
    }

    /// Waits until a deleted node is released after `seen` was read from
    /// [`Engine::reclaim_generation`], or until `deadline`. Returns whether
    /// one was.
    pub fn wait_for_reclaim(&self, seen: u64, deadline: std::time::Instant) -> bool {
        self.reclaim.wait(seen, deadline)
    }

    /// Takes back the count of a refusal the caller did not pass on (it
    /// tried again and answered with that attempt's result); `late` if it
    /// was a page-cache writeback write's.
    pub fn withdraw_refusal(&self, cause: &NoSpaceCause, late: bool) {
        self.counters.withdraw(cause);
        if late {
            drop_one(&self.counters.late_refusals);
        }
    }

    /// The kernel drops `n` lookup references to `ino`.
    pub fn forget(&self, ino: Ino, n: u64) {
        let Some(node) = self.table.get(ino) else { return };
        let prev = node.lookups.fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| Some(l.saturating_sub(n)));
        debug_assert!(prev.is_ok_and(|p| p >= n), "forget of {n} with fewer lookups on inode {}", ino.0);
        self.maybe_free(&node);
    }

    /// Attributes of `ino`.
    pub fn getattr(&self, ino: Ino) -> Result<Attr> {
        let node = self.node(ino)?;
        let st = node.state.read();
        Ok(st.attr(ino, node.kind))
    }

    /// Changes attributes of `ino`, applying the POSIX rules for times and
    /// the Linux rules for clearing set-uid/set-gid on truncate and chown.
    pub fn setattr(&self, ino: Ino, set: &SetAttr, caller: &Caller) -> Result<Attr> {
        let node = self.node(ino)?;
        let mut st = node.state.write();
        if st.freed {
            return Err(FsError::NotFound);
        }
        st.flags().check_setattr(set)?;
        let now = Timestamp::now();
        if let Some(size) = set.size {
            if size > MAX_FILE_SIZE {
                return Err(FsError::FileTooLarge);
            }
            let before = st.total_charge();
            match &mut st.content {
                Content::File(f) => f.truncate(size),
                Content::Dir(_) => return Err(FsError::IsDir),
                _ => return Err(FsError::InvalidArgument),
            }
            self.quota.release(before - st.total_charge());
            st.touch_modified(now);
            if !caller.fsetid {
                st.kill_suidgid_by(caller);
            }
            self.kill_capability(&mut st);
        }
        if let Some(mode) = set.mode {
            st.meta.perm = (mode & 0o7777) as u16;
            st.xattrs.chmod_acl(mode);
        }
        if set.uid.is_some() || set.gid.is_some() {
            // Judged against the group the file had (`setattr_should_drop_sgid`).
            let mut keep = st.may_keep_sgid(caller);
            st.meta.uid = set.uid.unwrap_or(st.meta.uid);
            st.meta.gid = set.gid.unwrap_or(st.meta.gid);
            if !node.is_dir() {
                // Clearing set-user-ID makes the chown a mode change too,
                // and a mode change keeps set-group-ID only for a member of
                // the file's new group or a holder of CAP_FSETID
                // (`setattr_prepare`).
                if u32::from(st.meta.perm) & libc::S_ISUID != 0 {
                    keep &= st.may_keep_sgid(caller);
                }
                st.meta.kill_suidgid(keep);
                self.kill_capability(&mut st);
            }
        }
        if set.is_empty() && !node.is_dir() {
            // With FUSE_HANDLE_KILLPRIV_V2 the kernel leaves clearing the
            // privilege bits to us, and sends what is left of its request
            // when it strips them: an empty SETATTR. It does that for
            // `chown(f, -1, -1)` and for a `fallocate(2)` or
            // `copy_file_range(2)` by a caller without CAP_FSETID (its
            // `file_modified`); tmpfs clears the bits in all three.
            st.kill_suidgid_by(caller);
            self.kill_capability(&mut st);
        }
        let resolve = |t: SetTime| match t {
            SetTime::Now => now,
            SetTime::At(t) => t,
        };
        if let Some(t) = set.atime {
            st.meta.atime = resolve(t);
        }
        if let Some(t) = set.mtime {
            st.meta.mtime = resolve(t);
        }
        st.meta.ctime = set.ctime.unwrap_or(now);
        Ok(st.attr(ino, node.kind))
    }

    /// Filesystem totals: the quota as blocks, the node limit as inodes.
    pub fn statfs(&self) -> StatFs {
        const BSIZE: u64 = 4096;
        if self.quota.releases_pending() {
            self.remeasure();
        }
        let max = self.quota.max_bytes();
        let free = self.quota.available();
        let nodes = self.quota.nodes();
        let files = match self.quota.max_nodes() {
            Some(limit) => limit,
            None => nodes.saturating_add(free / (NODE_COST + DENTRY_COST)),
        };
        StatFs {
            bsize: BSIZE as u32,
            blocks: max / BSIZE,
            bfree: free / BSIZE,
            bavail: free / BSIZE,
            files,
            ffree: files.saturating_sub(nodes),
            namelen: 255,
        }
    }

    /// The engine's figures; cheap (a few atomic loads).
    pub fn stats(&self) -> Stats {
        let mut s = self.counters.snapshot(&self.quota, self.guard.last_available());
        let resident = self.process.resident.load(Ordering::Relaxed);
        if resident > 0 {
            s.resident_bytes = Some(resident);
            s.baseline_bytes = Some(self.process.baseline.load(Ordering::Relaxed));
        }
        s
    }

    /// Bytes released to the quota since creation (monotonic): a daemon can
    /// use it to decide when to hand freed memory back to the system.
    pub fn released_bytes(&self) -> u64 {
        self.quota.released()
    }

    /// Counts `waste` bytes — memory the process holds for the filesystem
    /// beyond the charges, measured by the caller (what its allocator keeps
    /// and cannot return) — against the quota's maximum until the next call.
    /// `released_before` is [`Engine::released_bytes`] read before the
    /// measurement: bytes released after it count as still held until the
    /// next call, since the allocator may not have returned them yet.
    pub fn note_unaccounted(&self, waste: u64, released_before: u64) {
        self.quota.set_unaccounted(waste, released_before);
    }

    /// Records the process's resident memory and the baseline it stays
    /// within together with the quota, for stats.
    pub fn note_resident(&self, resident: u64, baseline: u64) {
        self.process.resident.store(resident, Ordering::Relaxed);
        self.process.baseline.store(baseline, Ordering::Relaxed);
    }

    /// The memory guard's settings.
    pub fn guard_config(&self) -> GuardConfig {
        self.guard.config()
    }

    /// The memory guard's view of memory now, its reading refreshed first if
    /// older than the guard's interval (a read of `/proc` or the cgroup: for
    /// reports, not hot paths). `None` with the guard off or memory unreadable.
    pub fn guard_status(&self) -> Option<GuardStatus> {
        self.guard.status(self.quota.used())
    }

    /// The `n` largest regular files: `(inode, size, bytes charged, shape)`.
    /// Walks the whole node table.
    pub fn largest_files(&self, n: usize) -> Vec<(Ino, u64, u64, Shape)> {
        let mut files: Vec<_> = self
            .table
            .all()
            .into_iter()
            .filter_map(|node| {
                let st = node.state.read();
                st.file().map(|f| (node.ino, f.len(), f.charge(), f.shape()))
            })
            .collect();
        files.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        files.truncate(n);
        files
    }

    /// Checks the accounting invariants: the quota's `used` equals the sum
    /// of every node's charges, the node count equals the table's size, and
    /// every file's storage is self-consistent. For tests; takes every lock
    /// in turn, so concurrent changes can make it report a false mismatch.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        let nodes = self.table.all();
        let mut charged = 0;
        let mut orphans = 0;
        for node in &nodes {
            let st = node.state.read();
            charged += st.total_charge();
            let orphan = st.meta.nlink == 0 && node.opens.load(Ordering::Acquire) == 0;
            if orphan != st.orphan {
                return Err(format!(
                    "inode {}: orphan mark {} on a node that is{} one",
                    node.ino.0,
                    st.orphan,
                    if orphan { "" } else { " not" }
                ));
            }
            orphans += u64::from(orphan);
            if let Some(f) = st.file() {
                f.check_invariants().map_err(|e| format!("inode {}: {e}", node.ino.0))?;
            }
        }
        let used = self.quota.used();
        if used != charged {
            return Err(format!("quota used {used} != sum of charges {charged}"));
        }
        if used > self.quota.max_bytes() {
            return Err(format!("quota used {used} > max {}", self.quota.max_bytes()));
        }
        if self.reclaim.orphans() != orphans {
            return Err(format!("orphan count {} != unlinked closed nodes {orphans}", self.reclaim.orphans()));
        }
        if self.quota.nodes() != nodes.len() as u64 {
            return Err(format!("node count {} != table size {}", self.quota.nodes(), nodes.len()));
        }
        Ok(())
    }

    /// Open handles (for tests and stats).
    pub fn open_handles(&self) -> usize {
        self.handles.count()
    }

    /// Bytes the handle table holds (for tests).
    pub fn handle_table_bytes(&self) -> usize {
        self.handles.table_bytes()
    }

    /// Records a refusal of page-cache writeback that no caller saw.
    fn late_refusal(&self) {
        bump(&self.counters.late_refusals);
    }
}

impl NodeState {
    fn file_mut(&mut self) -> Result<&mut FileData> {
        self.content.file_mut()
    }
}

impl Content {
    /// The file's data; `IsDir` or `InvalidArgument` for other kinds.
    fn file_mut(&mut self) -> Result<&mut FileData> {
        match self {
            Content::File(f) => Ok(f),
            Content::Dir(_) => Err(FsError::IsDir),
            _ => Err(FsError::InvalidArgument),
        }
    }
}
