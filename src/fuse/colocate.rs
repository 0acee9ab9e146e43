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
//! worker looks up the CPU its caller last ran on (`/proc/<tid>/stat`: the
//! caller sleeps in the request, so that is where it will wake), and if it
//! is another one, moves there: its affinity is narrowed to that CPU
//! (which migrates it at once) and put back as it was, so it stays free to
//! go elsewhere. Where a CPU is idle, the scheduler wakes the worker there
//! anyway, so the move costs one look-up and one migration per interval
//! and changes nothing.
//!
//! Not for a busy-polling worker: it never sleeps, and on its caller's CPU
//! it would take turns with the caller instead of answering from another
//! (the caller of [`on_request`] decides).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// How often one worker thread looks at where its caller runs.
pub const INTERVAL: Duration = Duration::from_millis(10);

thread_local! {
    /// When this worker thread may look again.
    static NEXT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Called by a worker with the kernel thread id of the caller of the
/// request it is about to handle (0 for requests without one).
pub fn on_request(caller: u32) {
    if caller == 0 {
        return;
    }
    let now = Instant::now();
    if NEXT.get().is_some_and(|next| now < next) {
        return;
    }
    NEXT.set(Some(now + INTERVAL));
    let Some(cpu) = std::fs::read_to_string(format!("/proc/{caller}/stat")).ok().and_then(|s| last_cpu(&s)) else {
        return;
    };
    // SAFETY: sched_getcpu has no preconditions.
    let here = unsafe { libc::sched_getcpu() };
    if usize::try_from(here).is_ok_and(|here| here != cpu) {
        move_to(cpu);
    }
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
}
