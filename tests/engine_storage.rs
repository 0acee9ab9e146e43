//! Storage shapes through the engine: auto-promotion and its limit, a
//! promotion that does not fit, sparse files, fallocate modes, lseek,
//! copy_file_range, truncation.

mod common;

use std::sync::Arc;

use common::*;

use scratchfs::{Fallocate, FsError, Ino, NoSpaceCause, Seek, Shape, StoragePolicy, WriteOptions};

const W: WriteOptions = WriteOptions { kill_suidgid: false, writer_gid: 0, from_page_cache: false, appending: false };

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

#[test]
fn appends_stay_sequential_and_a_middle_write_promotes() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", &pattern(300_000, 1));
    e.write(fh, 300_000, &pattern(5000, 2), W).unwrap();
    assert_eq!(e.getattr(ino).unwrap().shape, Some(Shape::Sequential));
    assert_eq!(e.stats().promotions, 0);
    e.write(fh, 1000, b"middle", W).unwrap();
    assert_eq!(e.getattr(ino).unwrap().shape, Some(Shape::RandomAccess));
    let s = e.stats();
    assert_eq!((s.promotions, s.files_sequential, s.files_random_access), (1, 0, 1));
    let mut expect = pattern(300_000, 1);
    expect.extend(pattern(5000, 2));
    expect[1000..1006].copy_from_slice(b"middle");
    assert_eq!(content(&e, fh), expect);
    e.release(fh).unwrap();
    invariants(&e);
}

#[test]
fn files_above_the_promotion_limit_take_random_writes_sequentially() {
    let mut cfg = config(64 << 20, StoragePolicy::Auto);
    cfg.promotion_limit = 100_000;
    let e = scratchfs::Engine::with_probe(cfg, Box::new(FakeProbe::new(u64::MAX))).unwrap();
    let mut model = pattern(3 << 20, 3);
    let (ino, fh) = file_with(&e, Ino::ROOT, "big", &model);
    for (i, off) in [5u64, 1 << 20, (1 << 20) - 3, 2_999_999, 3 << 20].into_iter().enumerate() {
        let data = pattern(10_000, i as u8);
        e.write(fh, off, &data, W).unwrap();
        let end = off as usize + data.len();
        if model.len() < end {
            model.resize(end, 0);
        }
        model[off as usize..end].copy_from_slice(&data);
    }
    // A hole, then data after it.
    e.write(fh, 5 << 20, b"far", W).unwrap();
    model.resize(5 << 20, 0);
    model.extend_from_slice(b"far");
    e.fallocate(fh, 100, 50_000, Fallocate::PunchHole).unwrap();
    model[100..50_100].fill(0);
    e.setattr(ino, &scratchfs::SetAttr { size: Some(4 << 20), ..Default::default() }, &ROOT).unwrap();
    model.truncate(4 << 20);
    assert_eq!(content(&e, fh), model);
    assert_eq!(e.getattr(ino).unwrap().shape, Some(Shape::Sequential));
    assert_eq!(e.stats().promotions, 0);
    e.release(fh).unwrap();
    invariants(&e);
}

#[test]
fn a_promotion_that_does_not_fit_is_skipped_and_the_write_still_happens() {
    // Room for the file once, not twice: promotion copies it.
    let e = engine(1 << 20, StoragePolicy::Auto);
    let data = pattern(600_000, 9);
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", &data);
    e.release(fh).unwrap();
    let fh = e.open(ino, rw(), &ROOT).unwrap();
    let used = e.stats().used_bytes;
    e.write(fh, 10, b"overwrite", W).unwrap();
    let s = e.stats();
    assert_eq!(e.getattr(ino).unwrap().shape, Some(Shape::Sequential));
    assert_eq!((s.promotions, s.promotions_refused), (0, 1));
    assert_eq!(s.used_bytes, used, "an in-place overwrite costs nothing");
    let mut expect = data;
    expect[10..19].copy_from_slice(b"overwrite");
    assert_eq!(content(&e, fh), expect);
    e.release(fh).unwrap();
    invariants(&e);
}

#[test]
fn storage_policies_fix_the_shape() {
    let e = engine(64 << 20, StoragePolicy::Sequential);
    let (ino, fh) = file_with(&e, Ino::ROOT, "s", &pattern(10_000, 1));
    e.write(fh, 5, b"x", W).unwrap();
    assert_eq!(e.getattr(ino).unwrap().shape, Some(Shape::Sequential));
    let e = engine(64 << 20, StoragePolicy::RandomAccess);
    let (ino, _) = file_with(&e, Ino::ROOT, "r", b"abc");
    assert_eq!(e.getattr(ino).unwrap().shape, Some(Shape::RandomAccess));
    assert_eq!(e.stats().files_random_access, 1);
}

#[test]
fn sparse_files_charge_nothing_for_holes() {
    for policy in [StoragePolicy::Sequential, StoragePolicy::RandomAccess, StoragePolicy::Auto] {
        let e = engine(64 << 20, policy);
        let (ino, fh) = file_with(&e, Ino::ROOT, "sparse", b"");
        let used = e.stats().used_bytes;
        let huge = scratchfs::SetAttr { size: Some(10 << 30), ..Default::default() };
        e.setattr(ino, &huge, &ROOT).unwrap();
        assert_eq!(e.stats().used_bytes, used, "{policy:?}: truncate up is free");
        assert_eq!(e.getattr(ino).unwrap().blocks, 0);
        assert_eq!(&e.read(fh, 3 << 30, 8192).unwrap()[..], &[0u8; 8192][..]);
        e.write(fh, 7 << 30, &[1u8; 8192], W).unwrap();
        assert_eq!(e.lseek(fh, 0, Seek::Data).unwrap(), 7 << 30);
        assert_eq!(e.lseek(fh, 7 << 30, Seek::Hole).unwrap(), (7 << 30) + 8192);
        assert_eq!(e.lseek(fh, 10 << 30, Seek::Data), Err(FsError::NoSuchOffset));
        e.fallocate(fh, 0, 10 << 30, Fallocate::PunchHole).unwrap();
        assert_eq!(e.stats().used_bytes, used, "{policy:?}: punching frees everything");
        assert_eq!(e.getattr(ino).unwrap().size, 10 << 30);
        e.release(fh).unwrap();
        invariants(&e);
    }
}

#[test]
fn fallocate_modes() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", b"0123456789");
    let used = e.stats().used_bytes;
    e.fallocate(fh, 0, 1 << 20, Fallocate::Allocate { keep_size: true }).unwrap();
    assert_eq!(e.getattr(ino).unwrap().size, 10);
    // The allocated range is backed and charged (the append buffer's spare
    // capacity, up to 4 KiB, was given back when it was frozen).
    assert_eq!(e.getattr(ino).unwrap().blocks, (1 << 20) / 512);
    assert!(e.stats().used_bytes >= used + (1 << 20) - 4096, "allocation is charged");
    e.fallocate(fh, 0, 2 << 20, Fallocate::Allocate { keep_size: false }).unwrap();
    assert_eq!(e.getattr(ino).unwrap().size, 2 << 20);
    assert_eq!(&e.read(fh, 0, 10).unwrap()[..], b"0123456789", "existing data kept");
    e.fallocate(fh, 2, 3, Fallocate::ZeroRange { keep_size: true }).unwrap();
    assert_eq!(&e.read(fh, 0, 10).unwrap()[..], b"01\0\0\x0056789");
    assert_eq!(e.fallocate(fh, 0, 0, Fallocate::PunchHole), Err(FsError::InvalidArgument));
    assert_eq!(e.fallocate(fh, i64::MAX as u64, 2, Fallocate::PunchHole), Err(FsError::FileTooLarge));
    e.release(fh).unwrap();
    invariants(&e);
}

#[test]
fn fallocate_work_follows_the_data_not_the_range() {
    // fallocate(0, 2^62) on a 1 MiB quota used to work out its cost a 2 MiB
    // cell or 64 KiB block at a time (hours, with the file locked), and
    // punching or zeroing a huge sparse random-access file visited every
    // block position in the range. Both now answer at once.
    let huge = 1u64 << 62;
    for policy in [StoragePolicy::Sequential, StoragePolicy::RandomAccess, StoragePolicy::Auto] {
        let e = Arc::new(engine(1 << 20, policy));
        let (ino, fh) = file_with(&e, Ino::ROOT, "f", b"x");
        let used = e.stats().used_bytes;
        for mode in [
            Fallocate::Allocate { keep_size: false },
            Fallocate::Allocate { keep_size: true },
            Fallocate::ZeroRange { keep_size: true },
        ] {
            let r = returns(&e, move |e| e.fallocate(fh, 0, huge, mode));
            assert!(matches!(r, Err(FsError::NoSpace(NoSpaceCause::Quota { .. }))), "{policy:?} {mode:?}: {r:?}");
        }
        assert_eq!(e.stats().used_bytes, used, "{policy:?}: refusals change nothing");
        assert_eq!(e.getattr(ino).unwrap().size, 1);
        // A sparse file of 2^62 bytes with data at both ends.
        e.setattr(ino, &scratchfs::SetAttr { size: Some(huge), ..Default::default() }, &ROOT).unwrap();
        e.write(fh, huge - 5, b"tail!", W).unwrap();
        returns(&e, move |e| e.fallocate(fh, 0, huge - 1, Fallocate::ZeroRange { keep_size: true })).unwrap_err();
        returns(&e, move |e| e.fallocate(fh, 1, huge - 3, Fallocate::PunchHole)).unwrap();
        assert_eq!(&e.read(fh, 0, 2).unwrap()[..], b"x\0");
        assert_eq!(&e.read(fh, huge - 5, 5).unwrap()[..], b"\0\0\0l!");
        assert_eq!(e.getattr(ino).unwrap().size, huge);
        e.release(fh).unwrap();
        invariants(&e);
    }
}

#[test]
fn truncate_releases_quota_at_once() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    let base = e.stats().used_bytes;
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", &pattern(5 << 20, 4));
    assert!(e.stats().used_bytes >= base + (5 << 20));
    e.setattr(ino, &scratchfs::SetAttr { size: Some(1000), ..Default::default() }, &ROOT).unwrap();
    assert!(e.stats().used_bytes < base + 2000 + 200);
    assert_eq!(content(&e, fh), pattern(1000, 4));
    assert_eq!(
        e.setattr(ino, &scratchfs::SetAttr { size: Some(1 << 63), ..Default::default() }, &ROOT),
        Err(FsError::FileTooLarge)
    );
    e.release(fh).unwrap();
}

#[test]
fn copy_file_range_copies_and_refuses_overlap() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    let data = pattern(3_000_000, 5);
    let (_, src) = file_with(&e, Ino::ROOT, "src", &data);
    let (_, dst) = file_with(&e, Ino::ROOT, "dst", b"");
    assert_eq!(e.copy_file_range(src, 100, dst, 0, 10_000_000).unwrap(), 3_000_000 - 100);
    assert_eq!(content(&e, dst), &data[100..]);
    assert_eq!(e.copy_file_range(src, 0, src, 10, 100), Err(FsError::InvalidArgument));
    assert_eq!(e.copy_file_range(src, 0, src, 3_000_000, 100).unwrap(), 100);
    invariants(&e);
}

#[test]
fn copy_file_range_stops_at_the_sources_end_of_file() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    let (_, fh) = file_with(&e, Ino::ROOT, "f", &[7u8; 100]);
    // Within one file: the first piece written past the end moves the end
    // of file; the copy still ends where the source's data did.
    assert_eq!(e.copy_file_range(fh, 0, fh, 8 << 20, 4 << 20).unwrap(), 100);
    assert_eq!(e.read(fh, 8 << 20, 200).unwrap().len(), 100);
    // A length that would pass the largest file size is cut short there,
    // as Linux does, not refused.
    let (_, src) = file_with(&e, Ino::ROOT, "src", &[8u8; 100]);
    let (_, dst) = file_with(&e, Ino::ROOT, "dst", b"");
    assert_eq!(e.copy_file_range(src, 0, dst, 1 << 20, u64::MAX).unwrap(), 100);
    assert_eq!(e.copy_file_range(src, 0, dst, i64::MAX as u64, 1), Err(FsError::FileTooLarge));
    invariants(&e);
}

#[test]
fn o_trunc_frees_memory_held_past_the_end_of_an_empty_file() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    let (ino, fh) = file_with(&e, Ino::ROOT, "f", b"");
    let empty = e.stats().used_bytes;
    e.fallocate(fh, 0, 8 << 20, Fallocate::Allocate { keep_size: true }).unwrap();
    assert_eq!(e.getattr(ino).unwrap().size, 0);
    assert!(e.stats().used_bytes >= empty + (8 << 20));
    let mtime = e.getattr(ino).unwrap().mtime;
    let flags = scratchfs::OpenFlags { read: false, write: true, truncate: true, exclusive: false, append: false };
    let fh2 = e.open(ino, flags, &ROOT).unwrap();
    assert_eq!(e.stats().used_bytes, empty);
    assert_eq!(e.getattr(ino).unwrap().blocks, 0);
    assert_eq!(e.getattr(ino).unwrap().mtime, mtime, "the size did not change");
    e.release(fh2).unwrap();
    e.release(fh).unwrap();
    invariants(&e);
}

#[test]
fn writes_at_the_largest_offsets() {
    let e = engine(64 << 20, StoragePolicy::Auto);
    let (ino, fh) = file_with(&e, Ino::ROOT, "edge", b"");
    let max = i64::MAX as u64;
    e.write(fh, max - 1, b"z", W).unwrap();
    assert_eq!(e.getattr(ino).unwrap().size, max);
    assert_eq!(e.write(fh, max - 1, b"zz", W), Err(FsError::FileTooLarge));
    assert_eq!(e.write(fh, u64::MAX - 1, b"zz", W), Err(FsError::FileTooLarge));
    assert_eq!(&e.read(fh, max - 1, 10).unwrap()[..], b"z");
    assert_eq!(e.write(fh, 0, b"", W).unwrap(), 0);
    e.release(fh).unwrap();
    invariants(&e);
}
