//! Directory entries: a name index plus a cookie-ordered list.
//!
//! Each entry gets a cookie from a per-directory counter when it is added
//! and keeps it for life, so a `readdir` that resumes after cookie `c`
//! neither skips nor repeats an entry that survived, whatever was created
//! or removed in between (cookies 1 and 2 belong to `.` and `..`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::types::{FileKind, Ino};

/// First cookie of a real entry.
pub(crate) const FIRST_COOKIE: u64 = 3;

pub(crate) struct Entry {
    /// Shared with the name index: one allocation per name.
    pub(crate) name: Arc<[u8]>,
    pub(crate) ino: Ino,
    pub(crate) kind: FileKind,
}

pub(crate) struct Dir {
    by_name: HashMap<Arc<[u8]>, u64>,
    by_cookie: BTreeMap<u64, Entry>,
    next_cookie: u64,
}

impl Default for Dir {
    fn default() -> Self {
        Dir { by_name: HashMap::new(), by_cookie: BTreeMap::new(), next_cookie: FIRST_COOKIE }
    }
}

impl Dir {
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    pub(crate) fn get(&self, name: &[u8]) -> Option<&Entry> {
        self.by_name.get(name).and_then(|c| self.by_cookie.get(c))
    }

    /// Adds an entry; the name must not exist.
    pub(crate) fn insert(&mut self, name: &[u8], ino: Ino, kind: FileKind) {
        let cookie = self.next_cookie;
        self.next_cookie += 1;
        debug_assert!(!self.by_name.contains_key(name));
        let name: Arc<[u8]> = name.into();
        self.by_name.insert(name.clone(), cookie);
        self.by_cookie.insert(cookie, Entry { name, ino, kind });
    }

    /// Points an existing name at another node, keeping its cookie.
    pub(crate) fn repoint(&mut self, name: &[u8], ino: Ino, kind: FileKind) {
        if let Some(e) = self.by_name.get(name).and_then(|c| self.by_cookie.get_mut(c)) {
            e.ino = ino;
            e.kind = kind;
        }
    }

    pub(crate) fn remove(&mut self, name: &[u8]) -> Option<Entry> {
        let cookie = self.by_name.remove(name)?;
        self.by_cookie.remove(&cookie)
    }

    /// Entries with a cookie greater than `after`, in cookie order.
    pub(crate) fn after(&self, after: u64) -> impl Iterator<Item = (u64, &Entry)> {
        self.by_cookie.range(after.saturating_add(1)..).map(|(&c, e)| (c, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
