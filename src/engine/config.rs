//! Engine configuration, with the defaults a mounted scratch directory uses.

use std::time::Duration;

/// Which storage shape new files get and whether they change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoragePolicy {
    /// Start sequential; promote to random-access on the first write that is
    /// not an append (or a hole punch), if the file is at most
    /// `promotion_limit` bytes long.
    Auto,
    /// Always sequential.
    Sequential,
    /// Always random-access.
    RandomAccess,
}

/// When the memory guard looks at available memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardMode {
    /// Never.
    None,
    /// Once, when the engine is created: is the quota larger than available memory?
    Init,
    /// At creation and before every allocation, against a reading refreshed
    /// at most once per `interval`, minus what was reserved since.
    PerWrite,
}

/// What the memory guard does when memory is short.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuardAction {
    /// Refuse (`ENOSPC`, cause `memory-guard`).
    Deny,
    /// Log a warning (rate-limited) and go on.
    Warn,
}

impl StoragePolicy {
    /// The name the command line and the stats use.
    pub fn name(self) -> &'static str {
        match self {
            StoragePolicy::Auto => "auto",
            StoragePolicy::Sequential => "sequential",
            StoragePolicy::RandomAccess => "random-access",
        }
    }
}

impl GuardMode {
    /// The name the command line and the stats use.
    pub fn name(self) -> &'static str {
        match self {
            GuardMode::None => "none",
            GuardMode::Init => "init",
            GuardMode::PerWrite => "per-write",
        }
    }
}

impl GuardAction {
    /// The name the command line and the stats use.
    pub fn name(self) -> &'static str {
        match self {
            GuardAction::Deny => "deny",
            GuardAction::Warn => "warn",
        }
    }
}

/// Memory guard settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardConfig {
    /// When to check.
    pub mode: GuardMode,
    /// What to do when memory is short.
    pub action: GuardAction,
    /// Longest age of a cached reading in `PerWrite` mode.
    pub interval: Duration,
    /// Memory the guard keeps free for everything that is not file data
    /// (request buffers, allocator slack, the rest of the process).
    pub headroom: u64,
}

impl GuardConfig {
    /// What of `available` memory the guard lets the filesystem have: all
    /// of it without a guard, else what is left after the headroom.
    pub fn usable(&self, available: u64) -> u64 {
        if self.mode == GuardMode::None { available } else { available.saturating_sub(self.headroom) }
    }
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            mode: GuardMode::PerWrite,
            action: GuardAction::Deny,
            interval: Duration::from_secs(1),
            headroom: 32 << 20,
        }
    }
}

/// Everything an [`Engine`](crate::Engine) needs to know.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Hard quota in bytes: every byte held for the filesystem counts.
    pub max_bytes: u64,
    /// Node limit; `None` means limited only by the quota.
    pub max_nodes: Option<u64>,
    /// Storage shape policy.
    pub storage: StoragePolicy,
    /// Files larger than this are never promoted.
    pub promotion_limit: u64,
    /// Memory guard.
    pub guard: GuardConfig,
    /// Permission bits of the root directory.
    pub root_mode: u32,
    /// Owner of the root directory.
    pub root_uid: u32,
    /// Group of the root directory.
    pub root_gid: u32,
    /// Never update access times (the `noatime` mount option). Otherwise a
    /// read, a directory listing or a link read moves the access time under
    /// the relatime rule: only if it is not later than the last
    /// modification or change, or is a day old. The kernel keeps no access
    /// times of its own for FUSE files, so this is the only place they move.
    pub noatime: bool,
    /// Keep POSIX ACLs (the `acl` mount option): the attributes
    /// `system.posix_acl_access` and `system.posix_acl_default` are stored
    /// and kept in step with the mode, and a directory's default ACL is
    /// handed down to what is created in it (`engine::acl`). Someone else
    /// (the kernel) must enforce them. Without it those names are refused
    /// with `NotSupported`.
    pub posix_acl: bool,
}

impl EngineConfig {
    /// A configuration with the given quota and every other setting at its
    /// default: auto storage, 512 MiB promotion limit, per-write guard that
    /// denies, root directory `1777` owned by root (like `/tmp`), relatime.
    pub fn with_quota(max_bytes: u64) -> Self {
        EngineConfig {
            max_bytes,
            max_nodes: None,
            storage: StoragePolicy::Auto,
            promotion_limit: 512 << 20,
            guard: GuardConfig::default(),
            root_mode: 0o1777,
            root_uid: 0,
            root_gid: 0,
            noatime: false,
            posix_acl: false,
        }
    }
}
