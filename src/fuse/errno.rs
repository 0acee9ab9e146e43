//! The only place that turns engine errors into errno values, and decides
//! how loudly each is logged.

use fuser::Errno;

use crate::engine::FsError;
use crate::ratelimit::LogBudget;

/// The errno for an engine error. Exhaustive on purpose: a new variant must
/// be given a number here.
pub(crate) fn errno(err: &FsError) -> Errno {
    match err {
        FsError::NotFound => Errno::ENOENT,
        FsError::Exists => Errno::EEXIST,
        FsError::NotDir => Errno::ENOTDIR,
        FsError::IsDir => Errno::EISDIR,
        FsError::NotEmpty => Errno::ENOTEMPTY,
        FsError::NameTooLong => Errno::ENAMETOOLONG,
        FsError::InvalidArgument => Errno::EINVAL,
        FsError::NotPermitted => Errno::EPERM,
        FsError::AccessDenied => Errno::EACCES,
        FsError::BadHandle => Errno::EBADF,
        FsError::FileTooLarge => Errno::EFBIG,
        FsError::NoData => Errno::NO_XATTR,
        FsError::Range => Errno::ERANGE,
        FsError::TooBig => Errno::E2BIG,
        FsError::AttrListFull => Errno::ENOSPC,
        FsError::TooManyOpenFiles => Errno::ENFILE,
        FsError::NotSupported => Errno::EOPNOTSUPP,
        FsError::TooManyLinks => Errno::EMLINK,
        FsError::NoSuchOffset => Errno::ENXIO,
        // tmpfs answers ENOSPC for both `size=` and `nr_inodes=`; so do we,
        // whatever the cause (the engine has already logged which).
        FsError::NoSpace(_) => Errno::ENOSPC,
        FsError::Internal(_) => Errno::EIO,
    }
}

/// Opens refused for want of handles, which a client can repeat as fast as
/// it likes: a burst a second is logged (`src/ratelimit.rs`).
static HANDLE_REFUSALS: LogBudget = LogBudget::new(module_path!());

/// Logs a failed request at the level its class deserves: expected misses
/// at trace, refusals are logged by the engine where they happen, internal
/// errors at error.
pub(crate) fn log(op: &str, err: &FsError) {
    match err {
        FsError::Internal(what) => log::error!("{op} failed: {what}"),
        FsError::NoSpace(_) => {}
        FsError::TooManyOpenFiles => HANDLE_REFUSALS.warn(format_args!("{op} refused: {err}")),
        _ => log::trace!("{op}: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::NoSpaceCause;

    #[test]
    fn every_cause_of_no_space_is_enospc() {
        for cause in [
            NoSpaceCause::Quota { requested: 1, available: 0 },
            NoSpaceCause::Nodes { limit: 1 },
            NoSpaceCause::MemoryGuard { requested: 1, available: 0 },
        ] {
            assert_eq!(errno(&FsError::NoSpace(cause)), Errno::ENOSPC);
        }
        // A node's attribute names filling one listxattr answer: ENOSPC too.
        assert_eq!(errno(&FsError::AttrListFull), Errno::ENOSPC);
        assert_eq!(errno(&FsError::NoData), Errno::from_i32(libc::ENODATA));
    }
}
