//! The stats report: the engine's figures plus its settings and largest
//! files, as the daemon serves it (JSON in the `user.scratchfs.stats`
//! xattr of the mount root) and as `scratchfs stats` prints it.

use serde::{Deserialize, Serialize};

use crate::engine::{Engine, FileKind, Ino};

/// How many of the largest files a report lists.
pub const LARGEST: usize = 10;
/// Above this many nodes, largest files are reported by inode, not path
/// (finding paths walks the whole tree).
const PATH_WALK_LIMIT: u64 = 1_000_000;

/// Everything `scratchfs stats` shows.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Report {
    /// Program version of the daemon.
    pub version: String,
    /// Hard quota.
    pub quota: Usage,
    /// Node limit (`limit` is `None` when only the quota limits nodes).
    pub nodes: NodeUsage,
    /// Nodes by kind; regular files by storage shape.
    pub files: Files,
    /// Promotions from sequential to random-access storage.
    pub promotions: Promotions,
    /// Refused operations by cause.
    pub refusals: Refusals,
    /// Memory guard settings and latest reading.
    pub memory_guard: Guard,
    /// Storage policy.
    pub storage: Storage,
    /// POSIX ACLs kept (`--acl`).
    #[serde(default)]
    pub acl: bool,
    /// The largest regular files.
    pub largest_files: Vec<LargeFile>,
    /// FUSE requests received, by kind, since mount (filled in by the adapter;
    /// empty for an in-process engine).
    #[serde(default)]
    pub requests: std::collections::BTreeMap<String, u64>,
    /// Busy polling of the FUSE device (`None`: off, or in-process).
    #[serde(default)]
    pub busy_poll: Option<BusyPolling>,
    /// Requests refused just after a delete and held back until the deleted
    /// node's memory came back (filled in by the adapter).
    #[serde(default)]
    pub held_back: HeldBack,
}

/// Requests held back for a deleted node's memory since mount.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HeldBack {
    /// Requests held back.
    pub requests: u64,
    /// Of them, those that went ahead (the rest were refused after waiting).
    pub went_ahead: u64,
}

/// What busy polling has done since mount.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct BusyPolling {
    /// Times a worker started polling (bursts of back-to-back requests).
    pub bursts: u64,
    /// Bursts ended early because other work wanted the CPUs.
    #[serde(default)]
    pub yielded: u64,
    /// Bursts not started because more tasks were runnable than there are
    /// CPUs (counted at most once per recheck, 20 ms).
    #[serde(default)]
    pub withheld: u64,
    /// Time spent polling, in ms: about one CPU busy for that long.
    pub polling_ms: u64,
    /// Whether idle CPUs were kept polling through a CPU latency request
    /// (false: a keeper thread kept one CPU busy while polling lasted).
    #[serde(default)]
    pub cpu_latency: bool,
    /// Time the CPU latency request of 0 µs was held, in ms: the bursts and
    /// the busy stretches between them (idle CPUs poll meanwhile).
    #[serde(default)]
    pub latency_ms: u64,
}

/// Bytes used of a limit.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    /// Limit in bytes.
    pub max_bytes: u64,
    /// Bytes charged.
    pub used_bytes: u64,
    /// Memory the daemon holds beyond the charges (allocator fragmentation),
    /// counted against the limit too.
    #[serde(default)]
    pub unaccounted_bytes: u64,
    /// The daemon's resident memory, when it reports it.
    #[serde(default)]
    pub resident_bytes: Option<u64>,
    /// The part of the resident memory that is the daemon itself, not files:
    /// resident memory stays within `max_bytes + baseline_bytes`.
    #[serde(default)]
    pub baseline_bytes: Option<u64>,
}

/// Nodes used of the node limit.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeUsage {
    /// The node limit, if one was set.
    pub limit: Option<u64>,
    /// Nodes in existence.
    pub used: u64,
}

/// Node counts by kind.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Files {
    /// Regular files stored sequentially.
    pub sequential: u64,
    /// Regular files stored as block maps.
    pub random_access: u64,
    /// Directories.
    pub directories: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// FIFOs, sockets, devices.
    pub special: u64,
}

/// Promotion counts.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Promotions {
    /// Files promoted.
    pub done: u64,
    /// Promotions skipped because their memory did not fit.
    pub refused: u64,
}

/// Refusals by cause.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Refusals {
    /// The quota was full.
    pub quota: u64,
    /// The node limit was reached.
    pub nodes: u64,
    /// The memory guard refused.
    pub memory_guard: u64,
    /// Of these, refusals of page-cache writeback (shared mmap stores).
    pub late: u64,
}

/// Memory guard state.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Guard {
    /// `none`, `init` or `per-write`.
    pub mode: String,
    /// `deny` or `warn`.
    pub action: String,
    /// Latest reading of available memory (refreshed for the report when
    /// older than the guard's interval).
    pub available_bytes: Option<u64>,
    /// Age of that reading, in ms.
    #[serde(default)]
    pub reading_age_ms: Option<u64>,
    /// What the guard would let be allocated now: the reading, less what the
    /// quota took since it and the guard's headroom (`per-write` guards that
    /// deny only).
    #[serde(default)]
    pub usable_bytes: Option<u64>,
    /// Warnings issued in `warn` mode.
    pub warnings: u64,
}

/// Storage settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Storage {
    /// `auto`, `sequential` or `random-access`.
    pub policy: String,
    /// Files above this size are not promoted.
    pub promotion_limit: u64,
}

/// One of the largest files.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LargeFile {
    /// Path from the mount root (lossy UTF-8; one over 512 bytes keeps its
    /// start and end around `/…/`), or `inode N` when unknown.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Bytes charged to the quota for its contents.
    pub charged: u64,
    /// `sequential` or `random-access`.
    pub shape: String,
}

impl Report {
    /// Gathers a report from a live engine; the largest files (a scan of
    /// the nodes and a walk for their paths) only `with_files`.
    pub fn collect(engine: &Engine, with_files: bool) -> Report {
        let s = engine.stats();
        let cfg = engine.config();
        let guard = engine.guard_config();
        let reading = engine.guard_status();
        let largest = if with_files { engine.largest_files(LARGEST) } else { Vec::new() };
        let paths = if !largest.is_empty() && s.nodes <= PATH_WALK_LIMIT {
            paths_of(engine, &largest.iter().map(|f| f.0).collect::<Vec<_>>())
        } else {
            Vec::new()
        };
        Report {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            quota: Usage {
                max_bytes: s.quota_bytes,
                used_bytes: s.used_bytes,
                unaccounted_bytes: s.unaccounted_bytes,
                resident_bytes: s.resident_bytes,
                baseline_bytes: s.baseline_bytes,
            },
            nodes: NodeUsage { limit: s.max_nodes, used: s.nodes },
            files: Files {
                sequential: s.files_sequential,
                random_access: s.files_random_access,
                directories: s.directories,
                symlinks: s.symlinks,
                special: s.specials,
            },
            promotions: Promotions { done: s.promotions, refused: s.promotions_refused },
            refusals: Refusals {
                quota: s.refusals.quota,
                nodes: s.refusals.nodes,
                memory_guard: s.refusals.memory_guard,
                late: s.refusals.late,
            },
            memory_guard: Guard {
                mode: guard.mode.name().to_owned(),
                action: guard.action.name().to_owned(),
                available_bytes: reading.map(|r| r.available),
                reading_age_ms: reading.map(|r| u64::try_from(r.age.as_millis()).unwrap_or(u64::MAX)),
                usable_bytes: reading.and_then(|r| r.usable),
                warnings: s.guard_warnings,
            },
            acl: cfg.posix_acl,
            storage: Storage { policy: cfg.storage.name().to_owned(), promotion_limit: cfg.promotion_limit },
            largest_files: largest
                .iter()
                .map(|&(ino, size, charged, shape)| LargeFile {
                    path: paths
                        .iter()
                        .find(|(i, _)| *i == ino)
                        .map_or_else(|| format!("inode {}", ino.0), |(_, p)| p.clone()),
                    size,
                    charged,
                    shape: shape.name().to_owned(),
                })
                .collect(),
            requests: std::collections::BTreeMap::new(),
            busy_poll: None,
            held_back: HeldBack::default(),
        }
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// Parses a report served by a daemon.
    pub fn from_json(text: &[u8]) -> Result<Report, serde_json::Error> {
        serde_json::from_slice(text)
    }
}

/// Longest path a report shows whole; a longer one keeps its start and
/// end around `/…/`, so that ten paths stay far below the 64 KiB the
/// kernel allows an xattr value (the report is served as one).
const PATH_SHOWN: usize = 512;

/// Finds a path for each wanted inode by walking the tree breadth-first.
/// Keeps one name per directory (not its path: a deep tree would hold the
/// square of its depth) and builds paths only for the inodes found.
fn paths_of(engine: &Engine, wanted: &[Ino]) -> Vec<(Ino, String)> {
    // Directories met so far: (ino, index of the parent in this list, name).
    let mut dirs: Vec<(Ino, usize, Vec<u8>)> = vec![(Ino::ROOT, 0, Vec::new())];
    let mut found: Vec<(Ino, usize, Vec<u8>)> = Vec::new();
    let mut next = 0;
    while next < dirs.len() && found.len() < wanted.len() {
        let (dir, at) = (dirs[next].0, next);
        next += 1;
        let _ = engine.readdir(dir, 2, |d| {
            if wanted.contains(&d.ino) && !found.iter().any(|(i, ..)| *i == d.ino) {
                found.push((d.ino, at, d.name.to_vec()));
            }
            if d.kind == FileKind::Directory {
                dirs.push((d.ino, at, d.name.to_vec()));
            }
            false
        });
    }
    found
        .into_iter()
        .map(|(ino, parent, name)| {
            let mut parts = vec![name.as_slice()];
            let mut at = parent;
            while at != 0 {
                parts.push(&dirs[at].2);
                at = dirs[at].1;
            }
            let mut path = Vec::new();
            for part in parts.iter().rev() {
                path.push(b'/');
                path.extend_from_slice(part);
            }
            (ino, shown(&path))
        })
        .collect()
}

/// A path as a report shows it: lossy UTF-8, and middle elided past
/// [`PATH_SHOWN`] bytes.
fn shown(path: &[u8]) -> String {
    if path.len() <= PATH_SHOWN {
        return String::from_utf8_lossy(path).into_owned();
    }
    let head = &path[..PATH_SHOWN / 4];
    let tail = &path[path.len() - (PATH_SHOWN - PATH_SHOWN / 4 - 8)..];
    format!("{}/…/{}", String::from_utf8_lossy(head), String::from_utf8_lossy(tail))
}
