//! The credentials of the task behind a request, for the permission checks
//! the adapter makes when the kernel does not (`engine::access`).
//!
//! A request header carries the task's filesystem uid and gid and its
//! thread id. The rest is asked of the kernel only when a check needs it,
//! at most once per request: the effective capabilities with `capget(2)`
//! (one system call), the supplementary groups from
//! `/proc/<tid>/task/<tid>/status` (as libfuse's `fuse_req_getgroups`
//! does). A caller who owns what it touches pays for neither. A task that
//! cannot be asked (gone, or in another pid namespace) is taken to have no
//! capabilities and no supplementary groups.

use std::cell::OnceCell;

use crate::engine::access::{Capability, Credentials};

/// The credentials of one request.
pub(crate) struct RequestCreds {
    uid: u32,
    gid: u32,
    pid: u32,
    caps: OnceCell<u64>,
    groups: OnceCell<Vec<u32>>,
}

impl RequestCreds {
    pub(crate) fn new(uid: u32, gid: u32, pid: u32) -> RequestCreds {
        RequestCreds { uid, gid, pid, caps: OnceCell::new(), groups: OnceCell::new() }
    }

    fn caps(&self) -> u64 {
        *self.caps.get_or_init(|| effective_caps(self.pid).unwrap_or(0))
    }

    fn groups(&self) -> &[u32] {
        self.groups.get_or_init(|| {
            let path = format!("/proc/{0}/task/{0}/status", self.pid);
            match std::fs::read(&path) {
                Ok(text) => parse_groups(&text),
                Err(e) => {
                    log::debug!("{path}: {e}; no supplementary groups assumed");
                    Vec::new()
                }
            }
        })
    }
}

impl Credentials for RequestCreds {
    fn uid(&self) -> u32 {
        self.uid
    }

    fn in_group(&self, gid: u32) -> bool {
        gid == self.gid || self.groups().contains(&gid)
    }

    fn capable(&self, cap: Capability) -> bool {
        self.caps() & (1 << cap as u32) != 0
    }
}

/// The effective capability set of thread `tid`.
fn effective_caps(tid: u32) -> Option<u64> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let mut header = Header { version: VERSION_3, pid: i32::try_from(tid).ok()? };
    let mut data = [Data::default(); 2];
    // SAFETY: capget fills two `Data` for a version 3 header; both are ours.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header as *mut Header, data.as_mut_ptr()) };
    if rc != 0 {
        log::debug!("capget({tid}): {}; no capabilities assumed", std::io::Error::last_os_error());
        return None;
    }
    Some(u64::from(data[1].effective) << 32 | u64::from(data[0].effective))
}

/// The `Groups:` line of a `/proc/.../status` file.
fn parse_groups(text: &[u8]) -> Vec<u32> {
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(b"Groups:"))
        .and_then(|rest| std::str::from_utf8(rest).ok())
        .map(|rest| rest.split_whitespace().filter_map(|g| g.parse().ok()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_field(name: &str) -> String {
        let text = std::fs::read_to_string("/proc/thread-self/status").unwrap_or_default();
        text.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().trim().to_owned()
    }

    #[test]
    fn groups_are_read_from_status() {
        let text = b"Name:\tsh\nUid:\t0\t0\t0\t0\nGroups:\t4 24 1000 \nCapEff:\t000001ffffffffff\n";
        assert_eq!(parse_groups(text), vec![4, 24, 1000]);
        assert_eq!(parse_groups(b"Groups:\n"), Vec::<u32>::new());
        assert_eq!(parse_groups(b""), Vec::<u32>::new());
    }

    #[test]
    fn this_threads_own_credentials_are_found() {
        // Test threads are not the process's main thread: the lookups must
        // name the thread itself.
        // SAFETY: gettid, getuid and getgid have no preconditions.
        let (tid, uid, gid) = unsafe { (libc::gettid() as u32, libc::getuid(), libc::getgid()) };
        let me = RequestCreds::new(uid, gid, tid);
        let cap_eff = u64::from_str_radix(&status_field("CapEff:"), 16).ok();
        assert_eq!(effective_caps(tid), cap_eff);
        assert_eq!(me.capable(Capability::DacOverride), cap_eff.unwrap_or(0) & 2 != 0);
        let groups: Vec<u32> = status_field("Groups:").split_whitespace().filter_map(|g| g.parse().ok()).collect();
        assert_eq!(me.groups(), groups);
        assert!(me.in_group(gid));
        // A task that cannot be asked has nothing beyond its header.
        let gone = RequestCreds::new(uid, gid, i32::MAX as u32);
        assert!(!gone.capable(Capability::DacOverride) && !gone.in_group(gid.wrapping_add(1)));
    }
}
