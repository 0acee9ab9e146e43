//! A budget for log lines that a client can make arbitrarily many of:
//! refusals. A program that retries a write that cannot fit does so as fast
//! as the round trips allow, tens of thousands of times a second; each
//! refusal is still counted (`scratchfs stats`), but only a burst of
//! [`BURST`] lines per [`WINDOW`] is logged, so that `--log-file` or the
//! journal stays bounded. The count of lines held back is reported with
//! the next line let through.

use std::time::{Duration, Instant};

use crate::sync::Mutex;

/// Lines let through per window.
pub(crate) const BURST: u32 = 10;
/// The window.
pub(crate) const WINDOW: Duration = Duration::from_secs(1);

/// Lines logged in the current window and lines held back.
#[derive(Default)]
pub(crate) struct LogBudget {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    window_start: Option<Instant>,
    logged: u32,
    held_back: u64,
}

impl LogBudget {
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
        let b = LogBudget::default();
        let t0 = Instant::now();
        for _ in 0..BURST {
            assert_eq!(b.take(t0), Some(0));
        }
        for _ in 0..25 {
            assert_eq!(b.take(t0 + WINDOW / 2), None);
        }
        assert_eq!(b.take(t0 + WINDOW), Some(25));
        assert_eq!(b.take(t0 + WINDOW), Some(0));
        // A clock read earlier by another thread does not open a window.
        assert_eq!(b.take(t0), Some(0));
    }
}
