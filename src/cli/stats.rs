//! `scratchfs stats`: reads the report a daemon serves in the mount root's
//! `user.scratchfs.stats` xattr and prints it for people or machines.

use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

use super::args::StatsArgs;
use super::units::human_bytes;
use crate::fuse::STATS_XATTR;
use crate::report::{Guard, Report};

/// `name` with control characters (a terminal's escape sequences, line
/// breaks), invisible formatting characters (bidirectional overrides,
/// zero-width spaces, line and paragraph separators) and backslashes
/// escaped, so that a file name cannot disguise itself or the lines around
/// it. (Bytes that are not UTF-8 arrive as U+FFFD: the report's paths are
/// lossy.)
fn printable(name: &str) -> String {
    let invisible = |c: char| matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}');
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_control() || invisible(c) || c == '\\' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn get_xattr(path: &Path, name: &[u8]) -> std::io::Result<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).map_err(|_| std::io::Error::other("NUL in path"))?;
    let n = CString::new(name).map_err(|_| std::io::Error::other("NUL in name"))?;
    loop {
        // SAFETY: a NULL buffer of size 0 asks for the value's size.
        let size = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
        if size < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize + 256];
        // SAFETY: buf is valid for buf.len() bytes.
        let got = unsafe { libc::getxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if got >= 0 {
            buf.truncate(got as usize);
            return Ok(buf);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ERANGE) {
            return Err(err);
        }
    }
}

/// Reads the report of the scratchfs mounted at `mountpoint`.
pub fn fetch(mountpoint: &Path) -> Result<Report, String> {
    let raw = get_xattr(mountpoint, STATS_XATTR).map_err(|e| match e.raw_os_error() {
        Some(libc::ENODATA | libc::ENOTSUP) => format!("{} is not a scratchfs mount point", mountpoint.display()),
        Some(libc::ENOENT) => format!("{} does not exist", mountpoint.display()),
        Some(libc::ENOTCONN) => format!("{}: the scratchfs daemon is gone (umount it)", mountpoint.display()),
        Some(libc::EACCES) => format!(
            "cannot read stats from {}: permission denied (a mount made without --allow-other admits only the \
             user who mounted it, not even root; with it, the root directory's mode applies)",
            mountpoint.display()
        ),
        _ => format!("cannot read stats from {}: {e}", mountpoint.display()),
    })?;
    Report::from_json(&raw).map_err(|e| format!("{}: unreadable stats ({e})", mountpoint.display()))
}

/// The guard's reading as the text report shows it.
fn guard_reading(g: &Guard) -> String {
    let Some(available) = g.available_bytes else { return "no reading".to_owned() };
    let mut text = format!("{} available", human_bytes(available));
    if let Some(ms) = g.reading_age_ms {
        text.push_str(&format!(" when read {:.1} s ago", ms as f64 / 1000.0));
    }
    if let Some(usable) = g.usable_bytes {
        text.push_str(&format!(", {} of it usable for files now", human_bytes(usable)));
    }
    text
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 { "-".to_owned() } else { format!("{:.1}%", part as f64 * 100.0 / whole as f64) }
}

/// The human-readable report.
pub fn render(r: &Report, mountpoint: &Path) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("scratchfs {} on {}{}", r.version, mountpoint.display(), if r.acl { ", POSIX ACLs on" } else { "" }));
    line(format!(
        "  quota       {} used of {} ({}), {} free",
        human_bytes(r.quota.used_bytes),
        human_bytes(r.quota.max_bytes),
        percent(r.quota.used_bytes, r.quota.max_bytes),
        human_bytes(r.quota.max_bytes.saturating_sub(r.quota.used_bytes))
    ));
    if let (Some(rss), Some(base)) = (r.quota.resident_bytes, r.quota.baseline_bytes) {
        line(format!(
            "  memory      {} resident (bound: quota + {} baseline){}",
            human_bytes(rss),
            human_bytes(base),
            if r.quota.unaccounted_bytes > 0 {
                format!(
                    "; {} held by the allocator beyond the charges counts against the quota",
                    human_bytes(r.quota.unaccounted_bytes)
                )
            } else {
                String::new()
            }
        ));
    }
    line(match r.nodes.limit {
        Some(limit) => format!("  nodes       {} of {} ({})", r.nodes.used, limit, percent(r.nodes.used, limit)),
        None => format!("  nodes       {} (no node limit; the quota bounds them)", r.nodes.used),
    });
    let f = &r.files;
    line(format!(
        "  files       {} sequential, {} random-access; {} directories, {} symlinks, {} special",
        f.sequential, f.random_access, f.directories, f.symlinks, f.special
    ));
    line(format!(
        "  storage     {}, promotion limit {}; {} promoted, {} promotions skipped (did not fit)",
        r.storage.policy,
        human_bytes(r.storage.promotion_limit),
        r.promotions.done,
        r.promotions.refused
    ));
    let x = &r.refusals;
    line(format!(
        "  refusals    {} quota, {} node limit, {} memory guard ({} of them late: mmap writeback)",
        x.quota, x.nodes, x.memory_guard, x.late
    ));
    let h = &r.held_back;
    if h.requests > 0 {
        line(format!(
            "  held back   {} requests refused just after a delete waited for its memory; {} then went ahead",
            h.requests, h.went_ahead
        ));
    }
    let g = &r.memory_guard;
    line(format!(
        "  guard       {}/{}, {}{}",
        g.mode,
        g.action,
        guard_reading(g),
        if g.warnings > 0 { format!(", {} warnings", g.warnings) } else { String::new() }
    ));
    if let Some(p) = r.busy_poll {
        line(format!(
            "  busy poll   {} bursts ({} yielded to other work, {} withheld while more tasks were runnable than CPUs), \
             {:.1} s polling ({})",
            p.bursts,
            p.yielded,
            p.withheld,
            p.polling_ms as f64 / 1000.0,
            if p.cpu_latency {
                format!(
                    "one idle-priority CPU busy meanwhile; idle CPUs polling under a CPU latency request \
                     for {:.1} s, the bursts and the busy stretches between them",
                    p.latency_ms as f64 / 1000.0
                )
            } else {
                "two idle-priority CPUs busy meanwhile: the poller and a keeper".to_owned()
            }
        ));
    }
    if !r.largest_files.is_empty() {
        line("  largest files:".to_owned());
        for file in &r.largest_files {
            line(format!(
                "    {:>10}  {:<13} {:>10} held  {}",
                human_bytes(file.size),
                file.shape,
                human_bytes(file.charged),
                printable(&file.path)
            ));
        }
    }
    out
}

pub fn run(args: &StatsArgs) -> Result<(), String> {
    loop {
        let report = fetch(&args.mountpoint)?;
        let text = if args.json { report.to_json() + "\n" } else { render(&report, &args.mountpoint) };
        let mut stdout = std::io::stdout().lock();
        let written = (|| {
            if args.watch {
                write!(stdout, "\x1b[H\x1b[2J")?;
            }
            stdout.write_all(text.as_bytes())?;
            stdout.flush()
        })();
        match written {
            // The reader is gone (`scratchfs stats --watch | head`): done.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(format!("cannot write the report: {e}")),
            Ok(()) => {}
        }
        if !args.watch {
            return Ok(());
        }
        drop(stdout);
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn names_print_as_themselves_whatever_bytes_they_hold() {
        assert_eq!(printable("src/main.rs"), "src/main.rs");
        assert_eq!(printable("caf\u{e9} \u{1f600}"), "caf\u{e9} \u{1f600}");
        assert_eq!(printable("a\x1b[31mred\x07"), r"a\u{1b}[31mred\u{7}");
        assert_eq!(printable("two\nlines\\"), r"two\nlines\\");
        assert_eq!(printable("c1\u{9b}"), r"c1\u{9b}");
        assert_eq!(printable("evil\u{202e}txt.exe"), r"evil\u{202e}txt.exe");
        assert_eq!(printable("zero\u{200b}width"), r"zero\u{200b}width");
    }
}
