//! A budget for log lines a client can cause arbitrarily many of: refused
//! requests. A program that retries a write that cannot fit does so as
//! fast as the round trips allow, thousands of times a second; each
//! refusal is still counted (`scratchfs stats`), but only a burst of
//! [`BURST`] lines in each [`WINDOW`] is logged, so that `--log-file` or the
//! journal stays bounded. The number held back is told with the next line
//! let through (so it waits for the next refusal).

use std::time::{Duration, Instant};

use crate::sync::Mutex;

/// Lines let through per window.
pub(crate) const BURST: u32 = 10;
/// The window.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// Lines logged in the current window and lines held back.
pub(crate) struct LogBudget {
    /// The log target the lines go out under (the module that logs them).
    target: &'static str,
    state: Mutex<State>,
}

struct State {
    window_start: Option<Instant>,
    logged: u32,
    held_back: u64,
}

impl LogBudget {
    /// A budget for lines logged under `target` (pass `module_path!()`).
    pub(crate) const fn new(target: &'static str) -> LogBudget {
        LogBudget { target, state: Mutex::new(State { window_start: None, logged: 0, held_back: 0 }) }
    }

    /// Logs `line` at warning level if the budget allows, with the number
    /// of lines held back since the last one logged.
    pub(crate) fn warn(&self, line: std::fmt::Arguments<'_>) {
        match self.take(Instant::now()) {
            Some(0) => log::warn!(target: self.target, "{line}"),
            Some(held_back) => log::warn!(target: self.target, "{line} ({held_back} earlier not logged)"),
            None => {}
        }
    }

    /// Whether a line may be logged at `now`: `Some(n)` with the number of
    /// lines held back since the last one let through, or `None`, counted
    /// as held back.
    pub(crate) fn take(&self, now: Instant) -> Option<u64> {
        let mut s = self.state.lock();
        if s.window_start.is_none_or(|start| now.saturating_duration_since(start) >= WINDOW) {
            s.window_start = Some(now);
            s.logged = 0;
        }
        if s.logged < BURST {
            s.logged += 1;
            Some(std::mem::take(&mut s.held_back))
        } else {
            s.held_back += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_per_window_then_the_held_back_count_with_the_next_line() {
        let b = LogBudget::new(module_path!());
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert_eq!(b.take(t0), Some(0));
        }
        for _ in 0..25 {
            assert_eq!(b.take(t0 + WINDOW / 2), None);
        }
        let t1 = t0 + WINDOW;
        assert_eq!(b.take(t1), Some(25));
        for _ in 1..BURST {
            assert_eq!(b.take(t1), Some(0));
        }
        // A clock read earlier by another thread neither opens a window
        // nor breaks the budget.
        assert_eq!(b.take(t0), None);
        assert_eq!(b.take(t1 + WINDOW), Some(1));
    }
}
