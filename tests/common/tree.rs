//! Snapshots of a directory tree for byte-for-byte comparison: kind, mode,
//! size, content, link target, mtime and hard-link grouping of every entry.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub size: u64,
    /// File contents (hashed to keep snapshots small) or link target.
    pub data: u64,
    pub mtime: (i64, i64),
    /// Index of the entry's hard-link group (first path seen with that inode).
    pub link_group: Option<PathBuf>,
}

fn hash(bytes: &[u8]) -> u64 {
    // FNV-1a: enough to tell contents apart in tests.
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Every entry below `root`, keyed by relative path.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut out = BTreeMap::new();
    let mut inodes: HashMap<u64, PathBuf> = HashMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        entries.sort();
        for path in entries {
            let md = std::fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let ft = md.file_type();
            let (kind, data) = if ft.is_file() {
                ("file", hash(&std::fs::read(&path).unwrap()))
            } else if ft.is_dir() {
                stack.push(path.clone());
                ("dir", 0)
            } else if ft.is_symlink() {
                ("symlink", hash(std::fs::read_link(&path).unwrap().as_os_str().as_encoded_bytes()))
            } else if ft.is_fifo() {
                ("fifo", 0)
            } else if ft.is_socket() {
                ("socket", 0)
            } else {
                ("device", md.rdev())
            };
            let link_group =
                (!ft.is_dir() && md.nlink() > 1).then(|| inodes.entry(md.ino()).or_insert_with(|| rel.clone()).clone());
            let size = if ft.is_dir() { 0 } else { md.size() };
            out.insert(
                rel,
                Entry { kind, mode: md.mode() & 0o7777, size, data, mtime: (md.mtime(), md.mtime_nsec()), link_group },
            );
        }
    }
    out
}

/// Panics with the first differences between two snapshots.
pub fn assert_same(src: &BTreeMap<PathBuf, Entry>, dst: &BTreeMap<PathBuf, Entry>, check_dir_mtime: bool) {
    let mut diffs = Vec::new();
    for (path, a) in src {
        match dst.get(path) {
            None => diffs.push(format!("missing: {}", path.display())),
            Some(b) => {
                let mut b = b.clone();
                if !check_dir_mtime && a.kind == "dir" {
                    b.mtime = a.mtime;
                }
                if *a != b {
                    diffs.push(format!("{}: source {a:?}\n      copy {b:?}", path.display()));
                }
            }
        }
    }
    for path in dst.keys().filter(|p| !src.contains_key(*p)) {
        diffs.push(format!("extra: {}", path.display()));
    }
    assert!(
        diffs.is_empty(),
        "{} differences, first ones:\n{}",
        diffs.len(),
        diffs.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
    );
}
