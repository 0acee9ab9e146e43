//! The data path: open handles, read, write, fallocate, lseek, copy.
//!
//! A read or write touches the handle table (one shard read lock) and one
//! node lock; nothing filesystem-wide.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::handles::HANDLE_COST;
use super::node::{Content, Node, NodeState};
use super::quota::Reservation;
use super::stats::{bump, drop_one};
use super::types::{Caller, Fallocate, Fh, Ino, OpenFlags, Timestamp, WriteOptions};
use super::{Engine, FsError, NoSpaceCause, Result, StoragePolicy};
use crate::storage::{CHUNK_SIZE, FileData, MAX_FILE_SIZE, Plan, Seek, Shape};

impl Engine {
    /// Opens the regular file `ino`.
    pub fn open(&self, ino: Ino, flags: OpenFlags, caller: &Caller) -> Result<Fh> {
        let node = self.node(ino)?;
        self.open_node(&node, flags, caller)
    }

    pub(super) fn open_node(&self, node: &Arc<Node>, flags: OpenFlags, caller: &Caller) -> Result<Fh> {
        // A handle beyond those the baseline covers is paid for first.
        let handle_charge = if self.handles.next_is_charged() {
            Some(self.reserve_quiet(HANDLE_COST).map_err(|_| FsError::TooManyOpenFiles)?)
        } else {
            None
        };
        let mut st = node.state.write();
        if st.freed {
            return Err(FsError::NotFound);
        }
        st.flags().check_open(flags)?;
        match &mut st.content {
            Content::Dir(_) => return Err(FsError::IsDir),
            Content::Symlink(_) => return Err(FsError::InvalidArgument),
            Content::Special => {}
            Content::File(f) => {
                // An empty file may still hold memory past its end
                // (`fallocate` with KEEP_SIZE): truncating frees it, as on
                // tmpfs; the times change only if the size did.
                if flags.truncate && flags.write && (!f.is_empty() || f.stored() > 0) {
                    let emptied = !f.is_empty();
                    let before = f.charge();
                    f.truncate(0);
                    self.quota.release(before - f.charge());
                    if emptied {
                        st.touch_modified(Timestamp::now());
                        if !caller.fsetid {
                            st.kill_suidgid_by(caller);
                        }
                    }
                }
            }
        }
        node.opens.fetch_add(1, Ordering::AcqRel);
        self.note_orphan(node, &mut st);
        drop(st);
        let charged = handle_charge.map(Reservation::keep).is_some();
        Ok(self.handles.open(node.clone(), flags, charged))
    }

    /// An append-only file takes only appends: a WRITE without `O_APPEND`
    /// (each carries its descriptor's current flags; page-cache writeback
    /// carries none) is refused. Linux checks at open, `F_SETFL` and `mmap`
    /// instead, and FUSE never asks the daemon about the last two, so a
    /// descriptor could drop `O_APPEND` or map the file and overwrite it;
    /// this rule keeps every byte already there. It is stricter than tmpfs
    /// for one case: a descriptor opened without `O_APPEND` before the
    /// file became append-only, which tmpfs lets write anywhere.
    fn check_append(st: &NodeState, opts: WriteOptions) -> Result<()> {
        if st.flags().append_only() && !opts.appending {
            return Err(FsError::NotPermitted);
        }
        Ok(())
    }

    /// Whether `ino` is open for writing through some handle. Walks every
    /// open handle: meant for rare checks.
    pub fn open_for_writing(&self, ino: Ino) -> bool {
        self.handles.any_writer(ino)
    }

    fn handle_node(&self, fh: Fh) -> Result<Arc<Node>> {
        self.handles.get(fh).map(|h| h.node).ok_or(FsError::BadHandle)
    }

    /// Closes a file handle. The last close of a written file gives back the
    /// capacity it held for further appends.
    pub fn release(&self, fh: Fh) -> Result<()> {
        let handle = self.handles.close(fh).ok_or(FsError::BadHandle)?;
        if handle.charged {
            self.quota.release(HANDLE_COST);
        }
        let node = handle.node;
        let last = node.opens.fetch_sub(1, Ordering::AcqRel) == 1;
        // One lock for both: compaction after a write, the orphan mark after
        // the last close.
        if handle.flags.write || last {
            let mut st = node.state.write();
            if let (true, Content::File(f)) = (handle.flags.write, &mut st.content) {
                let before = f.charge();
                f.compact();
                let after = f.charge();
                self.quota.release(before - after);
            }
            if last {
                self.note_orphan(&node, &mut st);
            }
        }
        self.maybe_free(&node);
        Ok(())
    }

    /// Nothing to flush: data lives only here. Validates the handle.
    pub fn flush(&self, fh: Fh) -> Result<()> {
        self.handle_node(fh).map(drop)
    }

    /// Nothing to sync: data lives only here. Validates the handle.
    pub fn fsync(&self, fh: Fh) -> Result<()> {
        self.handle_node(fh).map(drop)
    }

    /// Up to `size` bytes at `off`; short at end of file. A read inside one
    /// stored extent is returned without copying.
    pub fn read(&self, fh: Fh, off: u64, size: u32) -> Result<Bytes> {
        let node = self.handle_node(fh)?;
        let st = node.state.read();
        let data = match &st.content {
            Content::File(f) => f.read(off, u64::from(size)),
            Content::Dir(_) => return Err(FsError::IsDir),
            _ => return Err(FsError::InvalidArgument),
        };
        self.accessed(&node, st);
        Ok(data)
    }

    /// Whether a change at `off` to `file` should promote it first.
    fn wants_promotion(&self, file: &FileData, off: u64) -> bool {
        self.cfg.storage == StoragePolicy::Auto
            && file.shape() == Shape::Sequential
            && off != file.len()
            && file.len() <= self.cfg.promotion_limit
    }

    /// Reserves quota for a change under the `preferred` plan (promotion,
    /// whole cells) if it fits, else under the plain plan, which needs the
    /// least and always works: a change that fits is never refused for the
    /// sake of a storage optimisation. A skipped promotion is counted.
    fn reserve_change(
        &self,
        file: &FileData,
        preferred: Plan,
        op: &str,
        ino: Ino,
        cost: impl Fn(&FileData, Plan) -> u64,
    ) -> Result<(Reservation<'_>, Plan)> {
        self.try_reserve_change(file, preferred, ino, cost).map_err(|cause| self.refused(cause, op, ino))
    }

    /// [`Engine::reserve_change`] for a caller with a way out: when even the
    /// plain plan does not fit, it returns the cause, which is neither
    /// counted nor logged as a refusal.
    fn try_reserve_change(
        &self,
        file: &FileData,
        preferred: Plan,
        ino: Ino,
        cost: impl Fn(&FileData, Plan) -> u64,
    ) -> std::result::Result<(Reservation<'_>, Plan), NoSpaceCause> {
        if preferred != Plan::PLAIN {
            match self.reserve_quiet(cost(file, preferred)) {
                Ok(r) => return Ok((r, preferred)),
                Err(cause) if preferred.promote => {
                    bump(&self.counters.promotions_refused);
                    log::info!("inode {} stays sequential: promotion refused ({cause})", ino.0);
                }
                Err(_) => {}
            }
        }
        Ok((self.reserve_quiet(cost(file, Plan::PLAIN))?, Plan::PLAIN))
    }

    fn count_promotion(&self) {
        bump(&self.counters.promotions);
        drop_one(&self.counters.files_sequential);
        bump(&self.counters.files_random_access);
    }

    /// Writes `data` at `off`. Either the whole write happens or, refused,
    /// nothing changes.
    pub fn write(&self, fh: Fh, off: u64, data: &[u8], opts: WriteOptions) -> Result<u32> {
        self.write_then(fh, off, data, opts, |_, _| {})
    }

    /// [`Engine::write`], calling `accepted` with the length once the write
    /// can no longer fail (every check passed, the space reserved) and before
    /// the bytes are copied in. The node stays locked from before the call
    /// until the copy is done, so nothing can read or change it in between:
    /// a caller may answer its client from `accepted` and let the copy
    /// overlap the client's next step. `accepted` also learns whether the
    /// write cleared a set-user-ID or set-group-ID bit (already done by
    /// then), so the caller can have cached attributes dropped first.
    pub fn write_then(
        &self,
        fh: Fh,
        off: u64,
        data: &[u8],
        opts: WriteOptions,
        accepted: impl FnOnce(u32, bool),
    ) -> Result<u32> {
        let node = self.handle_node(fh)?;
        let len = data.len() as u64;
        off.checked_add(len).filter(|&end| end <= MAX_FILE_SIZE).ok_or(FsError::FileTooLarge)?;
        let len32 = u32::try_from(data.len()).map_err(|_| FsError::InvalidArgument)?;
        if len == 0 {
            return Ok(0);
        }
        let mut st = node.state.write();
        let result = Self::check_append(&st, opts).and_then(|()| {
            self.write_locked(&mut st, node.ino, off, data, opts, |mode_changed| accepted(len32, mode_changed))
        });
        // Late refusals are counted among the space refusals; an append-only
        // file's refused writeback (EPERM) is not one.
        if opts.from_page_cache && matches!(result, Err(FsError::NoSpace(_))) {
            self.late_refusal();
        }
        result.map(|()| len32)
    }

    fn write_locked(
        &self,
        st: &mut NodeState,
        ino: Ino,
        off: u64,
        data: &[u8],
        opts: WriteOptions,
        accepted: impl FnOnce(bool),
    ) -> Result<()> {
        let len = data.len() as u64;
        // The data and the attributes, borrowed apart.
        let NodeState { meta, content, .. } = &mut *st;
        let file = content.file_mut()?;
        let preferred = Plan { promote: self.wants_promotion(file, off), whole_cells: true };
        let (bytes, plan) = self.reserve_change(file, preferred, "write", ino, |f, p| f.write_cost(off, len, p))?;
        // From here on nothing fails. The set-ID bits go before the answer:
        // a writer told of its success must find them gone. (The kernel
        // sets the flag only for a writer without CAP_FSETID.)
        let mode_changed = opts.kill_suidgid && meta.kill_suidgid(opts.writer_gid == meta.gid);
        accepted(mode_changed);
        let before = file.charge();
        file.write(off, data, plan);
        bytes.settle(before, file.charge());
        if plan.promote {
            self.count_promotion();
        }
        st.touch_modified(Timestamp::now());
        // A file capability is read through GETXATTR, which waits for this
        // node's lock: dropping it after the answer is soon enough.
        self.kill_capability(st);
        Ok(())
    }

    /// Allocates, punches or zeroes `[off, off + len)`.
    pub fn fallocate(&self, fh: Fh, off: u64, len: u64, mode: Fallocate) -> Result<()> {
        if len == 0 {
            return Err(FsError::InvalidArgument);
        }
        off.checked_add(len).filter(|&end| end <= MAX_FILE_SIZE).ok_or(FsError::FileTooLarge)?;
        let node = self.handle_node(fh)?;
        let mut st = node.state.write();
        st.flags().check_fallocate(mode)?;
        let file = st.file_mut()?;
        let before = file.charge();
        match mode {
            Fallocate::Allocate { keep_size } => {
                let bytes = self.reserve_backing(file, off, len, node.ino)?;
                file.allocate(off, len, keep_size);
                bytes.settle(before, file.charge());
            }
            Fallocate::ZeroRange { keep_size } => {
                let bytes = self.reserve_backing(file, off, len, node.ino)?;
                file.zero_range(off, len, keep_size);
                bytes.settle(before, file.charge());
            }
            Fallocate::PunchHole => {
                let preferred = Plan { promote: self.wants_promotion(file, off), whole_cells: false };
                let cost = |f: &FileData, p: Plan| f.punch_cost(off, len, p.promote);
                match self.try_reserve_change(file, preferred, node.ino, cost) {
                    Ok((bytes, plan)) => {
                        file.punch(off, len, plan.promote);
                        bytes.settle(before, file.charge());
                        if plan.promote {
                            self.count_promotion();
                        }
                    }
                    // A hole inside one extent splits it, which needs a copy
                    // of one side; where that does not fit, the range is
                    // zeroed where it lies: it reads as a hole reads, costs
                    // nothing and frees nothing. A punch is never refused,
                    // as on tmpfs.
                    Err(cause) => {
                        log::debug!("inode {}: hole zeroed in place, not freed: splitting needs {cause}", node.ino.0);
                        file.zero_stored(off, len);
                    }
                }
            }
        }
        // Every successful fallocate counts as a modification, as on tmpfs
        // (`file_modified`), whether or not the size changed.
        st.touch_modified(Timestamp::now());
        Ok(())
    }

    /// Reserves what backing `[off, off + len)` of `file` with memory costs.
    /// The exact cost walks the range a grid cell or block at a time, so a
    /// range the whole quota could never hold (`fallocate` of 2^62 bytes)
    /// is refused first, from a bound that needs no walk: every byte of the
    /// range not stored yet costs at least a byte. (A bound within the
    /// quota keeps the walk to what the quota could back.)
    fn reserve_backing(&self, file: &FileData, off: u64, len: u64, ino: Ino) -> Result<Reservation<'_>> {
        let at_least = len.saturating_sub(file.stored());
        if at_least > self.quota.max_bytes() {
            let cause = NoSpaceCause::Quota { requested: at_least, available: self.quota.available() };
            return Err(self.refused(cause, "fallocate", ino));
        }
        self.reserve(file.allocate_cost(off, len), "fallocate", ino)
    }

    /// `SEEK_DATA` or `SEEK_HOLE` from `off`.
    pub fn lseek(&self, fh: Fh, off: u64, whence: Seek) -> Result<u64> {
        let node = self.handle_node(fh)?;
        let st = node.state.read();
        match &st.content {
            Content::File(f) => f.seek(off, whence).ok_or(FsError::NoSuchOffset),
            Content::Dir(_) => Err(FsError::IsDir),
            _ => Err(FsError::InvalidArgument),
        }
    }

    /// Copies up to `len` bytes from one open file to another, a grid cell at
    /// a time. Returns the bytes copied: short at the source's end of file,
    /// or when the quota runs out after some bytes were copied.
    pub fn copy_file_range(&self, fh_in: Fh, off_in: u64, fh_out: Fh, off_out: u64, len: u64) -> Result<u64> {
        let src = self.handle_node(fh_in)?;
        let dst = self.handle_node(fh_out)?;
        // As Linux does: a copy that would pass the largest file size is cut
        // short there; one that starts at or past it is refused.
        if off_out >= MAX_FILE_SIZE {
            return Err(FsError::FileTooLarge);
        }
        // `generic_copy_file_checks` refuses an immutable target, and an
        // append-only one takes only appends (`check_append`), which a copy
        // to an offset is not.
        if dst.state.read().flags().fixed() {
            return Err(FsError::NotPermitted);
        }
        let len = len.min(MAX_FILE_SIZE - off_out);
        if Arc::ptr_eq(&src, &dst) && off_in < off_out.saturating_add(len) && off_out < off_in.saturating_add(len) {
            return Err(FsError::InvalidArgument);
        }
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(CHUNK_SIZE) as u32;
            let piece = {
                let st = src.state.read();
                match &st.content {
                    Content::File(f) => f.read(off_in + done, u64::from(want)),
                    Content::Dir(_) => return Err(FsError::IsDir),
                    _ => return Err(FsError::InvalidArgument),
                }
            };
            if piece.is_empty() {
                break;
            }
            let written = {
                let mut st = dst.state.write();
                self.write_locked(&mut st, dst.ino, off_out + done, &piece, WriteOptions::default(), |_| {})
            };
            match written {
                Ok(()) => done += piece.len() as u64,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
            if (piece.len() as u64) < u64::from(want) {
                break; // the source's end of file (a copy within one file may have moved it)
            }
        }
        if len > 0 {
            // The source was read, as by read(2): relatime applies.
            self.accessed(&src, src.state.read());
        }
        Ok(done)
    }
}
