//! Extended attributes of one node, each charged to the quota.

use super::acl;
use super::error::{FsError, Result};
use super::types::XattrSet;
use crate::storage::{alloc_overhead, shrink_buffer};

/// Longest attribute name (`XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest attribute value (`XATTR_SIZE_MAX`).
pub const XATTR_SIZE_MAX: usize = 65536;
/// Largest `listxattr` result (`XATTR_LIST_MAX`); a node's names must fit in it.
pub const XATTR_LIST_MAX: usize = 65536;
/// Quota bytes charged per attribute on top of name and value: the
/// allocator's headers and rounding of the name and value copies. A name
/// holds at most 26 bytes beyond itself (its chunk is 32 bytes at least,
/// and names are 6 bytes at least); a value at most 47, when it was shrunk
/// in place and glibc kept a remainder under 32 bytes with its chunk (25
/// bytes cut to 1 keep a 48-byte chunk). Its slot in the node's list is
/// charged with the list, by the list's capacity.
pub const XATTR_COST: u64 = 80;

/// Namespaces we store. Of `system.*`, only the two POSIX ACL names, and
/// only with `posix_acl` (checked by the engine: the kernel enforces ACLs
/// only when the mount asked it to).
const TRUSTED: &[u8] = b"trusted.";
const NAMESPACES: [&[u8]; 3] = [b"user.", TRUSTED, b"security."];

type Name = Box<[u8]>;
type Value = Box<[u8]>;

/// Bytes of one list slot.
const SLOT: u64 = size_of::<(Name, Value)>() as u64;
/// Slots of a new list, and the fewest a list shrinks to.
const MIN_SLOTS: usize = 4;
/// The box holding a node's list (24 bytes, 32 with the allocator's header).
const LIST_BOX: u64 = 32;

/// What a node's list with room for `slots` attributes is charged: its box
/// and its buffer of slots; nothing without a list.
fn list_charge(slots: usize) -> u64 {
    if slots == 0 {
        return 0;
    }
    let bytes = (slots as u64).saturating_mul(SLOT);
    LIST_BOX.saturating_add(bytes).saturating_add(alloc_overhead(bytes))
}

/// Slots of a full list of `slots` once it grows.
fn grown(slots: usize) -> usize {
    slots.saturating_mul(2).max(MIN_SLOTS)
}

/// Attributes as a short list, boxed so that a node without any (most of
/// them) pays one pointer: nodes rarely carry more than a few. The list is
/// charged by capacity: it starts with `MIN_SLOTS` slots, doubles when
/// full, and when removals leave it at most a quarter full shrinks to twice
/// its length; the last removal frees it.
#[derive(Default)]
pub(crate) struct Xattrs {
    #[allow(clippy::box_collection, reason = "8 bytes in every node instead of a 24-byte Vec")]
    list: Option<Box<Vec<(Name, Value)>>>,
}

fn cost(name: &[u8], value: &[u8]) -> u64 {
    XATTR_COST + name.len() as u64 + value.len() as u64
}

/// Checks an attribute name: known namespace, non-empty suffix, length;
/// the ACL names only if `acls`.
pub(crate) fn check_name(name: &[u8], acls: bool) -> Result<()> {
    if name.len() > XATTR_NAME_MAX {
        return Err(FsError::Range);
    }
    if acl::is_acl_name(name) {
        return if acls { Ok(()) } else { Err(FsError::NotSupported) };
    }
    match NAMESPACES.iter().find(|ns| name.starts_with(ns)) {
        None => Err(FsError::NotSupported),
        Some(ns) if name.len() == ns.len() => Err(FsError::InvalidArgument),
        Some(_) if name.contains(&0) => Err(FsError::InvalidArgument),
        Some(_) => Ok(()),
    }
}

impl Xattrs {
    fn items(&self) -> &[(Name, Value)] {
        self.list.as_deref().map_or(&[], Vec::as_slice)
    }

    pub(crate) fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.items().iter().find(|(n, _)| &**n == name).map(|(_, v)| &**v)
    }

    /// The value of `name`, to change in place (its length, and so its
    /// charge, stays).
    fn get_mut(&mut self, name: &[u8]) -> Option<&mut [u8]> {
        self.list.as_mut()?.iter_mut().find(|(n, _)| &**n == name).map(|(_, v)| &mut **v)
    }

    /// The slots of a list that grew to hold `n` attributes.
    fn slots_for(n: usize) -> usize {
        let mut slots = 0;
        while slots < n {
            slots = grown(slots);
        }
        slots
    }

    /// What a new node's list holding exactly `attrs` is charged.
    pub(crate) fn charge_for(attrs: &[(&'static [u8], Vec<u8>)]) -> u64 {
        attrs.iter().fold(list_charge(Self::slots_for(attrs.len())), |sum, (n, v)| sum + cost(n, v))
    }

    /// A new node's list holding exactly `attrs` (names checked, no name
    /// twice), as [`Xattrs::charge_for`] charged it; the values are moved in.
    pub(crate) fn with(attrs: Vec<(&'static [u8], Vec<u8>)>) -> Xattrs {
        if attrs.is_empty() {
            return Xattrs::default();
        }
        let mut list = Vec::with_capacity(Self::slots_for(attrs.len()));
        list.extend(attrs.into_iter().map(|(n, v)| (Name::from(n), v.into_boxed_slice())));
        Xattrs { list: Some(Box::new(list)) }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items().is_empty()
    }

    fn slots(&self) -> usize {
        self.list.as_ref().map_or(0, |l| l.capacity())
    }

    /// What adding one more attribute makes the list grow by, in quota bytes.
    fn growth_cost(&self) -> u64 {
        let slots = self.slots();
        if self.items().len() < slots { 0 } else { list_charge(grown(slots)) - list_charge(slots) }
    }

    fn list_len(&self) -> usize {
        self.items().iter().map(|(n, _)| n.len() + 1).sum()
    }

    /// Validates a set of a name `check_name` accepted and returns
    /// `(bytes to reserve, bytes the old value frees)`. A new value no
    /// longer than the old one is copied over it and the old one's buffer
    /// shrunk in place (`set`), so it reserves nothing and frees the
    /// difference: on a full filesystem an attribute can still shrink. A
    /// longer one holds both values for a moment and is charged in full
    /// before the old one is released.
    pub(crate) fn plan_set(&self, name: &[u8], value: &[u8], mode: XattrSet) -> Result<(u64, u64)> {
        if value.len() > XATTR_SIZE_MAX {
            return Err(FsError::TooBig);
        }
        match (self.get(name), mode) {
            (Some(_), XattrSet::Create | XattrSet::CreateAndReplace) => Err(FsError::Exists),
            (None, XattrSet::Replace | XattrSet::CreateAndReplace) => Err(FsError::NoData),
            (Some(old), _) if value.len() <= old.len() => Ok((0, cost(name, old) - cost(name, value))),
            (Some(old), _) => Ok((cost(name, value), cost(name, old))),
            (None, _) => {
                if self.list_len() + name.len() + 1 > XATTR_LIST_MAX {
                    return Err(FsError::AttrListFull);
                }
                Ok((cost(name, value) + self.growth_cost(), 0))
            }
        }
    }

    /// Sets an attribute validated by `plan_set`.
    pub(crate) fn set(&mut self, name: &[u8], value: &[u8]) {
        let list = self.list.get_or_insert_with(Box::default);
        match list.iter_mut().find(|(n, _)| &**n == name) {
            Some((_, v)) if v.len() >= value.len() => {
                // Copied over the old value. A shorter one leaves the buffer
                // shrunk by `into_boxed_slice`: values are below the mmap
                // threshold, so glibc shrinks the chunk where it is, without
                // a second allocation (keeping a remainder under 32 bytes
                // with it: `XATTR_COST`).
                let mut kept = std::mem::take(v).into_vec();
                kept.truncate(value.len());
                kept.copy_from_slice(value);
                *v = kept.into_boxed_slice();
            }
            Some((_, v)) => *v = value.into(),
            None => {
                if list.len() == list.capacity() {
                    // Grow as `growth_cost` charged, not as `Vec` would.
                    list.reserve_exact(grown(list.capacity()) - list.len());
                }
                list.push((name.into(), value.into()));
            }
        }
    }

    /// Removes an attribute, returning the quota bytes it held.
    pub(crate) fn remove(&mut self, name: &[u8]) -> Result<u64> {
        let list = self.list.as_mut().ok_or(FsError::NoData)?;
        let at = list.iter().position(|(n, _)| &**n == name).ok_or(FsError::NoData)?;
        let (n, v) = list.swap_remove(at);
        let before = list.capacity();
        if list.is_empty() {
            self.list = None;
        } else if list.len() <= before / 4 {
            let keep = list.len().saturating_mul(2).max(MIN_SLOTS);
            shrink_buffer(list, keep);
        }
        Ok(cost(&n, &v) + list_charge(before) - list_charge(self.slots()))
    }

    /// The names, each followed by a NUL, as `listxattr` returns them;
    /// those in the `trusted.` namespace only if `show_trusted()` (asked at
    /// most once, and only when there is one).
    pub(crate) fn names(&self, show_trusted: impl FnOnce() -> bool) -> Vec<u8> {
        let mut show_trusted = Some(show_trusted);
        let mut trusted_shown = false;
        let mut out = Vec::with_capacity(self.list_len());
        for (n, _) in self.items() {
            if n.starts_with(TRUSTED) {
                if let Some(ask) = show_trusted.take() {
                    trusted_shown = ask();
                }
                if !trusted_shown {
                    continue;
                }
            }
            out.extend_from_slice(n);
            out.push(0);
        }
        out
    }

    /// Rewrites the access ACL, if there is one, for a `chmod` to `mode`.
    pub(crate) fn chmod_acl(&mut self, mode: u32) {
        if let Some(a) = self.get_mut(acl::ACCESS) {
            acl::chmod(a, mode);
        }
    }
}

impl super::Engine {
    /// Sets the attribute `name` of `ino` to `value`, as a caller who may
    /// keep any set-group-ID bit (see [`Engine::setxattr_by`]).
    ///
    /// [`Engine::setxattr_by`]: super::Engine::setxattr_by
    pub fn setxattr(&self, ino: super::Ino, name: &[u8], value: &[u8], mode: XattrSet) -> Result<()> {
        self.setxattr_by(ino, name, value, mode, |_| true)
    }

    /// Sets the attribute `name` of `ino` to `value`. For a POSIX ACL name
    /// (engines made with `posix_acl`) the value must be a valid ACL; `mode`
    /// is ignored, as Linux ignores `setxattr`'s flags for ACLs. An access
    /// ACL sets the permission bits it stands for and is kept only if it
    /// says more than they do; setting it clears the set-group-ID bit
    /// unless `keeps_sgid(gid)` says the caller is in the file's group `gid`
    /// or holds `CAP_FSETID`.
    pub fn setxattr_by(
        &self,
        ino: super::Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrSet,
        keeps_sgid: impl FnOnce(u32) -> bool,
    ) -> Result<()> {
        check_name(name, self.cfg.posix_acl)?;
        let is_acl = acl::is_acl_name(name);
        let node = self.node(ino)?;
        // Checked before the node is locked (it depends on the value only),
        // answered after the checks that come first.
        let parsed = is_acl.then(|| acl::parse(value));
        let mut st = node.state.write();
        // Released (its charges given back) but not yet out of the table.
        if st.freed {
            return Err(FsError::NotFound);
        }
        st.flags().check_fixed()?;
        let Some(parsed) = parsed else { return self.store_xattr(&mut st, ino, name, value, mode) };
        if node.kind == super::FileKind::Symlink {
            return Err(FsError::NotSupported);
        }
        let parsed = parsed?;
        if name == acl::DEFAULT && !node.is_dir() {
            // Linux: only directories have default ACLs.
            return if parsed.is_some() { Err(FsError::AccessDenied) } else { Ok(()) };
        }
        let mut perm = u32::from(st.meta.perm);
        let mut keep = parsed.as_deref();
        if name == acl::ACCESS
            && let Some(a) = keep
        {
            let (bits, equivalent) = acl::mode_of(a);
            perm = (perm & !0o777) | bits;
            if perm & libc::S_ISGID != 0 && !keeps_sgid(st.meta.gid) {
                perm &= !libc::S_ISGID;
            }
            if equivalent {
                keep = None;
            }
        }
        match keep {
            Some(a) => self.store_xattr(&mut st, ino, name, a, XattrSet::Upsert)?,
            None => {
                // Nothing to drop is fine: the mode alone says it.
                let _ = self.drop_xattr(&mut st, name);
                st.meta.ctime = super::Timestamp::now();
            }
        }
        st.meta.perm = perm as u16;
        Ok(())
    }

    /// Removes attribute `name` of the node whose state is `st` and gives
    /// its bytes back to the quota; returns them.
    pub(crate) fn drop_xattr(&self, st: &mut super::node::NodeState, name: &[u8]) -> Result<u64> {
        let freed = st.xattrs.remove(name)?;
        st.charge -= freed;
        self.quota.release(freed);
        Ok(freed)
    }

    /// Stores an attribute whose name was checked.
    fn store_xattr(
        &self,
        st: &mut super::node::NodeState,
        ino: super::Ino,
        name: &[u8],
        value: &[u8],
        mode: XattrSet,
    ) -> Result<()> {
        let (need, frees) = st.xattrs.plan_set(name, value, mode)?;
        let bytes = self.reserve(need, "setxattr", ino)?;
        st.xattrs.set(name, value);
        st.charge = st.charge + need - frees;
        bytes.keep();
        self.quota.release(frees);
        st.meta.ctime = super::Timestamp::now();
        Ok(())
    }

    /// The value of attribute `name` of `ino`.
    pub fn getxattr(&self, ino: super::Ino, name: &[u8]) -> Result<Vec<u8>> {
        check_name(name, self.cfg.posix_acl)?;
        let node = self.node(ino)?;
        let st = node.state.read();
        st.xattrs.get(name).map(<[u8]>::to_vec).ok_or(FsError::NoData)
    }

    /// The attribute names of `ino`, each followed by a NUL. Names in the
    /// `trusted.` namespace are listed only if `privileged()` says the
    /// caller may see them (Linux asks `CAP_SYS_ADMIN`, as tmpfs does); it
    /// is asked only of a node that has such a name.
    pub fn listxattr(&self, ino: super::Ino, privileged: impl FnOnce() -> bool) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        let st = node.state.read();
        Ok(st.xattrs.names(privileged))
    }

    /// Removes the attribute `name` of `ino`. Removing an ACL that is not
    /// there succeeds, as on Linux's own filesystems; the mode stays.
    pub fn removexattr(&self, ino: super::Ino, name: &[u8]) -> Result<()> {
        self.removexattr_by(ino, name, |_| true)
    }

    /// Removes the attribute `name` of `ino`. Removing the access ACL (of
    /// an engine made with `posix_acl`) leaves the permission bits as they
    /// are but clears the set-group-ID bit unless `keeps_sgid(gid)` says the
    /// caller is in the file's group `gid` or holds `CAP_FSETID`, as tmpfs
    /// does (`simple_set_acl` with no ACL; ext4 keeps the bit).
    pub fn removexattr_by(&self, ino: super::Ino, name: &[u8], keeps_sgid: impl FnOnce(u32) -> bool) -> Result<()> {
        check_name(name, self.cfg.posix_acl)?;
        let node = self.node(ino)?;
        let mut st = node.state.write();
        if st.freed {
            return Err(FsError::NotFound);
        }
        st.flags().check_fixed()?;
        match self.drop_xattr(&mut st, name) {
            Err(FsError::NoData) if acl::is_acl_name(name) => {}
            r => {
                r?;
            }
        }
        if self.cfg.posix_acl
            && name == acl::ACCESS
            && u32::from(st.meta.perm) & libc::S_ISGID != 0
            && !keeps_sgid(st.meta.gid)
        {
            st.meta.perm &= !(libc::S_ISGID as u16);
        }
        st.meta.ctime = super::Timestamp::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Xattrs {
        /// What the attributes should be charged: the list and every entry.
        fn charge(&self) -> u64 {
            list_charge(self.slots()) + self.items().iter().map(|(n, v)| cost(n, v)).sum::<u64>()
        }
    }

    fn name(i: usize) -> Vec<u8> {
        format!("user.{i:04}").into_bytes()
    }

    #[test]
    fn the_first_attribute_is_charged_the_list_and_the_last_frees_it() {
        let mut x = Xattrs::default();
        let (need, frees) = x.plan_set(b"user.a", b"1", XattrSet::Create).unwrap();
        assert_eq!((need, frees), (XATTR_COST + 7 + list_charge(MIN_SLOTS), 0));
        assert_eq!(list_charge(MIN_SLOTS), 32 + 4 * 32 + 32);
        x.set(b"user.a", b"1");
        assert_eq!((x.slots(), x.charge()), (MIN_SLOTS, need));
        // A replacement changes the value only; one of the same length is
        // copied in place and costs nothing.
        assert_eq!(x.plan_set(b"user.a", b"22", XattrSet::Replace).unwrap(), (XATTR_COST + 8, XATTR_COST + 7));
        assert_eq!(x.plan_set(b"user.a", b"2", XattrSet::Upsert).unwrap(), (0, 0));
        x.set(b"user.a", b"2");
        assert_eq!((x.get(b"user.a"), x.charge()), (Some(&b"2"[..]), need));
        // A shorter one is copied over the old one and frees the difference.
        x.set(b"user.a", &[9; 1000]);
        assert_eq!(x.charge(), need + 999);
        assert_eq!(x.plan_set(b"user.a", b"abc", XattrSet::Replace).unwrap(), (0, 997));
        x.set(b"user.a", b"abc");
        assert_eq!((x.get(b"user.a"), x.charge()), (Some(&b"abc"[..]), need + 2));
        x.set(b"user.a", b"");
        assert_eq!((x.get(b"user.a"), x.charge()), (Some(&b""[..]), need - 1));
        x.set(b"user.a", b"2");
        assert_eq!(x.remove(b"user.a").unwrap(), need);
        assert!(x.list.is_none());
    }

    #[test]
    fn xattr_cost_covers_what_the_allocator_adds_to_name_and_value() {
        // What a live allocation holds: its usable size and chunk header.
        let held = |b: &[u8]| {
            if b.is_empty() {
                return 0;
            }
            // SAFETY: `b` is the whole of a live allocation of the system allocator.
            let usable = unsafe { libc::malloc_usable_size(b.as_ptr() as *mut libc::c_void) };
            usable + 8
        };
        let mut worst = 0;
        for old in 0..=300usize {
            for new in 0..=old {
                let mut x = Xattrs::default();
                x.set(b"user.a", &vec![1; old]);
                x.set(b"user.a", &vec![2; new]);
                let (n, v) = &x.items()[0];
                worst = worst.max(held(n) - n.len() + held(v) - v.len());
            }
        }
        assert!(worst as u64 <= XATTR_COST, "{worst} bytes beyond the shortest name and its value");
    }

    #[test]
    fn a_new_nodes_list_is_charged_what_it_holds() {
        for n in [1, 2, 4, 5] {
            let names: [&'static [u8]; 5] = [b"user.a", b"user.b", b"user.c", b"user.d", b"user.e"];
            let attrs: Vec<(&'static [u8], Vec<u8>)> = names[..n].iter().map(|&k| (k, vec![7u8; 40])).collect();
            let charge = Xattrs::charge_for(&attrs);
            let x = Xattrs::with(attrs);
            assert_eq!((x.items().len(), x.charge()), (n, charge), "{n} attributes");
        }
        assert!(Xattrs::with(Vec::new()).list.is_none());
    }

    #[test]
    fn the_charge_follows_the_list_as_it_grows_and_shrinks() {
        let mut x = Xattrs::default();
        let mut charged = 0;
        for i in 0..3_000 {
            let (need, frees) = x.plan_set(&name(i), b"v", XattrSet::Create).unwrap();
            x.set(&name(i), b"v");
            charged = charged + need - frees;
            assert_eq!(charged, x.charge(), "after {} sets", i + 1);
        }
        // 4,096 slots: 128 KiB, which glibc maps.
        assert_eq!(x.slots(), 4_096);
        for i in (1..3_000).rev() {
            charged -= x.remove(&name(i)).unwrap();
            assert_eq!(charged, x.charge(), "{i} left");
            let (len, slots) = (x.items().len(), x.slots());
            assert!(slots == MIN_SLOTS || slots < 4 * (len + 1), "{len} attributes in {slots} slots");
        }
        assert_eq!(x.slots(), MIN_SLOTS);
        charged -= x.remove(&name(0)).unwrap();
        assert_eq!((charged, x.list.is_none()), (0, true));
    }
}
