//! Directory entries: a cookie-ordered list plus a name index into it.
//!
//! Each entry gets a cookie from a per-directory counter when it is added
//! and keeps it for life, so a `readdir` that resumes after cookie `c`
//! neither skips nor repeats an entry that survived, whatever was created
//! or removed in between (cookies 1 and 2 belong to `.` and `..`).
//!
//! Cookies only grow, so the entries are a `Vec` in cookie order: appending
//! keeps it sorted and resuming is a binary search. A removed entry leaves a
//! tombstone (its name freed at once) until tombstones outnumber half the
//! live entries; then the list is compacted and the index rebuilt, which
//! also gives back the memory of a directory that has shrunk. The index is
//! a hash table of positions: 8 bytes per entry, the names are compared in
//! the list. Names of up to 22 bytes live inside their entry. Per entry
//! this holds about 80 bytes (names over 22 bytes: plus the name and its
//! allocation), where a `BTreeMap` plus a `HashMap` of names held about 150.

use std::hash::BuildHasher;
use std::sync::OnceLock;

use hashbrown::HashTable;

use super::types::{FileKind, Ino};

/// First cookie of a real entry.
pub(crate) const FIRST_COOKIE: u64 = 3;

/// Tombstones allowed without compacting, whatever the live count.
const SLACK: usize = 4;

/// An entry's name: short names (most of them) inside the entry, longer
/// ones in their own allocation.
pub(crate) enum Name {
    Inline(u8, [u8; INLINE]),
    Heap(Box<[u8]>),
}

/// Longest name kept inside the entry (which is 40 bytes either way).
const INLINE: usize = 22;

impl Name {
    fn new(name: &[u8]) -> Name {
        match u8::try_from(name.len()) {
            Ok(len) if name.len() <= INLINE => {
                let mut buf = [0u8; INLINE];
                buf[..name.len()].copy_from_slice(name);
                Name::Inline(len, buf)
            }
            _ => Name::Heap(name.into()),
        }
    }
}

impl std::ops::Deref for Name {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Name::Inline(len, buf) => &buf[..usize::from(*len)],
            Name::Heap(b) => b,
        }
    }
}

pub(crate) struct Entry {
    pub(crate) name: Name,
    pub(crate) ino: Ino,
    pub(crate) kind: FileKind,
}

struct Slot {
    cookie: u64,
    /// `None` once removed.
    entry: Option<Entry>,
}

pub(crate) struct Dir {
    /// Ascending cookies, live entries and tombstones.
    slots: Vec<Slot>,
    /// Positions in `slots` of the live entries, hashed by name.
    index: HashTable<usize>,
    dead: usize,
    next_cookie: u64,
}

impl Default for Dir {
    fn default() -> Self {
        Dir { slots: Vec::new(), index: HashTable::new(), dead: 0, next_cookie: FIRST_COOKIE }
    }
}

/// One keyed hasher for every directory, seeded randomly per process so that
/// names chosen by users cannot be made to collide.
fn hash(name: &[u8]) -> u64 {
    static STATE: OnceLock<std::collections::hash_map::RandomState> = OnceLock::new();
    STATE.get_or_init(Default::default).hash_one(name)
}

impl Dir {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    fn entry_at(slots: &[Slot], pos: usize) -> Option<&Entry> {
        slots.get(pos).and_then(|s| s.entry.as_ref())
    }

    fn position(&self, name: &[u8]) -> Option<usize> {
        let slots = &self.slots;
        self.index.find(hash(name), |&p| Self::entry_at(slots, p).is_some_and(|e| &*e.name == name)).copied()
    }

    pub(crate) fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.position(name).and_then(|p| Self::entry_at(&self.slots, p))
    }

    /// Adds an entry; the name must not exist.
    pub(crate) fn insert(&mut self, name: &[u8], ino: Ino, kind: FileKind) {
        debug_assert!(self.position(name).is_none());
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        let pos = self.slots.len();
        if pos == self.slots.capacity() {
            // Grow by half rather than double: less spare capacity on average.
            self.slots.reserve_exact((pos / 2).max(4));
        }
        self.slots.push(Slot { cookie, entry: Some(Entry { name: Name::new(name), ino, kind }) });
        let slots = &self.slots;
        self.index.insert_unique(hash(name), pos, |&p| Self::entry_at(slots, p).map_or(0, |e| hash(&e.name)));
    }

    /// Points an existing name at another node, keeping its cookie.
    pub(crate) fn repoint(&mut self, name: &[u8], ino: Ino, kind: FileKind) {
        if let Some(e) = self.position(name).and_then(|p| self.slots.get_mut(p)).and_then(|s| s.entry.as_mut()) {
            e.ino = ino;
            e.kind = kind;
        }
    }

    pub(crate) fn remove(&mut self, name: &[u8]) -> Option<Entry> {
        let slots = &self.slots;
        let found =
            self.index.find_entry(hash(name), |&p| Self::entry_at(slots, p).is_some_and(|e| &*e.name == name)).ok()?;
        let (pos, _) = found.remove();
        let entry = self.slots.get_mut(pos)?.entry.take();
        self.dead += 1;
        if self.dead > SLACK.max(self.len() / 2) {
            self.compact();
        }
        entry
    }

    /// Drops the tombstones and rebuilds the index at its present size.
    fn compact(&mut self) {
        let live = self.len();
        let mut slots = Vec::with_capacity(live);
        slots.extend(std::mem::take(&mut self.slots).into_iter().filter(|s| s.entry.is_some()));
        let mut index = HashTable::with_capacity(live);
        for (pos, s) in slots.iter().enumerate() {
            if let Some(e) = &s.entry {
                index.insert_unique(hash(&e.name), pos, |&p| Self::entry_at(&slots, p).map_or(0, |e| hash(&e.name)));
            }
        }
        self.slots = slots;
        self.index = index;
        self.dead = 0;
    }

    /// Entries with a cookie greater than `after`, in cookie order.
    pub(crate) fn after(&self, after: u64) -> impl Iterator<Item = (u64, &Entry)> {
        let from = self.slots.partition_point(|s| s.cookie <= after);
        self.slots[from..].iter().filter_map(|s| s.entry.as_ref().map(|e| (s.cookie, e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_small() {
        assert_eq!(std::mem::size_of::<Entry>(), 40);
        assert_eq!(std::mem::size_of::<Slot>(), 48);
        for len in [0, 1, INLINE, INLINE + 1, 255] {
            let n = vec![b'q'; len];
            assert_eq!(&*Name::new(&n), &n[..]);
        }
    }

    #[test]
    fn cookies_survive_changes_between_reads() {
        let mut d = Dir::default();
        for i in 0..10u8 {
            d.insert(&[b'a' + i], Ino(100 + u64::from(i)), FileKind::RegularFile);
        }
        let first: Vec<_> = d.after(0).take(4).map(|(c, e)| (c, e.name.to_vec())).collect();
        let resume = first.last().unwrap().0;
        // Remove an entry already read and one not yet read; add one.
        d.remove(b"b");
        d.remove(b"g");
        d.insert(b"z", Ino(200), FileKind::RegularFile);
        let rest: Vec<_> = d.after(resume).map(|(_, e)| e.name.to_vec()).collect();
        let names: Vec<Vec<u8>> = first.into_iter().map(|(_, n)| n).chain(rest).collect();
        let expect: Vec<Vec<u8>> =
            [b"a", b"b", b"c", b"d", b"e", b"f", b"h", b"i", b"j", b"z"].iter().map(|n| n.to_vec()).collect();
        assert_eq!(names, expect, "no survivor skipped or repeated");
    }

    #[test]
    fn compaction_keeps_cookies_order_and_lookups() {
        let mut d = Dir::default();
        let name = |i: u32| format!("n{i}").into_bytes();
        for i in 0..1000 {
            d.insert(&name(i), Ino(u64::from(i) + 10), FileKind::RegularFile);
        }
        let cookies: Vec<u64> = d.after(0).map(|(c, _)| c).collect();
        // Remove all but every tenth: many compactions on the way.
        for i in (0..1000).filter(|i| i % 10 != 0) {
            assert_eq!(d.remove(&name(i)).map(|e| e.ino), Some(Ino(u64::from(i) + 10)));
            assert!(d.get(&name(i)).is_none());
        }
        assert_eq!(d.len(), 100);
        assert!(d.slots.len() <= 100 + SLACK.max(50), "tombstones are compacted away");
        let left: Vec<(u64, Vec<u8>)> = d.after(0).map(|(c, e)| (c, e.name.to_vec())).collect();
        let expect: Vec<(u64, Vec<u8>)> = (0..1000).step_by(10).map(|i| (cookies[i as usize], name(i))).collect();
        assert_eq!(left, expect);
        for i in (0..1000).step_by(10) {
            assert_eq!(d.get(&name(i)).map(|e| e.ino), Some(Ino(u64::from(i) + 10)));
        }
        // Resuming after a cookie whose entry is gone.
        let after_gone = d.after(cookies[15]).next().map(|(c, _)| c);
        assert_eq!(after_gone, Some(cookies[20]));
        // New entries come after every old one.
        d.insert(b"new", Ino(5000), FileKind::Directory);
        assert_eq!(d.after(0).last().map(|(_, e)| e.ino), Some(Ino(5000)));
        for i in (0..1000).step_by(10) {
            d.remove(&name(i));
        }
        d.remove(b"new");
        assert!(d.is_empty());
        assert!(d.slots.len() <= SLACK && d.after(0).next().is_none());
    }
}
