//! What the kernel tells and lets the daemon do about its threads and the
//! machine's CPUs: the probes and knobs busy polling and co-location are
//! built from (`busy_poll.rs` and `colocate.rs` hold the policies).
//!
//! Everything here is one system call or one read of `/proc`, answers
//! `None` (or an error) where the kernel does not, and asks nothing of the
//! FUSE side.

use std::io;
use std::sync::OnceLock;
use std::time::Duration;

/// The machine's CPUs online (at least 1), whatever share of them a cgroup
/// or an affinity mask leaves the daemon; read once (glibc reads it from
/// sysfs).
pub(super) fn online_cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
        usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(1)
    })
}

/// CPU time of thread `tid` of this process: its per-thread CPU clock (the
/// clock id `pthread_getcpuclockid` builds, `MAKE_THREAD_CPUCLOCK(tid,
/// CPUCLOCK_SCHED)` in the kernel). `None` once the thread has exited; the
/// kernel only answers for threads of the calling process.
pub(super) fn thread_cpu_time(tid: i32) -> Option<Duration> {
    let clock: libc::clockid_t = (!tid << 3) | 6;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: ts is a valid out pointer; an invalid clock id is an error.
    if unsafe { libc::clock_gettime(clock, &mut ts) } != 0 {
        return None;
    }
    Some(Duration::new(u64::try_from(ts.tv_sec).ok()?, u32::try_from(ts.tv_nsec).ok()?))
}

/// Time thread `tid` of this process has spent runnable but waiting for a
/// CPU (the second field of its `schedstat`, in ns), or `None` if the
/// kernel keeps no such statistics or the thread has exited.
pub(super) fn thread_run_delay(tid: i32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).ok()?;
    let ns = stat.split_ascii_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Whether more tasks are runnable than there are CPUs to run them (the
/// fourth field of `/proc/loadavg`, "runnable/total", counts the caller, a
/// worker here, among the runnable). Both counts are the machine's: the
/// CPUs online, not the share a cgroup or an affinity mask leaves us, or a
/// daemon confined to 2 CPUs of a large host would always see a crowd.
pub(super) fn crowded() -> bool {
    let cpus = online_cpus();
    std::fs::read_to_string("/proc/loadavg").ok().and_then(|l| runnable(&l)).is_some_and(|r| r > cpus)
}

/// The runnable count in a `/proc/loadavg` line.
fn runnable(loadavg: &str) -> Option<usize> {
    loadavg.split_ascii_whitespace().nth(3)?.split('/').next()?.parse().ok()
}

/// Puts thread `tid` (0: the calling thread) in the idle scheduling class,
/// where it runs only on a CPU nothing else wants, so polling never takes
/// a CPU from the programs using the filesystem (a parallel build, say);
/// or back in the normal class. Threads it creates meanwhile start in the
/// normal class (`SCHED_RESET_ON_FORK`): the polling worker starts the
/// `prefault` thread on the first large write.
pub(super) fn set_idle(tid: i32, idle: bool) -> io::Result<()> {
    let policy = if idle { libc::SCHED_IDLE | libc::SCHED_RESET_ON_FORK } else { libc::SCHED_OTHER };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: param is valid; a tid names a thread (or fails with ESRCH).
    if unsafe { libc::sched_setscheduler(tid, policy, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Whether a thread of this process may leave the idle class again once
/// put there (the kernel asks for the privilege to raise its priority):
/// tried on a thread of its own.
pub(super) fn can_leave_idle() -> bool {
    std::thread::scope(|s| s.spawn(|| set_idle(0, true).is_ok() && set_idle(0, false).is_ok()).join().unwrap_or(false))
}

/// Whether `cond` comes true within 10 s (tests of threads that end or
/// change state on their own time).
#[cfg(test)]
pub(super) fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn runnable_count_from_loadavg() {
        assert_eq!(runnable("0.52 0.58 0.59 3/412 12345\n"), Some(3));
        assert_eq!(runnable("0.00 0.01 0.05 1/80 7"), Some(1));
        assert_eq!(runnable("garbage"), None);
        assert_eq!(runnable(""), None);
    }

    #[test]
    fn run_delay_grows_for_a_thread_that_shares_its_cpu() {
        // Two spinners pinned to one CPU: each waits for the other, and its
        // run-queue wait shows it. Our own thread has the statistics too.
        // SAFETY: gettid has no preconditions.
        let me = unsafe { libc::gettid() };
        assert!(thread_run_delay(me).is_some(), "no schedstat for our own thread");
        // SAFETY: sched_getcpu has no preconditions; a CPU we run on is
        // one we may pin to.
        let cpu = usize::try_from(unsafe { libc::sched_getcpu() }).expect("sched_getcpu");
        let pin_and_spin = |tx: std::sync::mpsc::Sender<i32>| {
            move || {
                // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it;
                // sched_setaffinity(0, ..) applies to the calling thread.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
                    tx.send(libc::gettid()).unwrap();
                }
                let until = Instant::now() + Duration::from_millis(200);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let a = std::thread::spawn(pin_and_spin(tx.clone()));
        let b = std::thread::spawn(pin_and_spin(tx));
        let (ta, tb) = (rx.recv().unwrap(), rx.recv().unwrap());
        std::thread::sleep(Duration::from_millis(150));
        let waited = thread_run_delay(ta).unwrap() + thread_run_delay(tb).unwrap();
        a.join().unwrap();
        b.join().unwrap();
        // 150 ms of two spinners on one CPU: together they waited for
        // about that long; well over a third of it on any scheduler.
        assert!(waited > Duration::from_millis(50), "waited only {waited:?}");
    }

    #[test]
    fn thread_cpu_clock_counts_only_that_thread_and_ends_with_it() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let spinner = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tx.send(unsafe { libc::gettid() }).unwrap();
            let until = Instant::now() + Duration::from_millis(30);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
            go_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(60));
        let used = thread_cpu_time(tid).expect("a live thread of ours has a clock");
        // It spun for 30 ms of wall time, then slept: at most that much, and
        // more than nothing (it had a CPU at some point).
        assert!(used > Duration::ZERO && used < Duration::from_millis(60), "{used:?}");
        go_tx.send(()).unwrap();
        spinner.join().unwrap();
        // join returns when the kernel clears the thread's tid word, which it
        // does before it unhashes the task: the clock may outlive join by a
        // moment (seen once in CI), but it must go.
        assert!(wait_for(|| thread_cpu_time(tid).is_none()), "clock outlived its thread");
        // SAFETY: getpid has no preconditions. Our process's main thread id
        // is our pid; another process's thread is refused: pid 1 here.
        assert!(thread_cpu_time(unsafe { libc::getpid() }).is_some());
        assert_eq!(thread_cpu_time(1), None);
    }
}
