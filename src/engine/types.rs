//! Plain data types of the engine's API.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use super::flags::InodeFlags;
use crate::storage::Shape;

/// An inode number. Never reused during the life of an engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ino(pub u64);

impl Ino {
    /// The root directory.
    pub const ROOT: Ino = Ino(1);
}

/// An open file or directory handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fh(pub u64);

/// Kind of node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Directory.
    Directory,
    /// Regular file.
    RegularFile,
    /// Symbolic link.
    Symlink,
    /// Named pipe.
    NamedPipe,
    /// Unix domain socket.
    Socket,
    /// Character device.
    CharDevice,
    /// Block device.
    BlockDevice,
}

impl FileKind {
    /// The kind encoded in the `S_IFMT` bits of `mode`; `0` means regular file.
    pub fn from_mode(mode: u32) -> Option<FileKind> {
        match mode & libc::S_IFMT {
            0 | libc::S_IFREG => Some(FileKind::RegularFile),
            libc::S_IFDIR => Some(FileKind::Directory),
            libc::S_IFLNK => Some(FileKind::Symlink),
            libc::S_IFIFO => Some(FileKind::NamedPipe),
            libc::S_IFSOCK => Some(FileKind::Socket),
            libc::S_IFCHR => Some(FileKind::CharDevice),
            libc::S_IFBLK => Some(FileKind::BlockDevice),
            _ => None,
        }
    }

    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            FileKind::Directory => libc::S_IFDIR,
            FileKind::RegularFile => libc::S_IFREG,
            FileKind::Symlink => libc::S_IFLNK,
            FileKind::NamedPipe => libc::S_IFIFO,
            FileKind::Socket => libc::S_IFSOCK,
            FileKind::CharDevice => libc::S_IFCHR,
            FileKind::BlockDevice => libc::S_IFBLK,
        }
    }
}

/// A point in time with nanosecond precision; may lie before 1970.
///
/// Packed to 12 bytes: every node keeps three.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(C, packed(4))]
pub struct Timestamp {
    /// Seconds since the epoch (negative before 1970).
    pub secs: i64,
    /// Nanoseconds, `0..1_000_000_000`.
    pub nanos: u32,
}

impl Timestamp {
    /// The current wall-clock time.
    pub fn now() -> Timestamp {
        Timestamp::from(SystemTime::now())
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Timestamp {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp { secs: i64::try_from(d.as_secs()).unwrap_or(i64::MAX), nanos: d.subsec_nanos() },
            Err(e) => {
                let d = e.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    Timestamp { secs: -secs, nanos: 0 }
                } else {
                    Timestamp { secs: -secs - 1, nanos: 1_000_000_000 - d.subsec_nanos() }
                }
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> SystemTime {
        if t.secs >= 0 {
            UNIX_EPOCH + Duration::new(t.secs.unsigned_abs(), t.nanos)
        } else {
            UNIX_EPOCH - Duration::from_secs(t.secs.unsigned_abs()) + Duration::from_nanos(u64::from(t.nanos))
        }
    }
}

/// Attributes of a node, as `stat` reports them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number.
    pub ino: Ino,
    /// Kind of node.
    pub kind: FileKind,
    /// Permission bits including set-uid, set-gid and sticky (`0o7777`).
    pub perm: u16,
    /// Number of hard links.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u32,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks holding data (holes excluded).
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Last access.
    pub atime: Timestamp,
    /// Last data modification.
    pub mtime: Timestamp,
    /// Last status change.
    pub ctime: Timestamp,
    /// Creation (not kept: the change time stands in for it).
    pub crtime: Timestamp,
    /// Storage shape, for regular files.
    pub shape: Option<Shape>,
    /// Inode flags (`chattr`).
    pub flags: InodeFlags,
}

impl Attr {
    /// Full `st_mode`: kind bits and permission bits.
    pub fn mode(&self) -> u32 {
        self.kind.mode_bits() | u32::from(self.perm)
    }
}

/// A time to set: a given instant or "now".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    /// The current time.
    Now,
    /// A given time.
    At(Timestamp),
}

/// Which attributes `setattr` changes; `None` leaves one alone.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    /// New permission bits (type bits are ignored).
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size (regular files only).
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// New change time (otherwise set to now when anything changes).
    pub ctime: Option<Timestamp>,
    /// Asked through an open descriptor, not a path (the kernel names the
    /// descriptor for `ftruncate` only): an immutable file opened for
    /// writing before it became immutable may still be truncated that way.
    pub through_handle: bool,
}

impl SetAttr {
    /// Changes nothing but the change time: what the kernel sends for
    /// `chown(f, -1, -1)` and when it leaves clearing set-ID bits to us.
    pub fn is_empty(&self) -> bool {
        *self == SetAttr { through_handle: self.through_handle, ..SetAttr::default() }
    }
}

/// Who is asking: used for the ownership of new nodes and for the rules that
/// clear set-uid/set-gid bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// File mode creation mask: the permission bits a node created by
    /// this caller does not get, unless its directory's default ACL
    /// decides them (engines made with `posix_acl`).
    pub umask: u32,
    /// Holds `CAP_FSETID`: a truncate keeps the node's set-user-ID and
    /// set-group-ID bits, and a chown keeps a set-group-ID bit that is not
    /// group-executable whatever the caller's groups.
    pub fsetid: bool,
}

impl Caller {
    /// The superuser, with no umask.
    pub const ROOT: Caller = Caller { uid: 0, gid: 0, umask: 0, fsetid: true };
}

/// How `rename` treats an existing target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenameMode {
    /// Replace the target if it exists (`rename(2)`).
    Replace,
    /// Fail with `Exists` if the target exists (`RENAME_NOREPLACE`).
    NoReplace,
    /// Swap source and target atomically; both must exist (`RENAME_EXCHANGE`).
    Exchange,
}

/// What `fallocate` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallocate {
    /// Back the range with memory; grow the file unless `keep_size`.
    Allocate {
        /// `FALLOC_FL_KEEP_SIZE`.
        keep_size: bool,
    },
    /// Deallocate the range, which then reads as zeros (size unchanged).
    PunchHole,
    /// Make the range read as zeros, backed by memory; grow unless `keep_size`.
    ZeroRange {
        /// `FALLOC_FL_KEEP_SIZE`.
        keep_size: bool,
    },
}

/// How `setxattr` treats an existing attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrSet {
    /// Create or replace.
    Upsert,
    /// Fail with `Exists` if present (`XATTR_CREATE`).
    Create,
    /// Fail with `NoData` if absent (`XATTR_REPLACE`).
    Replace,
    /// Both flags, as Linux filesystems read them: fail with `Exists` if
    /// present and `NoData` if absent.
    CreateAndReplace,
}

/// Flags of an open handle that the engine acts on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    /// Opened for reading.
    pub read: bool,
    /// Opened for writing.
    pub write: bool,
    /// `O_TRUNC`: truncate on open.
    pub truncate: bool,
    /// `O_APPEND`: every write goes to the end (the kernel places it; the
    /// engine only needs it to open an append-only file for writing).
    pub append: bool,
    /// `O_EXCL` with create: fail if the name exists.
    pub exclusive: bool,
}

impl OpenFlags {
    /// Decodes `open(2)` flags.
    pub fn from_libc(flags: i32) -> OpenFlags {
        let acc = flags & libc::O_ACCMODE;
        OpenFlags {
            read: acc == libc::O_RDONLY || acc == libc::O_RDWR,
            write: acc == libc::O_WRONLY || acc == libc::O_RDWR,
            truncate: flags & libc::O_TRUNC != 0,
            append: flags & libc::O_APPEND != 0,
            exclusive: flags & libc::O_EXCL != 0,
        }
    }
}

/// Context of a write request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Clear set-uid/set-gid (the kernel says the writer lacks `CAP_FSETID`).
    pub kill_suidgid: bool,
    /// The writer's group: with `kill_suidgid`, a set-group-ID bit without
    /// group-execute stays only for a member of the file's group.
    pub writer_gid: u32,
    /// The data comes from page-cache writeback (a shared mmap): a refusal
    /// here reaches no `write(2)` caller, so it is counted separately.
    pub from_page_cache: bool,
    /// The descriptor has `O_APPEND` now (each WRITE carries the
    /// descriptor's current flags; page-cache writeback carries none).
    pub appending: bool,
}

/// A directory entry as `readdir` returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Inode of the entry.
    pub ino: Ino,
    /// Kind of the entry.
    pub kind: FileKind,
    /// Name bytes.
    pub name: Vec<u8>,
    /// Cookie to pass back to continue after this entry.
    pub cookie: u64,
}

/// Filesystem-wide figures for `statfs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    /// Block size for the counts below.
    pub bsize: u32,
    /// Total blocks (the quota).
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks available to unprivileged users.
    pub bavail: u64,
    /// Total inodes (the node limit).
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Longest name.
    pub namelen: u32,
}
