//! Mounting and unmounting, and running the FUSE session.
//!
//! We mount ourselves and hand the `/dev/fuse` descriptor to
//! `fuser::Session::from_fd`, so that we control the mount type
//! (`fuse.scratchfs`), the options and the unmount path:
//! - with `fusermount3` on the system (the `fuse3` package), it performs the
//!   mount, and with `auto_unmount` a watcher stays behind that unmounts if
//!   this process dies, even by SIGKILL: `fusermount3` itself for root, our
//!   own for other users ([`Watcher`]);
//! - without it, root mounts with `mount(2)` directly; a crash then leaves
//!   the mount point answering "Transport endpoint is not connected" until
//!   someone runs `umount`.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use fuser::{Config, Session, SessionACL};

use crate::mountinfo;
use crate::sync::Mutex;

use super::FuseFs;

/// Everything needed to mount.
#[derive(Clone, Debug)]
pub struct MountConfig {
    /// Where to mount (must be an existing directory).
    pub mountpoint: PathBuf,
    /// Source name shown in the mount table.
    pub fsname: String,
    /// Let other users in (`allow_other`); permissions still apply.
    pub allow_other: bool,
    /// Have the kernel check permissions (`default_permissions`). Without
    /// it the daemon must check them itself.
    pub kernel_permissions: bool,
    /// Mount read-only.
    pub read_only: bool,
    /// Honour set-uid bits (default: `nosuid`).
    pub suid: bool,
    /// Honour device nodes (default: `nodev`).
    pub dev: bool,
    /// Allow execution (default: yes).
    pub exec: bool,
    /// Do not update access times.
    pub noatime: bool,
    /// Mode of the root directory (for the kernel's `rootmode`).
    pub root_mode: u32,
    /// Unmount automatically if the daemon dies (needs `fusermount3`: its
    /// watcher for root's mounts, ours for others', `Watch`).
    pub auto_unmount: bool,
}

/// A mounted filesystem whose session has not started yet.
pub struct Mounted {
    fd: OwnedFd,
    mountpoint: PathBuf,
    watcher: Option<Watch>,
}

/// What unmounts if the daemon dies.
enum Watch {
    /// `fusermount3 -o auto_unmount` and our end of its socket: closing the
    /// socket (at exit) tells it to unmount.
    Helper(UnixStream, Child),
    /// Our own watcher, for a mount that is not root's: a shell that waits
    /// on a pipe from us and runs `fusermount3 -u -z` unless told, before
    /// the pipe closes, that the mount is gone ([`WatchPipe`]).
    /// `fusermount3`'s own watcher cannot unmount such a mount without
    /// `allow_other` before libfuse 3.15 (Debian 12 has 3.14): it checks
    /// the mount point by opening it, as root, and the kernel refuses root
    /// entry to another user's FUSE mount. `fusermount3 -u`, run as the
    /// owner, can.
    Own(WatchPipe, Child),
}

/// The pipe to our own watcher, shared with the thread that unmounts on a
/// signal.
#[derive(Clone)]
pub struct WatchPipe {
    pipe: std::sync::Arc<Mutex<Option<ChildStdin>>>,
    /// The watched mount.
    mount: MountId,
}

impl WatchPipe {
    /// Tells the watcher to leave the mount point alone, if our mount has
    /// left the mount table: the same user may mount there again at once.
    /// While it is still there the watcher stays ready to unmount it, so
    /// that a daemon that ends without unmounting (an abort, a panic, a
    /// kill) leaves no dead mount behind.
    pub fn done_if_unmounted(&self) {
        if self.mount.still_mounted() {
            return;
        }
        let mut pipe = self.pipe.lock();
        if let Some(mut p) = pipe.take() {
            let _ = p.write_all(DONE);
        }
    }

    /// Closes the pipe: the watcher unmounts unless told otherwise before.
    fn close(&self) {
        drop(self.pipe.lock().take());
    }
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted").field("mountpoint", &self.mountpoint).finish_non_exhaustive()
    }
}

/// The `fusermount3` helper on `PATH` (or in its usual places), if any.
pub fn fusermount() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join("fusermount3"))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a mount made now by this process is owned by root (the kernel's
/// `user_id` is the real uid, here and in `fusermount3`): without
/// `allow_other`, only tasks whose real, effective and saved ids are all
/// root's may then enter it.
pub fn owned_by_root() -> bool {
    // SAFETY: getuid/getgid have no preconditions.
    unsafe { libc::getuid() == 0 && libc::getgid() == 0 }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Whether `path` is a mount point in this mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    mount_entry(path).is_some()
}

/// The device (`major:minor`) and type of the mount at `path`, from its
/// /proc/self/mountinfo line: the last one listed for it, as the kernel's
/// lookup finds the mount on top.
fn mount_entry(path: &Path) -> Option<(String, String)> {
    let canon = path.canonicalize().ok()?;
    let info = std::fs::read("/proc/self/mountinfo").ok()?;
    let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    info.split(|&b| b == b'\n')
        .rev()
        .filter_map(mountinfo::parse)
        .find(|l| l.mount_point == canon.as_os_str().as_bytes())
        .map(|l| (lossy(l.device), lossy(l.fstype)))
}

/// The device (`major:minor`) of the mount at `path`.
fn mount_device(path: &Path) -> Option<String> {
    mount_entry(path).map(|(device, _)| device)
}

/// The filesystem type of the mount at `path` (`fuse.scratchfs`, `tmpfs`,
/// ...). `None` if `path` is not a mount point.
pub fn mount_fstype(path: &Path) -> Option<String> {
    mount_entry(path).map(|(_, fstype)| fstype)
}

/// Whether a mount of the device `major:minor` is still listed in
/// /proc/self/mountinfo (no path lookup: it works on a dead FUSE mount).
fn device_mounted(device: &str) -> bool {
    let Ok(info) = std::fs::read("/proc/self/mountinfo") else { return false };
    info.split(|&b| b == b'\n').any(|line| line.split(|&b| b == b' ').nth(2) == Some(device.as_bytes()))
}

/// Which mount is ours, to tell later whether it is still there. The
/// kernel's unique mount id (Linux 6.8+) is never reused; the device number
/// and the mountinfo id are, at once: three mounts in a row on one path all
/// got `0:39` and id 42. So where the kernel gives a unique id, a new mount
/// made on the same path after ours went away is never taken for ours
/// (it was, now and then: the new mount's daemon then lost its mount to
/// our watcher, `tests/mount_reliability.rs`); elsewhere the device
/// number decides.
#[derive(Clone, Debug)]
pub struct MountId {
    unique: Option<u64>,
    device: Option<String>,
}

/// `statx(2)`'s mask bit for the unique mount id (Linux 6.8).
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;
/// `statmount(2)` (Linux 6.8), the same number on every architecture.
const SYS_STATMOUNT: libc::c_long = 457;
/// `statmount(2)`'s request for the superblock's basic fields.
const STATMOUNT_SB_BASIC: u64 = 0x1;

impl MountId {
    /// The mount at `path`, just mounted (asks nothing of the filesystem:
    /// its session may not have started).
    pub fn of(path: &Path) -> MountId {
        MountId { unique: unique_mount_id(path), device: mount_device(path) }
    }

    /// Whether this mount is still in our mount namespace.
    pub fn still_mounted(&self) -> bool {
        if let Some(listed) = self.unique.and_then(mount_listed) {
            return listed;
        }
        self.device.as_deref().is_some_and(device_mounted)
    }
}

/// The unique id of the mount at `path`, where the kernel has them.
fn unique_mount_id(path: &Path) -> Option<u64> {
    let c = cstring(path).ok()?;
    // SAFETY: an all-zero statx is a valid value to fill.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // Cached attributes only: no request reaches a session not yet running.
    let flags = libc::AT_STATX_DONT_SYNC | libc::AT_NO_AUTOMOUNT;
    // SAFETY: valid path and out pointer.
    let r = unsafe { libc::statx(libc::AT_FDCWD, c.as_ptr(), flags, STATX_MNT_ID_UNIQUE, &mut stx) };
    (r == 0 && stx.stx_mask & STATX_MNT_ID_UNIQUE != 0).then_some(stx.stx_mnt_id)
}

/// Whether the mount with unique id `id` exists (`statmount(2)`), or
/// `None` where the kernel cannot say.
fn mount_listed(id: u64) -> Option<bool> {
    /// `struct mnt_id_req`, version 0.
    #[repr(C)]
    struct MntIdReq {
        size: u32,
        spare: u32,
        mnt_id: u64,
        param: u64,
    }
    // `param` is what to report: the superblock's basic fields, the least.
    let req =
        MntIdReq { size: std::mem::size_of::<MntIdReq>() as u32, spare: 0, mnt_id: id, param: STATMOUNT_SB_BASIC };
    let mut buf = [0u64; 64];
    // SAFETY: a request of the size it states and a buffer of the size given.
    let r = unsafe { libc::syscall(SYS_STATMOUNT, &req, buf.as_mut_ptr(), std::mem::size_of_val(&buf), 0) };
    match r {
        0 => Some(true),
        _ if io::Error::last_os_error().raw_os_error() == Some(libc::ENOENT) => Some(false),
        _ => None,
    }
}

/// Sets the kernel's readahead window for the mount at `path`, in KiB.
/// READ requests are as large as the window (up to the 1 MiB request size),
/// so a larger one means fewer round trips for streaming reads. Needs root;
/// returns the error otherwise.
pub fn set_read_ahead(path: &Path, kib: u32) -> io::Result<()> {
    let dev = mount_device(path).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "mount not found"))?;
    std::fs::write(format!("/sys/class/bdi/{dev}/read_ahead_kb"), format!("{kib}\n"))
}

impl MountConfig {
    /// Options common to both mount paths.
    fn flag_options(&self) -> Vec<String> {
        let mut o = vec![if self.read_only { "ro" } else { "rw" }.to_owned()];
        o.push(if self.suid { "suid" } else { "nosuid" }.to_owned());
        o.push(if self.dev { "dev" } else { "nodev" }.to_owned());
        if !self.exec {
            o.push("noexec".to_owned());
        }
        if self.noatime {
            o.push("noatime".to_owned());
        }
        if self.kernel_permissions {
            o.push("default_permissions".to_owned());
        }
        if self.allow_other {
            o.push("allow_other".to_owned());
        }
        o
    }

    /// Mounts: through `fusermount3` when present, else `mount(2)` as root.
    pub fn mount(&self) -> io::Result<Mounted> {
        match fusermount() {
            Some(helper) => self.mount_with_helper(&helper),
            None if is_root() => self.mount_direct(),
            None => Err(io::Error::new(
                io::ErrorKind::NotFound,
                "fusermount3 not found: install the fuse3 package (needed to mount as a non-root user)",
            )),
        }
    }

    fn mount_direct(&self) -> io::Result<Mounted> {
        let dev = File::options().read(true).write(true).open("/dev/fuse")?;
        let fd = OwnedFd::from(dev);
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let mut data = format!(
            "fd={},rootmode={:o},user_id={uid},group_id={gid}",
            fd.as_raw_fd(),
            libc::S_IFDIR | (self.root_mode & 0o7777)
        );
        if self.kernel_permissions {
            data.push_str(",default_permissions");
        }
        if self.allow_other {
            data.push_str(",allow_other");
        }
        let mut flags: libc::c_ulong = 0;
        for (on, flag) in [
            (self.read_only, libc::MS_RDONLY),
            (!self.suid, libc::MS_NOSUID),
            (!self.dev, libc::MS_NODEV),
            (!self.exec, libc::MS_NOEXEC),
            (self.noatime, libc::MS_NOATIME),
        ] {
            if on {
                flags |= flag;
            }
        }
        let source = CString::new(self.fsname.as_str()).map_err(|_| io::Error::other("NUL in fsname"))?;
        let target = cstring(&self.mountpoint)?;
        let data = CString::new(data).map_err(|_| io::Error::other("NUL in options"))?;
        // SAFETY: every pointer is a valid NUL-terminated string for the call's duration.
        let rc = unsafe {
            libc::mount(source.as_ptr(), target.as_ptr(), c"fuse.scratchfs".as_ptr(), flags, data.as_ptr().cast())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Mounted { fd, mountpoint: self.mountpoint.clone(), watcher: None })
    }

    fn mount_with_helper(&self, helper: &Path) -> io::Result<Mounted> {
        let (ours, theirs) = UnixStream::pair()?;
        let mut opts = self.flag_options();
        opts.push(format!("fsname={}", self.fsname.replace(',', "_")));
        opts.push("subtype=scratchfs".to_owned());
        // Root's mounts get fusermount3's watcher, other users' ours (`Watch`).
        let own_watcher = self.auto_unmount && !owned_by_root();
        if self.auto_unmount && !own_watcher {
            opts.push("auto_unmount".to_owned());
        }
        let their_fd = theirs.as_raw_fd();
        let mut cmd = Command::new(helper);
        cmd.arg("-o")
            .arg(opts.join(","))
            .arg("--")
            .arg(&self.mountpoint)
            .env("_FUSE_COMMFD", their_fd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // SAFETY: the closure only calls the async-signal-safe fcntl on a valid descriptor.
        unsafe {
            cmd.pre_exec(move || {
                let flags = libc::fcntl(their_fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(their_fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        drop(theirs);
        match receive_fd(&ours) {
            Ok(fd) => {
                let watcher = if self.auto_unmount && !own_watcher {
                    // fusermount3 stays as the watcher; keep its stderr from blocking it.
                    drop(child.stderr.take());
                    Some(Watch::Helper(ours, child))
                } else {
                    drop(ours);
                    let _ = child.wait();
                    None
                };
                let mut mounted = Mounted { fd, mountpoint: self.mountpoint.clone(), watcher };
                if own_watcher {
                    match watch(helper, &self.mountpoint) {
                        Ok(w) => mounted.watcher = Some(w),
                        // Mounted still; a killed daemon would leave it to `fusermount3 -u`.
                        Err(e) => log::warn!("no watcher to unmount if the daemon dies: {e}"),
                    }
                }
                Ok(mounted)
            }
            Err(_) => {
                drop(ours);
                let out = child.wait_with_output()?;
                let msg = String::from_utf8_lossy(&out.stderr).trim().to_owned();
                Err(io::Error::other(if msg.is_empty() { format!("{} failed", helper.display()) } else { msg }))
            }
        }
    }
}

/// The line that tells our watcher our mount is gone (`Watch::Own`).
const DONE: &[u8] = b"done\n";

/// Starts our watcher for `mountpoint`: in a session of its own (no
/// terminal's signals), in `/` (holding no directory of the mount's), its
/// standard input the pipe from us. It unmounts with `helper` when the pipe
/// closes without [`DONE`], which is how a killed daemon closes it.
fn watch(helper: &Path, mountpoint: &Path) -> io::Result<Watch> {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", r#"IFS= read -r line; [ "$line" = done ] || exec "$0" -u -z -- "$1""#])
        .arg(helper)
        .arg(mountpoint)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| if libc::setsid() < 0 { Err(io::Error::last_os_error()) } else { Ok(()) });
    }
    let mut child = cmd.spawn()?;
    let stdin = child.stdin.take().ok_or_else(|| io::Error::other("no pipe to the watcher"))?;
    let pipe = WatchPipe { pipe: std::sync::Arc::new(Mutex::new(Some(stdin))), mount: MountId::of(mountpoint) };
    Ok(Watch::Own(pipe, child))
}

/// Receives the descriptor `fusermount3` passes over the socket.
fn receive_fd(sock: &UnixStream) -> io::Result<OwnedFd> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    let mut cbuf = vec![0u8; space];
    // SAFETY: msghdr is plain data; zeroed is a valid initial state.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = space;
    loop {
        // SAFETY: msg points at buffers that outlive the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "fusermount3 sent no descriptor"));
        }
        break;
    }
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR/CMSG_DATA walk its control buffer.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if cmsg.is_null() || (*cmsg).cmsg_level != libc::SOL_SOCKET || (*cmsg).cmsg_type != libc::SCM_RIGHTS {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "fusermount3 sent no descriptor"));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<RawFd>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Unmounts `mountpoint`, lazily: it disappears from the namespace at once
/// and the filesystem ends when its last user lets go.
pub fn unmount(mountpoint: &Path) -> io::Result<()> {
    if is_root() {
        let target = cstring(mountpoint)?;
        // SAFETY: target is a valid NUL-terminated path.
        if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if fusermount().is_none() {
            return Err(err);
        }
    }
    let helper = fusermount().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "fusermount3 not found"))?;
    let out =
        Command::new(helper).args([OsStr::new("-u"), OsStr::new("-z"), OsStr::new("--")]).arg(mountpoint).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_owned()))
    }
}

impl Mounted {
    /// Where it is mounted.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether a watcher will unmount if this process dies.
    pub fn auto_unmount(&self) -> bool {
        self.watcher.is_some()
    }

    /// Completes the FUSE handshake; requests are then queued by the kernel
    /// until [`Session::run`] serves them, so the mount is usable.
    pub fn start(self, mut fs: FuseFs, threads: usize) -> io::Result<(Session<FuseFs>, Watcher)> {
        let mut config = Config::default();
        let n = threads.max(1);
        config.n_threads = Some(n);
        config.clone_fd = threads > 1;
        // fuser's last worker thread reads this descriptor (the others read
        // clones of it), and fuser names its workers fuser-0, fuser-1, ...
        fs.attach_device(self.fd.as_fd(), &format!("fuser-{}", n.saturating_sub(1)));
        // The kernel decides who may enter (`allow_other`, or tasks whose
        // real, effective and saved ids are the owner's); fuser's own filter
        // would compare the request's filesystem uid instead, and refuse a
        // root task that has switched it with setfsuid(2) (which the
        // kernel's checks, or ours, then judge by that uid).
        let acl = SessionACL::All;
        let notifier = fs.notifier_slot();
        let session = Session::from_fd(fs, self.fd, acl, config)?;
        // Set before any request is served (`Session::run` comes later).
        let _ = notifier.set(session.notifier());
        Ok((session, Watcher(self.watcher)))
    }
}

/// Keeps the watcher's pipe or socket open for the life of the daemon;
/// dropping it lets the watcher exit: `fusermount3`'s after unmounting,
/// ours after unmounting too unless our mount is already gone.
pub struct Watcher(Option<Watch>);

impl Watcher {
    /// The pipe to our own watcher, for the thread that unmounts on a
    /// signal ([`WatchPipe::done_if_unmounted`]).
    pub fn pipe(&self) -> Option<WatchPipe> {
        match &self.0 {
            Some(Watch::Own(pipe, _)) => Some(pipe.clone()),
            _ => None,
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        match self.0.take() {
            Some(Watch::Helper(sock, mut child)) => {
                drop(sock);
                let _ = child.wait();
            }
            Some(Watch::Own(pipe, mut child)) => {
                pipe.done_if_unmounted();
                pipe.close();
                let _ = child.wait();
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The unique-id path works where the kernel has it (Linux 6.8+; this
    /// machine's 6.18): a live mount is found, an id no mount has is not.
    #[test]
    fn a_unique_mount_id_tells_a_live_mount_from_a_gone_one() {
        let Some(id) = unique_mount_id(Path::new("/proc")) else {
            // An older kernel: the device number decides.
            assert!(MountId::of(Path::new("/proc")).still_mounted());
            return;
        };
        assert_eq!(mount_listed(id), Some(true));
        assert_eq!(mount_listed(u64::MAX - 1), Some(false));
        assert!(MountId::of(Path::new("/proc")).still_mounted());
        let gone = MountId { unique: Some(u64::MAX - 1), device: mount_device(Path::new("/proc")) };
        assert!(!gone.still_mounted(), "the unique id decides, not the (reusable) device number");
    }

    /// A mount made where ours was, after ours went, is not ours, though it
    /// may well get our device number (what let a dead daemon's watcher
    /// unmount its successor's mount). Needs root to mount a tmpfs.
    #[test]
    fn the_next_mount_on_our_path_is_not_ours() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert_ne!(std::env::var("CI").as_deref(), Ok("true"), "CI runs the tests as root");
            return;
        }
        /// Unmounts (lazily, whatever is left) and removes the directory,
        /// on every path out of the test.
        struct Dir(PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                for _ in 0..3 {
                    if !is_mounted(&self.0) {
                        break;
                    }
                    let _ = Command::new("umount").arg("-l").arg(&self.0).status();
                }
                let _ = std::fs::remove_dir(&self.0);
            }
        }
        let dir = Dir(std::env::temp_dir().join(format!("scratchfs-mountid-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let run = |args: &[&str]| {
            let ok = Command::new(args[0]).args(&args[1..]).arg(&dir.0).status().is_ok_and(|s| s.success());
            assert!(ok, "{args:?} {}", dir.0.display());
        };
        let tmpfs = ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs"];
        run(&tmpfs);
        let ours = MountId::of(&dir.0);
        assert!(ours.still_mounted());
        run(&["umount"]);
        assert!(!ours.still_mounted());
        run(&tmpfs);
        let reused = ours.device.is_some() && mount_device(&dir.0) == ours.device;
        let ours_again = ours.still_mounted();
        drop(dir);
        if ours.unique.is_some() {
            assert!(!ours_again, "the next mount (device reused: {reused}) was taken for ours");
        }
    }
}
