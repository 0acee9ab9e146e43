//! Extended attributes of one node, each charged to the quota.

use super::error::{FsError, Result};
use super::types::XattrSet;

/// Longest attribute name (`XATTR_NAME_MAX`).
pub const XATTR_NAME_MAX: usize = 255;
/// Largest attribute value (`XATTR_SIZE_MAX`).
pub const XATTR_SIZE_MAX: usize = 65536;
/// Largest `listxattr` result (`XATTR_LIST_MAX`); a node's names must fit in it.
pub const XATTR_LIST_MAX: usize = 65536;
/// Quota bytes charged per attribute on top of name and value: its list slot
/// (32 bytes, up to twice that after the list grows) and the allocator's
/// headers and rounding of the name and value copies.
pub const XATTR_COST: u64 = 128;

/// Namespaces we store. `system.*` (POSIX ACLs) is not supported: the
/// kernel would not enforce an ACL we merely stored.
const NAMESPACES: [&[u8]; 3] = [b"user.", b"trusted.", b"security."];

type Name = Box<[u8]>;
type Value = Box<[u8]>;

/// Attributes as a short list, boxed so that a node without any (most of
/// them) pays one pointer: nodes rarely carry more than a few.
#[derive(Default)]
pub(crate) struct Xattrs {
    #[allow(clippy::box_collection, reason = "8 bytes in every node instead of a 24-byte Vec")]
    list: Option<Box<Vec<(Name, Value)>>>,
}

fn cost(name: &[u8], value: &[u8]) -> u64 {
    XATTR_COST + name.len() as u64 + value.len() as u64
}

/// Checks an attribute name: known namespace, non-empty suffix, length.
pub(crate) fn check_name(name: &[u8]) -> Result<()> {
    if name.len() > XATTR_NAME_MAX {
        return Err(FsError::Range);
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

    pub(crate) fn is_empty(&self) -> bool {
        self.items().is_empty()
    }

    fn list_len(&self) -> usize {
        self.items().iter().map(|(n, _)| n.len() + 1).sum()
    }

    /// Validates a set and returns `(bytes to reserve, bytes the old value frees)`.
    pub(crate) fn plan_set(&self, name: &[u8], value: &[u8], mode: XattrSet) -> Result<(u64, u64)> {
        check_name(name)?;
        if value.len() > XATTR_SIZE_MAX {
            return Err(FsError::TooBig);
        }
        match (self.get(name), mode) {
            (Some(_), XattrSet::Create | XattrSet::CreateAndReplace) => Err(FsError::Exists),
            (None, XattrSet::Replace | XattrSet::CreateAndReplace) => Err(FsError::NoData),
            (Some(old), _) => Ok((cost(name, value), cost(name, old))),
            (None, _) => {
                if self.list_len() + name.len() + 1 > XATTR_LIST_MAX {
                    return Err(FsError::AttrListFull);
                }
                Ok((cost(name, value), 0))
            }
        }
    }

    /// Sets an attribute validated by `plan_set`.
    pub(crate) fn set(&mut self, name: &[u8], value: &[u8]) {
        let list = self.list.get_or_insert_with(Box::default);
        match list.iter_mut().find(|(n, _)| &**n == name) {
            Some((_, v)) => *v = value.into(),
            None => list.push((name.into(), value.into())),
        }
    }

    /// Removes an attribute, returning the quota bytes it held.
    pub(crate) fn remove(&mut self, name: &[u8]) -> Result<u64> {
        check_name(name)?;
        let list = self.list.as_mut().ok_or(FsError::NoData)?;
        let at = list.iter().position(|(n, _)| &**n == name).ok_or(FsError::NoData)?;
        let (n, v) = list.swap_remove(at);
        if list.is_empty() {
            self.list = None;
        }
        Ok(cost(&n, &v))
    }

    /// All names, each followed by a NUL, as `listxattr` returns them.
    pub(crate) fn names(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.list_len());
        for (n, _) in self.items() {
            out.extend_from_slice(n);
            out.push(0);
        }
        out
    }

    /// Drops the `security.capability` attribute (a write or a change of
    /// owner revokes file capabilities); returns the quota bytes freed.
    pub(crate) fn kill_capability(&mut self) -> u64 {
        self.remove(b"security.capability").unwrap_or(0)
    }
}

impl super::Engine {
    /// Sets the attribute `name` of `ino` to `value`.
    pub fn setxattr(&self, ino: super::Ino, name: &[u8], value: &[u8], mode: XattrSet) -> Result<()> {
        let node = self.node(ino)?;
        let mut st = node.state.write();
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
        check_name(name)?;
        let node = self.node(ino)?;
        let st = node.state.read();
        st.xattrs.get(name).map(<[u8]>::to_vec).ok_or(FsError::NoData)
    }

    /// The attribute names of `ino`, each followed by a NUL.
    pub fn listxattr(&self, ino: super::Ino) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        let st = node.state.read();
        Ok(st.xattrs.names())
    }

    /// Removes the attribute `name` of `ino`.
    pub fn removexattr(&self, ino: super::Ino, name: &[u8]) -> Result<()> {
        let node = self.node(ino)?;
        let mut st = node.state.write();
        let freed = st.xattrs.remove(name)?;
        st.charge -= freed;
        self.quota.release(freed);
        st.meta.ctime = super::Timestamp::now();
        Ok(())
    }
}
