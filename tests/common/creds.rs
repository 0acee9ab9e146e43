//! Threads that act as someone else for the filesystem, for permission
//! tests on a mount only root may enter: the raw system calls below change
//! the calling thread only (glibc's wrappers for setgroups would change
//! every thread of the test process), and keep the real, effective and
//! saved ids root's, so the kernel still lets the thread in.

/// Linux capability numbers the tests drop.
pub const CAP_DAC_OVERRIDE: u32 = 1;
pub const CAP_DAC_READ_SEARCH: u32 = 2;
pub const CAP_FOWNER: u32 = 3;
pub const CAP_FSETID: u32 = 4;
pub const CAP_LINUX_IMMUTABLE: u32 = 9;
pub const CAP_SYS_ADMIN: u32 = 21;

/// Runs `f` on a thread of its own whose filesystem ids are `uid` and
/// `gid` and whose supplementary groups are `groups`. Switching the
/// filesystem uid away from 0 also drops the capabilities that override
/// file modes, so the kernel (or the daemon) checks the thread as that user.
pub fn as_fs_user<T: Send>(uid: u32, gid: u32, groups: &[u32], f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: per-thread credential system calls with valid arguments.
            unsafe {
                assert_eq!(libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()), 0);
                libc::setfsgid(gid);
                libc::setfsuid(uid);
                assert_eq!(libc::setfsuid(u32::MAX), uid as i32, "setfsuid took effect");
            }
            f()
        })
        .join()
        .unwrap()
    })
}

/// Runs `f` on a thread of its own that keeps root's ids but not the
/// capabilities numbered in `caps`.
pub fn without_caps<T: Send>(caps: &[u32], f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            // A version 3 header (pid 0: this thread) and two sets of
            // (effective, permitted, inheritable) words.
            let mut header: [u32; 2] = [0x2008_0522, 0];
            let mut data = [0u32; 6];
            // SAFETY: capget/capset on this thread with buffers of the sizes version 3 uses.
            unsafe {
                assert_eq!(libc::syscall(libc::SYS_capget, header.as_mut_ptr(), data.as_mut_ptr()), 0);
                for &cap in caps {
                    data[(cap / 32) as usize * 3] &= !(1 << (cap % 32));
                }
                assert_eq!(libc::syscall(libc::SYS_capset, header.as_mut_ptr(), data.as_ptr()), 0);
            }
            f()
        })
        .join()
        .unwrap()
    })
}
