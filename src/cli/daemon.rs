//! Turning settings into a running daemon: checks that fail early with a
//! clear message, the fork into the background with a readiness pipe (the
//! command returns only once the mount is usable), and signal handling
//! (SIGINT, SIGTERM, SIGHUP unmount cleanly).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::args::Settings;
use super::units::{SizeSpec, human_bytes};
use crate::engine::{Engine, EngineConfig, FsError, GuardConfig, MemoryProbe, NoSpaceCause};
use crate::fuse::mount::{MountConfig, is_mounted, unmount};
use crate::fuse::{AdapterOptions, FuseFs};

/// Readahead window for the mount, in KiB: the size of a FUSE request.
const READ_AHEAD_KIB: u32 = 1024;

/// How long a signalled daemon waits for a busy, detached mount to be
/// released before it exits anyway.
const GRACE: Duration = Duration::from_millis(1500);

/// What the daemon needs, every default resolved.
pub struct Plan {
    pub engine: EngineConfig,
    pub mount: MountConfig,
    pub threads: usize,
    pub foreground: bool,
    pub log_file: Option<std::path::PathBuf>,
    pub pid_file: Option<std::path::PathBuf>,
    /// Exclusive lock on the mount point directory until it is mounted.
    pub mount_lock: Option<File>,
    /// Descriptors this process inherited, closed once it runs as a daemon.
    pub inherited: Vec<i32>,
    pub adapter: AdapterOptions,
    /// `--size` as a percentage, if so given (or by default).
    pub size_percent: Option<f64>,
}

/// Memory available to this process (cgroup-aware), for percentage sizes.
fn available_memory() -> Result<u64, String> {
    crate::engine::SystemProbe::new()
        .and_then(|p| p.read())
        .map(|r| r.available)
        .ok_or_else(|| "cannot read available memory: give --size in bytes (e.g. 1G)".to_owned())
}

impl Plan {
    /// Resolves defaults and validates the mount point.
    pub fn new(s: Settings) -> Result<Plan, String> {
        let needs_memory = s.size.is_none_or(|z| matches!(z, SizeSpec::Percent(_)))
            || [s.promotion_limit, s.guard_headroom].iter().any(|z| matches!(z, Some(SizeSpec::Percent(_))));
        let available = if needs_memory { available_memory()? } else { 0 };
        let defaults = GuardConfig::default();
        let headroom = s.guard_headroom.map_or(defaults.headroom, |z| z.resolve(available));
        let guard_mode = s.guard_mode.unwrap_or(defaults.mode);
        // A percentage quota is of what the memory guard lets the filesystem
        // have: the available memory less the headroom it keeps (none
        // without a guard), so that even 100% mounts.
        let size = s.size.unwrap_or(SizeSpec::Percent(50.0));
        let size_percent = match size {
            SizeSpec::Percent(p) => Some(p),
            SizeSpec::Bytes(_) => None,
        };
        let usable = GuardConfig { mode: guard_mode, headroom, ..defaults }.usable(available);
        if size_percent.is_some() && usable == 0 {
            return Err(format!(
                "no memory to give a percentage of: {} available, and the memory guard keeps {} of it free \
                 (give --size in bytes, or a smaller --guard-headroom)",
                human_bytes(available),
                human_bytes(headroom)
            ));
        }
        let max_bytes = size.resolve(usable);
        if max_bytes < 64 * 1024 {
            return Err(format!("a quota of {} is too small: give --size at least 64K", human_bytes(max_bytes)));
        }
        // SAFETY: geteuid/getegid have no preconditions.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let mut engine = EngineConfig::with_quota(max_bytes);
        engine.max_nodes = s.max_nodes;
        engine.storage = s.storage.unwrap_or(engine.storage);
        engine.promotion_limit = s.promotion_limit.map_or(engine.promotion_limit, |z| z.resolve(available));
        engine.guard = GuardConfig {
            mode: guard_mode,
            action: s.guard_action.unwrap_or(defaults.action),
            interval: s.guard_interval.unwrap_or(defaults.interval),
            headroom,
        };
        engine.root_mode = s.mode.unwrap_or(0o1777);
        engine.root_uid = s.uid.unwrap_or(euid);
        engine.root_gid = s.gid.unwrap_or(egid);
        engine.noatime = s.noatime.unwrap_or(false);
        engine.posix_acl = s.acl.unwrap_or(false);
        let mp = &s.mountpoint;
        match std::fs::metadata(mp) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(format!(
                    "mount point {} does not exist: create it first (mkdir -p {})",
                    mp.display(),
                    mp.display()
                ));
            }
            // A FUSE mount whose daemon is gone (killed without auto-unmount).
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
                return Err(format!(
                    "{} is a dead mount (its daemon is gone): unmount it first (umount -l {})",
                    mp.display(),
                    mp.display()
                ));
            }
            Err(e) => return Err(format!("mount point {}: {e}", mp.display())),
            Ok(m) if !m.is_dir() => return Err(format!("mount point {} is not a directory", mp.display())),
            Ok(_) => {}
        }
        let mountpoint = mp.canonicalize().map_err(|e| format!("mount point {}: {e}", mp.display()))?;
        // Held from this check until the mount is made, so two daemons
        // started at once cannot both find the directory free and stack.
        let mount_lock = lock_mountpoint(&mountpoint)?;
        if is_mounted(&mountpoint) {
            return Err(format!(
                "{} is already a mount point: unmount it first (umount {})",
                mountpoint.display(),
                mountpoint.display()
            ));
        }
        if !Path::new("/dev/fuse").exists() {
            return Err("/dev/fuse is missing: load the fuse module (modprobe fuse), or in a container \
                        pass the device through (--device /dev/fuse)"
                .to_owned());
        }
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        // Polling needs a CPU to spare: with one, the poller would take it
        // from the very process waiting for the answer.
        let busy_poll = s.busy_poll.unwrap_or(cpus >= 2);
        // While one worker polls, every other worker asleep on the device is
        // woken by the kernel for each request, which costs what polling
        // saves (docs/performance.md): one worker, unless asked for more.
        let threads = s.threads.unwrap_or(if busy_poll { 1 } else { cpus });
        // Only root's tasks can enter a mount owned by root without
        // allow_other; there the daemon checks permissions itself, by the
        // ids and capabilities of each request's task, and spares the
        // round trip the kernel's own checks cost after every change to a
        // directory (docs/design.md, "Who checks permissions").
        // With ACLs the kernel checks: it enforces them, and FUSE_POSIX_ACL
        // turns default_permissions on anyway.
        let kernel_permissions = engine.posix_acl
            || (!s.daemon_permissions
                && (s.allow_other || s.default_permissions || !crate::fuse::mount::owned_by_root()));
        Ok(Plan {
            engine,
            mount: MountConfig {
                mountpoint,
                fsname: s.source.filter(|x| !x.is_empty() && x != "none").unwrap_or_else(|| "scratchfs".to_owned()),
                allow_other: s.allow_other,
                kernel_permissions,
                read_only: s.read_only,
                suid: s.suid,
                dev: s.dev,
                exec: !s.noexec,
                noatime: engine.noatime,
                root_mode: s.mode.unwrap_or(0o1777),
                auto_unmount: s.auto_unmount,
            },
            threads,
            foreground: s.foreground,
            log_file: s.log_file.map(absolute).transpose()?,
            pid_file: s.pid_file.map(absolute).transpose()?,
            mount_lock: Some(mount_lock),
            inherited: Vec::new(),
            size_percent,
            adapter: AdapterOptions {
                panic_on_name: s.panic_on_name.map(String::into_bytes),
                busy_poll,
                cpu_latency: s.cpu_latency,
                delete_wait: s.delete_wait.unwrap_or(crate::fuse::DELETE_WAIT),
                check_access: !kernel_permissions,
            },
        })
    }
}

fn absolute(p: std::path::PathBuf) -> Result<std::path::PathBuf, String> {
    std::path::absolute(&p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Takes an exclusive `flock` on the mount point directory, waiting up to
/// ten seconds for another scratchfs that is mounting there.
fn lock_mountpoint(dir: &Path) -> Result<File, String> {
    use std::os::fd::AsRawFd;
    let f = File::open(dir).map_err(|e| format!("mount point {}: {e}", dir.display()))?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(f);
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("another scratchfs is busy mounting on {}", dir.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The descriptors open in this process above stderr. (The listing's own
/// descriptor is closed again by the time the list is returned, and left out.)
pub fn open_descriptors() -> Vec<i32> {
    let listed: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).filter(|&fd| fd > 2).collect())
        .unwrap_or_default();
    // SAFETY: F_GETFD only queries a descriptor number.
    listed.into_iter().filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0).collect()
}

/// A one-line explanation of why the engine could not be created.
fn engine_error(e: &FsError, cfg: &EngineConfig) -> String {
    match e {
        FsError::NoSpace(NoSpaceCause::MemoryGuard { requested, available }) => format!(
            "the quota ({}) is larger than the memory available to scratchfs ({}, after the guard's {} headroom): \
             choose a smaller --size, or --guard-action warn to mount anyway",
            human_bytes(*requested),
            human_bytes(*available),
            human_bytes(cfg.guard.headroom)
        ),
        other => format!("cannot create the filesystem: {other}"),
    }
}

/// Mounts and serves; returns once the filesystem is unmounted (foreground)
/// or once the background daemon reports the mount ready.
pub fn run(mut plan: Plan, inherited: Vec<i32>) -> Result<(), String> {
    ensure_descriptors(plan.threads)?;
    let engine = match (Engine::new(plan.engine), plan.size_percent) {
        // The guard's own reading, a moment after the one the percentage
        // was taken of, found less (the daemon has allocated since, or
        // another process has): the percentage is of that.
        (Err(FsError::NoSpace(NoSpaceCause::MemoryGuard { available, .. })), Some(p)) => {
            plan.engine.max_bytes = SizeSpec::Percent(p).resolve(available);
            Engine::new(plan.engine)
        }
        (r, _) => r,
    }
    .map_err(|e| engine_error(&e, &plan.engine))?;
    let engine = Arc::new(engine);
    plan.inherited = inherited;
    // Opened before anything is mounted, in the background too: a log file
    // that cannot be written fails the command (it used to fall back to
    // syslog there, silently for an fstab mount).
    let log = plan
        .log_file
        .as_ref()
        .map(|path| open_log(path).map_err(|e| format!("cannot open log file {}: {e}", path.display())))
        .transpose()?;
    if !plan.foreground {
        return daemonize(engine, &mut plan, log);
    }
    if let Some(f) = log {
        super::log::to_file(f);
    }
    serve(engine, &mut plan, None)
}

/// Each worker thread reads a clone of the FUSE device, which fuser opens
/// only once the session runs, after the mount has been reported ready: a
/// descriptor limit too low for them would end the daemon after the command
/// had succeeded. So the soft limit is raised as far as needed (up to the
/// hard one), or the mount refused now.
fn ensure_descriptors(threads: usize) -> Result<(), String> {
    /// Descriptors beyond one per worker: stdio, the device, the pipe to the
    /// parent, the latency request, log and pid files, /proc readings.
    const SPARE: u64 = 64;
    let need = (threads as u64).saturating_add(SPARE);
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur >= need {
        return Ok(());
    }
    if lim.rlim_max >= need {
        let raised = libc::rlimit { rlim_cur: need, rlim_max: lim.rlim_max };
        // SAFETY: setrlimit reads the struct.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return Ok(());
        }
    }
    Err(format!(
        "{threads} request-handling threads need about {need} open files, but the limit is {} (ulimit -n): \
         raise it or give fewer --threads",
        lim.rlim_cur
    ))
}

fn daemonize(engine: Arc<Engine>, plan: &mut Plan, log: Option<File>) -> Result<(), String> {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!("cannot create a pipe: {}", std::io::Error::last_os_error()));
    }
    let _ = std::io::stderr().flush();
    // SAFETY: the process is single-threaded here (no thread has been started yet).
    match unsafe { libc::fork() } {
        -1 => Err(format!("cannot fork: {}", std::io::Error::last_os_error())),
        0 => {
            // SAFETY: fds[0] is ours to close; fds[1] becomes the File; the
            // inherited descriptors are the caller's, which a daemon must not keep.
            unsafe {
                libc::close(fds[0]);
                for &fd in &plan.inherited {
                    libc::close(fd);
                }
            }
            let notify = unsafe { File::from_raw_fd(fds[1]) };
            detach(log);
            let code = match serve(engine, plan, Some(notify)) {
                Ok(()) => 0,
                Err(e) => {
                    log::error!("{e}");
                    1
                }
            };
            std::process::exit(code)
        }
        _child => {
            // SAFETY: fds[1] belongs to the child now.
            unsafe { libc::close(fds[1]) };
            let mut pipe = unsafe { File::from_raw_fd(fds[0]) };
            let mut msg = String::new();
            let _ = pipe.read_to_string(&mut msg);
            match msg.strip_prefix("ready") {
                Some(_) => Ok(()),
                None if msg.is_empty() => Err("the daemon exited before the mount was ready (see its log)".to_owned()),
                None => Err(msg.trim().to_owned()),
            }
        }
    }
}

/// The `--log-file`, opened for appending (created private to its owner).
fn open_log(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)
}

/// Detaches the background daemon from the terminal: stdio to /dev/null,
/// logs to the `--log-file` opened before the fork, or to syslog.
fn detach(log: Option<File>) {
    match log {
        Some(f) => super::log::to_file(f),
        None => super::log::to_syslog(),
    }
    // SAFETY: setsid/open/dup2/chdir are called with valid arguments.
    unsafe {
        libc::setsid();
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..=2 {
                libc::dup2(null, fd);
            }
            libc::close(null);
        }
        libc::chdir(c"/".as_ptr());
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        set
    }
}

/// Mounts, reports readiness, serves until unmounted.
fn serve(engine: Arc<Engine>, plan: &mut Plan, mut notify: Option<File>) -> Result<(), String> {
    let fail = |notify: &mut Option<File>, msg: String| {
        if let Some(n) = notify.as_mut() {
            let _ = writeln!(n, "{msg}");
        }
        Err(msg)
    };
    // Block the shutdown signals before any thread starts (the adapter
    // starts its own): every thread inherits the mask, and only the
    // `signals` thread below takes them, synchronously. A thread that left
    // them unblocked could be handed SIGINT or SIGTERM and the process would
    // die without unmounting. One that arrives while mounting waits for
    // that thread.
    let set = signal_set();
    // SAFETY: set is initialised.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    let mp = plan.mount.mountpoint.clone();
    let mounted = match plan.mount.mount() {
        Ok(m) => m,
        Err(e) => return fail(&mut notify, format!("mounting on {} failed: {e}", mp.display())),
    };
    let auto_unmount = mounted.auto_unmount();
    let ours = crate::fuse::mount::MountId::of(&mp);
    drop(plan.mount_lock.take());
    let fs = FuseFs::new(engine.clone(), plan.adapter.clone());
    let (session, watcher) = match mounted.start(fs, plan.threads) {
        Ok(s) => s,
        Err(e) => {
            let _ = unmount(&mp);
            return fail(&mut notify, format!("starting the FUSE session on {} failed: {e}", mp.display()));
        }
    };
    let signal_mp = mp.clone();
    let watch_pipe = watcher.pipe();
    let signals = std::thread::Builder::new().name("signals".into()).spawn(move || {
        let mut sig = 0;
        // SAFETY: set is initialised; sig is a valid out pointer.
        unsafe { libc::sigwait(&set, &mut sig) };
        log::info!("signal {sig}: unmounting {}", signal_mp.display());
        if let Err(e) = unmount(&signal_mp) {
            log::warn!("unmounting {} failed: {e}", signal_mp.display());
        }
        // Once our mount has left the mount table, the exit below (if the
        // mount is still busy) must not have our watcher unmount whatever
        // is mounted there next. Asked whatever `unmount` said, and again
        // before the exit: fusermount3 has been seen to report a failure
        // ("entry not found in /etc/mtab") for a mount that was gone, and
        // a user may unmount it meanwhile.
        let leave_alone = || {
            if let Some(pipe) = &watch_pipe {
                pipe.done_if_unmounted();
            }
        };
        leave_alone();
        std::thread::sleep(GRACE);
        leave_alone();
        log::warn!("{} is still in use after unmounting; exiting (its users now get ENOTCONN)", signal_mp.display());
        std::process::exit(0);
    });
    if let Err(e) = signals {
        drop(session);
        let _ = unmount(&mp);
        return fail(&mut notify, format!("cannot start the signal thread: {e}"));
    }
    // Streaming reads: let the kernel ask for up to 1 MiB (the request size)
    // at a time instead of its default 128 KiB readahead window.
    if let Err(e) = crate::fuse::mount::set_read_ahead(&mp, READ_AHEAD_KIB) {
        log::debug!("readahead left at the kernel's default: {e}");
    }
    let baseline = super::alloc::start_housekeeping(engine.clone(), plan.threads);
    super::alloc::quiet_panics();
    let cfg = engine.config();
    log::info!(
        "scratchfs mounted on {}: quota {}, memory baseline {}, node limit {}, storage {}, guard {}/{}, \
         {} thread{}{}{}{}",
        mp.display(),
        human_bytes(cfg.max_bytes),
        human_bytes(baseline),
        cfg.max_nodes.map_or("none".to_owned(), |n| n.to_string()),
        cfg.storage.name(),
        cfg.guard.mode.name(),
        cfg.guard.action.name(),
        plan.threads,
        if plan.threads == 1 { "" } else { "s" },
        if plan.adapter.busy_poll { ", busy polling" } else { "" },
        if auto_unmount { ", auto-unmount on" } else { "" },
        if cfg.posix_acl { ", POSIX ACLs" } else { "" }
    );
    // The guard's warning at mount went to the terminal, before this log
    // was set up (a background daemon's is set up after the fork).
    let stats = engine.stats();
    if stats.guard_warnings > 0 {
        log::warn!(
            "memory is short: the quota ({}) is larger than the memory available to scratchfs at mount ({} at the \
             guard's reading, less its {} headroom); mounted anyway, as --guard-action warn asks",
            human_bytes(cfg.max_bytes),
            stats.guard_available.map_or("unknown".to_owned(), human_bytes),
            human_bytes(cfg.guard.headroom)
        );
    }
    let pid = format!("{}\n", std::process::id());
    if let Some(path) = &plan.pid_file
        && let Err(e) = std::fs::write(path, &pid)
    {
        drop(session);
        let _ = unmount(&mp);
        return fail(&mut notify, format!("cannot write pid file {}: {e}", path.display()));
    }
    if let Some(mut n) = notify.take() {
        let _ = n.write_all(b"ready\n");
    }
    let result = match session.run() {
        // With the abort-error capability the kernel ends the connection of
        // an unmounted filesystem with ECONNABORTED rather than ENODEV
        // (which fuser alone treats as the end). Once our mount is gone that
        // is a normal end; while it is still mounted it is a real abort.
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) && !ours.still_mounted() => Ok(()),
        other => other,
    };
    drop(watcher);
    // Our pid file, unless another daemon has written its own there since.
    if let Some(path) = &plan.pid_file
        && std::fs::read_to_string(path).is_ok_and(|text| text == pid)
    {
        let _ = std::fs::remove_file(path);
    }
    log::info!("{} unmounted", mp.display());
    result.map_err(|e| format!("FUSE session on {} ended with an error: {e}", mp.display()))
}
