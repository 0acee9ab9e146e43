//! Keeping a sleeping worker on its caller's CPU.
//!
//! A FUSE request is a round trip: the caller wakes a worker and sleeps,
//! the worker answers and wakes the caller. When every CPU is busy (more
//! runnable tasks than CPUs), the scheduler places each woken task on the
//! CPU it last ran on or on its waker's, whichever it judges less loaded;
//! with a CPU-bound task on every CPU the two look alike and it keeps the
//! previous one. So a worker and its caller that once landed on different
//! CPUs stay apart, and every request then pays two wakeups across CPUs,
//! each a reschedule interrupt to a busy virtual CPU (~16 µs from wakeup to
//! running, median) and now and then a whole time slice of the task
//! running there (~3 ms, in about 1 % of the wakeups). Measured with two
//! CPU-bound loops on 2 CPUs: 270–450 µs per small file apart, 30 µs
//! together; the scheduler moves one to the other only by chance, so runs
//! were bimodal (docs/performance.md, "When every CPU is busy").
//!
//! Together they stay together: the caller sleeps once it has sent a
//! request, so the worker it wakes on its own CPU runs there at once, and
//! the caller, woken on that CPU by the answer, runs when the worker goes
//! back to sleep. So now and then ([`INTERVAL`], per worker thread) a
//! worker asks where its caller last ran, and moves there when told: its
//! affinity is narrowed to that CPU (which migrates it at once) and put
//! back as it was, so it stays free to go elsewhere. Where a CPU is idle,
//! the scheduler wakes the worker there anyway, so a move costs one
//! migration per interval and changes nothing.
//!
//! The question is answered by a thread of its own, the watcher, which
//! reads `/proc/<tid>/stat` (field 39, the CPU the caller last ran on; it
//! sleeps in its request, so that is where it will wake) and leaves the
//! answer in the worker's mailbox, picked up with its next request. A
//! worker must never read a caller's procfs files itself: the kernel takes
//! the caller's `exec_update_lock` there, which a caller in `execve(2)`
//! holds while it closes its files, and closing a file of ours is a
//! request. A worker reading it would wait for an answer only it could
//! give (it happened: a test hung with the worker in `do_task_stat`). The
//! watcher answers nothing, so its wait ends when a worker answers; the
//! wait is killable, so it cannot keep the daemon from exiting.
//!
//! Not for a busy-polling worker: it never sleeps, and on its caller's CPU
//! it would take turns with the caller instead of answering from another
//! (the caller of [`Colocator::on_request`] decides).

use crossbeam::channel::{Receiver, Sender, TrySendError};
use std::cell::{Cell, OnceCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often one worker thread asks where its caller runs.
pub const INTERVAL: Duration = Duration::from_millis(10);
/// Questions waiting for the watcher; more are dropped (asked again later).
const QUEUE: usize = 16;
/// An empty mailbox.
const NO_CPU: usize = usize::MAX;

/// A worker's mailbox: the CPU to move to, or [`NO_CPU`].
type Mailbox = Arc<AtomicUsize>;

thread_local! {
    /// When this worker thread may ask again.
    static NEXT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Where the watcher leaves its answers for this worker thread.
    static MAILBOX: OnceCell<Mailbox> = const { OnceCell::new() };
}

/// The workers' side of the watcher; the watcher ends when this is dropped.
pub struct Colocator {
    questions: Sender<(u32, Mailbox)>,
}

impl Colocator {
    /// Starts the watcher, or returns `None` where there is no other CPU to
    /// move to.
    pub fn start() -> std::io::Result<Option<Colocator>> {
        if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
            return Ok(None);
        }
        let (questions, rx) = crossbeam::channel::bounded(QUEUE);
        std::thread::Builder::new().name("colocate".into()).spawn(move || watch(&rx, caller_cpu))?;
        Ok(Some(Colocator { questions }))
    }

    /// Called by a worker with the kernel thread id of the caller of the
    /// request it is about to handle (0 for requests without one): moves to
    /// the CPU the watcher last named, and asks again once per interval.
    pub fn on_request(&self, caller: u32) {
        MAILBOX.with(|cell| {
            let mailbox = cell.get_or_init(|| Arc::new(AtomicUsize::new(NO_CPU)));
            let cpu = mailbox.swap(NO_CPU, Ordering::Relaxed);
            if cpu != NO_CPU {
                // SAFETY: sched_getcpu has no preconditions.
                let here = unsafe { libc::sched_getcpu() };
                if usize::try_from(here).is_ok_and(|here| here != cpu) {
                    move_to(cpu);
                }
            }
            if caller == 0 {
                return;
            }
            let now = Instant::now();
            if NEXT.get().is_some_and(|next| now < next) {
                return;
            }
            NEXT.set(Some(now + INTERVAL));
            match self.questions.try_send((caller, mailbox.clone())) {
                Ok(()) | Err(TrySendError::Full(_)) => {}
                Err(TrySendError::Disconnected(_)) => log::debug!("no watcher to ask where callers run"),
            }
        });
    }
}

/// The watcher: answers each question with `cpu_of(caller)` until every
/// worker's side is gone.
fn watch(questions: &Receiver<(u32, Mailbox)>, cpu_of: impl Fn(u32) -> Option<usize>) {
    while let Ok((caller, mailbox)) = questions.recv() {
        if let Some(cpu) = cpu_of(caller) {
            mailbox.store(cpu, Ordering::Relaxed);
        }
    }
}

/// The CPU task `tid` last ran on. May block while that task's process is
/// in `execve(2)` (see the module's text): only the watcher calls it.
fn caller_cpu(tid: u32) -> Option<usize> {
    std::fs::read_to_string(format!("/proc/{tid}/stat")).ok().and_then(|s| last_cpu(&s))
}

/// The CPU a task last ran on, from its `/proc/<pid>/stat` line: field 39,
/// counted after the command name, which is in parentheses and may itself
/// hold spaces and parentheses.
fn last_cpu(stat: &str) -> Option<usize> {
    let fields = &stat[stat.rfind(')')? + 1..];
    // Fields from the third (state) on: the 39th is the 37th of these.
    fields.split_ascii_whitespace().nth(39 - 3)?.parse().ok()
}

/// Moves the calling thread to `cpu` and leaves its affinity as it was.
fn move_to(cpu: usize) {
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: cpu_set_t is plain data, all zeroes is the empty set; the
    // calls get pointers to sets of the size given; pid 0 is this thread.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize
            || libc::sched_getaffinity(0, size, &mut allowed) != 0
            || !libc::CPU_ISSET(cpu, &allowed)
        {
            return;
        }
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, size, &one) == 0 && libc::sched_setaffinity(0, size, &allowed) != 0 {
            log::warn!("worker left on CPU {cpu}: {}", std::io::Error::last_os_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_cpu_from_stat() {
        let tail =
            "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 7 0 0";
        assert_eq!(last_cpu(&format!("42 (python3) {tail}")), Some(7));
        // A command name with spaces and parentheses.
        assert_eq!(last_cpu(&format!("42 (a) b (c) {tail}")), Some(7));
        assert_eq!(last_cpu("42 (short) S 1 2"), None);
        assert_eq!(last_cpu("no parenthesis"), None);
    }

    #[test]
    fn own_stat_names_a_cpu() {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        assert!(last_cpu(&stat).is_some_and(|c| c < libc::CPU_SETSIZE as usize), "{stat}");
    }

    #[test]
    fn moving_keeps_the_affinity() {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: as in move_to.
        unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, size, &mut before), 0);
            let first = (0..libc::CPU_SETSIZE as usize).find(|&c| libc::CPU_ISSET(c, &before)).unwrap();
            move_to(first);
            let mut after: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, size, &mut after), 0);
            assert!(libc::CPU_EQUAL(&before, &after));
        }
    }

    /// The watcher answers into the asking worker's mailbox, keeps going
    /// past a caller it cannot place, and ends when the workers' side does.
    #[test]
    fn the_watcher_answers_each_mailbox_and_ends_with_its_senders() {
        let (tx, rx) = crossbeam::channel::bounded(QUEUE);
        let watcher = std::thread::spawn(move || watch(&rx, |tid| (tid != 13).then_some(tid as usize % 4)));
        let (a, b, c): (Mailbox, Mailbox, Mailbox) = Default::default();
        for m in [&a, &b, &c] {
            m.store(NO_CPU, Ordering::Relaxed);
        }
        tx.send((6, a.clone())).unwrap();
        tx.send((13, b.clone())).unwrap();
        tx.send((7, c.clone())).unwrap();
        drop(tx);
        watcher.join().unwrap();
        assert_eq!(a.load(Ordering::Relaxed), 2);
        assert_eq!(b.load(Ordering::Relaxed), NO_CPU);
        assert_eq!(c.load(Ordering::Relaxed), 3);
    }

    /// A worker asks once per interval, with its caller's id, and a caller
    /// id of 0 (a request from the kernel itself) asks nothing.
    #[test]
    fn a_worker_asks_once_per_interval() {
        let (questions, rx) = crossbeam::channel::bounded(QUEUE);
        let colocator = Colocator { questions };
        std::thread::spawn(move || {
            colocator.on_request(0);
            colocator.on_request(41);
            colocator.on_request(42);
            std::thread::sleep(INTERVAL + Duration::from_millis(5));
            colocator.on_request(43);
        })
        .join()
        .unwrap();
        let asked: Vec<u32> = rx.try_iter().map(|(tid, _)| tid).collect();
        assert_eq!(asked, [41, 43]);
    }
}
