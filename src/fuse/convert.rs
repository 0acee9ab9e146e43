//! Conversions between engine types and fuser types, and the cache
//! lifetimes handed to the kernel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};

use crate::engine::{Attr, FileKind, SetTime, Timestamp};

/// How long the kernel may trust attributes and names it got from us.
/// Every change goes through this kernel mount (there is no other writer),
/// so the kernel's own invalidation on the operations it sends keeps its
/// caches right; a long lifetime saves a LOOKUP or GETATTR per path walk.
pub(crate) const TTL: Duration = Duration::from_secs(3600);

/// How long the kernel may trust a directory's attributes. The kernel marks
/// them stale when it applies our answer to a change inside the directory,
/// but an answer to a GETATTR read before that change and applied after
/// the mark (the caller was slow to run) re-validates the old link count
/// and times. Measured: about 1 in 5,000–7,000 changes with `stat` calls
/// racing them, with two workers or one. An invalidation notice sent
/// before answering the change (which makes the kernel refuse older
/// answers for a file's mtime after `msync`) measured no better here, so
/// a directory's attributes are trusted for a second instead, which bounds
/// how long a stale answer can last.
pub(crate) const DIR_ATTR_TTL: Duration = Duration::from_secs(1);

/// The attribute lifetime for `a`: [`DIR_ATTR_TTL`] for directories, else
/// [`TTL`].
pub(crate) fn attr_ttl(a: &Attr) -> &'static Duration {
    if a.kind == FileKind::Directory { &DIR_ATTR_TTL } else { &TTL }
}

pub(crate) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Directory => FileType::Directory,
        FileKind::RegularFile => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::NamedPipe => FileType::NamedPipe,
        FileKind::Socket => FileType::Socket,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
    }
}

pub(crate) fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino.0),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime.into(),
        mtime: a.mtime.into(),
        ctime: a.ctime.into(),
        crtime: a.crtime.into(),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

/// The attributes of a negative entry: node id 0 tells the kernel to cache
/// "no such name" for the entry lifetime.
pub(crate) fn negative_attr() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

/// A timestamp the kernel sent in a SETATTR, as fuser 0.18 decoded it.
///
/// fuser 0.18 turns the kernel's `(secs < 0, nsecs > 0)` into
/// `UNIX_EPOCH - (|secs| s + nsecs ns)` instead of `- |secs| s + nsecs ns`,
/// so a pre-1970 time with a fraction arrives up to two seconds early. The
/// kernel's fields can be recovered exactly from that value: they are the
/// whole seconds and the nanoseconds of its distance before the epoch.
/// (fuser is pinned to 0.18.0 in Cargo.toml; `kernel_times_round_trip`
/// below documents the quirk this undoes.)
pub(crate) fn kernel_time(t: SystemTime) -> Timestamp {
    match t.duration_since(UNIX_EPOCH) {
        Ok(_) => Timestamp::from(t),
        Err(before) => {
            let d = before.duration();
            Timestamp { secs: -i64::try_from(d.as_secs()).unwrap_or(i64::MAX), nanos: d.subsec_nanos() }
        }
    }
}

pub(crate) fn set_time(t: TimeOrNow) -> SetTime {
    match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(kernel_time(t)),
    }
}

/// `FS_IOC_FSGETXATTR` and `FS_IOC_FSSETXATTR`: `_IOR('X', 31, struct
/// fsxattr)` and `_IOW('X', 32, struct fsxattr)`, a 28-byte struct.
const FS_IOC_FSGETXATTR: u32 = 0x801c_581f;
const FS_IOC_FSSETXATTR: u32 = 0x401c_5820;

/// The answer to an inode-flag ioctl (chattr and lsattr: the kernel sends
/// `FS_IOC_GETFLAGS`/`SETFLAGS` or their `fsxattr` forms here), or `None`
/// for any other. No inode flags are kept, so none are reported, as tmpfs
/// reports for a file never given one, and only a request that sets none
/// (what `chattr -i` asks of such a file) succeeds; one that sets any is
/// refused with EOPNOTSUPP.
pub(crate) fn inode_flags_ioctl(cmd: u32, input: &[u8]) -> Option<Result<&'static [u8], fuser::Errno>> {
    const NONE: [u8; 28] = [0; 28];
    let zero = |r: std::ops::Range<usize>| input.get(r).is_some_and(|b| b.iter().all(|&x| x == 0));
    let sets_none = |none: bool| if none { Ok(&[][..]) } else { Err(fuser::Errno::EOPNOTSUPP) };
    // The flags travel as a 32-bit int, whatever the command's encoding says.
    match cmd {
        c if c == libc::FS_IOC_GETFLAGS as u32 => Some(Ok(&NONE[..4])),
        c if c == libc::FS_IOC_SETFLAGS as u32 => Some(sets_none(zero(0..4))),
        FS_IOC_FSGETXATTR => Some(Ok(&NONE)),
        // xflags, extsize, projid and cowextsize; nextents is read-only.
        FS_IOC_FSSETXATTR => Some(sets_none(zero(0..8) && zero(12..20))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What fuser 0.18's `system_time_from_time` does with the kernel's fields.
    fn fuser_decode(secs: i64, nsecs: u32) -> SystemTime {
        if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nsecs)
        } else {
            UNIX_EPOCH - Duration::new((-secs) as u64, nsecs)
        }
    }

    #[test]
    fn kernel_times_round_trip() {
        for (secs, nanos) in [(0, 0), (1, 5), (-1, 0), (-2, 500_000_000), (-315_619_200, 123_456_789)] {
            let got = kernel_time(fuser_decode(secs, nanos));
            assert_eq!(got, Timestamp { secs, nanos }, "({secs}, {nanos})");
        }
    }

    #[test]
    fn inode_flag_requests_report_none_and_set_none() {
        let get = inode_flags_ioctl(libc::FS_IOC_GETFLAGS as u32, &[]);
        assert_eq!(get, Some(Ok(&[0u8; 4][..])));
        assert_eq!(inode_flags_ioctl(libc::FS_IOC_SETFLAGS as u32, &[0; 4]), Some(Ok(&[][..])));
        // FS_IMMUTABLE_FL
        let immutable = 0x10u32.to_ne_bytes();
        let refused = Some(Err(fuser::Errno::EOPNOTSUPP));
        assert_eq!(inode_flags_ioctl(libc::FS_IOC_SETFLAGS as u32, &immutable), refused);
        assert_eq!(inode_flags_ioctl(libc::FS_IOC_SETFLAGS as u32, &[]), refused, "a short request sets nothing");
        assert_eq!(inode_flags_ioctl(FS_IOC_FSGETXATTR, &[]), Some(Ok(&[0u8; 28][..])));
        let mut fsx = [0u8; 28];
        fsx[8] = 7; // nextents: read-only, ignored
        assert_eq!(inode_flags_ioctl(FS_IOC_FSSETXATTR, &fsx), Some(Ok(&[][..])));
        fsx[12] = 1; // a project id
        assert_eq!(inode_flags_ioctl(FS_IOC_FSSETXATTR, &fsx), refused);
        assert_eq!(inode_flags_ioctl(libc::TCGETS as u32, &[]), None, "isatty: not ours");
    }
}
