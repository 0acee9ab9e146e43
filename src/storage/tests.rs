//! Storage shapes against a plain `Vec<u8>` model.

use super::blocks::block_charge;
use super::chunks::extent_charge;
use super::*;

/// Small deterministic generator (xorshift) so failures reproduce by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn check(f: &FileData, model: &[u8]) {
    f.check_invariants().unwrap();
    assert_eq!(f.len(), model.len() as u64);
    let all = f.read(0, model.len() as u64 + 10);
    assert_eq!(&all[..], model, "full read");
}

/// Zeroes `[off, off + len)` of `model` where it has bytes.
fn zero_in(model: &mut [u8], off: u64, len: u64) {
    let e = ((off + len) as usize).min(model.len());
    if (off as usize) < e {
        model[off as usize..e].fill(0);
    }
}

/// `zero_range` on the file within its cost, and the same on the model.
fn zero_range_on_both(f: &mut FileData, model: &mut Vec<u8>, off: u64, len: u64, keep: bool) {
    let cost = f.allocate_cost(off, len);
    within_cost(f, cost, |f| f.zero_range(off, len, keep));
    zero_in(model, off, len);
    if !keep && model.len() < (off + len) as usize {
        model.resize((off + len) as usize, 0);
    }
}

/// Applies a mutation, asserting the charge never grows beyond its cost.
fn within_cost(f: &mut FileData, cost: u64, op: impl FnOnce(&mut FileData)) {
    let before = f.charge();
    op(f);
    let after = f.charge();
    assert!(after <= before + cost, "charge grew {before} -> {after}, cost said {cost}");
}

fn random_ops(shape: Shape, seed: u64, span: u64, promote_sometimes: bool) {
    let mut rng = Rng(seed);
    let mut f = FileData::new(shape);
    let mut model: Vec<u8> = Vec::new();
    // A reply still being sent while the next change is made: it must keep
    // its bytes, and the change must keep the charges exact.
    let mut held: Option<(Bytes, Vec<u8>)> = None;
    for step in 0..400 {
        let off = rng.below(span);
        let len = match rng.below(4) {
            0 => rng.below(16),
            1 => rng.below(5000),
            2 => rng.below(3 * BLOCK_SIZE),
            _ => rng.below(2 * CHUNK_SIZE),
        };
        match rng.below(10) {
            0..=4 => {
                // Half the writes are appends, as real workloads are; some
                // stream 1 MiB from a grid cell's start, as `dd bs=1M` does.
                let (off, len) = match rng.below(6) {
                    0..=1 => (model.len() as u64, len),
                    2 => ((model.len() as u64).next_multiple_of(CHUNK_SIZE / 2), 1 << 20),
                    _ => (off, len),
                };
                let mut data = vec![(step as u8) | 1; len as usize];
                if let Some(b) = data.first_mut() {
                    *b = 0xAA;
                }
                let plan = Plan { promote: promote_sometimes && rng.below(3) == 0, whole_cells: rng.below(2) == 0 };
                let cost = f.write_cost(off, len, plan);
                within_cost(&mut f, cost, |f| f.write(off, &data, plan));
                if !data.is_empty() {
                    let end = (off + len) as usize;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&data);
                }
            }
            5 => {
                let size = rng.below(span);
                within_cost(&mut f, 0, |f| f.truncate(size));
                model.resize(size as usize, 0);
            }
            6 => {
                let promote = promote_sometimes && rng.below(2) == 0;
                let cost = f.punch_cost(off, len, promote);
                within_cost(&mut f, cost, |f| f.punch(off, len, promote));
                zero_in(&mut model, off, len);
            }
            7 => {
                let keep = rng.below(2) == 0;
                let cost = f.allocate_cost(off, len);
                within_cost(&mut f, cost, |f| f.allocate(off, len, keep));
                if !keep && model.len() < (off + len) as usize {
                    model.resize((off + len) as usize, 0);
                }
            }
            8 => {
                let keep = rng.below(2) == 0;
                zero_range_on_both(&mut f, &mut model, off, len, keep);
            }
            _ => {
                within_cost(&mut f, 0, FileData::compact);
            }
        }
        check(&f, &model);
        // Spot reads and seeks.
        let off = rng.below(span);
        let len = rng.below(3 * CHUNK_SIZE);
        let got = f.read(off, len);
        let s = (off as usize).min(model.len());
        let e = ((off + len) as usize).min(model.len());
        assert_eq!(&got[..], &model[s..e], "read {off}+{len} at step {step}");
        if let Some((reply, bytes)) = held.take() {
            assert_eq!(&reply[..], &bytes[..], "a held reply changed at step {step}");
        }
        if rng.below(3) == 0 {
            let copy = got.to_vec();
            held = Some((got, copy));
        }
        if let Some(d) = f.seek(off, Seek::Data) {
            assert!(d >= off && d < f.len());
            assert!(model[off as usize..d as usize].iter().all(|&b| b == 0), "skipped data");
        } else {
            assert!(off >= f.len() || model[off as usize..].iter().all(|&b| b == 0));
        }
        if let Some(h) = f.seek(off, Seek::Hole) {
            assert!(h >= off && h <= f.len());
        } else {
            assert!(off >= f.len());
        }
    }
}

#[test]
fn sequential_random_ops_match_model() {
    for seed in 1..=6 {
        random_ops(Shape::Sequential, seed * 7919, 4 * CHUNK_SIZE, false);
    }
}

#[test]
fn random_access_random_ops_match_model() {
    for seed in 1..=6 {
        random_ops(Shape::RandomAccess, seed * 104_729, 4 * CHUNK_SIZE, false);
    }
}

#[test]
fn promotion_mid_sequence_matches_model() {
    for seed in 1..=6 {
        random_ops(Shape::Sequential, seed * 15_485_863, 3 * CHUNK_SIZE, true);
    }
}

#[test]
fn appends_coalesce_into_grid_extents() {
    let mut f = FileData::new(Shape::Sequential);
    let piece = vec![7u8; 10_000];
    let n = 500; // ~4.8 MiB in 10 kB appends: two full grid cells and a partial one
    for _ in 0..n {
        let off = f.len();
        f.write(off, &piece, Plan::PLAIN);
    }
    f.compact();
    check(&f, &vec![7u8; piece.len() * n]);
    let stored = (piece.len() * n) as u64;
    // Three grid cells, each one extent: exact memory plus small overhead.
    assert!(stored > 2 * CHUNK_SIZE && stored < 3 * CHUNK_SIZE);
    let cells = [CHUNK_SIZE, CHUNK_SIZE, stored - 2 * CHUNK_SIZE];
    assert_eq!(f.charge(), cells.iter().map(|&c| extent_charge(c)).sum::<u64>());
    assert!(f.charge() < stored + 3 * 4300, "overhead stays under 0.5%");
    // A read inside one cell comes back without copying: same pointer as a second read.
    let a = f.read(4096, 8192);
    let b = f.read(4096, 8192);
    assert_eq!(a.as_ptr(), b.as_ptr());
}

#[test]
fn streaming_writes_fill_whole_cells_and_stay_exact() {
    let mut f = FileData::new(Shape::Sequential);
    let mb = vec![5u8; 1 << 20];
    for i in 0..5u64 {
        let plan = Plan { promote: false, whole_cells: true };
        let cost = f.write_cost(i << 20, 1 << 20, plan);
        within_cost(&mut f, cost, |f| f.write(i << 20, &mb, plan));
    }
    f.check_invariants().unwrap();
    // Two full cells frozen, the fifth MiB open in a whole-cell buffer until closed.
    f.compact();
    f.check_invariants().unwrap();
    let cells = [CHUNK_SIZE, CHUNK_SIZE, 1 << 20];
    assert_eq!(f.charge(), cells.iter().map(|&c| extent_charge(c)).sum::<u64>());
    check(&f, &vec![5u8; 5 << 20]);
    // Whole-cell reads come back without copying.
    let a = f.read(CHUNK_SIZE, CHUNK_SIZE);
    let b = f.read(CHUNK_SIZE, CHUNK_SIZE);
    assert_eq!(a.as_ptr(), b.as_ptr());
}

/// A file whose first grid cell is a whole 2 MiB mapping a streaming
/// writer filled (frozen once the writer moved on), and its bytes.
fn streamed_file() -> (FileData, Vec<u8>) {
    let mut f = FileData::new(Shape::Sequential);
    let data: Vec<u8> = (0..CHUNK_SIZE + 4096).map(|i| (i % 251) as u8).collect();
    let plan = Plan { promote: false, whole_cells: true };
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        f.write((i as u64) << 20, piece, plan);
    }
    (f, data)
}

#[test]
fn a_whole_cell_mapping_is_changed_in_place_unless_a_reply_holds_it() {
    let (mut f, mut model) = streamed_file();
    let (charge, addr) = (f.charge(), f.read(0, 4096).as_ptr());
    // An overwrite of 4 KiB writes 4 KiB: same buffer, same charge.
    f.write(8192, &[7; 4096], Plan::PLAIN);
    model[8192..12288].fill(7);
    check(&f, &model);
    assert_eq!((f.read(0, 4096).as_ptr(), f.charge()), (addr, charge), "changed in place");
    // So does zeroing.
    f.zero_stored(20_000, 10_000);
    model[20_000..30_000].fill(0);
    check(&f, &model);
    assert_eq!((f.read(0, 4096).as_ptr(), f.charge()), (addr, charge), "zeroed in place");
    // A reply still being sent keeps the bytes it was given.
    let reply = f.read(0, 16384);
    f.write(8192, &[9; 4096], Plan::PLAIN);
    model[8192..12288].fill(9);
    check(&f, &model);
    assert_eq!(&reply[8192..12288], &[7; 4096][..], "an in-flight reply is not torn");
    assert_eq!(f.charge(), charge);
}

#[test]
fn a_hole_inside_a_whole_cell_mapping_copies_out_the_smaller_side() {
    let (mut f, mut model) = streamed_file();
    let base = f.read(0, 4096).as_ptr();
    let before = f.charge();
    // Near the front: the head is copied out, the rest moves down in place.
    let (off, end) = (100_000, 108_192);
    let cost = f.punch_cost(off, end - off, false);
    assert_eq!(cost, extent_charge(off));
    within_cost(&mut f, cost, |f| f.punch(off, end - off, false));
    model[off as usize..end as usize].fill(0);
    check(&f, &model);
    let rest = (CHUNK_SIZE - end).next_multiple_of(4096);
    assert_eq!(f.charge(), before - extent_charge(CHUNK_SIZE) + extent_charge(off) + extent_charge(rest));
    assert_eq!(f.read(end, 4096).as_ptr(), base, "the rest kept its mapping");
    assert_eq!((f.seek(0, Seek::Hole), f.seek(off, Seek::Data)), (Some(off), Some(end)));
    // Near the back: the end is copied out, the front is cut where it lies.
    let (off, end) = (CHUNK_SIZE - 50_000, CHUNK_SIZE - 20_000);
    let before = f.charge();
    let cost = f.punch_cost(off, end - off, false);
    assert_eq!(cost, extent_charge(20_000));
    within_cost(&mut f, cost, |f| f.punch(off, end - off, false));
    model[off as usize..end as usize].fill(0);
    check(&f, &model);
    let front = (off - 108_192).next_multiple_of(4096);
    assert_eq!(f.charge(), before - extent_charge(rest) + extent_charge(front) + extent_charge(20_000));
    assert_eq!(f.read(108_192, 4096).as_ptr(), base);
}

#[test]
fn a_whole_cell_mapping_a_reply_holds_is_copied_before_it_is_cut() {
    let (mut f, mut model) = streamed_file();
    let reply = f.read(0, CHUNK_SIZE);
    let (off, end) = (100_000, 108_192);
    let cost = f.punch_cost(off, end - off, false);
    within_cost(&mut f, cost, |f| f.punch(off, end - off, false));
    model[off as usize..end as usize].fill(0);
    check(&f, &model);
    within_cost(&mut f, 0, |f| f.truncate(CHUNK_SIZE / 2));
    model.truncate(CHUNK_SIZE as usize / 2);
    check(&f, &model);
    assert_eq!(&reply[..], &streamed_file().1[..CHUNK_SIZE as usize], "the reply kept its bytes");
}

#[test]
fn a_partly_filled_mapping_a_reply_holds_is_charged_as_what_replaces_it() {
    let plan = Plan { promote: false, whole_cells: true };
    let data: Vec<u8> = (0..1_300_000u32).map(|i| (i % 239) as u8).collect();
    for zero in [false, true] {
        let mut f = FileData::new(Shape::Sequential);
        f.write(0, &data[..1 << 20], plan);
        f.write(1 << 20, &data[1 << 20..], plan);
        f.compact();
        let mut model = data.clone();
        // A change while a reply holds the mapping copies it to the heap,
        // which is charged less than the mapping's whole pages.
        let reply = f.read(0, 4096);
        if zero {
            f.zero_stored(100, 10);
        } else {
            f.write(100, &[0; 10], Plan::PLAIN);
        }
        model[100..110].fill(0);
        drop(reply);
        check(&f, &model);
        assert_eq!(f.charge(), extent_charge(1_300_000));
        f.truncate(0);
        assert_eq!(f.charge(), 0, "nothing left charged");
    }
}

#[test]
fn a_partly_filled_cell_mapping_shrinks_where_it_lies() {
    let mut f = FileData::new(Shape::Sequential);
    let data: Vec<u8> = (0..CHUNK_SIZE + 1_300_000).map(|i| (i % 241) as u8).collect();
    let plan = Plan { promote: false, whole_cells: true };
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        let off = (i as u64) << 20;
        let cost = f.write_cost(off, piece.len() as u64, plan);
        within_cost(&mut f, cost, |f| f.write(off, piece, plan));
    }
    // The writer closes: the second cell's mapping keeps its 1,300,000
    // bytes where they are, in whole pages.
    within_cost(&mut f, 0, FileData::compact);
    check(&f, &data);
    assert_eq!(f.charge(), extent_charge(CHUNK_SIZE) + extent_charge(1_302_528));
    let addr = f.read(CHUNK_SIZE, 4096).as_ptr();
    // Truncating inside it keeps them there too.
    let cut = CHUNK_SIZE + 500_000;
    within_cost(&mut f, 0, |f| f.truncate(cut));
    check(&f, &data[..cut as usize]);
    assert_eq!(f.read(CHUNK_SIZE, 4096).as_ptr(), addr);
    assert_eq!(f.charge(), extent_charge(CHUNK_SIZE) + extent_charge(503_808));
    // An append after it starts an extent of its own; the mapping stays.
    let mut model = data[..cut as usize].to_vec();
    let cost = f.write_cost(cut, 3000, Plan::PLAIN);
    within_cost(&mut f, cost, |f| f.write(cut, &[3; 3000], Plan::PLAIN));
    model.extend_from_slice(&[3; 3000]);
    check(&f, &model);
    assert_eq!(f.read(CHUNK_SIZE, 4096).as_ptr(), addr);
    // Below the size glibc maps, what is kept moves to the heap (its pages
    // handed back first), charged as a small buffer.
    within_cost(&mut f, 0, |f| f.truncate(CHUNK_SIZE + 5000));
    check(&f, &data[..CHUNK_SIZE as usize + 5000]);
    assert_eq!(f.charge(), extent_charge(CHUNK_SIZE) + extent_charge(5000));
    // A tail still open shrinks the same way: frozen, then cut.
    let mut g = FileData::new(Shape::Sequential);
    g.write(0, &data[..1 << 20], plan);
    within_cost(&mut g, 0, |g| g.truncate(700_000));
    check(&g, &data[..700_000]);
    assert_eq!(g.charge(), extent_charge(700_416));
}

#[test]
fn small_file_is_charged_its_size() {
    for shape in [Shape::Sequential, Shape::RandomAccess] {
        let mut f = FileData::new(shape);
        f.write(0, b"hello world", Plan::PLAIN);
        f.compact();
        // A block map also holds its B-tree's root, however few its blocks.
        let (charge, map) = match shape {
            Shape::Sequential => (extent_charge(11), 0),
            Shape::RandomAccess => (block_charge(11) + BLOCK_MAP_COST, BLOCK_MAP_COST),
        };
        assert_eq!(f.charge(), charge, "{shape:?}");
        assert!(charge < 11 + 150 + map, "{shape:?}: small files stay small");
        f.truncate(0);
        assert_eq!(f.charge(), 0, "{shape:?}: an emptied file holds nothing");
    }
}

#[test]
fn holes_are_free_in_both_shapes() {
    for shape in [Shape::Sequential, Shape::RandomAccess] {
        let mut f = FileData::new(shape);
        f.truncate(10 << 30);
        assert_eq!(f.charge(), 0);
        assert_eq!(&f.read(5 << 30, 4096)[..], &[0u8; 4096][..]);
        let cost = f.write_cost(1 << 30, 4096, Plan::PLAIN);
        f.write(1 << 30, &[1u8; 4096], Plan::PLAIN);
        assert!(f.charge() <= cost && f.charge() < 2 * BLOCK_SIZE, "{shape:?}: {}", f.charge());
        assert_eq!(f.seek(0, Seek::Data), Some(1 << 30));
        assert_eq!(f.seek(1 << 30, Seek::Hole), Some((1 << 30) + 4096));
        f.punch(0, 10 << 30, false);
        assert_eq!(f.charge(), 0, "{shape:?}: punch frees everything");
        assert_eq!(f.len(), 10 << 30);
        assert_eq!(f.seek(0, Seek::Data), None);
    }
}

#[test]
fn promotion_cost_is_the_new_map() {
    let mut f = FileData::new(Shape::Sequential);
    f.write(0, &vec![3u8; 300_000], Plan::PLAIN);
    let cost = f.promote_cost().unwrap();
    f.promote();
    assert_eq!(f.shape(), Shape::RandomAccess);
    assert_eq!(f.charge(), cost);
    assert_eq!(f.promote_cost(), None);
    check(&f, &vec![3u8; 300_000]);
}

#[test]
fn overwrite_in_place_keeps_charge_and_readers_see_old_bytes() {
    let mut f = FileData::new(Shape::Sequential);
    f.write(0, &vec![1u8; CHUNK_SIZE as usize], Plan::PLAIN);
    let before = f.charge();
    let reader = f.read(0, 4096);
    assert_eq!(f.write_cost(100, 10, Plan::PLAIN), 0);
    f.write(100, &[9u8; 10], Plan::PLAIN);
    assert_eq!(f.charge(), before);
    assert_eq!(&reader[..], &[1u8; 4096][..], "an in-flight reply is not torn");
    assert_eq!(&f.read(100, 10)[..], &[9u8; 10][..]);
}

#[test]
fn punch_inside_an_extent_splits_it_and_frees_the_middle() {
    let mut f = FileData::new(Shape::Sequential);
    f.write(0, &vec![5u8; 200_000], Plan::PLAIN);
    f.compact();
    let cost = f.punch_cost(50_000, 100_000, false);
    assert_eq!(cost, extent_charge(50_000));
    f.punch(50_000, 100_000, false);
    assert_eq!(f.charge(), 2 * extent_charge(50_000));
    let mut model = vec![5u8; 200_000];
    model[50_000..150_000].fill(0);
    check(&f, &model);
    assert_eq!(f.seek(0, Seek::Hole), Some(50_000));
    assert_eq!(f.seek(50_000, Seek::Data), Some(150_000));
}

#[test]
fn a_split_copies_out_the_smaller_side() {
    // A frozen extent of 100,000 bytes (a heap buffer: glibc shrinks it in
    // place), and the same bytes in the open tail.
    let bytes: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
    for frozen in [true, false] {
        for (off, end) in [(20_000u64, 30_000u64), (60_000, 90_000)] {
            let mut f = FileData::new(Shape::Sequential);
            f.write(0, &bytes, Plan::PLAIN);
            let mut model = bytes.clone();
            if frozen {
                // An append in the next grid cell freezes the first one.
                f.write(CHUNK_SIZE, b"x", Plan::PLAIN);
                model.resize(CHUNK_SIZE as usize, 0);
                model.push(b'x');
            }
            f.compact();
            let (head, rest) = (off, 100_000 - end);
            let what = format!("hole [{off}, {end}), frozen {frozen}");
            assert_eq!(f.punch_cost(off, end - off, false), extent_charge(head.min(rest)), "{what}");
            let before = f.charge();
            let base = f.read(0, 1).as_ptr() as usize;
            f.punch(off, end - off, false);
            model[off as usize..end as usize].fill(0);
            check(&f, &model);
            let charge = before - extent_charge(100_000) + extent_charge(head) + extent_charge(rest);
            assert_eq!(f.charge(), charge, "{what}");
            // The larger side still lies at the start of the old buffer (a
            // frozen extent's: reads of the tail are copies).
            let kept = if head <= rest { end } else { 0 };
            if frozen {
                assert_eq!(f.read(kept, 1).as_ptr() as usize, base, "{what}: the larger side was copied");
            }
            assert_eq!((f.seek(0, Seek::Hole), f.seek(off, Seek::Data)), (Some(off), Some(end)));
        }
    }
}

#[test]
fn zeroing_stored_bytes_changes_neither_charge_nor_holes() {
    for shape in [Shape::Sequential, Shape::RandomAccess] {
        let mut f = FileData::new(shape);
        f.write(0, &[5u8; 10_000], Plan::PLAIN);
        f.write(300_000, &[6u8; 10_000], Plan::PLAIN);
        f.compact();
        let (charge, stored) = (f.charge(), f.stored());
        f.zero_stored(5_000, 400_000);
        let mut model = vec![0u8; 310_000];
        model[..5_000].fill(5);
        check(&f, &model);
        assert_eq!((f.charge(), f.stored()), (charge, stored), "{shape:?}");
        assert_eq!(f.seek(0, Seek::Hole), f.seek(10_000, Seek::Hole), "{shape:?}: the hole stays where it was");
    }
}

#[test]
fn mapped_buffers_are_charged_their_whole_mapping() {
    // A heap chunk: 8-byte header, rounded to 16, covered by 32 bytes.
    assert_eq!(alloc_overhead(100), 32);
    assert_eq!(alloc_overhead(131_048), 32);
    // The chunk of 131,049 bytes reaches 128 KiB: mapped, in 33 pages.
    assert_eq!(alloc_overhead(131_049), 33 * 4096 - 131_049);
    // Header and rounding can push a mapping into one more page.
    assert_eq!(alloc_overhead(40 * 4096 - 20), 41 * 4096 - (40 * 4096 - 20));
    assert_eq!(alloc_overhead(u64::MAX), 0);
}

#[test]
fn shrinking_keeps_contents_and_leaves_no_spare_capacity() {
    for (cap, keep) in [(1usize << 20, 1000usize), (1 << 20, 300 << 10), (1000, 10), (64, 64)] {
        let mut v: Vec<u8> = Vec::with_capacity(cap);
        v.extend((0..keep).map(|i| i as u8));
        shrink_buffer(&mut v, keep);
        assert_eq!(v.capacity(), keep);
        assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
    }
    let mut v: Vec<u32> = Vec::with_capacity(1 << 16);
    v.extend(0..10);
    shrink_buffer(&mut v, 40);
    assert_eq!((v.capacity(), v.len()), (40, 10));
}

#[test]
fn random_access_pages_written_far_apart_hold_about_their_own_size() {
    // As tmpfs holds a page per page written: one 4 KiB page near the end
    // of each of 100 spans costs its page, not the span in front of it.
    let mut f = FileData::new(Shape::RandomAccess);
    let mut model = Vec::new();
    for i in 0..100u64 {
        let off = i * 3 * BLOCK_SIZE + BLOCK_SIZE - 8192 + 100;
        let cost = f.write_cost(off, 4096, Plan::PLAIN);
        within_cost(&mut f, cost, |f| f.write(off, &[i as u8 | 1; 4096], Plan::PLAIN));
        model.resize(off as usize, 0);
        model.extend_from_slice(&[i as u8 | 1; 4096]);
    }
    f.compact();
    check(&f, &model);
    // Each block holds from the page its write starts in to the write's
    // end: 100 bytes in front of the 4 KiB.
    assert_eq!(f.charge(), 100 * block_charge(4196) + BLOCK_MAP_COST);
    assert!(f.charge() < 100 * (4096 + 250) + BLOCK_MAP_COST, "{}", f.charge());
    // Data starts at the page the first byte is in, as on tmpfs.
    let first = BLOCK_SIZE - 8192;
    assert_eq!(f.seek(0, Seek::Data), Some(first));
    assert_eq!(f.seek(first, Seek::Hole), Some(first + 100 + 4096));
}

#[test]
fn a_random_access_block_written_downwards_ends_as_one_exact_window() {
    // Pages written from a span's end to its start: the window grows down
    // a page at a time and ends exactly the span, holding no spare room.
    let mut f = FileData::new(Shape::RandomAccess);
    for page in (0..BLOCK_SIZE / PAGE).rev() {
        let cost = f.write_cost(page * PAGE, PAGE, Plan::PLAIN);
        within_cost(&mut f, cost, |f| f.write(page * PAGE, &[page as u8 + 1; PAGE as usize], Plan::PLAIN));
        assert_eq!(f.charge(), block_charge(BLOCK_SIZE - page * PAGE) + BLOCK_MAP_COST, "page {page}");
    }
    let model: Vec<u8> = (0..BLOCK_SIZE).map(|i| (i / PAGE) as u8 + 1).collect();
    check(&f, &model);
}

#[test]
fn punching_the_front_of_a_random_access_block_gives_its_pages_back() {
    let mut f = FileData::new(Shape::RandomAccess);
    f.write(0, &vec![5u8; BLOCK_SIZE as usize], Plan::PLAIN);
    let whole = f.charge();
    assert_eq!(whole, block_charge(BLOCK_SIZE) + BLOCK_MAP_COST);
    // Up to 10 bytes into the second page: the first page goes, the rest
    // of the punch is zeroed.
    let cut = PAGE + 10;
    assert_eq!(f.punch_cost(0, cut, false), 0);
    within_cost(&mut f, 0, |f| f.punch(0, cut, false));
    assert_eq!(f.charge(), block_charge(BLOCK_SIZE - PAGE) + BLOCK_MAP_COST);
    let mut model = vec![5u8; BLOCK_SIZE as usize];
    model[..cut as usize].fill(0);
    check(&f, &model);
    assert_eq!(f.seek(0, Seek::Data), Some(PAGE));
    // The middle of a block is zeroed where it lies: nothing moves.
    let before = f.charge();
    f.punch(2 * PAGE + 100, 100, false);
    model[2 * PAGE as usize + 100..2 * PAGE as usize + 200].fill(0);
    assert_eq!(f.charge(), before);
    check(&f, &model);
}

// ---------------------------------------------------------------- block windows, randomized

/// Strong seek contract over the model: SEEK_DATA never skips data, SEEK_HOLE
/// never lands on data and the hole it reports reads as zeros up to the next data.
fn check_seek(f: &FileData, model: &[u8], off: u64, what: &str) {
    let size = model.len() as u64;
    match f.seek(off, Seek::Data) {
        Some(d) => {
            assert!(d >= off && d < size, "{what}: SEEK_DATA {off} -> {d} (size {size})");
            assert!(
                model[off as usize..d as usize].iter().all(|&b| b == 0),
                "{what}: SEEK_DATA {off} -> {d} skipped data"
            );
        }
        None => {
            assert!(off >= size || model[off as usize..].iter().all(|&b| b == 0), "{what}: ENXIO from {off} over data")
        }
    }
    match f.seek(off, Seek::Hole) {
        Some(h) => {
            assert!(h >= off && h <= size, "{what}: SEEK_HOLE {off} -> {h}");
            if h < size {
                let next = f.seek(h, Seek::Data).unwrap_or(size);
                assert!(next > h, "{what}: SEEK_HOLE {h} is data");
                assert!(model[h as usize..next as usize].iter().all(|&b| b == 0), "{what}: hole [{h},{next}) has data");
            }
        }
        None => assert!(off >= size, "{what}: SEEK_HOLE ENXIO at {off} < {size}"),
    }
}

fn window_ops(shape: Shape, seed: u64, nblocks: u64, steps: usize, promote_sometimes: bool) {
    let mut rng = Rng(seed.max(1));
    let span = nblocks * BLOCK_SIZE;
    let mut f = FileData::new(shape);
    let mut model: Vec<u8> = Vec::new();
    let mut held: Option<(Bytes, Vec<u8>)> = None;
    let mut down = span; // descending cursor
    let mut up = rng.below(span); // ascending cursor
    for step in 0..steps {
        let what = format!("seed {seed} step {step}");
        let byte = (step as u8).wrapping_mul(31) | 1;
        let op = rng.below(20);
        match op {
            0..=9 => {
                let (off, len) = match rng.below(8) {
                    0 => {
                        // Descending, byte-ish granularity.
                        let l = 1 + rng.below(40);
                        down = down.saturating_sub(l);
                        if down == 0 {
                            down = span;
                        }
                        (down, l)
                    }
                    1 => {
                        let l = 1 + rng.below(40);
                        up += l;
                        if up >= span {
                            up = rng.below(span);
                        }
                        (up, l)
                    }
                    2 => (model.len() as u64, 1 + rng.below(3000)),
                    3 => (rng.below(span), 1 + rng.below(2 * BLOCK_SIZE)),
                    4 => {
                        // Page-aligned pages.
                        (rng.below(span / PAGE) * PAGE, PAGE * (1 + rng.below(3)))
                    }
                    _ => {
                        let m = if rng.below(2) == 0 { 16 } else { 5000 };
                        (rng.below(span), 1 + rng.below(m))
                    }
                };
                let mut data = vec![byte; len as usize];
                data[0] = 0xAA;
                let plan = Plan { promote: promote_sometimes && rng.below(4) == 0, whole_cells: rng.below(2) == 0 };
                let was_seq = f.shape() == Shape::Sequential;
                let before = f.charge();
                let cost = f.write_cost(off, len, plan);
                within_cost(&mut f, cost, |f| f.write(off, &data, plan));
                if !was_seq || plan.promote {
                    // Random-access writes and promotions are charged exactly what they cost.
                    let exact = if was_seq { f.charge() } else { f.charge() - before };
                    assert_eq!(exact, cost, "{what}: write {off}+{len} promote {} cost {cost}", plan.promote);
                }
                let end = (off + len) as usize;
                if model.len() < end {
                    model.resize(end, 0);
                }
                model[off as usize..end].copy_from_slice(&data);
            }
            10 | 11 => {
                // Punch front/middle/tail of some extent, or random.
                let ext = f.extents();
                let (off, len) = if !ext.is_empty() && rng.below(4) != 0 {
                    let (s, e) = ext[rng.below(ext.len() as u64) as usize];
                    let n = e - s;
                    match rng.below(4) {
                        0 => (s.saturating_sub(rng.below(100)), rng.below(n + 100) + 1),
                        1 => (s + rng.below(n), rng.below(n) + 1),
                        2 => {
                            let a = s + rng.below(n);
                            (a, e - a + rng.below(10))
                        }
                        _ => (s - s % PAGE, PAGE * (1 + rng.below(3)) + rng.below(3)),
                    }
                } else {
                    (rng.below(span), 1 + rng.below(2 * BLOCK_SIZE))
                };
                let promote = promote_sometimes && rng.below(2) == 0;
                let cost = f.punch_cost(off, len, promote);
                within_cost(&mut f, cost, |f| f.punch(off, len, promote));
                zero_in(&mut model, off, len);
            }
            12 => {
                // Truncate inside a window (or anywhere).
                let ext = f.extents();
                let size = if !ext.is_empty() && rng.below(3) != 0 {
                    let (s, e) = ext[rng.below(ext.len() as u64) as usize];
                    s + rng.below(e - s + 1)
                } else {
                    rng.below(span)
                };
                within_cost(&mut f, 0, |f| f.truncate(size));
                model.resize(size as usize, 0);
            }
            13 => {
                let (off, len) = (rng.below(span), 1 + rng.below(BLOCK_SIZE));
                let keep = rng.below(2) == 0;
                let before = f.charge();
                let cost = f.allocate_cost(off, len);
                within_cost(&mut f, cost, |f| f.allocate(off, len, keep));
                if f.shape() == Shape::RandomAccess {
                    assert_eq!(f.charge() - before, cost, "{what}: allocate exact");
                }
                if !keep && model.len() < (off + len) as usize {
                    model.resize((off + len) as usize, 0);
                }
            }
            14 => {
                let (off, len) = (rng.below(span), 1 + rng.below(BLOCK_SIZE));
                let keep = rng.below(2) == 0;
                zero_range_on_both(&mut f, &mut model, off, len, keep);
            }
            15 => {
                let (off, len) = (rng.below(span), 1 + rng.below(BLOCK_SIZE));
                within_cost(&mut f, 0, |f| f.zero_stored(off, len));
                zero_in(&mut model, off, len);
            }
            16 if promote_sometimes => {
                if let Some(cost) = f.promote_cost() {
                    within_cost(&mut f, cost, FileData::promote);
                    assert_eq!(f.charge(), cost, "{what}: promote exact");
                }
            }
            _ => within_cost(&mut f, 0, FileData::compact),
        }
        f.check_invariants().unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(f.len(), model.len() as u64, "{what}");
        let all = f.read(0, model.len() as u64 + 10);
        assert_eq!(&all[..], &model[..], "{what}: full read");
        if f.shape() == Shape::RandomAccess {
            // stored counts each window's bytes; every nonzero byte lies in one.
            let mut covered = vec![false; model.len()];
            let mut total = 0;
            for (s, e) in f.extents() {
                total += e - s;
                for i in s..e.min(model.len() as u64) {
                    covered[i as usize] = true;
                }
            }
            assert_eq!(total, f.stored(), "{what}: stored");
            assert!(model.iter().zip(&covered).all(|(&b, &c)| b == 0 || c), "{what}: data outside windows");
        }
        if let Some((reply, bytes)) = held.take() {
            assert_eq!(&reply[..], &bytes[..], "{what}: a held reply changed");
        }
        let off = rng.below(span + 10);
        let len = rng.below(2 * BLOCK_SIZE);
        let got = f.read(off, len);
        let s = (off as usize).min(model.len());
        let e = ((off + len) as usize).min(model.len());
        assert_eq!(&got[..], &model[s..e], "{what}: read {off}+{len}");
        if rng.below(3) == 0 {
            let copy = got.to_vec();
            held = Some((got, copy));
        }
        for _ in 0..4 {
            check_seek(&f, &model, rng.below(span + 10), &what);
        }
        for (s, e) in f.extents() {
            for o in [s.saturating_sub(1), s, s + 1, e.saturating_sub(1), e, e + 1] {
                check_seek(&f, &model, o, &what);
            }
        }
    }
}

/// Seeds `1..=n` after `STORAGE_SEED_BASE` (default 0), `n` from
/// `STORAGE_SEEDS` (default `default`): more seeds by hand, the same ones
/// in CI.
fn seeds(default: u64) -> std::ops::RangeInclusive<u64> {
    let var = |name: &str| std::env::var(name).ok().and_then(|s| s.parse::<u64>().ok());
    let base = var("STORAGE_SEED_BASE").unwrap_or(0);
    base + 1..=base + var("STORAGE_SEEDS").unwrap_or(default)
}

#[test]
fn block_windows_random_ops_match_model_and_cost() {
    for seed in seeds(40) {
        for nblocks in [1, 2, 5] {
            window_ops(Shape::RandomAccess, seed * 2_654_435_761 + nblocks, nblocks, 300, false);
        }
    }
}

#[test]
fn block_windows_after_promotion_match_model_and_cost() {
    for seed in seeds(40) {
        for nblocks in [1, 3, 8] {
            window_ops(Shape::Sequential, seed * 40_503 + nblocks, nblocks, 300, true);
        }
    }
}

/// A sequential file with extents placed at random (mid-block starts,
/// several per block, gaps inside a block), then promoted: cost exact,
/// content and holes kept, and a following write charged what it said.
#[test]
fn promoting_scattered_extents_costs_what_it_charges() {
    for seed in seeds(300) {
        let mut rng = Rng(seed * 7_777_777 + 3);
        let mut f = FileData::new(Shape::Sequential);
        let mut model = Vec::new();
        let span = (1 + rng.below(4)) * BLOCK_SIZE;
        for i in 0..1 + rng.below(12) {
            let off = rng.below(span);
            let m = if rng.below(2) == 0 { 50 } else { 6000 };
            let len = 1 + rng.below(m);
            let data = vec![(i as u8) | 0x41; len as usize];
            f.write(off, &data, Plan::PLAIN);
            let end = (off + len) as usize;
            if model.len() < end {
                model.resize(end, 0);
            }
            model[off as usize..end].copy_from_slice(&data);
            if rng.below(3) == 0 {
                let (o, l) = (rng.below(span), 1 + rng.below(3000));
                let cost = f.punch_cost(o, l, false);
                within_cost(&mut f, cost, |f| f.punch(o, l, false));
                let e = ((o + l) as usize).min(model.len());
                if (o as usize) < e {
                    model[o as usize..e].fill(0);
                }
            }
        }
        if rng.below(2) == 0 {
            f.compact();
        }
        check(&f, &model);
        let (off, len) = (rng.below(span + 100), 1 + rng.below(5000));
        let plan = Plan { promote: true, whole_cells: false };
        let cost = f.write_cost(off, len, plan);
        let pcost = f.promote_cost().unwrap();
        let mut g = FileData::new(Shape::Sequential);
        // Same file, promoted alone.
        g.write(0, &model, Plan::PLAIN);
        let _ = g;
        f.write(off, &vec![0xEE; len as usize], plan);
        assert_eq!(f.charge(), cost, "seed {seed}: promote+write charged what it said (promote alone {pcost})");
        let end = (off + len) as usize;
        if model.len() < end {
            model.resize(end, 0);
        }
        model[off as usize..end].fill(0xEE);
        check(&f, &model);
        for o in 0..model.len() as u64 + 2 {
            if o % 97 == 0 || o % PAGE < 2 || o % PAGE > PAGE - 2 {
                check_seek(&f, &model, o, &format!("seed {seed}"));
            }
        }
    }
}
