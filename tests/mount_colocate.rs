//! Keeping workers near their callers (`src/fuse/colocate.rs`) must never
//! make a worker wait on a caller: a process in `execve(2)` closes its
//! close-on-exec files while it holds the lock its `/proc/<pid>/stat`
//! needs, and the first close of a file of ours is a FLUSH request. A
//! worker that looked up where that caller runs before answering it waited
//! for ever (the whole mount hung). That needs a kernel whose
//! `do_task_stat` takes `exec_update_lock` and whose `execve` closes files
//! while holding it, as this machine's 6.18 does (the version that read
//! from a worker fails here after 20 s); elsewhere this passes either way,
//! and the unit test `a_blocked_watcher_never_holds_a_worker_up` checks the
//! same rule without the kernel.

mod common;

use std::ffi::CString;
use std::time::Duration;

use common::mount::{Mount, wait_until};

/// Runs `/bin/true` from a child that creates `path` with `O_CLOEXEC`, a
/// little after creating it (past a worker's interval between look-ups),
/// so that `execve` closes it; returns whether the child finished within
/// 20 s. Forked by hand: `Command::spawn` waits for the exec, which is
/// what may hang.
fn exec_closing(path: &std::path::Path) -> bool {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let bin = CString::new("/bin/true").unwrap();
    let argv = [bin.as_ptr(), std::ptr::null()];
    let pause = libc::timespec { tv_sec: 0, tv_nsec: 50_000_000 };
    // SAFETY: the child calls only async-signal-safe functions (open,
    // nanosleep, execv, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: as above.
        unsafe {
            if libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC, 0o644) < 0 {
                libc::_exit(2);
            }
            libc::nanosleep(&pause, std::ptr::null_mut());
            libc::execv(bin.as_ptr(), argv.as_ptr());
            libc::_exit(3);
        }
    }
    let mut status = 0;
    // SAFETY: waitpid on our own child, into a local.
    let done = wait_until(Duration::from_secs(20), || unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) } == pid);
    if done {
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child: wait status {status:#x}");
        return true;
    }
    // Leave the child to finish once its request is aborted (the mount's
    // guard kills the daemon), and reap it then, on another thread.
    std::thread::spawn(move || {
        // SAFETY: as above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    });
    false
}

#[test]
fn a_file_closed_by_execve_is_answered() {
    // One worker, sleeping between requests (so it is the one that would
    // look), and the default (busy polling, which does not start for
    // requests this sparse).
    for args in [&["--busy-poll", "off", "--threads", "1"][..], &[]] {
        let Some(m) = Mount::new(&[&["--size", "16M"], args].concat()) else { return };
        let file = m.join("open-across-exec");
        // Nothing of this mount has been closed yet: this is its first
        // FLUSH (answered ENOSYS, the kernel sends no more).
        let answered = exec_closing(&file);
        assert!(answered, "execve closing a file of ours did not finish in 20 s with {args:?}:\n{}", m.log_text());
        assert_eq!(std::fs::read(&file).unwrap(), b"");
        assert!(m.unmount().success());
    }
}
