//! Busy polling of the FUSE device: it starts under back-to-back requests,
//! answers them correctly, and stops (no busy CPU) once the filesystem is
//! idle; `--busy-poll off` never polls.

mod common;

use std::sync::Mutex;
use std::time::Duration;

use common::mount::Mount;
use scratchfs::report::BusyPolling;

/// CPU time (user + system) the process has used, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("daemon stat");
    // Fields after the command name (which is in parentheses): state is
    // field 3; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// Each thread of process `pid`: its name and scheduling policy.
fn thread_policies(pid: u32) -> Vec<(String, i32)> {
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("daemon threads").flatten() {
        let Ok(tid) = t.file_name().to_string_lossy().parse::<i32>() else { continue };
        // SAFETY: sched_getscheduler takes a thread id; a gone thread fails.
        let policy = unsafe { libc::sched_getscheduler(tid) };
        let name = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_owned();
        if policy >= 0 {
            out.push((name, policy));
        }
    }
    out
}

fn ticks_per_second() -> u64 {
    // SAFETY: sysconf has no preconditions.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).unwrap_or(100)
}

/// The machine's CPU latency limit in µs (the kernel's PM QoS aggregate),
/// or `None` where `/dev/cpu_dma_latency` is not ours to open.
fn cpu_latency_limit() -> Option<i32> {
    let f = std::fs::File::open("/dev/cpu_dma_latency").ok()?;
    let mut v = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut v, 0).expect("the limit reads as 4 bytes");
    Some(i32::from_ne_bytes(v))
}

/// The tests here run one at a time: the latency limit is the machine's,
/// so another test's burst would show in this one's readings; and polling
/// does not start while more tasks are runnable than CPUs, which two
/// churning tests and their daemons would make on a 2-CPU machine.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Polls with `extra` options while files churn, then checks the idle
/// daemon burns no CPU and holds no CPU latency request; returns the stats
/// (`None` where FUSE is missing outside CI, as `Mount::new`).
fn churn_then_idle(extra: &[&str]) -> Option<BusyPolling> {
    let _serial = one_at_a_time();
    let before = cpu_latency_limit();
    let mut args = vec!["--size", "64M", "--busy-poll", "on"];
    args.extend_from_slice(extra);
    let m = Mount::new(&args)?;
    // Polling is withheld by design while more tasks are runnable than
    // there are CPUs (other programs on a shared CI machine): churn again,
    // a few times, until a round ran with the CPUs to spare.
    let mut polled = None;
    for round in 0..5 {
        metadata_churn(&m, &format!("churn{round}"), 3000);
        let p = m.stats().busy_poll.expect("busy polling is on");
        if p.bursts >= 1 || p.withheld == polled.map_or(0, |q: BusyPolling| q.withheld) {
            polled = Some(p);
            break;
        }
        eprintln!("round {round}: polling withheld (the machine was crowded): {p:?}");
        polled = Some(p);
        std::thread::sleep(Duration::from_secs(1));
    }
    let polled = polled.expect("at least one round");
    assert!(polled.bursts >= 1, "3,000 files of back-to-back requests never started polling: {polled:?}");
    // Idle now: the governor ends polling within a tick. A polling worker
    // (or the keeper) would burn a whole CPU second per second; allow a
    // small fraction.
    std::thread::sleep(Duration::from_millis(200));
    let before_cpu = cpu_ticks(m.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(m.pid()) - before_cpu;
    assert!(used * 4 < 2 * ticks_per_second(), "idle daemon used {used} ticks of CPU in 2 s: still polling?");
    // And the machine's idle CPUs are left to halt again.
    assert_eq!(cpu_latency_limit(), before, "an idle daemon still holds a CPU latency request");
    // Between bursts no thread that serves requests (nor one they started)
    // is left in the idle class, where CPU-bound programs sharing the
    // daemon's cgroup or session would starve it; only the parked keeper.
    let idle: Vec<String> = thread_policies(m.pid())
        .into_iter()
        .filter(|(name, policy)| policy & !libc::SCHED_RESET_ON_FORK == libc::SCHED_IDLE && name != "keep-awake")
        .map(|(name, _)| name)
        .collect();
    assert!(idle.is_empty(), "threads left in the idle class after polling: {idle:?}");
    let later = m.stats().busy_poll.expect("busy polling is on");
    // Reading the stats is itself a request or two, not a burst.
    assert!(later.bursts <= polled.bursts + 1, "{polled:?} then {later:?}");
    assert!(m.unmount().success());
    Some(polled)
}

/// Creates, checks and removes `n` files with distinct contents: a stream
/// of small requests, every answer checked.
fn metadata_churn(m: &Mount, name: &str, n: usize) {
    let dir = m.join(name);
    std::fs::create_dir(&dir).unwrap();
    for i in 0..n {
        std::fs::write(dir.join(format!("f{i}")), format!("file {i} {}", "x".repeat(i % 97))).unwrap();
    }
    for i in 0..n {
        let p = dir.join(format!("f{i}"));
        assert_eq!(std::fs::metadata(&p).unwrap().len() as usize, format!("file {i} ").len() + i % 97);
        assert_eq!(std::fs::read(&p).unwrap(), format!("file {i} {}", "x".repeat(i % 97)).into_bytes());
    }
    for i in (0..n).step_by(2) {
        std::fs::remove_file(dir.join(format!("f{i}"))).unwrap();
    }
    let mut left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    let mut want: Vec<String> = (1..n).step_by(2).map(|i| format!("f{i}")).collect();
    want.sort();
    assert_eq!(left, want);
}

#[test]
fn polls_under_load_answers_correctly_and_stops_when_idle() {
    let Some(polled) = churn_then_idle(&[]) else { return };
    // As root, idle CPUs were kept polling by a latency request, not by a
    // keeper thread.
    assert_eq!(polled.cpu_latency, cpu_latency_limit().is_some(), "{polled:?}");
}

#[test]
fn without_a_latency_request_the_keeper_stands_in_and_stops_too() {
    let Some(polled) = churn_then_idle(&["--cpu-latency", "off"]) else { return };
    assert!(!polled.cpu_latency, "{polled:?}");
}

#[test]
fn off_means_never() {
    let _serial = one_at_a_time();
    let Some(m) = Mount::new(&["--size", "64M", "--busy-poll", "off"]) else { return };
    metadata_churn(&m, "churn", 500);
    assert_eq!(m.stats().busy_poll, None);
    let (status, log) = m.unmount_with_log();
    assert!(status.success());
    assert!(!log.contains("busy polling"), "log mentions busy polling:\n{log}");
}
