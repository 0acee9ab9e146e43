//! A 2 MiB buffer, aligned to 2 MiB and faulted in with one call, for the
//! append buffer of files written in large pieces.
//!
//! Writing fresh memory costs a page fault per 4 KiB page, which dominated
//! the daemon's time when streaming large files. `MADV_POPULATE_WRITE`
//! (Linux 5.14) faults the whole buffer in one system call instead of 512
//! traps. We do not ask for a transparent huge page: on this project's
//! reference machine (a VM whose freed memory is handed back to the host)
//! a fresh huge page cost ~2 ms to fault, so cold streaming writes ran at
//! 0.3 GB/s against 1.4-1.6 GB/s populated in 4 KiB pages
//! (`docs/performance.md`). Where populating is unsupported the pages fault
//! on first touch as usual. Writers get these buffers from `spares.rs`,
//! which faults them in ahead of need on another thread.

use std::ptr::NonNull;

/// Size (and alignment) of a huge buffer.
pub const HUGE: usize = 2 << 20;

/// An anonymous 2 MiB mapping holding `len` initialised bytes.
pub struct HugeBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: HugeBuf owns its mapping exclusively; &HugeBuf only reads it.
unsafe impl Send for HugeBuf {}
// SAFETY: as above; no interior mutability.
unsafe impl Sync for HugeBuf {}

impl HugeBuf {
    /// Maps an aligned 2 MiB region, or `None` if the system refuses.
    pub fn new() -> Option<HugeBuf> {
        let span = 2 * HUGE;
        // SAFETY: an anonymous private mapping with no address hint.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                span,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let start = raw as usize;
        let aligned = start.next_multiple_of(HUGE);
        let head = aligned - start;
        let tail = span - head - HUGE;
        // SAFETY: both ranges lie inside the mapping just made, outside the
        // aligned 2 MiB kept; madvise only faults in pages of our mapping.
        unsafe {
            if head > 0 {
                libc::munmap(raw, head);
            }
            if tail > 0 {
                libc::munmap((aligned + HUGE) as *mut libc::c_void, tail);
            }
            libc::madvise(aligned as *mut libc::c_void, HUGE, libc::MADV_POPULATE_WRITE);
        }
        NonNull::new(aligned as *mut u8).map(|ptr| HugeBuf { ptr, len: 0 })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Appends `data`; the caller keeps `len + data.len() <= HUGE`.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        assert!(self.len + data.len() <= HUGE, "huge buffer overflow");
        // SAFETY: the destination range lies inside the mapping (checked
        // above) and does not overlap `data`, which the caller owns.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(self.len), data.len()) };
        self.len += data.len();
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the first `len` bytes are initialised and owned.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl AsRef<[u8]> for HugeBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised and owned.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HugeBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping the region this buffer mapped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), HUGE) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_two_mebibytes_aligned() {
        let mut b = HugeBuf::new().expect("mmap");
        assert_eq!(b.ptr.as_ptr() as usize % HUGE, 0);
        b.extend_from_slice(&[1u8; 1000]);
        b.extend_from_slice(&vec![2u8; HUGE - 1000]);
        assert_eq!(b.len(), HUGE);
        assert_eq!(b.as_ref()[999], 1);
        assert_eq!(b.as_ref()[HUGE - 1], 2);
        b.as_mut_slice()[0] = 9;
        let bytes = bytes::Bytes::from_owner(b);
        assert_eq!((bytes.len(), bytes[0]), (HUGE, 9));
    }
}
