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
//!
//! A buffer shrinks where it lies: [`HugeBuf::truncate`] hands the pages
//! past its new length back to the system (`MADV_DONTNEED`) and the buffer
//! cannot grow again, so it holds its length rounded up to whole pages. A
//! file whose last grid cell a streaming writer left partly filled, or that
//! is truncated or punched inside such a cell, keeps its bytes where they
//! are: no copy, and no moment when both copies exist.

use std::ptr::NonNull;

/// Size (and alignment) of a huge buffer.
pub const HUGE: usize = 2 << 20;

/// Granularity of the pages a shrink hands back: the storage's page.
const PAGE: usize = super::PAGE as usize;

/// An anonymous 2 MiB mapping holding `len` initialised bytes, of which the
/// first `limit` may be used; pages past `limit` rounded up to a page have
/// been handed back.
pub struct HugeBuf {
    ptr: NonNull<u8>,
    /// Both at most `HUGE`; 32 bits keep the buffer, and so every file's
    /// node, two words smaller.
    len: u32,
    limit: u32,
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
            // No transparent huge page: a shrink must really hand its pages
            // back, and khugepaged must not fault them in again.
            libc::madvise(aligned as *mut libc::c_void, HUGE, libc::MADV_NOHUGEPAGE);
            libc::madvise(aligned as *mut libc::c_void, HUGE, libc::MADV_POPULATE_WRITE);
        }
        NonNull::new(aligned as *mut u8).map(|ptr| HugeBuf { ptr, len: 0, limit: HUGE as u32 })
    }

    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Bytes it holds in memory: whole pages up to its limit.
    pub fn held(&self) -> usize {
        (self.limit as usize).next_multiple_of(PAGE)
    }

    /// Appends `data`; the caller keeps `len + data.len()` within the
    /// buffer (2 MiB, or the length it was last truncated to).
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        let len = self.len();
        assert!(len + data.len() <= self.limit as usize, "huge buffer overflow");
        // SAFETY: the destination range lies inside the mapping (checked
        // above) and does not overlap `data`, which the caller owns.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.as_ptr().add(len), data.len()) };
        self.len = (len + data.len()) as u32;
    }

    /// Keeps the first `len` bytes (at most its length) and hands the
    /// pages past them back to the system; the buffer cannot grow again.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len.min(HUGE) as u32);
        self.limit = self.len;
        let keep = self.held();
        if keep < HUGE {
            // SAFETY: the range lies inside our mapping and holds no byte
            // we keep; its pages read back as zeros if ever touched.
            unsafe { libc::madvise(self.ptr.as_ptr().add(keep).cast(), HUGE - keep, libc::MADV_DONTNEED) };
        }
    }

    /// Drops the first `n` bytes (at most its length): the rest moves to
    /// the front, and the pages it no longer needs go back to the system.
    pub fn remove_front(&mut self, n: usize) {
        let len = self.len();
        let n = n.min(len);
        // SAFETY: both ranges lie in the first `len` initialised bytes;
        // `copy` allows them to overlap.
        unsafe { std::ptr::copy(self.ptr.as_ptr().add(n), self.ptr.as_ptr(), len - n) };
        self.truncate(len - n);
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the first `len` bytes are initialised and owned.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len()) }
    }
}

impl AsRef<[u8]> for HugeBuf {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the first `len` bytes are initialised and owned.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len()) }
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

    /// Pages of the buffer's mapping that are in memory (`mincore`).
    fn resident_pages(b: &HugeBuf) -> usize {
        let mut vec = vec![0u8; HUGE / PAGE];
        // SAFETY: the mapping spans HUGE bytes from `ptr`; `vec` has one
        // byte per page of it.
        let r = unsafe { libc::mincore(b.ptr.as_ptr().cast(), HUGE, vec.as_mut_ptr()) };
        assert_eq!(r, 0, "mincore");
        vec.iter().filter(|&&v| v & 1 == 1).count()
    }

    #[test]
    fn shrinks_in_place_and_hands_back_the_pages_past_its_length() {
        let mut b = HugeBuf::new().expect("mmap");
        let data: Vec<u8> = (0..HUGE).map(|i| (i % 253) as u8).collect();
        b.extend_from_slice(&data);
        let addr = b.as_ref().as_ptr();
        b.truncate(300_000);
        assert_eq!((b.len(), b.held(), b.as_ref().as_ptr()), (300_000, 303_104, addr));
        assert_eq!(b.as_ref(), &data[..300_000]);
        assert!(resident_pages(&b) <= 303_104 / PAGE, "pages past the length handed back");
        b.remove_front(4097);
        assert_eq!((b.len(), b.held()), (295_903, 299_008));
        assert_eq!(b.as_ref(), &data[4097..300_000]);
        assert!(resident_pages(&b) <= 299_008 / PAGE);
        // It cannot grow past what it kept.
        let grow = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| b.extend_from_slice(&[1])));
        assert!(grow.is_err(), "a shrunk buffer refuses to grow");
    }
}
