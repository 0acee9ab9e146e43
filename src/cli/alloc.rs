//! Memory policy of the daemon (glibc malloc): memory freed by the
//! filesystem goes back to the system, and what cannot go back counts
//! against the quota, so the daemon's resident memory stays within the
//! quota plus a fixed baseline.
//!
//! - Allocations of 128 KiB and more (the extents of large files) are
//!   served by `mmap` and returned by `munmap` at once. Setting the threshold
//!   fixes it; glibc would otherwise raise it after the first free and keep
//!   large buffers in its heaps.
//! - At most two arenas, so freed memory is not spread over one heap per
//!   thread.
//! - A housekeeping thread calls `malloc_trim(0)`, which hands back every
//!   free page inside the heaps, as soon as `TRIM_AFTER` bytes have been
//!   released to the quota since the last trim, or once releases stop; it
//!   looks every 20 ms, so a delete followed at once by new writes is
//!   trimmed before they pile up.
//! - The same thread reads the process's anonymous resident memory (where
//!   the allocator lives; file-backed pages of the binary are not the
//!   filesystem's). The *baseline* is what the daemon needs whatever it
//!   stores: its resident memory when the mount became ready, one request
//!   buffer and one reply copy (1 MiB each) per worker thread, the append
//!   buffers faulted in ahead of streaming writers (`storage/spares.rs`,
//!   4 MiB), the copies of requests held back just after a delete
//!   (`fuse/deferred.rs`, 1 MiB), the table of the first 16,384 open
//!   handles (`engine/handles.rs`, 1.1 MiB; further ones are charged to
//!   the quota), and a 6 MiB margin for what can be
//!   allocated between two readings. Anonymous memory above its share of that baseline and above
//!   the charges is memory the allocator holds and cannot return (holes
//!   between live small allocations); the engine counts it against the
//!   quota, so resident memory stays within quota + baseline. Before
//!   refusing an allocation the engine asks for a fresh reading (with a
//!   trim), so space freed a moment ago is not refused.

use std::sync::Arc;
use std::time::Duration;

use crate::engine::{Engine, HANDLE_COST, HANDLES_IN_BASELINE};
use crate::fuse::HELD_BYTES;
use crate::storage::SPARE_BYTES;

const MMAP_THRESHOLD: i32 = crate::storage::MMAP_THRESHOLD as i32;
const TRIM_THRESHOLD: i32 = 128 * 1024;
const ARENAS: i32 = 2;
/// Bytes released that trigger a trim.
const TRIM_AFTER: u64 = 8 << 20;
/// How often the housekeeping thread looks.
const PERIOD: Duration = Duration::from_millis(20);
/// Per worker thread: the largest request (1 MiB) in its receive buffer and
/// one extent copied while a reply is sent from it.
const PER_THREAD: u64 = 2 << 20;
/// Growth allowed between two readings of the resident size (4 MiB was
/// exceeded by up to 1 MiB once busy polling made requests twice as fast).
const MARGIN: u64 = 6 << 20;

/// Sets the malloc parameters; call before the allocations they govern.
pub fn configure() {
    // SAFETY: mallopt only changes allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
    }
}

/// Resident memory of this process: `(total, anonymous)` bytes.
pub fn resident_bytes() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        Some(line[name.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().ok()? * 1024)
    };
    Some((field("VmRSS:")?, field("RssAnon:")?))
}

/// The fixed baseline, in total and anonymous terms.
#[derive(Clone, Copy)]
struct Baseline {
    total: u64,
    anon: u64,
}

/// Hands freed heap pages back (if `trim`), then tells the engine how much
/// anonymous memory is held beyond the baseline and the charges.
fn measure(engine: &Engine, base: Baseline, trim: bool) {
    let released = engine.released_bytes();
    if trim {
        // SAFETY: malloc_trim has no preconditions.
        unsafe { libc::malloc_trim(0) };
    }
    if let Some((total, anon)) = resident_bytes() {
        let used = engine.stats().used_bytes;
        let waste = anon.saturating_sub(base.anon - MARGIN).saturating_sub(used);
        engine.note_unaccounted(waste, released);
        engine.note_resident(total, base.total);
    }
}

/// Starts the housekeeping thread; returns the baseline it enforces (total
/// resident memory stays within quota + baseline).
pub fn start_housekeeping(engine: Arc<Engine>, threads: usize) -> u64 {
    let (total, anon) = resident_bytes().unwrap_or((0, 0));
    let extra = threads as u64 * PER_THREAD + SPARE_BYTES + HELD_BYTES + HANDLES_IN_BASELINE * HANDLE_COST + MARGIN;
    let base = Baseline { total: total + extra, anon: anon + extra };
    measure(&engine, base, false);
    let weak = Arc::downgrade(&engine);
    engine.set_remeasure(Box::new(move || {
        if let Some(engine) = weak.upgrade() {
            measure(&engine, base, true);
        }
    }));
    let spawned = std::thread::Builder::new().name("housekeeping".into()).spawn(move || {
        let mut trimmed_at = engine.released_bytes();
        let mut last_seen = trimmed_at;
        loop {
            std::thread::sleep(PERIOD);
            let released = engine.released_bytes();
            // Trim after a large release, or once releases have stopped.
            let quiet = released == last_seen && released > trimmed_at;
            let trim = released - trimmed_at >= TRIM_AFTER || quiet;
            if trim {
                trimmed_at = released;
            }
            last_seen = released;
            measure(&engine, base, trim);
        }
    });
    if let Err(e) = spawned {
        log::warn!("cannot start the housekeeping thread: {e}");
    }
    base.total
}

/// Logs panics through the log sink, without capturing a backtrace (whose
/// symbolisation would load debug information into the daemon's memory).
/// The request handler that panicked has already answered EIO.
pub fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| log::error!("panic: {info}")));
}
