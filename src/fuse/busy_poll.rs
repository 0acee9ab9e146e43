//! Adaptive busy polling of the FUSE device.
//!
//! Every FUSE request is a round trip: the kernel queues it and wakes a
//! worker blocked in `read(2)` on `/dev/fuse`, the worker answers and the
//! kernel wakes the caller. Waking a sleeping thread means waking an idle
//! CPU, and on a virtual machine that can cost tens of microseconds, far
//! more than handling a metadata request (docs/performance.md has the
//! measurements). While requests arrive back to back, one worker therefore
//! stops sleeping: its device descriptor is switched to `O_NONBLOCK`, and
//! fuser's receive loop retries `EAGAIN` at once, so that worker keeps
//! asking and takes each request the moment it is queued, with no wake-up.
//! (That retry is `Channel::receive_retrying` in fuser 0.18, which
//! Cargo.toml pins exactly; a fuser that ended the session on `EAGAIN`
//! would make polling fatal, so check it before moving the pin.)
//!
//! This costs a busy CPU (and more: the callers' CPUs are kept from halting
//! meanwhile, below) while it lasts, so it lasts only while it pays:
//!
//! - it starts when a request follows the previous one within [`START_GAP`];
//! - a governor thread ends it at the first [`TICK`] that saw fewer than
//!   [`MIN_PER_TICK`] requests (an idle filesystem never polls, and its
//!   governor sleeps);
//! - the polling worker runs in the idle scheduling class while it polls
//!   (and only then: between bursts it handles requests at normal
//!   priority, or a daemon sharing its cgroup or session with CPU-bound
//!   programs would serve every request from the idle class, measured at
//!   5.5–6.4 s for a 50 MiB write beside two CPU-bound loops against
//!   0.06–0.09 s), so it only ever spins on a CPU nothing else wants.
//!   Leaving the idle class takes privilege (root, `CAP_SYS_NICE` or an
//!   `RLIMIT_NICE` of 20); a daemon without it polls at normal priority,
//!   and the two checks below keep it off busy CPUs. When the daemon's workers together
//!   got less than half a CPU in a tick and spent more than half of it
//!   waiting on a run queue, the programs using the filesystem want the
//!   CPUs themselves (a parallel build, say), and polling backs off
//!   for [`BACKOFF_MIN`], doubling up to [`BACKOFF_MAX`] while that lasts
//!   (back to the minimum only after [`BACKOFF_MAX`] without contention).
//!   All workers count, not the poller alone: the others, woken by the
//!   kernel for each request, preempt the idle-class poller, and that is
//!   our own work, not contention. Nor is time the host steals from a
//!   vCPU: the worker's clock stands still then, but it does not wait on
//!   a run queue;
//! - with one CPU it is never enabled (the daemon decides);
//! - nor does it start while the machine has more runnable tasks than CPUs
//!   (`/proc/loadavg`, read at most every [`CROWDED_RECHECK`]). The idle
//!   class does not keep the poller off the CPUs then: it is idle only
//!   among the daemon's own threads, and where the scheduler groups tasks
//!   (an autogroup per session, or a cgroup) the daemon's group competes
//!   with the callers' group at full weight. Measured with two CPU-bound
//!   loops on 2 CPUs: 283 bursts, 902 ms of polling in a 2 s run, the
//!   contention test above fired twice, and the round trips slowed down
//!   (docs/performance.md, "When every CPU is busy").
//!
//! Polling removes the wakeup of the worker, not the wakeup of the caller:
//! a caller that waits for its answer leaves its CPU idle, an idle vCPU
//! halts, and waking a halted vCPU is a trip through the hypervisor. So
//! while polling, the callers' CPUs are kept from halting, one of two ways:
//!
//! - a *CPU latency request* of 0 µs (PM QoS, `/dev/cpu_dma_latency`, where
//!   the daemon may open it: root): the kernel's idle loop then polls for
//!   work instead of halting, and a wakeup aimed at a polling CPU needs no
//!   interrupt at all. The request is raised when polling starts and
//!   outlives the burst while requests keep coming ([`LINGER_MIN`] per
//!   [`LINGER`]): a program that alternates bursts with work of its own
//!   (git compressing the next object) would otherwise pay halted-vCPU
//!   wakeups for every request between bursts (`git add -A && git commit`
//!   of the benchmark tree: 7.5–8.0 s against 9.3–10.6 s with the request
//!   dropped at the end of each burst). It dies with the descriptor, so a
//!   killed daemon leaves nothing behind. It holds for every CPU of the
//!   machine;
//! - otherwise a *keeper* thread (idle class too) spins on another CPU,
//!   which never halts while it runs: the caller's answer then preempts it
//!   on a running vCPU. It touches nothing (no descriptor, no lock; a
//!   second poller contending for the device queue measured slower) and is
//!   parked whenever polling is off. Its CPU time counts with the workers'
//!   in the governor's reading, since the two share CPUs. Not used with a
//!   latency request: a CPU running the keeper must be interrupted to run
//!   the caller, a polling idle CPU need not (measured slower together).

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::threads::{can_leave_idle, crowded, set_idle, thread_cpu_time, thread_run_delay};
use crate::report::BusyPolling;

/// Polling starts when a request arrives within this time of the previous one.
pub const START_GAP: Duration = Duration::from_micros(250);
/// How often the governor looks at the request rate while polling.
pub const TICK: Duration = Duration::from_millis(1);
/// Polling ends after a tick with fewer requests than this (an average gap
/// longer than [`START_GAP`]).
pub const MIN_PER_TICK: u64 = 4;
/// Pause after polling lost the CPU to other work; doubles while it repeats.
pub const BACKOFF_MIN: Duration = Duration::from_millis(20);
/// Longest pause.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// After a burst, the CPU latency request stays while at least
/// [`LINGER_MIN`] requests arrive per [`LINGER`]: a program that alternates
/// bursts with its own work (git compressing an object between writes) keeps
/// its wakeups cheap between bursts too.
pub const LINGER: Duration = Duration::from_millis(50);
/// Requests per [`LINGER`] that keep the latency request (200 a second):
/// a trickle (a log line now and then) lets it go.
pub const LINGER_MIN: u64 = 10;
/// While the machine is crowded, polling is not tried again for this long.
pub const CROWDED_RECHECK: Duration = Duration::from_millis(20);
/// The kernel's CPU latency QoS device: each open descriptor is one request.
const CPU_LATENCY_DEVICE: &str = "/dev/cpu_dma_latency";
/// What a request asks for while polling: wake in 0 µs (idle CPUs poll).
const LATENCY_POLLING: i32 = 0;
/// What it asks for otherwise: the kernel's default, no constraint (2,000 s
/// in µs, `PM_QOS_CPU_LATENCY_DEFAULT_VALUE`).
const LATENCY_ANY: i32 = 2_000_000_000;

struct Shared {
    /// Our own descriptor for the polled worker's open file description:
    /// `O_NONBLOCK` set through it applies to the worker's reads.
    fd: OwnedFd,
    epoch: Instant,
    /// Requests seen (all workers).
    requests: AtomicU64,
    /// When the last request arrived while not polling, ns since `epoch`.
    last_ns: AtomicU64,
    /// No polling before this time, ns since `epoch` (backing off).
    resume_ns: AtomicU64,
    /// Whether the polling worker has been seen.
    poller_seen: AtomicBool,
    /// Its kernel thread id, once seen (0 before).
    poller_tid: AtomicI32,
    /// Whether it polls in the idle class: only where it can leave the class
    /// again after a burst ([`can_leave_idle`]).
    idle_while_polling: bool,
    /// Kernel thread ids of the workers that have handled a request, and
    /// of the keeper.
    workers: Mutex<Vec<i32>>,
    /// The keeper's kernel thread id, once it runs (0 before).
    keeper_tid: AtomicI32,
    polling: AtomicBool,
    /// Serialises switching, so `polling` always matches the descriptor.
    switch: Mutex<Switch>,
    stop: AtomicBool,
    /// Name of the worker thread that reads `fd`.
    poller: String,
    /// When the latency request may go after a burst ([`LINGER`]).
    linger: Linger,
    /// Our CPU latency request, when the device could be opened.
    latency: Option<File>,
    /// Whether the machine has more runnable tasks than CPUs right now.
    crowded: fn() -> bool,
}

/// How long the latency request outlives a burst: while at least `min`
/// requests arrive per `window`.
#[derive(Clone, Copy, Debug)]
struct Linger {
    window: Duration,
    min: u64,
}

thread_local! {
    /// Whether this thread's scheduling class has been settled.
    static SETTLED: Cell<bool> = const { Cell::new(false) };
}

#[derive(Default)]
struct Switch {
    since: Option<Instant>,
    /// Since when our latency request of 0 µs has been held.
    latency_since: Option<Instant>,
    stats: BusyPolling,
}

/// Busy polling of one worker's device descriptor, with its governor thread.
/// Dropping it stops polling and the governor.
pub struct BusyPoll {
    shared: Arc<Shared>,
    governor: Option<JoinHandle<()>>,
    keeper: Option<JoinHandle<()>>,
}

impl BusyPoll {
    /// Polls through `fd` (the descriptor of one worker's reads) when
    /// requests come back to back. `cpu_latency`: keep idle CPUs polling
    /// with a latency request where permitted (else the keeper does).
    pub fn start(fd: BorrowedFd<'_>, poller: &str, cpu_latency: bool) -> io::Result<BusyPoll> {
        BusyPoll::start_with(fd, poller, cpu_latency, Linger { window: LINGER, min: LINGER_MIN }, crowded)
    }

    fn start_with(
        fd: BorrowedFd<'_>,
        poller: &str,
        cpu_latency: bool,
        linger: Linger,
        crowded: fn() -> bool,
    ) -> io::Result<BusyPoll> {
        let latency = if cpu_latency { open_latency_request() } else { None };
        let shared = Arc::new(Shared {
            fd: fd.try_clone_to_owned()?,
            epoch: Instant::now(),
            requests: AtomicU64::new(0),
            last_ns: AtomicU64::new(u64::MAX),
            resume_ns: AtomicU64::new(0),
            poller_seen: AtomicBool::new(false),
            poller_tid: AtomicI32::new(0),
            idle_while_polling: can_leave_idle(),
            workers: Mutex::new(Vec::new()),
            keeper_tid: AtomicI32::new(0),
            polling: AtomicBool::new(false),
            switch: Mutex::new(Switch::default()),
            stop: AtomicBool::new(false),
            poller: poller.to_owned(),
            linger,
            latency,
            crowded,
        });
        let s = shared.clone();
        let governor = std::thread::Builder::new().name("busy-poll".into()).spawn(move || s.govern())?;
        let keeper = if shared.latency.is_none() {
            let s = shared.clone();
            Some(std::thread::Builder::new().name("keep-awake".into()).spawn(move || s.keep_awake())?)
        } else {
            None
        };
        Ok(BusyPoll { shared, governor: Some(governor), keeper })
    }

    /// Called at the start of every request. While polling this is one
    /// relaxed add; otherwise it also reads the clock, and starts polling
    /// when this request followed the previous one closely.
    #[inline]
    pub fn on_request(&self) {
        let s = &self.shared;
        s.requests.fetch_add(1, Ordering::Relaxed);
        if !SETTLED.get() {
            SETTLED.set(true);
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            s.workers.lock().push(tid);
            if std::thread::current().name() == Some(s.poller.as_str()) {
                s.poller_tid.store(tid, Ordering::Relaxed);
                s.poller_seen.store(true, Ordering::Relaxed);
            }
        }
        if s.polling.load(Ordering::Relaxed) {
            return;
        }
        let now = s.now_ns();
        let prev = s.last_ns.swap(now, Ordering::Relaxed);
        if prev != u64::MAX
            && now.saturating_sub(prev) <= START_GAP.as_nanos() as u64
            && now >= s.resume_ns.load(Ordering::Relaxed)
        {
            if (s.crowded)() {
                s.resume_ns.store(now.saturating_add(CROWDED_RECHECK.as_nanos() as u64), Ordering::Relaxed);
                s.switch.lock().stats.withheld += 1;
                return;
            }
            s.begin();
            for t in [&self.governor, &self.keeper].into_iter().flatten() {
                t.thread().unpark();
            }
        }
    }

    /// Whether a worker is polling right now.
    pub fn polling(&self) -> bool {
        self.shared.polling.load(Ordering::Relaxed)
    }

    /// Bursts and time spent polling so far (the current burst included).
    pub fn stats(&self) -> BusyPolling {
        let sw = self.shared.switch.lock();
        let mut stats = sw.stats;
        stats.cpu_latency = self.shared.latency.is_some();
        if let Some(since) = sw.since {
            stats.polling_ms += since.elapsed().as_millis() as u64;
        }
        if let Some(since) = sw.latency_since {
            stats.latency_ms += since.elapsed().as_millis() as u64;
        }
        stats
    }
}

impl Drop for BusyPoll {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for t in [self.governor.take(), self.keeper.take()].into_iter().flatten() {
            t.thread().unpark();
            let _ = t.join();
        }
        // The session is over and its worker gone: its thread id may name
        // another thread by now, whose class is not ours to change.
        self.shared.poller_tid.store(0, Ordering::Relaxed);
        self.shared.end(false);
        self.shared.release_latency();
    }
}

impl Shared {
    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    fn begin(&self) {
        let mut sw = self.switch.lock();
        if self.polling.load(Ordering::Relaxed) || self.stop.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = set_nonblocking(self.fd.as_fd(), true) {
            log::debug!("busy polling not started: {e}");
            return;
        }
        sw.since = Some(Instant::now());
        sw.stats.bursts += 1;
        self.poller_idle(true);
        self.polling.store(true, Ordering::Relaxed);
        if self.latency.is_some() && sw.latency_since.is_none() {
            sw.latency_since = Some(Instant::now());
            self.request_latency(LATENCY_POLLING);
        }
    }

    fn end(&self, yielded: bool) {
        let mut sw = self.switch.lock();
        if !self.polling.load(Ordering::Relaxed) {
            return;
        }
        if let Err(e) = set_nonblocking(self.fd.as_fd(), false) {
            // Leave it polling rather than pretend; the next tick retries.
            log::warn!("cannot end busy polling: {e}");
            return;
        }
        if let Some(since) = sw.since.take() {
            sw.stats.polling_ms += since.elapsed().as_millis() as u64;
        }
        sw.stats.yielded += u64::from(yielded);
        self.poller_idle(false);
        self.polling.store(false, Ordering::Relaxed);
        // The latency request stays: the governor lets it go (`linger`).
        // The next request starts a new measurement of the gap.
        self.last_ns.store(u64::MAX, Ordering::Relaxed);
    }

    /// Drops our latency request of 0 µs unless a burst has begun (which
    /// holds it).
    fn release_latency(&self) {
        let mut sw = self.switch.lock();
        if self.polling.load(Ordering::Relaxed) {
            return;
        }
        if let Some(since) = sw.latency_since.take() {
            sw.stats.latency_ms += since.elapsed().as_millis() as u64;
            self.request_latency(LATENCY_ANY);
        }
    }

    /// After a burst: holds the latency request while requests keep coming
    /// ([`LINGER_MIN`] per [`LINGER`]), then drops it. Returns early, still
    /// holding it, when the next burst begins.
    fn linger(&self) {
        if self.latency.is_none() {
            return;
        }
        let Linger { window: length, min } = self.linger;
        let mut seen = self.requests.load(Ordering::Relaxed);
        let mut window = Instant::now();
        while !self.stop.load(Ordering::Acquire) {
            // Woken early by the start of a burst (or spuriously).
            std::thread::park_timeout(length.saturating_sub(window.elapsed()));
            if self.polling.load(Ordering::Relaxed) {
                return;
            }
            if window.elapsed() < length {
                continue;
            }
            let now = self.requests.load(Ordering::Relaxed);
            if now.wrapping_sub(seen) < min {
                break;
            }
            (seen, window) = (now, Instant::now());
        }
        self.release_latency();
    }

    /// Sleeps until polling starts, then judges it tick by tick, and lets
    /// the latency request linger after it.
    fn govern(&self) {
        let mut backoff = BACKOFF_MIN;
        let mut last_yield: Option<Instant> = None;
        while !self.stop.load(Ordering::Acquire) {
            if !self.polling.load(Ordering::Relaxed) {
                std::thread::park();
                continue;
            }
            let mut seen = self.requests.load(Ordering::Relaxed);
            let (mut cpu, mut wait) = self.worker_clocks();
            let mut first = true;
            while self.polling.load(Ordering::Relaxed) && !self.stop.load(Ordering::Acquire) {
                let t0 = Instant::now();
                std::thread::sleep(TICK);
                let now = self.requests.load(Ordering::Relaxed);
                let (cpu_now, wait_now) = self.worker_clocks();
                let delta = |a: Option<Duration>, b: Option<Duration>| a.zip(b).map(|(a, b)| b.saturating_sub(a));
                let tick = Tick {
                    requests: now.wrapping_sub(seen),
                    wall: t0.elapsed(),
                    // The worker may still have been asleep in its read when
                    // polling began: judge the CPU share from the second tick.
                    daemon_cpu: if first { None } else { delta(cpu, cpu_now) },
                    workers_waited: delta(wait, wait_now),
                };
                (seen, cpu, wait, first) = (now, cpu_now, wait_now, false);
                let verdict = judge(&tick);
                log::trace!("busy-poll tick {tick:?}: {verdict:?}");
                match verdict {
                    Verdict::Keep => {}
                    Verdict::Quiet => {
                        // A quiet end forgets earlier contention only once
                        // that is old: a parallel job alternates both.
                        if contention_forgotten(last_yield.map(|t| t.elapsed())) {
                            backoff = BACKOFF_MIN;
                        }
                        self.end(false);
                    }
                    Verdict::Contended => {
                        // So does new contention after a contention-free stretch.
                        if contention_forgotten(last_yield.map(|t| t.elapsed())) {
                            backoff = BACKOFF_MIN;
                        }
                        let until = self.now_ns().saturating_add(backoff.as_nanos() as u64);
                        self.resume_ns.store(until, Ordering::Relaxed);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        last_yield = Some(Instant::now());
                        self.end(true);
                    }
                }
            }
            self.linger();
        }
    }

    /// Updates our CPU latency request, if we have one. A failed update is
    /// logged and otherwise harmless (polling works without it).
    fn request_latency(&self, us: i32) {
        if let Some(mut f) = self.latency.as_ref()
            && let Err(e) = f.write_all(&us.to_ne_bytes())
        {
            log::debug!("CPU latency request of {us} µs not taken: {e}");
        }
    }

    /// Puts the polling worker in the idle class, or takes it out, where
    /// it polls in the idle class.
    fn poller_idle(&self, idle: bool) {
        let tid = self.poller_tid.load(Ordering::Relaxed);
        if !self.idle_while_polling || tid == 0 {
            return;
        }
        if let Err(e) = set_idle(tid, idle) {
            // Gone (the session ended mid-burst) is no news.
            let gone = e.raw_os_error() == Some(libc::ESRCH);
            let level = if idle || gone { log::Level::Debug } else { log::Level::Warn };
            log::log!(
                level,
                "busy-polling worker {}: {e}",
                if idle { "keeps its priority" } else { "stays in the idle class" }
            );
        }
    }

    /// Spins while polling lasts, parked otherwise (see the module notes).
    fn keep_awake(&self) {
        if let Err(e) = set_idle(0, true) {
            log::debug!("keeper keeps its priority: {e}");
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        self.keeper_tid.store(tid, Ordering::Relaxed);
        self.workers.lock().push(tid);
        while !self.stop.load(Ordering::Acquire) {
            if self.polling.load(Ordering::Relaxed) {
                std::hint::spin_loop();
            } else {
                std::thread::park();
            }
        }
    }

    /// Two readings of the workers, taken under one lock of the list:
    ///
    /// - the CPU time the request-handling workers (and the keeper) have
    ///   used, once the polling worker has been seen (before that it cannot
    ///   be polling). Per-thread clocks, because they include the running
    ///   slice of a thread on another CPU; the process clock does not (a
    ///   spinning worker never switches, so its time would show up only at
    ///   scheduler ticks);
    /// - the time the request-handling workers (not the keeper) have spent
    ///   runnable but waiting for a CPU, or `None` where the kernel does not
    ///   say. It grows when other tasks want their CPUs, not when the host
    ///   takes a vCPU away: steal leaves a spinning worker's CPU clock
    ///   behind too, and must not read as contention.
    fn worker_clocks(&self) -> (Option<Duration>, Option<Duration>) {
        let keeper = self.keeper_tid.load(Ordering::Relaxed);
        let workers = self.workers.lock();
        let cpu = self
            .poller_seen
            .load(Ordering::Relaxed)
            .then(|| workers.iter().filter_map(|&tid| thread_cpu_time(tid)).sum());
        let waited = workers.iter().filter(|&&tid| tid != keeper).map(|&tid| thread_run_delay(tid)).sum();
        (cpu, waited)
    }
}

/// What the governor saw in one tick of polling.
#[derive(Debug)]
struct Tick {
    requests: u64,
    wall: Duration,
    /// CPU time of the request-handling workers during the tick.
    daemon_cpu: Option<Duration>,
    /// Time they waited on a run queue during the tick.
    workers_waited: Option<Duration>,
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// Requests thinned out.
    Quiet,
    /// The workers got under half a CPU in the tick, though one of its
    /// workers was spinning whenever it had a CPU, and they spent over half
    /// of it waiting for one: other work wants the CPUs. (Under half a CPU
    /// without the wait is the host stealing time: backing off then would
    /// only slow every round trip further.)
    Contended,
}

fn judge(t: &Tick) -> Verdict {
    if t.requests < MIN_PER_TICK {
        Verdict::Quiet
    } else if t.daemon_cpu.is_some_and(|cpu| cpu * 2 < t.wall)
        && t.workers_waited.is_none_or(|waited| waited * 2 > t.wall)
    {
        Verdict::Contended
    } else {
        Verdict::Keep
    }
}

/// A CPU latency request of our own, at first asking for nothing (opening
/// the device adds a request at the default), or `None` where the device
/// is missing or not ours to open (it is root's alone).
fn open_latency_request() -> Option<File> {
    match File::options().write(true).open(CPU_LATENCY_DEVICE) {
        Ok(f) => Some(f),
        Err(e) => {
            log::debug!("no CPU latency request ({CPU_LATENCY_DEVICE}: {e}); a keeper thread keeps a CPU awake");
            None
        }
    }
}

/// Whether backing off starts again from [`BACKOFF_MIN`]: no contention
/// yet, or none for [`BACKOFF_MAX`] (the time since the last is given).
fn contention_forgotten(since_last: Option<Duration>) -> bool {
    since_last.is_none_or(|d| d > BACKOFF_MAX)
}

fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    let raw = fd.as_raw_fd();
    // SAFETY: F_GETFL/F_SETFL on a descriptor we hold open.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
    // SAFETY: as above.
    if new != flags && unsafe { libc::fcntl(raw, libc::F_SETFL, new) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::threads::wait_for;
    use super::*;

    /// Starts polling as `BusyPoll::start` does, on a machine never judged
    /// crowded (tests run beside other tests).
    fn start_uncrowded(fd: BorrowedFd<'_>) -> io::Result<BusyPoll> {
        BusyPoll::start_with(fd, "no such thread", false, Linger { window: LINGER, min: LINGER_MIN }, || false)
    }

    fn nonblocking(fd: BorrowedFd<'_>) -> bool {
        // SAFETY: F_GETFL on an open descriptor.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) & libc::O_NONBLOCK != 0 }
    }

    /// The scheduler state letter of one of our threads (`R` running or
    /// runnable, `S` asleep, ...), from /proc; `None` once it is gone.
    fn task_state(tid: i32) -> Option<u8> {
        let stat = std::fs::read(format!("/proc/self/task/{tid}/stat")).ok()?;
        // "tid (comm) S ...": comm may hold anything, so look after the last ')'.
        let close = stat.iter().rposition(|&b| b == b')')?;
        stat.get(close + 2).copied()
    }

    fn pipe() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: fds is a valid out array of two ints.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: pipe returned two new descriptors we now own.
        unsafe { (std::os::fd::FromRawFd::from_raw_fd(fds[0]), std::os::fd::FromRawFd::from_raw_fd(fds[1])) }
    }

    #[test]
    fn back_to_back_requests_poll_and_a_quiet_tick_ends_it() {
        let (r, _w) = pipe();
        let poll = start_uncrowded(r.as_fd()).unwrap();
        assert!(!nonblocking(r.as_fd()));
        // One request alone does not start polling.
        poll.on_request();
        assert!(!poll.polling() && !nonblocking(r.as_fd()));
        // One right after another does, on the worker's own descriptor (a
        // few tries: the test thread may be preempted between two calls).
        for _ in 0..1000 {
            poll.on_request();
            if poll.polling() {
                break;
            }
        }
        assert!(poll.polling() && nonblocking(r.as_fd()));
        // Nothing more arrives: the governor ends it.
        assert!(wait_for(|| !poll.polling()), "polling never ended");
        assert!(!nonblocking(r.as_fd()));
        let stats = poll.stats();
        assert_eq!(stats.bursts, 1);
    }

    /// On a crowded machine back-to-back requests do not start polling,
    /// and the question is asked at most once per [`CROWDED_RECHECK`].
    #[test]
    fn a_crowded_machine_never_starts_polling() {
        static ASKED: AtomicU64 = AtomicU64::new(0);
        let (r, _w) = pipe();
        let linger = Linger { window: LINGER, min: LINGER_MIN };
        let poll = BusyPoll::start_with(r.as_fd(), "no such thread", false, linger, || {
            ASKED.fetch_add(1, Ordering::Relaxed);
            true
        })
        .unwrap();
        let start = Instant::now();
        for _ in 0..1000 {
            poll.on_request();
        }
        let elapsed = start.elapsed();
        assert!(!poll.polling() && !nonblocking(r.as_fd()));
        assert_eq!(poll.stats().bursts, 0);
        let asked = ASKED.load(Ordering::Relaxed);
        assert_eq!(poll.stats().withheld, asked, "every crowded answer withheld a burst");
        let most = 1 + elapsed.as_nanos() / CROWDED_RECHECK.as_nanos();
        assert!(asked >= 1 && u128::from(asked) <= most, "asked {asked} times in {elapsed:?}");
    }

    /// The polling worker is in the idle class while it polls and only
    /// then (where it may leave the class; elsewhere never).
    #[test]
    fn the_poller_is_idle_class_only_while_polling() {
        fn policy() -> i32 {
            // SAFETY: pid 0 is the calling thread.
            unsafe { libc::sched_getscheduler(0) }
        }
        let (r, _w) = pipe();
        let linger = Linger { window: LINGER, min: LINGER_MIN };
        let poll = BusyPoll::start_with(r.as_fd(), "poller-under-test", false, linger, || false).unwrap();
        let idle_while_polling = poll.shared.idle_while_polling;
        let seen = std::thread::Builder::new()
            .name("poller-under-test".into())
            .spawn(move || {
                let before = policy();
                let mut during = None;
                for _ in 0..1000 {
                    poll.on_request();
                    if poll.polling() {
                        during = Some(policy());
                        break;
                    }
                }
                assert!(wait_for(|| !poll.polling()), "polling never ended");
                (before, during, policy())
            })
            .unwrap()
            .join()
            .unwrap();
        let normal = libc::SCHED_OTHER;
        // (Threads it starts meanwhile start in the normal class.)
        let polling = if idle_while_polling { libc::SCHED_IDLE | libc::SCHED_RESET_ON_FORK } else { normal };
        assert_eq!(seen, (normal, Some(polling), normal), "idle while polling: {idle_while_polling}");
    }

    #[test]
    fn the_governor_keeps_polling_only_while_it_pays() {
        let tick = |requests, cpu_us: Option<u64>, waited_us: Option<u64>| Tick {
            requests,
            wall: Duration::from_millis(1),
            daemon_cpu: cpu_us.map(Duration::from_micros),
            workers_waited: waited_us.map(Duration::from_micros),
        };
        assert_eq!(judge(&tick(50, Some(990), Some(0))), Verdict::Keep);
        assert_eq!(judge(&tick(50, None, None)), Verdict::Keep);
        assert_eq!(judge(&tick(MIN_PER_TICK - 1, Some(990), Some(0))), Verdict::Quiet);
        // Under half a CPU, the rest spent waiting for one: contended.
        assert_eq!(judge(&tick(50, Some(400), Some(600))), Verdict::Contended);
        // Where the kernel keeps no run-queue statistics, the CPU share alone.
        assert_eq!(judge(&tick(50, Some(400), None)), Verdict::Contended);
        // Under half a CPU without waiting: the host stole the time.
        assert_eq!(judge(&tick(50, Some(400), Some(50))), Verdict::Keep);
        assert_eq!(judge(&tick(0, Some(0), Some(0))), Verdict::Quiet);
    }

    #[test]
    fn backing_off_starts_over_after_a_contention_free_stretch() {
        assert!(contention_forgotten(None));
        assert!(!contention_forgotten(Some(BACKOFF_MAX / 2)));
        assert!(contention_forgotten(Some(BACKOFF_MAX + Duration::from_millis(1))));
    }

    #[test]
    fn sparse_requests_never_poll() {
        let (r, _w) = pipe();
        let poll = start_uncrowded(r.as_fd()).unwrap();
        for _ in 0..3 {
            poll.on_request();
            std::thread::sleep(START_GAP * 4);
        }
        assert!(!poll.polling() && !nonblocking(r.as_fd()));
        assert_eq!(poll.stats().bursts, 0);
    }

    #[test]
    fn a_latency_request_of_zero_is_held_while_requests_keep_coming() {
        let (r, _w) = pipe();
        // A long window with a low bar, so that a preempted test thread
        // still sends enough requests per window.
        let linger = Linger { window: Duration::from_millis(200), min: 2 };
        let poll = BusyPoll::start_with(r.as_fd(), "no such thread", true, linger, || false).unwrap();
        // The device reads back the machine's current limit, in µs.
        let Ok(device) = File::open(CPU_LATENCY_DEVICE) else {
            // Not ours to open (not root, or no such device): the keeper
            // stands in.
            assert!(poll.shared.latency.is_none() && poll.keeper.is_some());
            return;
        };
        let limit = || {
            let mut v = [0u8; 4];
            std::os::unix::fs::FileExt::read_exact_at(&device, &mut v, 0).expect("the limit reads as 4 bytes");
            i32::from_ne_bytes(v)
        };
        assert!(poll.shared.latency.is_some(), "the device opens for us but BusyPoll did not take it");
        assert!(poll.keeper.is_none(), "a keeper beside a latency request");
        assert!(poll.stats().cpu_latency);
        let before = limit();
        assert!(before >= 0);
        while !poll.polling() {
            poll.on_request();
        }
        assert_eq!(limit(), 0, "polling without a latency request of 0");
        // Requests keep coming, too far apart to poll for (5 ms): polling
        // ends, the request stays, for several windows.
        let trickle_until = Instant::now() + linger.window * 5;
        let mut held_without_polling = false;
        while Instant::now() < trickle_until {
            poll.on_request();
            std::thread::sleep(Duration::from_millis(5));
            let polling = poll.polling();
            assert_eq!(limit(), 0, "the latency request went while requests kept coming");
            held_without_polling |= !polling;
        }
        assert!(held_without_polling, "polling never ended under a trickle of requests");
        // They stop: the request goes within a window or two (other holders
        // of a request, if any, do not change while we look).
        assert!(wait_for(|| limit() == before), "the limit stayed at {} (was {before})", limit());
        assert!(poll.stats().latency_ms >= (linger.window * 5).as_millis() as u64);
        // Dropping it drops the request for good, polling or not.
        while !poll.polling() {
            poll.on_request();
        }
        assert_eq!(limit(), 0);
        drop(poll);
        assert_eq!(limit(), before);
    }

    #[test]
    fn the_keeper_spins_only_while_polling() {
        let (r, _w) = pipe();
        // Without a latency request (as where the device is not ours).
        let poll = start_uncrowded(r.as_fd()).unwrap();
        assert!(wait_for(|| poll.shared.keeper_tid.load(Ordering::Relaxed) != 0));
        let tid = poll.shared.keeper_tid.load(Ordering::Relaxed);
        let keeper_cpu = || thread_cpu_time(tid).expect("the keeper is alive");
        // Asleep in the kernel (parked) and its clock stands still. An idle
        // class thread may wait long on a loaded machine before it runs
        // far enough to park, so wait for the sleep first (bounded).
        let parked_and_still = |what: &str| {
            assert!(wait_for(|| task_state(tid) == Some(b'S')), "the keeper never parked {what}");
            let t = keeper_cpu();
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(task_state(tid), Some(b'S'), "the keeper woke {what}");
            assert_eq!(keeper_cpu(), t, "the keeper spun {what}");
            t
        };
        let before = parked_and_still("before any burst");
        // A steady stream of requests: it gets CPU time (idle class, so on
        // a busy machine only eventually).
        let deadline = Instant::now() + Duration::from_secs(10);
        while keeper_cpu() < before + Duration::from_millis(5) && Instant::now() < deadline {
            poll.on_request();
            std::hint::spin_loop();
        }
        assert!(keeper_cpu() >= before + Duration::from_millis(5), "the keeper never ran while polling");
        // The stream stops, polling ends, and the keeper parks again.
        assert!(wait_for(|| !poll.polling()), "polling never ended");
        parked_and_still("with polling off");
        drop(poll);
        assert!(wait_for(|| thread_cpu_time(tid).is_none()), "the keeper outlived its BusyPoll");
    }

    #[test]
    fn a_steady_stream_keeps_polling_and_drop_restores_blocking_reads() {
        let (r, _w) = pipe();
        let poll = start_uncrowded(r.as_fd()).unwrap();
        let until = Instant::now() + TICK * 50;
        while Instant::now() < until {
            poll.on_request();
            std::hint::spin_loop();
        }
        // Fifty ticks of a request every few ns: one burst, unless the test
        // thread was preempted for whole ticks (a loaded machine); never
        // ended and restarted at every tick.
        let bursts = poll.stats().bursts;
        assert!((1..25).contains(&bursts), "{bursts} bursts");
        // Dropped while polling (a preempted test thread may just have seen
        // a burst end; two requests in a row start the next).
        while !poll.polling() {
            poll.on_request();
        }
        drop(poll);
        assert!(!nonblocking(r.as_fd()));
    }
}
