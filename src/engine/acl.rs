//! POSIX access control lists, for an engine made with `posix_acl` (the
//! `--acl` mount option): the binary form Linux passes in the
//! `system.posix_acl_access` and `system.posix_acl_default` attributes, and
//! the rules that tie an ACL to the mode bits, as Linux's own filesystems
//! apply them (`fs/posix_acl.c`). The kernel enforces the ACLs; the engine
//! stores them, keeps them and the mode in step, and hands a directory's
//! default ACL down to what is created in it.
//!
//! The form: a little-endian `u32` version (2), then entries of 8 bytes: a
//! `u16` tag, a `u16` permission (rwx), a `u32` id (meaningful for named
//! users and groups only). Valid lists are in tag order: the owner, named
//! users, the owning group, named groups, the mask (required when there are
//! named entries), others.

use super::error::{FsError, Result};

/// The attribute holding a node's access ACL.
pub(crate) const ACCESS: &[u8] = b"system.posix_acl_access";
/// The attribute holding a directory's default ACL.
pub(crate) const DEFAULT: &[u8] = b"system.posix_acl_default";

const VERSION: u32 = 2;
const HEADER: usize = 4;
const ENTRY: usize = 8;
const USER_OBJ: u16 = 0x01;
const USER: u16 = 0x02;
const GROUP_OBJ: u16 = 0x04;
const GROUP: u16 = 0x08;
const MASK: u16 = 0x10;
const OTHER: u16 = 0x20;
/// The id stored for entries that name nobody.
const UNDEFINED_ID: u32 = u32::MAX;
const RWX: u32 = 0o7;

/// Whether `name` is one of the two ACL attributes.
pub(crate) fn is_acl_name(name: &[u8]) -> bool {
    name == ACCESS || name == DEFAULT
}

fn tag(entry: &[u8]) -> u16 {
    u16::from_le_bytes([entry[0], entry[1]])
}

fn perm(entry: &[u8]) -> u32 {
    u32::from(u16::from_le_bytes([entry[2], entry[3]]))
}

fn id(entry: &[u8]) -> u32 {
    u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]])
}

fn set_perm(entry: &mut [u8], perm: u32) {
    entry[2..4].copy_from_slice(&((perm & RWX) as u16).to_le_bytes());
}

fn entries(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.get(HEADER..).unwrap_or_default().chunks_exact(ENTRY)
}

fn entries_mut(value: &mut [u8]) -> impl Iterator<Item = &mut [u8]> {
    value.get_mut(HEADER..).unwrap_or_default().chunks_exact_mut(ENTRY)
}

/// Checks `value` and returns it in canonical form (ids of unnamed entries
/// set to the undefined id, as the kernel writes them), or `None` for a
/// list of no entries, which removes the ACL. `InvalidArgument` for a
/// malformed or invalid list, `NotSupported` for an unknown version.
pub(crate) fn parse(value: &[u8]) -> Result<Option<Vec<u8>>> {
    let Some(version) = value.get(..HEADER) else { return Err(FsError::InvalidArgument) };
    if u32::from_le_bytes([version[0], version[1], version[2], version[3]]) != VERSION {
        return Err(FsError::NotSupported);
    }
    if !(value.len() - HEADER).is_multiple_of(ENTRY) {
        return Err(FsError::InvalidArgument);
    }
    if value.len() == HEADER {
        return Ok(None);
    }
    // The states of Linux's `posix_acl_valid`: what may come next.
    #[derive(PartialEq)]
    enum Next {
        Owner,
        Users,
        Groups,
        Other,
        End,
    }
    let mut next = Next::Owner;
    let mut needs_mask = false;
    for e in entries(value) {
        if perm(e) & !RWX != 0 {
            return Err(FsError::InvalidArgument);
        }
        next = match (tag(e), next) {
            (USER_OBJ, Next::Owner) => Next::Users,
            // A named entry must name someone (the kernel's ids map no one
            // to the undefined id).
            (USER | GROUP, _) if id(e) == UNDEFINED_ID => return Err(FsError::InvalidArgument),
            (USER, Next::Users) => {
                needs_mask = true;
                Next::Users
            }
            (GROUP_OBJ, Next::Users) => Next::Groups,
            (GROUP, Next::Groups) => {
                needs_mask = true;
                Next::Groups
            }
            (MASK, Next::Groups) => Next::Other,
            (OTHER, Next::Other) => Next::End,
            (OTHER, Next::Groups) if !needs_mask => Next::End,
            _ => return Err(FsError::InvalidArgument),
        };
    }
    if next != Next::End {
        return Err(FsError::InvalidArgument);
    }
    let mut canonical = value.to_vec();
    for e in entries_mut(&mut canonical) {
        if !matches!(tag(e), USER | GROUP) {
            e[4..8].copy_from_slice(&UNDEFINED_ID.to_le_bytes());
        }
    }
    Ok(Some(canonical))
}

/// The permission bits a valid ACL stands for (owner, the mask or else the
/// owning group, others), and whether the ACL says no more than they do
/// (no named entries and no mask), in which case no ACL need be kept.
pub(crate) fn mode_of(acl: &[u8]) -> (u32, bool) {
    let (mut mode, mut equivalent) = (0, true);
    let mut group = 0;
    let mut mask = None;
    for e in entries(acl) {
        match tag(e) {
            USER_OBJ => mode |= perm(e) << 6,
            GROUP_OBJ => group = perm(e),
            OTHER => mode |= perm(e),
            MASK => {
                mask = Some(perm(e));
                equivalent = false;
            }
            _ => equivalent = false,
        }
    }
    (mode | mask.unwrap_or(group) << 3, equivalent)
}

/// Rewrites a valid ACL for a `chmod` to `mode`: the owner's, the mask's
/// (or else the owning group's) and others' permissions become the mode's.
pub(crate) fn chmod(acl: &mut [u8], mode: u32) {
    let has_mask = entries(acl).any(|e| tag(e) == MASK);
    for e in entries_mut(acl) {
        match tag(e) {
            USER_OBJ => set_perm(e, mode >> 6),
            MASK => set_perm(e, mode >> 3),
            GROUP_OBJ if !has_mask => set_perm(e, mode >> 3),
            OTHER => set_perm(e, mode),
            _ => {}
        }
    }
}

/// Turns a copy of a directory's default ACL into the access ACL of a node
/// created in it with the permission bits `mode` asked for (`open`'s or
/// `mkdir`'s mode argument; the umask does not apply): each of the owner,
/// the mask (or else the owning group) and others keeps only what both it
/// and the mode allow. Returns the new node's permission bits and whether
/// the result says no more than they do (then no access ACL is kept).
pub(crate) fn inherit(acl: &mut [u8], mode: u32) -> (u32, bool) {
    let has_mask = entries(acl).any(|e| tag(e) == MASK);
    let mut out = mode & 0o777;
    // A mask, or any named entry, says more than the mode.
    let equivalent = !has_mask;
    let mut named = false;
    for e in entries_mut(acl) {
        let shift = match tag(e) {
            USER_OBJ => 6,
            MASK => 3,
            GROUP_OBJ if !has_mask => 3,
            OTHER => 0,
            USER | GROUP => {
                named = true;
                continue;
            }
            _ => continue,
        };
        let p = perm(e) & (mode >> shift);
        set_perm(e, p);
        out = (out & !(RWX << shift)) | p << shift;
    }
    (out, equivalent && !named)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = VERSION.to_le_bytes().to_vec();
        for &(t, p, id) in entries {
            v.extend_from_slice(&t.to_le_bytes());
            v.extend_from_slice(&p.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    const U: u32 = UNDEFINED_ID;

    #[test]
    fn parse_accepts_what_linux_accepts() {
        let minimal = acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 0, U)]);
        assert_eq!(parse(&minimal).unwrap(), Some(minimal.clone()));
        let named =
            acl(&[(USER_OBJ, 7, U), (USER, 5, 1000), (GROUP_OBJ, 5, U), (GROUP, 1, 50), (MASK, 7, U), (OTHER, 0, U)]);
        assert!(parse(&named).unwrap().is_some());
        // A mask without named entries is allowed (setfacl -m m::r).
        assert!(parse(&acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (MASK, 4, U), (OTHER, 0, U)])).unwrap().is_some());
        // Unnamed entries' ids are made canonical.
        let sloppy = acl(&[(USER_OBJ, 6, 5), (GROUP_OBJ, 4, 9), (OTHER, 0, 0)]);
        assert_eq!(parse(&sloppy).unwrap(), Some(minimal));
        // The header alone: no ACL.
        assert_eq!(parse(&acl(&[])).unwrap(), None);
    }

    #[test]
    fn parse_refuses_malformed_and_invalid_lists() {
        let bad = [
            Vec::new(),
            vec![2, 0, 0],
            [acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 0, U)]), vec![1]].concat(),
            // Missing the owning group; out of order; named user without a mask.
            acl(&[(USER_OBJ, 6, U), (OTHER, 0, U)]),
            acl(&[(GROUP_OBJ, 4, U), (USER_OBJ, 6, U), (OTHER, 0, U)]),
            acl(&[(USER_OBJ, 6, U), (USER, 6, 7), (GROUP_OBJ, 4, U), (OTHER, 0, U)]),
            // A named user who is nobody.
            acl(&[(USER_OBJ, 6, U), (USER, 6, U), (GROUP_OBJ, 4, U), (MASK, 6, U), (OTHER, 0, U)]),
            // A permission beyond rwx; an unknown tag; an entry after others.
            acl(&[(USER_OBJ, 8, U), (GROUP_OBJ, 4, U), (OTHER, 0, U)]),
            acl(&[(USER_OBJ, 6, U), (0x40, 4, U), (GROUP_OBJ, 4, U), (OTHER, 0, U)]),
            acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 0, U), (OTHER, 0, U)]),
        ];
        for v in bad {
            assert!(matches!(parse(&v), Err(FsError::InvalidArgument)), "{v:?}");
        }
        let mut v1 = acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 0, U)]);
        v1[0] = 1;
        assert!(matches!(parse(&v1), Err(FsError::NotSupported)));
    }

    #[test]
    fn mode_follows_the_mask_and_chmod_rewrites_it() {
        let mut a = acl(&[(USER_OBJ, 7, U), (USER, 7, 1000), (GROUP_OBJ, 4, U), (MASK, 5, U), (OTHER, 1, U)]);
        assert_eq!(mode_of(&a), (0o751, false));
        chmod(&mut a, 0o640);
        assert_eq!(a, acl(&[(USER_OBJ, 6, U), (USER, 7, 1000), (GROUP_OBJ, 4, U), (MASK, 4, U), (OTHER, 0, U)]));
        let mut plain = acl(&[(USER_OBJ, 6, U), (GROUP_OBJ, 4, U), (OTHER, 4, U)]);
        assert_eq!(mode_of(&plain), (0o644, true));
        chmod(&mut plain, 0o705);
        assert_eq!(mode_of(&plain), (0o705, true));
    }

    #[test]
    fn inheritance_masks_the_default_acl_with_the_mode_asked_for() {
        // setfacl -d -m u:1000:rwx,m::rwx on a directory; open(O_CREAT, 0666).
        let mut a = acl(&[(USER_OBJ, 7, U), (USER, 7, 1000), (GROUP_OBJ, 5, U), (MASK, 7, U), (OTHER, 5, U)]);
        assert_eq!(inherit(&mut a, 0o666), (0o664, false));
        assert_eq!(a, acl(&[(USER_OBJ, 6, U), (USER, 7, 1000), (GROUP_OBJ, 5, U), (MASK, 6, U), (OTHER, 4, U)]));
        // A default ACL of base entries only: the mode, no access ACL.
        let mut b = acl(&[(USER_OBJ, 7, U), (GROUP_OBJ, 0, U), (OTHER, 0, U)]);
        assert_eq!(inherit(&mut b, 0o777), (0o700, true));
    }
}
