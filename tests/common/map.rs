//! A shared, read-write memory mapping of a file, unmapped on drop.

use std::fs::File;
use std::os::fd::AsRawFd;

pub struct Map {
    ptr: *mut u8,
    len: usize,
}

impl Map {
    pub fn shared(f: &File, len: usize) -> Map {
        // SAFETY: mapping an open file.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED, "mmap: {}", std::io::Error::last_os_error());
        Map { ptr: p.cast(), len }
    }

    /// Where the mapping starts (for a child process that touches it).
    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    pub fn bytes(&self, range: std::ops::Range<usize>) -> Vec<u8> {
        assert!(range.end <= self.len);
        // SAFETY: within the mapping; volatile so each byte is really loaded.
        range.map(|i| unsafe { std::ptr::read_volatile(self.ptr.add(i)) }).collect()
    }

    pub fn write(&self, at: usize, data: &[u8]) {
        assert!(at + data.len() <= self.len);
        // SAFETY: within the mapping.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(at), data.len()) };
    }

    pub fn msync(&self) {
        // SAFETY: our mapping.
        assert_eq!(unsafe { libc::msync(self.ptr.cast(), self.len, libc::MS_SYNC) }, 0);
    }
}

impl Drop for Map {
    fn drop(&mut self) {
        // SAFETY: our mapping.
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}
