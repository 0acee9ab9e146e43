//! `mount -o remount,ro|rw DIR`: mount(8) hands a remount of a
//! `fuse.scratchfs` mount to mount.fuse3, which runs us with `-o
//! remount,...`. The kernel can switch a FUSE mount between read-only and
//! read-write; the daemon's settings (quota, limits) are fixed at mount.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use super::args::Settings;
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
    if s.engine_settings_given {
        return Err("a remount can only switch between ro and rw: the quota and other settings are fixed \
                    until you unmount and mount again"
            .to_owned());
    }
    let target = CString::new(mp.as_os_str().as_bytes()).map_err(|_| "NUL in path".to_owned())?;
    // Keep the mount point's other flags as they are (mount.fuse3 appends
    // `dev,suid` to every invocation; a remount must not drop nosuid/nodev).
    // SAFETY: statvfs fills a zeroed struct for a valid path.
    let mut vfs: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(target.as_ptr(), &mut vfs) } != 0 {
        return Err(format!("{}: {}", mp.display(), std::io::Error::last_os_error()));
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
