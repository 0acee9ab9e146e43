//! Requests held back until a deleted node's memory comes back.
//!
//! `rm big; dd of=new` on a full filesystem must find the space free, as on
//! tmpfs. The space comes back when the kernel's FORGET for `big` arrives,
//! which the kernel queued during the `unlink`, but may hand out after a
//! few later requests (`src/engine/reclaim.rs`). A worker thread that
//! blocked in a refused `write` until then would never read it (with busy
//! polling there is only one worker). So a request refused while a delete
//! is pending is handed to this module's thread instead, with a copy of its
//! arguments: the worker goes on reading requests (the FORGET among them),
//! and the thread tries the request again each time a deleted node is
//! released, answering as soon as it fits, or with the refusal once nothing
//! is pending any more or the wait (`--delete-wait`, [`DELETE_WAIT`]) has
//! passed. A delete counts as pending for [`RECENT`] after it (or the wait,
//! if longer): a file the kernel keeps longer (an `O_PATH` descriptor) is
//! not about to come back, and refusals do not wait for it.
//!
//! The copies (a write's data: at most one request, 1 MiB) are held outside
//! the quota, like the request buffers they come from, and are part of the
//! daemon's fixed memory baseline: at most [`HELD_BYTES`] of them at a
//! time, and at most [`MAX_WAITING`] requests; beyond that a refusal is
//! answered at once.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam::channel::{self, Receiver, Sender};

use crate::engine::{Engine, RECENT};
use crate::ratelimit::LogBudget;
use crate::report::HeldBack;

/// The longest a request waits for a deleted node to be released, by
/// default (`--delete-wait`).
pub const DELETE_WAIT: Duration = Duration::from_millis(100);
/// Requests that may wait at once.
pub const MAX_WAITING: u64 = 16;
/// Bytes of request arguments that may be held at once (one write's data).
pub const HELD_BYTES: u64 = 1 << 20;
/// How often the thread looks for newcomers and deadlines when no release
/// wakes it (a waiting request is tried again only after a release, or
/// once more when its wait ends).
const SLICE: Duration = Duration::from_millis(1);

/// Held requests refused in the end: a burst a second is logged
/// (`src/ratelimit.rs`).
static REFUSALS_AFTER_WAITING: LogBudget = LogBudget::new(module_path!());

/// What one attempt at a held-back request did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Still refused; try again after the next release.
    Again,
    /// Answered with the request's result.
    Answered,
    /// Answered with the refusal (the last attempt).
    Refused,
}

/// One attempt at a held-back request. Given `last` (no more attempts after
/// this one), it must answer.
pub(crate) type Attempt = Box<dyn FnMut(&Engine, bool) -> Outcome + Send>;

struct Waiting {
    op: &'static str,
    since: Instant,
    bytes: u64,
    attempt: Attempt,
    /// Releases counted when it was last tried (`None`: not yet tried).
    tried: Option<u64>,
}

/// Counts of held-back requests since mount.
#[derive(Default)]
pub(crate) struct Counts {
    waited: AtomicU64,
    went_ahead: AtomicU64,
    waiting: AtomicU64,
    held_bytes: AtomicU64,
}

impl Counts {
    /// Takes a place for a request holding `bytes`, if one is free.
    fn take(&self, bytes: u64) -> bool {
        let place =
            self.waiting.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_WAITING).then_some(n + 1));
        if place.is_err() {
            return false;
        }
        let room = self
            .held_bytes
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |b| b.checked_add(bytes).filter(|&t| t <= HELD_BYTES));
        if room.is_err() {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        room.is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        self.held_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }

    pub(crate) fn snapshot(&self) -> HeldBack {
        HeldBack { requests: self.waited.load(Ordering::Relaxed), went_ahead: self.went_ahead.load(Ordering::Relaxed) }
    }
}

/// The thread that holds refused requests back, and its queue.
pub(crate) struct Deferred {
    queue: Option<Sender<Waiting>>,
    thread: Option<JoinHandle<()>>,
    counts: Arc<Counts>,
}

impl Deferred {
    /// Starts the thread; requests wait at most `wait`, and a delete is
    /// waited for that long after it (at least [`RECENT`]).
    pub(crate) fn start(engine: Arc<Engine>, wait: Duration) -> std::io::Result<Deferred> {
        engine.set_reclaim_window(wait.max(RECENT));
        let (queue, incoming) = channel::unbounded();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let thread = std::thread::Builder::new()
            .name("delete-wait".to_owned())
            .spawn(move || serve(&engine, wait, &incoming, &c))?;
        Ok(Deferred { queue: Some(queue), thread: Some(thread), counts })
    }

    /// Whether a request holding `bytes` of copied arguments may wait now
    /// (if so, it must then be passed to [`Deferred::hold`]).
    pub(crate) fn admit(&self, bytes: u64) -> bool {
        self.queue.is_some() && self.counts.take(bytes)
    }

    /// Holds back `attempt`, admitted with `bytes`.
    pub(crate) fn hold(&self, op: &'static str, bytes: u64, attempt: Attempt) -> Result<(), Attempt> {
        let c = &self.counts;
        let Some(queue) = &self.queue else {
            c.give_back(bytes);
            return Err(attempt);
        };
        match queue.send(Waiting { op, since: Instant::now(), bytes, attempt, tried: None }) {
            Ok(()) => {
                c.waited.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(channel::SendError(w)) => {
                c.give_back(bytes);
                Err(w.attempt)
            }
        }
    }

    pub(crate) fn counts(&self) -> &Counts {
        &self.counts
    }
}

impl Drop for Deferred {
    /// Ends the thread once the requests it holds are answered (within the wait).
    fn drop(&mut self) {
        self.queue = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(engine: &Engine, wait: Duration, incoming: &Receiver<Waiting>, counts: &Counts) {
    let mut waiting: Vec<Waiting> = Vec::new();
    loop {
        if waiting.is_empty() {
            match incoming.recv() {
                Ok(w) => waiting.push(w),
                Err(_) => return,
            }
        }
        waiting.extend(incoming.try_iter());
        // Read before trying, so a release during the attempts is not missed.
        let seen = engine.reclaim_generation();
        let pending = engine.reclaim_pending();
        let now = Instant::now();
        waiting.retain_mut(|w| {
            let last = !pending || now.duration_since(w.since) >= wait;
            // Nothing released since the last try: it would be refused again.
            if !last && w.tried == Some(seen) {
                return true;
            }
            w.tried = Some(seen);
            // A panic drops the request's reply unsent, which answers EIO.
            let outcome = catch_unwind(AssertUnwindSafe(|| (w.attempt)(engine, last))).unwrap_or(Outcome::Refused);
            match outcome {
                Outcome::Again if !last => return true,
                Outcome::Answered => {
                    counts.went_ahead.fetch_add(1, Ordering::Relaxed);
                }
                Outcome::Again | Outcome::Refused => {
                    REFUSALS_AFTER_WAITING.warn(format_args!(
                        "{}: refused after waiting {:?} for deleted files' memory",
                        w.op,
                        w.since.elapsed()
                    ));
                }
            }
            counts.give_back(w.bytes);
            false
        });
        if !waiting.is_empty() {
            engine.wait_for_reclaim(seen, Instant::now() + SLICE);
        }
    }
}
