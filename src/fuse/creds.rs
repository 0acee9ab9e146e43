//! The credentials of the task behind a request, for the permission checks
//! the adapter makes when the kernel does not (`engine::access`).
//!
//! A request header carries the task's filesystem uid and gid and its
//! thread id. The rest is asked of the kernel only when a check needs it,
//! at most once per request: the effective capabilities with `capget(2)`
//! (one system call), the supplementary groups from
//! `/proc/<tid>/task/<tid>/status` (as libfuse's `fuse_req_getgroups`
//! does). A caller who owns what it touches pays for neither. A task that
//! cannot be asked (gone, or in another pid namespace: the kernel then
//! sends pid 0) is taken to have no capabilities and no supplementary
//! groups; so is a task in another user namespace, whose capabilities hold
//! there (anyone can `unshare -Ur`) and count on our inodes only for ids
//! mapped into it, which is not checked here.
//!
//! These reads run on the worker answering the request, and a read of a
//! task's procfs files can wait for that task's `execve(2)` to finish
//! (kernels that guard them with `exec_update_lock`, held while `execve`
//! closes the close-on-exec files). That is safe only because the one
//! request a task can send from there is FLUSH, which checks no
//! permissions. A request that both can come from inside `execve` and
//! needs these credentials would deadlock its worker; see
//! `colocate.rs`, which reads a caller's `stat` from a thread of its own
//! for that reason.

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

    fn gid(&self) -> u32 {
        self.gid
    }

    fn in_group(&self, gid: u32) -> bool {
        gid == self.gid || self.groups().contains(&gid)
    }

    fn capable(&self, cap: Capability) -> bool {
        self.caps() & (1 << cap as u32) != 0
    }
}

/// The effective capability set of thread `tid`, if it counts here.
fn effective_caps(tid: u32) -> Option<u64> {
    // To capget, pid 0 is the calling thread: the daemon, not the caller.
    if tid == 0 || !in_our_user_namespace(tid) {
        return None;
    }
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

/// Whether thread `tid` lives in the daemon's user namespace.
fn in_our_user_namespace(tid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    static OURS: std::sync::OnceLock<Option<(u64, u64)>> = std::sync::OnceLock::new();
    let ns = |path: &str| std::fs::metadata(path).map(|m| (m.dev(), m.ino())).ok();
    let ours = *OURS.get_or_init(|| ns("/proc/self/ns/user"));
    ours.is_some() && ns(&format!("/proc/{tid}/ns/user")) == ours
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

    #[test]
    fn a_caller_outside_our_pid_namespace_does_not_get_the_daemons_capabilities() {
        // SAFETY: gettid has no preconditions.
        let ours = effective_caps(unsafe { libc::gettid() } as u32).unwrap_or(0);
        assert!(ours & 2 != 0, "run as root (CAP_DAC_OVERRIDE): the case needs a daemon that holds it");
        let stranger = RequestCreds::new(65534, 65534, 0);
        assert!(!stranger.capable(Capability::DacOverride) && !stranger.capable(Capability::Fowner));
    }

    #[test]
    fn capabilities_held_in_another_user_namespace_do_not_count() {
        // A child becomes nobody, then makes a user namespace of its own, in
        // which it holds every capability (as `unshare -Ur` does).
        let mut fds = [0; 2];
        // SAFETY: pipe fills two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child only makes system calls, then waits to be killed.
        let child = unsafe { libc::fork() };
        assert!(child >= 0);
        if child == 0 {
            // SAFETY: async-signal-safe calls in the forked child.
            unsafe {
                let ok = libc::setgroups(0, std::ptr::null()) == 0
                    && libc::setgid(65534) == 0
                    && libc::setuid(65534) == 0
                    && libc::unshare(libc::CLONE_NEWUSER) == 0;
                let b = [u8::from(ok)];
                libc::write(fds[1], b.as_ptr().cast(), 1);
                libc::pause();
                libc::_exit(0);
            }
        }
        let mut b = [0u8];
        // SAFETY: reads one byte into b.
        let n = unsafe { libc::read(fds[0], b.as_mut_ptr().cast(), 1) };
        let nobody = RequestCreds::new(65534, 65534, child as u32);
        let held_there = status_of(child).contains("CapEff:\t000001ff");
        let (dac, fowner) = (nobody.capable(Capability::DacOverride), nobody.capable(Capability::Fowner));
        // SAFETY: our own child, killed and reaped; our pipe's descriptors.
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
            libc::close(fds[0]);
            libc::close(fds[1]);
        }
        assert_eq!((n, b[0]), (1, 1), "the child could not make a user namespace as nobody");
        assert!(held_there, "the child holds its capabilities in its own namespace");
        assert!(!dac && !fowner, "capabilities of another user namespace counted here");
    }

    fn status_of(pid: i32) -> String {
        std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default()
    }
}
