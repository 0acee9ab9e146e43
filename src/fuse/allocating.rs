//! Requests that allocate: tried again when a refusal may not be final.
//!
//! A request refused for space changed nothing, so it may be tried again.
//! Space comes back when the kernel's RELEASE or FORGET for a deleted file
//! arrives, which may be on another worker right now, or still queued
//! behind this request. [`FuseFs::allocating`] runs every allocating
//! engine call: a refusal while other requests are in flight is tried
//! again once they settle, and a refusal while a deleted node's memory is
//! on its way back is handed to the `deferred` thread (`deferred.rs`),
//! which answers once it fits or the wait is over.

use std::borrow::Borrow;
use std::sync::atomic::Ordering;

use super::FuseFs;
use super::deferred::{Attempt, Outcome};
use crate::engine::{Engine, FsError, SetAttr};

/// An allocating request, for [`FuseFs::allocating`]: its name, and whether
/// it is a page-cache writeback write (whose refusals the engine also
/// counts as late).
pub(super) struct Allocating {
    pub(super) op: &'static str,
    pub(super) late: bool,
}

impl From<&'static str> for Allocating {
    fn from(op: &'static str) -> Allocating {
        Allocating { op, late: false }
    }
}

/// The bytes a held-back request keeps of its arguments (`deferred.rs`).
pub(super) trait HeldSize {
    fn held_size(&self) -> u64;
}

impl HeldSize for [u8] {
    fn held_size(&self) -> u64 {
        self.len() as u64
    }
}

impl HeldSize for () {
    fn held_size(&self) -> u64 {
        0
    }
}

impl HeldSize for SetAttr {
    fn held_size(&self) -> u64 {
        0
    }
}

impl FuseFs {
    /// Runs an allocating engine call on `args` and answers it. A refused
    /// call changed nothing, so it may be tried again: at once if other
    /// requests are in flight (a RELEASE or FORGET that frees space may be
    /// among them, on another worker), and, while a deleted node's memory
    /// is on its way back, on the `deferred` thread with a copy of `args`
    /// each time a deleted node is released (`src/fuse/deferred.rs`).
    pub(super) fn allocating<A, T>(
        &self,
        op: impl Into<Allocating>,
        args: &A,
        call: impl Fn(&Engine, &A) -> Result<T, FsError> + Send + 'static,
        answer: impl FnOnce(Result<T, FsError>) + Send + 'static,
    ) where
        A: ?Sized + ToOwned + HeldSize,
        A::Owned: Send + 'static,
        T: 'static,
    {
        let Allocating { op, late } = op.into();
        let mut r = call(&self.engine, args);
        if let Err(FsError::NoSpace(cause)) = &r
            && self.in_flight.load(Ordering::Acquire) > 1
        {
            // Tried again once the others settle: the retry's refusal, if
            // any, is the one counted.
            self.engine.withdraw_refusal(cause, late);
            self.settle_in_flight();
            r = call(&self.engine, args);
        }
        let cause = match r {
            Err(FsError::NoSpace(cause)) if self.delete_pending() && self.admit(args.held_size()) => cause,
            r => return answer(r),
        };
        let owned = args.to_owned();
        let mut answer = Some(answer);
        let attempt = move |engine: &Engine, last: bool| {
            let r = call(engine, owned.borrow());
            let outcome = match &r {
                Err(FsError::NoSpace(c)) if !last => {
                    engine.withdraw_refusal(c, late);
                    return Outcome::Again;
                }
                Err(FsError::NoSpace(_)) => Outcome::Refused,
                _ => Outcome::Answered,
            };
            if let Some(a) = answer.take() {
                a(r);
            }
            outcome
        };
        // The answer's attempt counts the refusal, if it is one.
        self.engine.withdraw_refusal(&cause, late);
        self.hold(op, args.held_size(), Box::new(attempt));
    }

    /// Whether a refusal now should wait: a node deleted a moment ago has
    /// not been released (`deferred.rs`).
    pub(super) fn delete_pending(&self) -> bool {
        self.deferred.is_some() && self.engine.reclaim_pending()
    }

    /// Whether a request holding `bytes` of copied arguments may wait now.
    pub(super) fn admit(&self, bytes: u64) -> bool {
        self.deferred.as_ref().is_some_and(|d| d.admit(bytes))
    }

    /// Hands `attempt`, admitted with `bytes`, to the `deferred` thread, or
    /// makes it answer now.
    pub(super) fn hold(&self, op: &'static str, bytes: u64, attempt: Attempt) {
        let held = match &self.deferred {
            Some(d) => d.hold(op, bytes, attempt),
            None => Err(attempt),
        };
        if let Err(mut attempt) = held {
            attempt(&self.engine, true);
        }
    }

    /// Waits (at most 50 ms) until this is the only request in flight.
    ///
    /// `close(2)` and `unlink(2)` return once the kernel has queued the
    /// RELEASE and FORGET that free a deleted file, and the kernel hands
    /// those out before later requests; but another worker thread may still
    /// be handling them when a `statfs` read after them arrives. Waiting here
    /// makes `rm file; df` show the space back, as on tmpfs.
    pub(super) fn settle_in_flight(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while self.in_flight.load(Ordering::Acquire) > 1 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    }
}
