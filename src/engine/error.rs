//! The engine's error type. It names POSIX outcomes; the errno numbers live
//! in exactly one place, the FUSE adapter's `errno.rs`.

use std::fmt;

/// Why an allocation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoSpaceCause {
    /// The hard quota would be exceeded.
    Quota {
        /// Bytes the operation needed.
        requested: u64,
        /// Bytes left in the quota.
        available: u64,
    },
    /// The node limit is reached.
    Nodes {
        /// The configured node limit.
        limit: u64,
    },
    /// The memory guard judged the host (or cgroup) too short of memory.
    MemoryGuard {
        /// Bytes the operation needed.
        requested: u64,
        /// Bytes the guard considered available.
        available: u64,
    },
}

impl NoSpaceCause {
    /// Short name of the cause, as used in stats and logs.
    pub fn name(&self) -> &'static str {
        match self {
            NoSpaceCause::Quota { .. } => "quota",
            NoSpaceCause::Nodes { .. } => "nodes",
            NoSpaceCause::MemoryGuard { .. } => "memory-guard",
        }
    }
}

impl fmt::Display for NoSpaceCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoSpaceCause::Quota { requested, available } => {
                write!(f, "quota exhausted: needed {requested} bytes, {available} left")
            }
            NoSpaceCause::Nodes { limit } => write!(f, "node limit of {limit} reached"),
            NoSpaceCause::MemoryGuard { requested, available } => {
                write!(f, "memory guard: needed {requested} bytes, only {available} bytes of memory available")
            }
        }
    }
}

/// Everything an engine operation can fail with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsError {
    /// No such file, directory or attribute owner.
    NotFound,
    /// The name already exists.
    Exists,
    /// A directory was needed.
    NotDir,
    /// A non-directory was needed.
    IsDir,
    /// The directory is not empty.
    NotEmpty,
    /// A name longer than 255 bytes, or a link target longer than 4095.
    NameTooLong,
    /// An argument is invalid (bad name, bad flag, moving a directory into itself...).
    InvalidArgument,
    /// The operation is not permitted (hard link to a directory, chmod of
    /// another user's file...).
    NotPermitted,
    /// The mode bits deny the caller this access.
    AccessDenied,
    /// Unknown or wrong kind of handle.
    BadHandle,
    /// Offset or size beyond the maximum file size.
    FileTooLarge,
    /// No such extended attribute.
    NoData,
    /// The caller's buffer (or an xattr name) is out of range.
    Range,
    /// An xattr value or list is too large.
    TooBig,
    /// A node's attribute names would no longer fit in one `listxattr`
    /// answer (`XATTR_LIST_MAX`). ENOSPC, as ext4 answers when an inode's
    /// attribute space is full; not a refusal of the quota, so it is
    /// neither counted as one nor held back for memory being released.
    AttrListFull,
    /// Not supported by this filesystem.
    NotSupported,
    /// An open beyond the handles the daemon's baseline covers, which the
    /// quota cannot pay for (`ENFILE`, as when the kernel's file table is full).
    TooManyOpenFiles,
    /// Too many hard links.
    TooManyLinks,
    /// `SEEK_DATA`/`SEEK_HOLE` found nothing before end of file.
    NoSuchOffset,
    /// Out of space: the quota, the node limit or the memory guard refused.
    NoSpace(NoSpaceCause),
    /// A broken internal invariant or a panic; the request fails, the filesystem goes on.
    Internal(String),
}

/// Result of an engine operation.
pub type Result<T> = std::result::Result<T, FsError>;

impl From<NoSpaceCause> for FsError {
    fn from(cause: NoSpaceCause) -> Self {
        FsError::NoSpace(cause)
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            FsError::NotFound => "no such file or directory",
            FsError::Exists => "file exists",
            FsError::NotDir => "not a directory",
            FsError::IsDir => "is a directory",
            FsError::NotEmpty => "directory not empty",
            FsError::NameTooLong => "name too long",
            FsError::InvalidArgument => "invalid argument",
            FsError::NotPermitted => "operation not permitted",
            FsError::AccessDenied => "permission denied",
            FsError::BadHandle => "bad file handle",
            FsError::FileTooLarge => "file too large",
            FsError::NoData => "no such attribute",
            FsError::Range => "result out of range",
            FsError::TooBig => "attribute too large",
            FsError::AttrListFull => "no room for another attribute name on this node",
            FsError::NotSupported => "operation not supported",
            FsError::TooManyOpenFiles => "too many open files for the quota (each open beyond 16384 is charged)",
            FsError::TooManyLinks => "too many links",
            FsError::NoSuchOffset => "no data or hole at or after offset",
            FsError::NoSpace(cause) => return write!(f, "no space left: {cause}"),
            FsError::Internal(what) => return write!(f, "internal error: {what}"),
        };
        f.write_str(text)
    }
}

impl std::error::Error for FsError {}
