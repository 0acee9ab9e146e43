//! `mount -o remount,ro|rw DIR`: mount(8) hands a remount of a
//! `fuse.scratchfs` mount to mount.fuse3, which runs us with `-o
//! remount,...`. The kernel can switch a FUSE mount between read-only and
//! read-write; the daemon's settings (quota, limits, access times) are
//! fixed at mount.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use super::args::Settings;
use super::units::{SizeSpec, human_bytes};
use crate::fuse::mount::mount_fstype;

/// The type of our mounts in /proc/self/mountinfo.
const FSTYPE: &str = "fuse.scratchfs";

pub fn run(s: &Settings) -> Result<(), String> {
    let mp = s.mountpoint.canonicalize().map_err(|e| format!("{}: {e}", s.mountpoint.display()))?;
    match mount_fstype(&mp) {
        None => return Err(format!("{} is not mounted: nothing to remount", mp.display())),
        Some(t) if t != FSTYPE => {
            return Err(format!("{} is a {t} mount, not scratchfs: not remounting it", mp.display()));
        }
        Some(_) => {}
    }
    const FIXED: &str = "a remount can only switch between ro and rw: the quota and other settings are fixed \
                         until you unmount and mount again";
    if s.engine_settings_given {
        return Err(FIXED.to_owned());
    }
    same_limits(s, &mp).map_err(|what| format!("{what}; {FIXED}"))?;
    let target = CString::new(mp.as_os_str().as_bytes()).map_err(|_| "NUL in path".to_owned())?;
    // Keep the mount point's other flags as they are (mount.fuse3 appends
    // `dev,suid` to every invocation; a remount must not drop nosuid/nodev).
    // SAFETY: statvfs fills a zeroed struct for a valid path.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(target.as_ptr(), &mut vfs) } != 0 {
        return Err(format!("{}: {}", mp.display(), std::io::Error::last_os_error()));
    }
    // The daemon keeps access times itself (FUSE files have none in the
    // kernel), so noatime is its setting, fixed at mount like the quota; the
    // kernel's flag shows which it is. mount(8) passes an fstab line's atime
    // option with every remount: the mount's own is accepted.
    let noatime = vfs.f_flag & libc::ST_NOATIME != 0;
    if let Some(want) = s.noatime.filter(|&want| want != noatime) {
        return Err(format!(
            "{} is {}: a remount cannot switch it to {} (the daemon keeps access times, so the atime \
             options are fixed until you unmount and mount again)",
            mp.display(),
            if noatime { "noatime" } else { "relatime" },
            if want { "noatime" } else { "atime/relatime/strictatime" }
        ));
    }
    let mut flags = libc::MS_REMOUNT;
    for (st, ms) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
    ] {
        if vfs.f_flag & st != 0 {
            flags |= ms;
        }
    }
    if s.read_only {
        flags |= libc::MS_RDONLY;
    }
    // SAFETY: a remount of a valid mount point with no data.
    let rc = unsafe { libc::mount(std::ptr::null(), target.as_ptr(), std::ptr::null(), flags, std::ptr::null()) };
    if rc != 0 {
        let err = std::io::Error::last_os_error();
        return Err(match err.raw_os_error() {
            Some(libc::EPERM) => format!("remounting {} needs root", mp.display()),
            Some(libc::EBUSY) => format!("{} is busy: files are open for writing", mp.display()),
            _ => format!("remounting {} failed: {err}", mp.display()),
        });
    }
    Ok(())
}

fn acl_name(acl: bool) -> &'static str {
    if acl { "acl" } else { "noacl" }
}

/// A quota, node limit, ACL support, or root mode or owner given with a remount
/// (mount(8) passes an fstab line's) must be the running mount's: a
/// remount cannot change them.
fn same_limits(s: &Settings, mp: &std::path::Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let root = std::fs::metadata(mp).map_err(|e| format!("{}: {e}", mp.display()))?;
    if let Some(mode) = s.mode.filter(|&m| m != root.mode() & 0o7777) {
        return Err(format!("mode={mode:o} is not the mount root's ({:o})", root.mode() & 0o7777));
    }
    if let Some(uid) = s.uid.filter(|&u| u != root.uid()) {
        return Err(format!("uid={uid} is not the mount root's owner ({})", root.uid()));
    }
    if let Some(gid) = s.gid.filter(|&g| g != root.gid()) {
        return Err(format!("gid={gid} is not the mount root's group ({})", root.gid()));
    }
    if s.size.is_none() && s.max_nodes.is_none() && s.acl.is_none() {
        return Ok(());
    }
    let running = super::stats::fetch(mp)?;
    if let Some(acl) = s.acl.filter(|&a| a != running.acl) {
        return Err(format!("{} is not this mount's ({})", acl_name(acl), acl_name(running.acl)));
    }
    match s.size {
        Some(SizeSpec::Bytes(b)) if b != running.quota.max_bytes => {
            return Err(format!(
                "size={} is not this mount's quota ({})",
                human_bytes(b),
                human_bytes(running.quota.max_bytes)
            ));
        }
        Some(SizeSpec::Percent(p)) => {
            return Err(format!(
                "size={p}% cannot be checked against this mount's quota ({}): leave it out of the remount",
                human_bytes(running.quota.max_bytes)
            ));
        }
        _ => {}
    }
    match (s.max_nodes, running.nodes.limit) {
        (Some(n), limit) if Some(n) != limit => Err(format!(
            "a node limit of {n} is not this mount's ({})",
            limit.map_or_else(|| "none".to_owned(), |l| l.to_string())
        )),
        _ => Ok(()),
    }
}
