//! scratchfs: an in-memory filesystem with a hard quota, mounted through FUSE.
//!
//! Three layers, one direction of dependency:
//!
//! ```text
//! cli      (clap, env_logger, daemonising, signals)        src/cli
//!   └── fuse adapter (fuser::Filesystem: decode → engine → reply)  src/fuse
//!         └── engine (node tree, storage, quota, node limit,    src/engine, src/storage
//!                     memory guard, stats) — no FUSE types
//! ```
//!
//! The engine is usable in-process, without mounting: see [`ScratchFs`] for
//! a path-based API and [`Engine`] for the inode-based one.

#![warn(missing_docs)]

pub mod cli;
pub mod engine;
pub mod fuse;
mod mountinfo;
mod ratelimit;
pub mod report;
pub mod storage;
mod sync;

pub use engine::path::ScratchFs;
pub use engine::{
    Attr, Caller, DENTRY_COST, DIR_INDEX_COST, DirEntry, Engine, EngineConfig, Fallocate, Fh, FileKind, FsError,
    GuardAction, GuardConfig, GuardMode, HANDLE_COST, HANDLES_IN_BASELINE, Ino, InodeFlags, MemoryProbe, MemoryReading,
    NODE_COST, NoSpaceCause, OpenFlags, Refusals, RenameMode, Result, SetAttr, SetTime, StatFs, Stats, StoragePolicy,
    SystemProbe, TARGET_OVERHEAD, Timestamp, WriteOptions, XATTR_COST, XATTR_LIST_MAX, XATTR_NAME_MAX, XATTR_SIZE_MAX,
    XattrSet,
};
pub use storage::{Seek, Shape};
