//! Command-line arguments, and the merging of `-o key=value` mount options
//! (tmpfs style, and what `mount.fuse3` passes from `/etc/fstab`) into the
//! same settings. An explicit flag wins over the same setting given in `-o`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::units::{SizeSpec, parse_count, parse_duration, parse_mode, parse_size};
use crate::engine::{GuardAction, GuardMode, StoragePolicy};

#[derive(Parser, Debug)]
#[command(
    name = "scratchfs",
    version,
    about = "An in-memory scratch filesystem with a hard quota, mounted through FUSE",
    long_about = "Mounts an in-memory filesystem at MOUNTPOINT and returns once it is ready; \
                  the daemon keeps serving until it is unmounted (umount, fusermount3 -u, SIGTERM). \
                  Every byte it holds is charged to the quota first: a write that does not fit fails \
                  with 'No space left on device' and changes nothing.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub mount: MountArgs,
}

/// The command line as clap should read it. `mount.fuse3` runs us as
/// `scratchfs SOURCE MOUNTPOINT -o OPTIONS`, where SOURCE is whatever the
/// fstab line says; a source spelt like a subcommand (`stats`, `help`)
/// would run that subcommand instead of mounting. In exactly that shape it
/// is a mount: the options go first and `--` makes the source a plain
/// argument. Anything else is left as it is.
pub fn helper_argv(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let subcommand = |a: &std::ffi::OsString| a == "stats" || a == "help";
    if args.len() == 5 && subcommand(&args[1]) && args[3] == "-o" {
        let opts = args.split_off(3);
        let paths = args.split_off(1);
        args.extend(opts);
        args.push("--".into());
        args.extend(paths);
    }
    args
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show a mounted scratchfs's quota, nodes, storage shapes, promotions and refusals.
    Stats(StatsArgs),
}

#[derive(Args, Debug)]
pub struct StatsArgs {
    /// A scratchfs mount point.
    pub mountpoint: PathBuf,
    /// Print JSON (the same document the mount root's `user.scratchfs.stats` xattr holds).
    #[arg(long)]
    pub json: bool,
    /// Refresh every second until interrupted.
    #[arg(long)]
    pub watch: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum StorageArg {
    Auto,
    Sequential,
    RandomAccess,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GuardModeArg {
    None,
    Init,
    PerWrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BusyPollArg {
    /// On when this process may use two or more CPUs.
    Auto,
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CpuLatencyArg {
    /// While busy polling and between bursts of a busy stretch, when the
    /// daemon may open /dev/cpu_dma_latency.
    Auto,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GuardActionArg {
    Deny,
    Warn,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// `[SOURCE] MOUNTPOINT`: the directory to mount on. A source name
    /// before it (as mount.fuse3 passes from /etc/fstab) is shown in the mount table.
    #[arg(value_name = "[SOURCE] MOUNTPOINT", num_args = 1..=2, required = true)]
    pub paths: Vec<PathBuf>,
    /// Hard quota: bytes with K/M/G/T suffixes (powers of 1024) or a percentage of
    /// available memory (cgroup-aware) less the guard's headroom ("25%"). Default: 50%.
    #[arg(short, long, value_parser = parse_size)]
    pub size: Option<SizeSpec>,
    /// Node limit (k/m suffixes: powers of 1024). Default: only the quota limits nodes.
    #[arg(short = 'n', long, value_parser = parse_count)]
    pub max_nodes: Option<u64>,
    /// Storage shape of new files [default: auto].
    #[arg(long, value_enum)]
    pub storage: Option<StorageArg>,
    /// Files larger than this are never promoted to random-access storage [default: 512M].
    #[arg(long, value_parser = parse_size)]
    pub promotion_limit: Option<SizeSpec>,
    /// When the memory guard checks available memory [default: per-write].
    #[arg(long, value_enum)]
    pub memory_guard: Option<GuardModeArg>,
    /// What the memory guard does when memory is short [default: deny].
    #[arg(long, value_enum)]
    pub guard_action: Option<GuardActionArg>,
    /// Longest age of the guard's cached memory reading [default: 1s].
    #[arg(long, value_parser = parse_duration)]
    pub guard_interval: Option<Duration>,
    /// Memory the guard keeps free for everything that is not file data [default: 32M].
    #[arg(long, value_parser = parse_size)]
    pub guard_headroom: Option<SizeSpec>,
    /// Request-handling threads [default: 1 with busy polling, else the number of CPUs].
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// While requests come back to back, one thread polls the FUSE device
    /// instead of sleeping, and the callers' CPUs are kept from halting
    /// (see --cpu-latency): much lower latency per request, busy CPUs at
    /// idle priority while it lasts [default: auto].
    #[arg(long, value_enum)]
    pub busy_poll: Option<BusyPollArg>,
    /// While busy polling, hold a CPU latency request of 0 µs
    /// (/dev/cpu_dma_latency, root only): idle CPUs of the whole machine
    /// poll instead of halting, so an answer wakes its caller at once.
    /// Kept after a burst while requests keep coming (10 per 50 ms); dropped
    /// after a quieter 50 ms and when the daemon exits. Where it is off
    /// or not permitted, one idle-priority thread spins on a second CPU
    /// instead [default: auto].
    #[arg(long, value_enum)]
    pub cpu_latency: Option<CpuLatencyArg>,
    /// Longest time a request refused for space just after a delete waits
    /// for the deleted file's memory, which comes back when the kernel
    /// lets go of the file (0: refuse at once) [default: 100ms].
    #[arg(long, value_parser = parse_duration)]
    pub delete_wait: Option<Duration>,
    /// Stay in the foreground (logs go to stderr).
    #[arg(short, long)]
    pub foreground: bool,
    /// Mount options, comma-separated: size=, nr_inodes=, mode=, uid=, gid=, allow_other, ro,
    /// default_permissions (the kernel checks permissions even on a mount only root can
    /// enter, where the daemon otherwise does), the options above as key=value, and the
    /// kernel flags suid/nosuid, dev/nodev, exec/noexec, and atime/relatime/strictatime
    /// (access times move by the relatime rule) or noatime (they never move), acl/noacl.
    #[arg(short = 'o', value_name = "OPT,...")]
    pub options: Vec<String>,
    /// Let other users in (file permissions still apply).
    #[arg(long)]
    pub allow_other: bool,
    /// Support POSIX ACLs (setfacl, getfacl; `-o acl`): the kernel enforces
    /// them, which implies default_permissions, so a mount only root can
    /// enter loses the daemon's own, cheaper permission checks.
    #[arg(long)]
    pub acl: bool,
    /// Mount read-only.
    #[arg(long)]
    pub read_only: bool,
    /// Permission bits of the root directory, octal [default: 1777].
    #[arg(long, value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Owner of the root directory [default: the caller].
    #[arg(long)]
    pub uid: Option<u32>,
    /// Group of the root directory [default: the caller's group].
    #[arg(long)]
    pub gid: Option<u32>,
    /// Append the daemon's log to this file [default: stderr with -f, syslog in the background].
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Write the daemon's process id to this file once the mount is ready.
    #[arg(long)]
    pub pid_file: Option<PathBuf>,
    /// Do not have a watcher process unmount if the daemon dies.
    #[arg(long)]
    pub no_auto_unmount: bool,
    /// Test hook: make requests naming this entry panic.
    #[arg(long, hide = true)]
    pub test_panic_on_name: Option<String>,
    /// Test hook: check permissions in the daemon even with --allow-other
    /// (conformance runs switch users), where a path the kernel has cached
    /// is not checked again for another user.
    #[arg(long, hide = true)]
    pub test_daemon_permissions: bool,
}

/// Every setting, defaults not yet applied where they depend on the machine.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Settings {
    pub source: Option<String>,
    pub mountpoint: PathBuf,
    pub size: Option<SizeSpec>,
    pub max_nodes: Option<u64>,
    pub storage: Option<StoragePolicy>,
    pub promotion_limit: Option<SizeSpec>,
    pub guard_mode: Option<GuardMode>,
    pub guard_action: Option<GuardAction>,
    pub guard_interval: Option<Duration>,
    pub guard_headroom: Option<SizeSpec>,
    pub threads: Option<usize>,
    /// `None`: on when two or more CPUs are available.
    pub busy_poll: Option<bool>,
    /// Hold a CPU latency request while busy polling, where permitted.
    pub cpu_latency: bool,
    pub delete_wait: Option<Duration>,
    pub foreground: bool,
    pub allow_other: bool,
    /// `-o default_permissions`: have the kernel check permissions even on
    /// a mount only root can enter.
    pub default_permissions: bool,
    pub read_only: bool,
    pub suid: bool,
    pub dev: bool,
    pub noexec: bool,
    /// `Some(true)` for `-o noatime`, `Some(false)` for `atime`, `relatime`
    /// or `strictatime` (all relatime: see `docs/design.md`), `None` if no
    /// atime option was given (a remount then keeps the mount's).
    pub noatime: Option<bool>,
    /// `Some(true)` for `--acl` or `-o acl`, `Some(false)` for `-o noacl`.
    pub acl: Option<bool>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub log_file: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub auto_unmount: bool,
    pub panic_on_name: Option<String>,
    pub daemon_permissions: bool,
    /// `-o remount`: change an existing mount instead of creating one.
    pub remount: bool,
    /// The first of the kernel's own FUSE options given ([`KERNEL_OPTIONS`]):
    /// accepted on a remount only.
    pub kernel_option: Option<String>,
    /// Engine settings given (a remount cannot change them), other than
    /// the quota, the node limit and the root's mode and owner, which a
    /// remount may repeat unchanged.
    pub engine_settings_given: bool,
}

fn storage(s: StorageArg) -> StoragePolicy {
    match s {
        StorageArg::Auto => StoragePolicy::Auto,
        StorageArg::Sequential => StoragePolicy::Sequential,
        StorageArg::RandomAccess => StoragePolicy::RandomAccess,
    }
}

fn guard_mode(m: GuardModeArg) -> GuardMode {
    match m {
        GuardModeArg::None => GuardMode::None,
        GuardModeArg::Init => GuardMode::Init,
        GuardModeArg::PerWrite => GuardMode::PerWrite,
    }
}

fn guard_action(a: GuardActionArg) -> GuardAction {
    match a {
        GuardActionArg::Deny => GuardAction::Deny,
        GuardActionArg::Warn => GuardAction::Warn,
    }
}

fn busy_poll(b: BusyPollArg) -> Option<bool> {
    match b {
        BusyPollArg::Auto => None,
        BusyPollArg::On => Some(true),
        BusyPollArg::Off => Some(false),
    }
}

fn parse_enum<T: ValueEnum>(key: &str, value: &str) -> Result<T, String> {
    T::from_str(value, true).map_err(|_| {
        let allowed: Vec<String> =
            T::value_variants().iter().filter_map(|v| v.to_possible_value()).map(|v| v.get_name().to_owned()).collect();
        format!("invalid value '{value}' for mount option {key}: expected one of {}", allowed.join(", "))
    })
}

/// Options that concern the mount, not the engine (a remount may change them).
const MOUNT_ONLY_OPTIONS: &[&str] = &[
    "",
    "remount",
    "ro",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "noatime",
    "atime",
    "relatime",
    "strictatime",
    "allow_other",
    "default_permissions",
    "log_file",
    "pid_file",
];

/// The FUSE options the kernel shows for every mount (`/proc/self/mountinfo`:
/// `user_id=0,group_id=0`, ...). mount(8) passes them back with a remount
/// of a mount that has no fstab line (`mount -o remount,ro DIR`), so a
/// remount accepts them; the kernel keeps its own values. Anywhere else they
/// are refused: they are not ours to set.
const KERNEL_OPTIONS: &[&str] = &["user_id", "group_id", "rootmode", "fd", "max_read", "blksize"];

/// Options mount(8) and fstab use that mean nothing to the daemon.
const IGNORED_OPTIONS: &[&str] = &[
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "_netdev",
    "nofail",
    "async",
    "sync",
    "dirsync",
    "nodiratime",
    "diratime",
    "lazytime",
    "nolazytime",
    "auto_unmount",
];

/// Applies one `-o` option to `s`.
fn apply_option<'a>(s: &mut Settings, opt: &'a str) -> Result<(), String> {
    let (key, value) = match opt.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim())),
        None => (opt.trim(), None),
    };
    let need = |v: Option<&'a str>| v.ok_or_else(|| format!("mount option {key} needs a value ({key}=...)"));
    let num = |v: &str| v.parse::<u32>().map_err(|_| format!("invalid value '{v}' for mount option {key}"));
    let k = key.replace('-', "_");
    let mount_only = MOUNT_ONLY_OPTIONS.contains(&k.as_str())
        || IGNORED_OPTIONS.contains(&k.as_str())
        || KERNEL_OPTIONS.contains(&k.as_str());
    // What a remount may repeat unchanged (mount(8) merges an fstab line's
    // options into `mount -o remount,ro DIR`): checked against the running
    // mount then (`remount.rs`), not refused outright.
    let repeatable =
        matches!(k.as_str(), "size" | "nr_inodes" | "max_nodes" | "mode" | "uid" | "gid" | "acl" | "noacl");
    if !mount_only && !repeatable && !k.starts_with("x_") && !k.starts_with("comment") {
        s.engine_settings_given = true;
    }
    match k.as_str() {
        "" => {}
        "remount" => s.remount = true,
        "size" => s.size = Some(parse_size(need(value)?)?),
        "nr_inodes" | "max_nodes" => s.max_nodes = Some(parse_count(need(value)?)?),
        "mode" => s.mode = Some(parse_mode(need(value)?)?),
        "uid" => s.uid = Some(num(need(value)?)?),
        "gid" => s.gid = Some(num(need(value)?)?),
        "storage" => s.storage = Some(storage(parse_enum(key, need(value)?)?)),
        "promotion_limit" => s.promotion_limit = Some(parse_size(need(value)?)?),
        "memory_guard" => s.guard_mode = Some(guard_mode(parse_enum(key, need(value)?)?)),
        "guard_action" => s.guard_action = Some(guard_action(parse_enum(key, need(value)?)?)),
        "guard_interval" => s.guard_interval = Some(parse_duration(need(value)?)?),
        "guard_headroom" => s.guard_headroom = Some(parse_size(need(value)?)?),
        "threads" => {
            let v = need(value)?;
            s.threads = Some(v.parse().map_err(|_| format!("invalid value '{v}' for mount option threads"))?);
        }
        "busy_poll" => s.busy_poll = busy_poll(parse_enum(key, need(value)?)?),
        "cpu_latency" => s.cpu_latency = parse_enum::<CpuLatencyArg>(key, need(value)?)? == CpuLatencyArg::Auto,
        "delete_wait" => s.delete_wait = Some(parse_duration(need(value)?)?),
        "log_file" => s.log_file = Some(PathBuf::from(need(value)?)),
        "pid_file" => s.pid_file = Some(PathBuf::from(need(value)?)),
        "allow_other" => s.allow_other = true,
        "default_permissions" => s.default_permissions = true,
        "ro" => s.read_only = true,
        "rw" => s.read_only = false,
        "suid" => s.suid = true,
        "nosuid" => s.suid = false,
        "dev" => s.dev = true,
        "nodev" => s.dev = false,
        "exec" => s.noexec = false,
        "noexec" => s.noexec = true,
        "acl" => s.acl = Some(true),
        "noacl" => s.acl = Some(false),
        "noatime" => s.noatime = Some(true),
        "atime" | "relatime" | "strictatime" => s.noatime = Some(false),
        "foreground" => s.foreground = true,
        "no_auto_unmount" => s.auto_unmount = false,
        k if IGNORED_OPTIONS.contains(&k) => {}
        k if KERNEL_OPTIONS.contains(&k) => {
            s.kernel_option.get_or_insert_with(|| key.to_owned());
        }
        k if k.starts_with("x_") || k.starts_with("comment") => {}
        _ => return Err(format!("unknown mount option '{key}' (see scratchfs --help)")),
    }
    Ok(())
}

impl MountArgs {
    /// The settings these arguments ask for: `-o` options first, explicit flags on top.
    pub fn settings(&self) -> Result<Settings, String> {
        let (source, mountpoint) = match self.paths.as_slice() {
            [mp] => (None, mp.clone()),
            [src, mp] => (Some(src.to_string_lossy().into_owned()), mp.clone()),
            _ => return Err("expected [SOURCE] MOUNTPOINT".to_owned()),
        };
        let mut s = Settings { source, mountpoint, auto_unmount: true, cpu_latency: true, ..Settings::default() };
        for group in &self.options {
            for opt in group.split(',') {
                apply_option(&mut s, opt)?;
            }
        }
        s.size = self.size.or(s.size);
        s.max_nodes = self.max_nodes.or(s.max_nodes);
        s.storage = self.storage.map(storage).or(s.storage);
        s.promotion_limit = self.promotion_limit.or(s.promotion_limit);
        s.guard_mode = self.memory_guard.map(guard_mode).or(s.guard_mode);
        s.guard_action = self.guard_action.map(guard_action).or(s.guard_action);
        s.guard_interval = self.guard_interval.or(s.guard_interval);
        s.guard_headroom = self.guard_headroom.or(s.guard_headroom);
        s.threads = self.threads.or(s.threads);
        s.delete_wait = self.delete_wait.or(s.delete_wait);
        if let Some(b) = self.busy_poll {
            s.busy_poll = busy_poll(b);
        }
        if let Some(c) = self.cpu_latency {
            s.cpu_latency = c == CpuLatencyArg::Auto;
        }
        s.mode = self.mode.or(s.mode);
        s.uid = self.uid.or(s.uid);
        s.gid = self.gid.or(s.gid);
        s.log_file = self.log_file.clone().or(s.log_file.take());
        s.pid_file = self.pid_file.clone().or(s.pid_file.take());
        s.foreground |= self.foreground;
        s.allow_other |= self.allow_other;
        if self.acl {
            s.acl = Some(true);
        }
        s.read_only |= self.read_only;
        if self.no_auto_unmount {
            s.auto_unmount = false;
        }
        // A flag that sets anything a remount cannot change counts like
        // the `-o` option of the same name (only ro/rw can be switched).
        s.engine_settings_given |= self.storage.is_some()
            || self.promotion_limit.is_some()
            || self.memory_guard.is_some()
            || self.guard_action.is_some()
            || self.guard_interval.is_some()
            || self.guard_headroom.is_some()
            || self.threads.is_some()
            || self.delete_wait.is_some()
            || self.busy_poll.is_some()
            || self.cpu_latency.is_some()
            || self.foreground
            || self.no_auto_unmount;
        s.panic_on_name.clone_from(&self.test_panic_on_name);
        s.daemon_permissions |= self.test_daemon_permissions;
        if s.threads == Some(0) {
            return Err("invalid thread count 0: need at least one request-handling thread".to_owned());
        }
        if let Some(k) = s.kernel_option.as_ref().filter(|_| !s.remount) {
            return Err(format!(
                "mount option '{k}' is the kernel's own (shown in /proc/mounts), not a scratchfs setting"
            ));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let argv = helper_argv(args.iter().map(std::ffi::OsString::from).collect());
        Cli::try_parse_from(argv).unwrap()
    }

    #[test]
    fn a_source_spelt_like_a_subcommand_still_mounts_from_fstab() {
        for name in ["stats", "help"] {
            let cli = parse(&["scratchfs", name, "/mnt/x", "-o", "rw,size=1G"]);
            assert!(cli.command.is_none(), "{name}: mounted, not a subcommand");
            let s = cli.mount.settings().unwrap();
            assert_eq!((s.source.as_deref(), s.mountpoint.as_path()), (Some(name), std::path::Path::new("/mnt/x")));
            assert_eq!(s.size, Some(SizeSpec::Bytes(1 << 30)));
        }
        // The subcommand itself is untouched.
        let cli = parse(&["scratchfs", "stats", "/mnt/x"]);
        assert!(matches!(cli.command, Some(Command::Stats(_))));
        let cli = parse(&["scratchfs", "stats", "--json", "/mnt/x"]);
        assert!(matches!(cli.command, Some(Command::Stats(ref a)) if a.json));
        // And so is any other source.
        let s = parse(&["scratchfs", "tmp", "/mnt/x", "-o", "rw"]).mount.settings().unwrap();
        assert_eq!(s.source.as_deref(), Some("tmp"));
    }

    fn settings(args: &[&str]) -> Result<Settings, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("scratchfs").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        cli.mount.settings()
    }

    #[test]
    fn the_kernels_own_options_pass_on_a_remount_only() {
        // What mount(8) passes for `mount -o remount,ro DIR` without an fstab line.
        let s = settings(&["/m", "-o", "ro,nosuid,nodev,relatime,remount,user_id=0,group_id=0"]).unwrap();
        assert!(s.remount && s.read_only && !s.engine_settings_given);
        let e = settings(&["/m", "-o", "user_id=1000"]).unwrap_err();
        assert!(e.contains("'user_id' is the kernel's own"), "{e}");
    }

    #[test]
    fn fstab_style_invocation() {
        let s = settings(&["none", "/mnt/x", "-o", "rw,size=1G,nr_inodes=100k,mode=0755,uid=5,allow_other,noauto"])
            .unwrap();
        assert_eq!(s.source.as_deref(), Some("none"));
        assert_eq!(s.mountpoint, PathBuf::from("/mnt/x"));
        assert_eq!(s.size, Some(SizeSpec::Bytes(1 << 30)));
        assert_eq!(s.max_nodes, Some(102_400));
        assert_eq!((s.mode, s.uid, s.allow_other), (Some(0o755), Some(5), true));
        assert!(!s.default_permissions);
        let s = settings(&["none", "/mnt/x", "-o", "default_permissions,noauto"]).unwrap();
        assert!(s.default_permissions && !s.engine_settings_given, "a mount option, not an engine setting");
    }

    #[test]
    fn flags_win_over_options() {
        let s = settings(&["/m", "-o", "size=1G,storage=sequential", "--size", "64M"]).unwrap();
        assert_eq!(s.size, Some(SizeSpec::Bytes(64 << 20)));
        assert_eq!(s.storage, Some(StoragePolicy::Sequential));
        let s = settings(&["-o", "memory_guard=init,guard-action=warn,guard_interval=250ms", "/m"]).unwrap();
        assert_eq!(s.guard_mode, Some(GuardMode::Init));
        assert_eq!(s.guard_action, Some(GuardAction::Warn));
        assert_eq!(s.guard_interval, Some(Duration::from_millis(250)));
        let s = settings(&["/m", "-o", "busy_poll=off"]).unwrap();
        assert_eq!(s.busy_poll, Some(false));
        let s = settings(&["/m", "-o", "busy_poll=off", "--busy-poll", "auto"]).unwrap();
        assert_eq!(s.busy_poll, None);
        assert!(settings(&["/m"]).unwrap().cpu_latency);
        assert!(!settings(&["/m", "-o", "cpu_latency=off"]).unwrap().cpu_latency);
        assert!(settings(&["/m", "-o", "cpu_latency=off", "--cpu-latency", "auto"]).unwrap().cpu_latency);
        assert!(!settings(&["/m", "--cpu-latency", "off"]).unwrap().cpu_latency);
        assert!(settings(&["/m", "-o", "cpu_latency=fast"]).is_err());
        assert_eq!(settings(&["/m"]).unwrap().delete_wait, None);
        assert_eq!(settings(&["/m", "-o", "delete_wait=2s"]).unwrap().delete_wait, Some(Duration::from_secs(2)));
        assert_eq!(settings(&["/m", "--delete-wait", "0"]).unwrap().delete_wait, Some(Duration::ZERO));
    }

    #[test]
    fn acl_options() {
        assert_eq!(settings(&["/m"]).unwrap().acl, None);
        let s = settings(&["/m", "-o", "acl"]).unwrap();
        assert_eq!(s.acl, Some(true));
        // A remount may repeat it (checked against the mount), so it is
        // not counted among the settings a remount refuses outright.
        assert!(!s.engine_settings_given);
        assert_eq!(settings(&["/m", "-o", "acl,noacl"]).unwrap().acl, Some(false));
        assert_eq!(settings(&["/m", "--acl", "-o", "noacl"]).unwrap().acl, Some(true), "the flag wins");
    }

    #[test]
    fn atime_options() {
        assert_eq!(settings(&["/m"]).unwrap().noatime, None);
        let s = settings(&["/m", "-o", "noatime"]).unwrap();
        assert_eq!(s.noatime, Some(true));
        assert!(!s.engine_settings_given, "a remount may repeat it (checked against the mount)");
        for relatime in ["atime", "relatime", "strictatime"] {
            assert_eq!(settings(&["/m", "-o", relatime]).unwrap().noatime, Some(false), "{relatime}");
            assert_eq!(settings(&["/m", "-o", &format!("noatime,{relatime}")]).unwrap().noatime, Some(false));
        }
        assert_eq!(settings(&["/m", "-o", "relatime", "-o", "noatime"]).unwrap().noatime, Some(true));
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        assert!(settings(&["/m", "-o", "sise=1G"]).unwrap_err().contains("unknown mount option 'sise'"));
        assert!(settings(&["/m", "-o", "size"]).unwrap_err().contains("needs a value"));
        assert!(settings(&["/m", "-o", "storage=fast"]).unwrap_err().contains("expected one of"));
        assert!(settings(&["/m", "--size", "lots"]).unwrap_err().contains("invalid size 'lots'"));
        assert!(settings(&["/m", "-t", "0"]).unwrap_err().contains("thread"));
        assert!(settings(&[]).is_err());
    }

    #[test]
    fn stats_subcommand() {
        let cli = Cli::try_parse_from(["scratchfs", "stats", "/mnt/x", "--json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Stats(StatsArgs { json: true, .. }))));
    }
}
