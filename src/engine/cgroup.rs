//! Memory this process's cgroup (v1 or v2) can still give.
//!
//! A cgroup is charged for the page cache its processes bring in as well as
//! for their anonymous memory, and at its limit the kernel reclaims page
//! cache before it calls the OOM killer. So what the cgroup can still give
//! is its limit less its usage, *plus its inactive file pages* (the cache
//! the kernel reclaims first: the "working set" container runtimes report
//! is usage less inactive file pages). The host's `MemAvailable` counts
//! reclaimable cache the same way. Counting all of it as used, as sysinfo's
//! `cgroup_limits` does, made the guard refuse writes after 18 MiB in a
//! 200 MiB cgroup whose processes had read 150 MiB of files
//! (`tests/mount_limits.rs` has the case). Active file pages still count as
//! used: the kernel reclaims them too, but only after they age, so that
//! part of the reading stays on the safe side.
//!
//! Every level from the process's cgroup up to its hierarchy's root counts
//! when its limit is below the host's memory; the tightest one wins. Each
//! reading looks the process's cgroup up anew, so a daemon moved to another
//! cgroup (or forked after the probe was made) reads the right one.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::mountinfo;

/// What a cgroup lets this process still allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CgroupMemory {
    /// The tightest limit on the way to the root.
    pub limit: u64,
    /// Bytes left under the tightest level (limit - usage + inactive file pages).
    pub available: u64,
}

/// Which hierarchy holds the memory controller, with its file names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

impl Version {
    fn limit_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        }
    }

    fn usage_file(self) -> &'static str {
        match self {
            Version::V1 => "memory.usage_in_bytes",
            Version::V2 => "memory.current",
        }
    }

    /// The `memory.stat` key of inactive file pages, this cgroup and its
    /// descendants (v1's plain `inactive_file` leaves the descendants out).
    fn inactive_key(self) -> &'static str {
        match self {
            Version::V1 => "total_inactive_file",
            Version::V2 => "inactive_file",
        }
    }
}

/// The memory this process's cgroup can still give, or `None` if it is not
/// confined below `host_total` bytes (or the cgroup cannot be read).
pub(crate) fn read_self(host_total: u64) -> Option<CgroupMemory> {
    let cgroups = std::fs::read("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read("/proc/self/mountinfo").ok()?;
    let (version, base, top) = locate(&cgroups, &mounts)?;
    available_in(version, &base, &top, host_total)
}

/// The memory cgroup directory of the process and the mount point of its
/// hierarchy, from `/proc/self/cgroup` and `/proc/self/mountinfo`. A
/// cgroup-v1 memory controller wins over the v2 hierarchy (hybrid set-ups
/// attach the controller to one of them only).
fn locate(cgroups: &[u8], mounts: &[u8]) -> Option<(Version, PathBuf, PathBuf)> {
    let mut v1 = None;
    let mut v2 = None;
    for line in cgroups.split(|&b| b == b'\n') {
        let mut f = line.splitn(3, |&b| b == b':');
        let (Some(id), Some(controllers), Some(path)) = (f.next(), f.next(), f.next()) else { continue };
        if controllers.split(|&b| b == b',').any(|c| c == b"memory") {
            v1 = Some(path);
        } else if id == b"0" && controllers.is_empty() {
            v2 = Some(path);
        }
    }
    let (version, path) = match (v1, v2) {
        (Some(p), _) => (Version::V1, p),
        (None, Some(p)) => (Version::V2, p),
        (None, None) => return None,
    };
    mounts.split(|&b| b == b'\n').filter_map(mountinfo::parse).find_map(|m| {
        let ours = match version {
            Version::V1 => m.fstype == b"cgroup" && m.super_options.split(|&b| b == b',').any(|o| o == b"memory"),
            Version::V2 => m.fstype == b"cgroup2",
        };
        if !ours {
            return None;
        }
        let rel = relative_to(path, &m.root)?;
        let top = PathBuf::from(OsStr::from_bytes(&m.mount_point));
        let base = top.join(OsStr::from_bytes(rel));
        base.is_dir().then_some((version, base, top))
    })
}

/// `path` below the mount's `root`, without a leading slash; `None` if the
/// cgroup is outside what this mount shows.
fn relative_to<'a>(path: &'a [u8], root: &[u8]) -> Option<&'a [u8]> {
    let root = root.strip_suffix(b"/").unwrap_or(root);
    let rest = path.strip_prefix(root)?;
    if !rest.is_empty() && !rest.starts_with(b"/") {
        return None; // "/ab" is not below "/a"
    }
    Some(rest.strip_prefix(b"/").unwrap_or(rest))
}

/// The tightest level from `base` up to `top` whose limit is below
/// `host_total`.
fn available_in(version: Version, base: &Path, top: &Path, host_total: u64) -> Option<CgroupMemory> {
    let mut tightest: Option<CgroupMemory> = None;
    for dir in base.ancestors().take_while(|d| d.starts_with(top)) {
        let Some(level) = level(version, dir, host_total) else { continue };
        tightest = Some(match tightest {
            None => level,
            Some(t) => CgroupMemory { limit: t.limit.min(level.limit), available: t.available.min(level.available) },
        });
    }
    tightest
}

/// One cgroup's limit and what is left under it, if it has a limit below
/// `host_total` (v1 writes "no limit" as a huge number, v2 as `max`).
fn level(version: Version, dir: &Path, host_total: u64) -> Option<CgroupMemory> {
    let limit = read_u64(&dir.join(version.limit_file()))?;
    if limit >= host_total {
        return None;
    }
    let usage = read_u64(&dir.join(version.usage_file()))?;
    let inactive = std::fs::read_to_string(dir.join("memory.stat"))
        .ok()
        .and_then(|stat| stat_key(&stat, version.inactive_key()))
        .unwrap_or(0);
    let used = usage.saturating_sub(inactive);
    Some(CgroupMemory { limit, available: limit.saturating_sub(used) })
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The value of `key` in a `memory.stat` text (`key value` lines).
fn stat_key(stat: &str, key: &str) -> Option<u64> {
    stat.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const HOST: u64 = 64 << 30;

    #[test]
    fn v1_memory_controller_wins_and_paths_are_resolved_below_the_mount_root() {
        let cg = b"12:pids:/x\n5:cpu,memory:/docker/abc\n0::/user.slice\n";
        let dir = tempdir("locate");
        std::fs::create_dir_all(dir.join("abc")).unwrap();
        let mi = format!(
            "30 1 0:26 / {root}/unified rw - cgroup2 cgroup2 rw\n31 1 0:27 /docker {root} rw shared:5 - cgroup cgroup rw,cpu,memory\n",
            root = dir.display()
        );
        let (v, b, top) = locate(cg, mi.as_bytes()).unwrap();
        assert_eq!((v, b.as_path(), top.as_path()), (Version::V1, dir.join("abc").as_path(), dir.as_path()));
        // Not there: the mount root "/docker" shows /docker/abc as <mount>/abc.
        std::fs::remove_dir_all(dir.join("abc")).ok();
        assert!(locate(cg, mi.as_bytes()).is_none(), "a cgroup directory that does not exist is no reading");
        // Pure v2.
        let mi2 = format!("30 1 0:26 / {} rw - cgroup2 cgroup2 rw\n", dir.display());
        std::fs::create_dir_all(dir.join("user.slice")).unwrap();
        let (v, b, _) = locate(b"0::/user.slice\n", mi2.as_bytes()).unwrap();
        assert_eq!((v, b), (Version::V2, dir.join("user.slice")));
        assert!(locate(b"0::/user.slice\n", b"").is_none());
        assert!(locate(b"", mi2.as_bytes()).is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn relative_paths_stay_below_the_root() {
        assert_eq!(relative_to(b"/a/b", b"/"), Some(&b"a/b"[..]));
        assert_eq!(relative_to(b"/a/b", b"/a"), Some(&b"b"[..]));
        assert_eq!(relative_to(b"/a", b"/a"), Some(&b""[..]));
        assert_eq!(relative_to(b"/ab", b"/a"), None);
        assert_eq!(relative_to(b"/b", b"/a"), None);
    }

    /// Writes a fake cgroup level.
    fn fake(dir: &Path, version: Version, limit: &str, usage: u64, inactive: u64) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(version.limit_file()), format!("{limit}\n")).unwrap();
        std::fs::write(dir.join(version.usage_file()), format!("{usage}\n")).unwrap();
        let stat = format!("cache 1\ninactive_file_x 7\n{} {inactive}\nactive_file 9\n", version.inactive_key());
        std::fs::write(dir.join("memory.stat"), stat).unwrap();
    }

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("scratchfs-cgroup-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn inactive_file_pages_count_as_available_and_the_tightest_level_wins() {
        for version in [Version::V1, Version::V2] {
            let top = tempdir(&format!("levels-{version:?}"));
            let unlimited = if version == Version::V1 { "9223372036854771712" } else { "max" };
            fake(&top, version, unlimited, 900 * MIB, 0);
            let parent = top.join("p");
            let child = parent.join("c");
            // Parent: 1 GiB, 700 MiB used of which 300 MiB inactive cache → 624 MiB left.
            fake(&parent, version, &(1024 * MIB).to_string(), 700 * MIB, 300 * MIB);
            // Child: 200 MiB, 170 MiB used of which 150 MiB inactive cache → 180 MiB left.
            fake(&child, version, &(200 * MIB).to_string(), 170 * MIB, 150 * MIB);
            let r = available_in(version, &child, &top, HOST).unwrap();
            assert_eq!(r, CgroupMemory { limit: 200 * MIB, available: 180 * MIB }, "{version:?}");
            // The parent binds once its own cache is gone.
            fake(&parent, version, &(1024 * MIB).to_string(), 1000 * MIB, 0);
            let r = available_in(version, &child, &top, HOST).unwrap();
            assert_eq!(r, CgroupMemory { limit: 200 * MIB, available: 24 * MIB }, "{version:?}");
            // A limit at or above the host's memory is no limit.
            fake(&parent, version, &HOST.to_string(), 1000 * MIB, 0);
            fake(&child, version, unlimited, 170 * MIB, 0);
            assert_eq!(available_in(version, &child, &top, HOST), None, "{version:?}");
            // Usage over the limit (it happens while the kernel reclaims) leaves nothing.
            fake(&child, version, &(100 * MIB).to_string(), 120 * MIB, 10 * MIB);
            assert_eq!(available_in(version, &child, &top, HOST).unwrap().available, 0);
            // A level without memory.stat counts all its usage.
            std::fs::remove_file(child.join("memory.stat")).unwrap();
            fake(&child, version, &(200 * MIB).to_string(), 170 * MIB, 150 * MIB);
            std::fs::remove_file(child.join("memory.stat")).unwrap();
            assert_eq!(available_in(version, &child, &top, HOST).unwrap().available, 30 * MIB);
            std::fs::remove_dir_all(&top).unwrap();
        }
    }

    #[test]
    fn stat_keys_match_whole_names() {
        let stat = "inactive_file_x 7\ninactive_file 5\ntotal_inactive_file 11\n";
        assert_eq!(stat_key(stat, "inactive_file"), Some(5));
        assert_eq!(stat_key(stat, "total_inactive_file"), Some(11));
        assert_eq!(stat_key(stat, "active_file"), None);
    }

    #[test]
    fn this_process_reads_without_error() {
        // Whatever this machine's set-up, reading must not fail or panic;
        // with a limit, what is left cannot exceed it.
        if let Some(r) = read_self(u64::MAX) {
            assert!(r.available <= r.limit);
        }
    }
}
