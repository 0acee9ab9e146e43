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
//! CPU-bound loops on 2 CPUs: 150–500 µs per small file apart, 30–50 µs
//! together; the scheduler moves one to the other only by chance, so runs
//! were bimodal (docs/performance.md, "When every CPU is busy").
//!
//! Together they stay together: the caller sleeps once it has sent a
//! request, so the worker it wakes on its own CPU runs there at once, and
//! the caller, woken on that CPU by the answer, runs when the worker goes
//! back to sleep. So now and then ([`INTERVAL`], per worker thread) a
//! worker asks where its caller last ran, and moves there with that
//! caller's next request: its affinity is narrowed to that CPU (which
//! migrates it at once) and put back, so it stays free to go elsewhere
//! (put back as all CPUs where it had them all, so that CPUs coming online
//! or a growing cpuset stay open to it). Where a CPU is idle,
//! the scheduler wakes the worker there anyway, so a move costs one
//! migration per interval and changes nothing.
//!
//! The question is answered by a thread of its own, the watcher, which
//! reads `/proc/<tid>/task/<tid>/stat` (field 39, the CPU the caller last
//! ran on; it sleeps in its request, so that is where it will wake) and
//! leaves the answer, tagged with the caller, in the worker's mailbox. A
//! worker must never read that file itself: kernels that take the task's
//! `exec_update_lock` in `do_task_stat` (this machine's 6.18 does) wait
//! there while the caller is in `execve(2)`, which holds that lock while it
//! closes the caller's close-on-exec files, and the first close of a file
//! of ours is a FLUSH request. A worker reading it would wait for an
//! answer only it could give (it happened: a test hung with the worker in
//! `do_task_stat`; `tests/mount_colocate.rs`). The watcher answers nothing,
//! so its wait ends when a worker answers; the wait is killable, so it
//! cannot keep the daemon from exiting; and a worker never waits for the
//! watcher (a full queue drops the question).
//!
//! Not for a busy-polling worker: it never sleeps, and on its caller's CPU
//! it would take turns with the caller instead of answering from another
//! (the caller of [`Colocator::on_request`] decides).

use crossbeam::channel::{Receiver, Sender, TrySendError};
use std::cell::{Cell, OnceCell};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::threads::online_cpus;

/// How often one worker thread asks where its caller runs.
pub const INTERVAL: Duration = Duration::from_millis(10);
/// Questions waiting for the watcher; more are dropped (asked again later).
const QUEUE: usize = 16;
/// An empty mailbox.
const EMPTY: u64 = u64::MAX;

/// A worker's mailbox: an answer ([`answer`]: a caller and the CPU it last
/// ran on), or [`EMPTY`].
type Mailbox = Arc<AtomicU64>;

/// The answer for `caller`: it last ran on `cpu` (below `CPU_SETSIZE`, so
/// never [`EMPTY`]).
fn answer(caller: u32, cpu: u32) -> u64 {
    u64::from(caller) << 32 | u64::from(cpu)
}

thread_local! {
    /// When this worker thread may ask again.
    static NEXT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Where the watcher leaves its answers for this worker thread.
    static MAILBOX: OnceCell<Mailbox> = const { OnceCell::new() };
    /// Set once putting this thread's affinity back failed: it moves no more.
    static STUCK: Cell<bool> = const { Cell::new(false) };
}

/// The workers' side of the watcher; the watcher ends when this is dropped.
pub struct Colocator {
    questions: Sender<(u32, Mailbox)>,
}

impl Colocator {
    /// Starts the watcher, or returns `None` where there is no other CPU to
    /// move to.
    pub fn start() -> std::io::Result<Option<Colocator>> {
        if online_cpus() < 2 {
            return Ok(None);
        }
        let (questions, rx) = crossbeam::channel::bounded(QUEUE);
        std::thread::Builder::new().name("colocate".into()).spawn(move || watch(&rx, caller_cpu))?;
        Ok(Some(Colocator { questions }))
    }

    /// Called by a worker with the kernel thread id of the caller of the
    /// request it is about to handle (0 for requests without one): moves to
    /// the CPU the watcher named for this caller, and asks again once per
    /// interval.
    pub fn on_request(&self, caller: u32) {
        if caller == 0 {
            return;
        }
        MAILBOX.with(|cell| {
            let mailbox = cell.get_or_init(|| Arc::new(AtomicU64::new(EMPTY)));
            let got = mailbox.load(Ordering::Relaxed);
            // An answer about another caller waits for that caller's next
            // request (or is replaced by a newer answer).
            if got != EMPTY
                && (got >> 32) as u32 == caller
                && mailbox.compare_exchange(got, EMPTY, Ordering::Relaxed, Ordering::Relaxed).is_ok()
            {
                let cpu = (got & u64::from(u32::MAX)) as usize;
                // SAFETY: sched_getcpu has no preconditions.
                let here = unsafe { libc::sched_getcpu() };
                if usize::try_from(here).is_ok_and(|here| here != cpu) {
                    move_to(cpu);
                }
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
fn watch(questions: &Receiver<(u32, Mailbox)>, cpu_of: impl Fn(u32) -> Option<u32>) {
    while let Ok((caller, mailbox)) = questions.recv() {
        if let Some(cpu) = cpu_of(caller) {
            mailbox.store(answer(caller, cpu), Ordering::Relaxed);
        }
    }
}

/// The CPU task `tid` last ran on. May block while that task's process is
/// in `execve(2)` (see the module's text): only the watcher calls it.
fn caller_cpu(tid: u32) -> Option<u32> {
    std::fs::read(format!("/proc/{tid}/task/{tid}/stat")).ok().and_then(|s| last_cpu(&s))
}

/// The CPU a task last ran on, from its `/proc/<pid>/stat` line: field 39,
/// counted after the command name, which is in parentheses and may itself
/// hold spaces, parentheses and bytes that are not UTF-8.
fn last_cpu(stat: &[u8]) -> Option<u32> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let fields = std::str::from_utf8(&stat[close + 1..]).ok()?;
    // Fields from the third (state) on: the 39th is the 37th of these.
    let cpu: u32 = fields.split_ascii_whitespace().nth(39 - 3)?.parse().ok()?;
    (cpu < libc::CPU_SETSIZE as u32).then_some(cpu)
}

/// Moves the calling thread to `cpu` and puts its affinity back: as it
/// was, or as every CPU where it had every CPU online. A thread whose
/// affinity could not be put back stays where it is from then on.
fn move_to(cpu: usize) {
    if STUCK.get() {
        return;
    }
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: cpu_set_t is plain data (all zeroes: no CPU; all ones: every
    // CPU); the calls get pointers to sets of the size given; pid 0 is this
    // thread.
    unsafe {
        let mut allowed: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= libc::CPU_SETSIZE as usize
            || libc::sched_getaffinity(0, size, &mut allowed) != 0
            || !libc::CPU_ISSET(cpu, &allowed)
        {
            return;
        }
        let back = if usize::try_from(libc::CPU_COUNT(&allowed)).is_ok_and(|n| n >= online_cpus()) {
            let mut all: libc::cpu_set_t = std::mem::zeroed();
            std::ptr::write_bytes(&mut all, 0xff, 1);
            all
        } else {
            allowed
        };
        let mut one: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut one);
        if libc::sched_setaffinity(0, size, &one) == 0 && libc::sched_setaffinity(0, size, &back) != 0 {
            STUCK.set(true);
            log::warn!(
                "a worker stays on CPU {cpu} (its CPUs could not be given back: {}); it follows its callers no more",
                std::io::Error::last_os_error()
            );
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
        assert_eq!(last_cpu(format!("42 (python3) {tail}").as_bytes()), Some(7));
        // A command name with spaces, parentheses and bytes not UTF-8.
        assert_eq!(last_cpu(format!("42 (a) b (c) {tail}").as_bytes()), Some(7));
        assert_eq!(last_cpu(&[b"42 (\xff\xfe) ".as_slice(), tail.as_bytes()].concat()), Some(7));
        assert_eq!(last_cpu(b"42 (short) S 1 2"), None);
        assert_eq!(last_cpu(b"no parenthesis"), None);
        // A CPU number no affinity set can name.
        assert_eq!(last_cpu(format!("42 (x) {}", tail.replace(" 7 0 0", " 99999 0 0")).as_bytes()), None);
    }

    #[test]
    fn own_stat_names_a_cpu() {
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        assert!(caller_cpu(tid).is_some(), "{:?}", std::fs::read(format!("/proc/{tid}/task/{tid}/stat")));
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
        let watcher = std::thread::spawn(move || watch(&rx, |tid| (tid != 13).then_some(tid % 4)));
        let (a, b, c): (Mailbox, Mailbox, Mailbox) = Default::default();
        for m in [&a, &b, &c] {
            m.store(EMPTY, Ordering::Relaxed);
        }
        tx.send((6, a.clone())).unwrap();
        tx.send((13, b.clone())).unwrap();
        tx.send((7, c.clone())).unwrap();
        drop(tx);
        watcher.join().unwrap();
        assert_eq!(a.load(Ordering::Relaxed), answer(6, 2));
        assert_eq!(b.load(Ordering::Relaxed), EMPTY);
        assert_eq!(c.load(Ordering::Relaxed), answer(7, 3));
    }

    /// A worker asks once per interval, with its caller's id, and a caller
    /// id of 0 (a request from the kernel itself) asks nothing.
    #[test]
    fn a_worker_asks_once_per_interval() {
        let (questions, rx) = crossbeam::channel::bounded(QUEUE);
        let colocator = Colocator { questions };
        let quick = std::thread::spawn(move || {
            colocator.on_request(0);
            let start = Instant::now();
            colocator.on_request(41);
            colocator.on_request(42);
            // Preempted for an interval between the two, the second asks too.
            let quick = start.elapsed() < INTERVAL;
            std::thread::sleep(INTERVAL + Duration::from_millis(5));
            colocator.on_request(43);
            quick
        })
        .join()
        .unwrap();
        let asked: Vec<u32> = rx.try_iter().map(|(tid, _)| tid).collect();
        assert_eq!(asked, if quick { vec![41, 43] } else { vec![41, 42, 43] });
    }

    /// An answer moves the worker only with a request of the caller it is
    /// about; another caller's request leaves it in the mailbox.
    #[test]
    fn an_answer_waits_for_its_own_caller() {
        let (questions, _rx) = crossbeam::channel::bounded(QUEUE);
        let colocator = Colocator { questions };
        std::thread::spawn(move || {
            // SAFETY: sched_getcpu has no preconditions.
            let here = u32::try_from(unsafe { libc::sched_getcpu() }).unwrap();
            let mailbox = MAILBOX.with(|c| c.get_or_init(|| Arc::new(AtomicU64::new(EMPTY))).clone());
            mailbox.store(answer(7, here), Ordering::Relaxed);
            colocator.on_request(8);
            assert_eq!(mailbox.load(Ordering::Relaxed), answer(7, here));
            colocator.on_request(7);
            assert_eq!(mailbox.load(Ordering::Relaxed), EMPTY);
        })
        .join()
        .unwrap();
    }

    /// A watcher stuck in its read (as behind a caller in `execve`) never
    /// holds a worker up: questions beyond the queue are dropped.
    #[test]
    fn a_blocked_watcher_never_holds_a_worker_up() {
        let (questions, rx) = crossbeam::channel::bounded(QUEUE);
        let (release, released) = crossbeam::channel::bounded::<()>(0);
        let watcher = std::thread::spawn(move || {
            watch(&rx, |_| {
                let _ = released.recv();
                None
            })
        });
        let colocator = Colocator { questions };
        let (done, finished) = crossbeam::channel::bounded(1);
        let worker = std::thread::spawn(move || {
            for caller in 1..=(QUEUE as u32) * 4 {
                NEXT.set(None); // ask every time
                colocator.on_request(caller);
            }
            let _ = done.send(());
            colocator
        });
        let answered = finished.recv_timeout(Duration::from_secs(20)).is_ok();
        drop(release); // the watcher's read ends
        drop(worker.join().unwrap()); // and with the workers' side, the watcher
        watcher.join().unwrap();
        assert!(answered, "a worker waited for the watcher");
    }
}
