//! Requests received, by kind, and payload bytes: the request mix behind
//! every benchmark figure (does a workload pay a LOOKUP per path walk, a
//! GETXATTR per write, many small WRITEs?). One relaxed atomic add per request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! ops {
    ($($op:ident => $name:literal),* $(,)?) => {
        /// Kinds of FUSE requests the adapter counts.
        #[derive(Clone, Copy, Debug)]
        pub(crate) enum Op { $($op),* }
        const NAMES: &[&str] = &[$($name),*];
    };
}

ops! {
    Lookup => "lookup", Forget => "forget", Getattr => "getattr", Setattr => "setattr",
    Readlink => "readlink", Mknod => "mknod", Mkdir => "mkdir", Unlink => "unlink", Rmdir => "rmdir",
    Symlink => "symlink", Rename => "rename", Link => "link", Open => "open", Read => "read",
    Write => "write", Flush => "flush", Release => "release", Fsync => "fsync", Opendir => "opendir",
    Readdir => "readdir", Readdirplus => "readdirplus", Releasedir => "releasedir", Fsyncdir => "fsyncdir",
    Statfs => "statfs", Setxattr => "setxattr", Getxattr => "getxattr", Listxattr => "listxattr",
    Removexattr => "removexattr", Access => "access", Create => "create", Fallocate => "fallocate",
    Lseek => "lseek", CopyFileRange => "copy_file_range", Ioctl => "ioctl", Poll => "poll",
}

/// Per-kind request counters plus read and write payload totals.
pub(crate) struct Requests {
    counts: Vec<AtomicU64>,
    read_bytes: AtomicU64,
    write_bytes: AtomicU64,
}

impl Default for Requests {
    fn default() -> Self {
        Requests {
            counts: NAMES.iter().map(|_| AtomicU64::new(0)).collect(),
            read_bytes: AtomicU64::new(0),
            write_bytes: AtomicU64::new(0),
        }
    }
}

impl Requests {
    pub(crate) fn count(&self, op: Op, bytes: usize) {
        self.counts[op as usize].fetch_add(1, Ordering::Relaxed);
        match op {
            Op::Read => self.read_bytes.fetch_add(bytes as u64, Ordering::Relaxed),
            Op::Write => self.write_bytes.fetch_add(bytes as u64, Ordering::Relaxed),
            _ => 0,
        };
    }

    /// Non-zero counters by name, plus `read_bytes`/`write_bytes` (bytes asked
    /// for by READs, and carried by WRITEs).
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut out: BTreeMap<String, u64> = NAMES
            .iter()
            .zip(&self.counts)
            .map(|(n, c)| ((*n).to_owned(), c.load(Ordering::Relaxed)))
            .filter(|(_, v)| *v > 0)
            .collect();
        out.insert("read_bytes".to_owned(), self.read_bytes.load(Ordering::Relaxed));
        out.insert("write_bytes".to_owned(), self.write_bytes.load(Ordering::Relaxed));
        out
    }
}
