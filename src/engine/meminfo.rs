//! Where the memory guard's readings come from.

use sysinfo::{MemoryRefreshKind, System};

use super::cgroup;

use crate::sync::Mutex;

/// Available memory as one reading sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReading {
    /// Bytes that can still be allocated before the host or the process's
    /// cgroup runs out.
    pub available: u64,
    /// Which limit bound the reading: `"host"` or `"cgroup"`.
    pub source: &'static str,
    /// The cgroup memory limit, if the process is confined.
    pub cgroup_limit: Option<u64>,
}

/// A source of available-memory readings. Production uses [`SystemProbe`];
/// tests plug in their own to drive the guard to any value.
pub trait MemoryProbe: Send + Sync {
    /// A fresh reading, or `None` if memory cannot be read.
    fn read(&self) -> Option<MemoryReading>;
}

/// Reads the host's `MemAvailable` (through sysinfo) and what this process's
/// cgroup (v1 or v2, with the limits of its ancestors) can still give,
/// reclaimable page cache included in both (`cgroup.rs`).
pub struct SystemProbe {
    sys: Mutex<System>,
}

impl SystemProbe {
    /// A probe for the calling process. Each reading looks up the process's
    /// cgroup anew, so a probe made before a daemon forks reads the daemon's.
    pub fn new() -> Option<SystemProbe> {
        let sys = System::new().ok()?;
        Some(SystemProbe { sys: Mutex::new(sys) })
    }
}

impl MemoryProbe for SystemProbe {
    fn read(&self) -> Option<MemoryReading> {
        let mut sys = self.sys.lock();
        sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let host = sys.available_memory();
        let host_total = sys.total_memory();
        drop(sys);
        let cgroup = cgroup::read_self(if host_total == 0 { u64::MAX } else { host_total });
        if host == 0 && cgroup.is_none() {
            return None;
        }
        Some(match cgroup {
            Some(cg) if cg.available < host || host == 0 => {
                MemoryReading { available: cg.available, source: "cgroup", cgroup_limit: Some(cg.limit) }
            }
            cg => MemoryReading { available: host, source: "host", cgroup_limit: cg.map(|c| c.limit) },
        })
    }
}
