//! Conversions between engine types and fuser types, and the cache
//! lifetimes handed to the kernel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo, TimeOrNow};

use crate::engine::{Attr, FileKind, InodeFlags, SetTime, Timestamp};

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

/// An inode-flag request: what chattr and lsattr (and xfs_io's chattr)
/// ask through the kernel, which sends `FS_IOC_GETFLAGS`/`SETFLAGS` or
/// their `fsxattr` forms here after checking the caller itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FlagsIoctl {
    /// The flags as an int (`FS_IOC_GETFLAGS`).
    Get,
    /// The flags as a `struct fsxattr` (`FS_IOC_FSGETXATTR`).
    GetFsx,
    /// Set the flags to these (`FS_*_FL` numbering, from either form).
    Set(u32),
}

/// `FS_XFLAG_*` for each kept `FS_*_FL` flag (`fileattr_fill_flags`).
const XFLAGS: [(u32, u32); 4] = [
    (InodeFlags::IMMUTABLE, 0x08),
    (InodeFlags::APPEND, 0x10),
    (InodeFlags::NOATIME, 0x40),
    (InodeFlags::NODUMP, 0x80),
];

/// Decodes an inode-flag ioctl, or `None` for any other. A request to set
/// a flag scratchfs does not keep (or an `fsxattr` field: extent size,
/// project id) is refused with EOPNOTSUPP, as tmpfs refuses it.
pub(crate) fn flags_ioctl(cmd: u32, input: &[u8]) -> Option<Result<FlagsIoctl, fuser::Errno>> {
    let u32_at = |at: usize| input.get(at..at + 4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
    let unsupported = Err(fuser::Errno::EOPNOTSUPP);
    // The flags travel as a 32-bit int, whatever the command's encoding says.
    Some(match cmd {
        c if c == libc::FS_IOC_GETFLAGS as u32 => Ok(FlagsIoctl::Get),
        FS_IOC_FSGETXATTR => Ok(FlagsIoctl::GetFsx),
        c if c == libc::FS_IOC_SETFLAGS as u32 => match u32_at(0) {
            Some(bits) if bits & !InodeFlags::KEPT == 0 => Ok(FlagsIoctl::Set(bits)),
            _ => unsupported,
        },
        // xflags, extsize, (nextents: read-only), projid, cowextsize.
        FS_IOC_FSSETXATTR => match (u32_at(0), u32_at(4), u32_at(12), u32_at(16)) {
            (Some(x), Some(0), Some(0), Some(0)) if x & !XFLAGS.iter().map(|f| f.1).sum::<u32>() == 0 => {
                Ok(FlagsIoctl::Set(XFLAGS.iter().filter(|f| x & f.1 != 0).map(|f| f.0).sum()))
            }
            _ => unsupported,
        },
        _ => return None,
    })
}

/// The answer to a `Get` or `GetFsx` request for a node with `flags`.
pub(crate) fn flags_reply(request: FlagsIoctl, flags: InodeFlags) -> Vec<u8> {
    match request {
        FlagsIoctl::GetFsx => {
            let x: u32 = XFLAGS.iter().filter(|f| flags.bits() & f.0 != 0).map(|f| f.1).sum();
            let mut fsx = vec![0u8; 28];
            fsx[..4].copy_from_slice(&x.to_ne_bytes());
            fsx
        }
        _ => flags.bits().to_ne_bytes().to_vec(),
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
    fn inode_flag_requests_decode_and_answer_in_both_forms() {
        let set = |cmd: u32, input: &[u8]| flags_ioctl(cmd, input);
        let getflags = libc::FS_IOC_GETFLAGS as u32;
        let setflags = libc::FS_IOC_SETFLAGS as u32;
        assert_eq!(set(getflags, &[]), Some(Ok(FlagsIoctl::Get)));
        assert_eq!(set(FS_IOC_FSGETXATTR, &[]), Some(Ok(FlagsIoctl::GetFsx)));
        // FS_IMMUTABLE_FL | FS_NOATIME_FL
        assert_eq!(set(setflags, &0x90u32.to_ne_bytes()), Some(Ok(FlagsIoctl::Set(0x90))));
        let refused = Some(Err(fuser::Errno::EOPNOTSUPP));
        assert_eq!(set(setflags, &0x1000u32.to_ne_bytes()), refused, "FS_INDEX_FL is not kept");
        assert_eq!(set(setflags, &[0x10, 0]), refused, "a short request sets nothing");
        let mut fsx = [0u8; 28];
        fsx[0] = 0x08 | 0x10; // FS_XFLAG_IMMUTABLE | FS_XFLAG_APPEND
        fsx[8] = 7; // nextents: read-only, ignored
        assert_eq!(set(FS_IOC_FSSETXATTR, &fsx), Some(Ok(FlagsIoctl::Set(0x30))));
        fsx[12] = 1; // a project id
        assert_eq!(set(FS_IOC_FSSETXATTR, &fsx), refused);
        let mut realtime = [0u8; 28];
        realtime[0] = 0x01; // FS_XFLAG_REALTIME
        assert_eq!(set(FS_IOC_FSSETXATTR, &realtime), refused);
        assert_eq!(set(FS_IOC_FSSETXATTR, &[0; 8]), refused, "a short fsxattr");
        assert_eq!(set(libc::TCGETS as u32, &[]), None, "isatty: not ours");

        let flags = InodeFlags::from_bits(0x20 | 0x40).unwrap();
        assert_eq!(flags_reply(FlagsIoctl::Get, flags), 0x60u32.to_ne_bytes());
        let fsx = flags_reply(FlagsIoctl::GetFsx, flags);
        assert_eq!((fsx.len(), &fsx[..4]), (28, &(0x10u32 | 0x80).to_ne_bytes()[..]));
        assert!(fsx[4..].iter().all(|&b| b == 0));
    }
}
