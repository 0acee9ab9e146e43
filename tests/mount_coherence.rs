//! Write-only opens bypass the page cache (FOPEN_DIRECT_IO) while every
//! other open uses it. These tests prove the two stay coherent: a reader
//! that has the old bytes cached, through read(2) or a shared mapping, sees
//! what a write-only writer wrote as soon as the write returns.

mod common;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use common::mount::Mount;

#[test]
fn cached_reader_sees_a_write_only_writer() {
    let Some(m) = Mount::new(&["--size", "64M"]) else { return };
    let path = m.join("f");
    std::fs::write(&path, vec![b'a'; 1 << 20]).unwrap();
    let reader = OpenOptions::new().read(true).open(&path).unwrap();
    let mut old = vec![0u8; 1 << 20];
    reader.read_exact_at(&mut old, 0).unwrap();
    assert!(old.iter().all(|&b| b == b'a'), "the reader now has the file in the page cache");
    // Another process writes through a write-only descriptor.
    let out = std::process::Command::new("dd")
        .args(["if=/dev/zero", "bs=4096", "count=16", "seek=3", "conv=notrunc", "status=none"])
        .arg(format!("of={}", path.display()))
        .status()
        .unwrap();
    assert!(out.success());
    let mut now = vec![0u8; 1 << 20];
    reader.read_exact_at(&mut now, 0).unwrap();
    assert!(now[..3 * 4096].iter().all(|&b| b == b'a'));
    assert!(now[3 * 4096..19 * 4096].iter().all(|&b| b == 0), "the cached reader sees the new bytes");
    assert!(now[19 * 4096..].iter().all(|&b| b == b'a'));
    // An appending write-only writer, with the file open for reading too.
    let mut w = OpenOptions::new().append(true).open(&path).unwrap();
    w.write_all(b"tail").unwrap();
    let mut r = OpenOptions::new().read(true).open(&path).unwrap();
    r.seek(SeekFrom::End(-4)).unwrap();
    let mut tail = String::new();
    r.read_to_string(&mut tail).unwrap();
    assert_eq!(tail, "tail");
    drop((w, r, reader));
    m.unmount();
}

#[test]
fn shared_mapping_sees_a_write_only_writer() {
    let Some(m) = Mount::new(&["--size", "64M"]) else { return };
    let path = m.join("mapped");
    std::fs::write(&path, vec![b'm'; 64 * 1024]).unwrap();
    let f = OpenOptions::new().read(true).open(&path).unwrap();
    let len = 64 * 1024;
    // SAFETY: a read-only shared mapping of an open file, unmapped below.
    let map = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, f.as_raw_fd(), 0) };
    assert_ne!(map, libc::MAP_FAILED);
    // SAFETY: the mapping is `len` bytes long and stays mapped while used.
    let view = unsafe { std::slice::from_raw_parts(map.cast::<u8>(), len) };
    assert!(view.iter().all(|&b| b == b'm'), "the mapping is populated");
    let mut w = OpenOptions::new().write(true).open(&path).unwrap();
    w.seek(SeekFrom::Start(8192)).unwrap();
    w.write_all(&[b'W'; 4096]).unwrap();
    drop(w);
    assert!(view[8192..12288].iter().all(|&b| b == b'W'), "the mapping sees the direct write");
    assert!(view[..8192].iter().all(|&b| b == b'm') && view[12288..].iter().all(|&b| b == b'm'));
    // SAFETY: unmapping what was mapped above.
    unsafe { libc::munmap(map, len) };
    m.unmount();
}
