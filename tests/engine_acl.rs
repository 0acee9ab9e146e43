//! POSIX ACLs through the engine, as random sequences: ACLs set (valid and
//! not), removed, modes changed, nodes made in directories with default
//! ACLs and removed, on a quota small enough to refuse some of them. After
//! every step the quota's books balance, every access ACL agrees with its
//! node's mode, only directories carry default ACLs, and a refused step
//! changed nothing.

mod common;

use common::*;
use proptest::prelude::*;
use scratchfs::{Caller, Engine, FsError, Ino, XattrSet};

const ACCESS: &[u8] = ACL_ACCESS;
const DEFAULT: &[u8] = ACL_DEFAULT;
const UNDEFINED: u32 = u32::MAX;

/// An ACL in the kernel's form from its parts; `named` users and groups
/// are (id, perm), ids kept sorted and unique.
fn acl_of(
    owner: u16,
    users: &[(u32, u16)],
    group: u16,
    groups: &[(u32, u16)],
    mask: Option<u16>,
    other: u16,
) -> Vec<u8> {
    let mut e = vec![(0x01, owner, UNDEFINED)];
    e.extend(users.iter().map(|&(id, p)| (0x02, p, id)));
    e.push((0x04, group, UNDEFINED));
    e.extend(groups.iter().map(|&(id, p)| (0x08, p, id)));
    e.extend(mask.map(|m| (0x10, m, UNDEFINED)));
    e.push((0x20, other, UNDEFINED));
    acl(&e)
}

/// The entries of an ACL as (tag, perm).
fn entries(v: &[u8]) -> Vec<(u16, u32)> {
    v[4..]
        .chunks_exact(8)
        .map(|e| (u16::from_le_bytes([e[0], e[1]]), u32::from(u16::from_le_bytes([e[2], e[3]]))))
        .collect()
}

fn perm() -> impl Strategy<Value = u16> {
    0u16..8
}

/// A valid ACL, or (one time in five) one with a defect.
fn acl_value() -> impl Strategy<Value = Vec<u8>> {
    let named = || prop::collection::btree_map(0u32..6, perm(), 0..3);
    (perm(), named(), perm(), named(), prop::option::of(perm()), perm(), 0u8..10).prop_map(
        |(o, users, g, groups, mask, other, defect)| {
            let users: Vec<_> = users.into_iter().collect();
            let groups: Vec<_> = groups.into_iter().collect();
            let mask = if users.is_empty() && groups.is_empty() { mask } else { mask.or(Some(7)) };
            let mut v = acl_of(o, &users, g, &groups, mask, other);
            match defect {
                0 => v.truncate(v.len() - 3),                         // not whole entries
                1 => v[4..6].copy_from_slice(&0x20u16.to_le_bytes()), // others first
                _ => {}
            }
            v
        },
    )
}

#[derive(Clone, Debug)]
enum Op {
    SetAcl { node: usize, default: bool, value: Vec<u8> },
    RemoveAcl { node: usize, default: bool },
    Chmod { node: usize, mode: u32 },
    Make { dir: usize, kind: u8, mode: u32, umask: u32 },
    Unlink { node: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (any::<usize>(), any::<bool>(), acl_value()).prop_map(|(node, default, value)| Op::SetAcl { node, default, value }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(node, default)| Op::RemoveAcl { node, default }),
        2 => (any::<usize>(), 0u32..0o10000).prop_map(|(node, mode)| Op::Chmod { node, mode }),
        4 => (any::<usize>(), 0u8..4, 0u32..0o10000, 0u32..0o1000).prop_map(|(dir, kind, mode, umask)| Op::Make { dir, kind, mode, umask }),
        1 => any::<usize>().prop_map(|node| Op::Unlink { node }),
    ]
}

/// A node the test made: where it is named, and whether it is a directory.
struct Made {
    ino: Ino,
    parent: Ino,
    name: Vec<u8>,
    dir: bool,
}

/// A node's mode bits, access ACL and default ACL.
type NodeAcls = (u16, Option<Vec<u8>>, Option<Vec<u8>>);

/// What a refused step must leave as it was.
fn snapshot(e: &Engine, made: &[Made]) -> Vec<NodeAcls> {
    made.iter()
        .map(|m| (e.getattr(m.ino).unwrap().perm, e.getxattr(m.ino, ACCESS).ok(), e.getxattr(m.ino, DEFAULT).ok()))
        .collect()
}

fn check(e: &Engine, made: &[Made]) {
    invariants(e);
    for m in made {
        let perm = u32::from(e.getattr(m.ino).unwrap().perm);
        if let Ok(a) = e.getxattr(m.ino, ACCESS) {
            let es = entries(&a);
            let find = |tag| es.iter().find(|(t, _)| *t == tag).map(|&(_, p)| p);
            let group = find(0x10).or(find(0x04)).unwrap();
            assert_eq!(
                perm & 0o777,
                find(0x01).unwrap() << 6 | group << 3 | find(0x20).unwrap(),
                "mode against {es:?}"
            );
            assert!(es.len() > 3, "an ACL the mode says in full was kept: {es:?}");
        }
        if !m.dir {
            assert_eq!(e.getxattr(m.ino, DEFAULT), Err(FsError::NoData), "a default ACL on a non-directory");
        }
    }
}

fn run(ops: Vec<Op>) {
    let e = acl_engine(6 << 10);
    let mut made = vec![Made { ino: Ino::ROOT, parent: Ino::ROOT, name: Vec::new(), dir: true }];
    for (step, op) in ops.into_iter().enumerate() {
        let before = (snapshot(&e, &made), e.stats().used_bytes);
        let n = made.len();
        let result = match &op {
            Op::SetAcl { node, default, value } => {
                let name = if *default { DEFAULT } else { ACCESS };
                e.setxattr(made[node % n].ino, name, value, XattrSet::Upsert)
            }
            Op::RemoveAcl { node, default } => {
                e.removexattr(made[node % n].ino, if *default { DEFAULT } else { ACCESS })
            }
            Op::Chmod { node, mode } => {
                let set = scratchfs::SetAttr { mode: Some(*mode), ..Default::default() };
                e.setattr(made[node % n].ino, &set, &ROOT).map(|_| ())
            }
            Op::Make { dir, kind, mode, umask } => {
                let dirs: Vec<Ino> = made.iter().filter(|m| m.dir).map(|m| m.ino).collect();
                let parent = dirs[dir % dirs.len()];
                let name = format!("n{step}").into_bytes();
                let who = Caller { umask: *umask, ..ROOT };
                let default = e.getxattr(parent, DEFAULT).ok();
                let made_now = match kind {
                    0 => e.mknod(parent, &name, libc::S_IFREG | mode, 0, &who),
                    1 => e.mkdir(parent, &name, *mode, &who),
                    2 => e.mknod(parent, &name, libc::S_IFIFO | mode, 0, &who),
                    _ => e.symlink(parent, &name, b"target", &who),
                };
                made_now.map(|a| {
                    let asked = if *kind == 3 { 0o777 } else { mode & 0o777 };
                    assert_eq!(u32::from(a.perm) & 0o777 & !asked, 0, "more than the mode asked for");
                    if default.is_none() && *kind != 3 {
                        assert_eq!(u32::from(a.perm) & 0o777, asked & !umask, "the umask applies");
                    }
                    let inherited = e.getxattr(a.ino, DEFAULT).ok();
                    assert_eq!(inherited, if *kind == 1 { default } else { None }, "default ACL handed down");
                    made.push(Made { ino: a.ino, parent, name, dir: *kind == 1 });
                })
            }
            Op::Unlink { node } => {
                let i = node % n;
                if i == 0 {
                    continue;
                }
                let m = &made[i];
                let r = if m.dir { e.rmdir(m.parent, &m.name) } else { e.unlink(m.parent, &m.name) };
                if r.is_ok() {
                    let gone = made.remove(i);
                    e.forget(gone.ino, 1);
                }
                r
            }
        };
        if let Err(err) = &result {
            assert!(
                matches!(
                    err,
                    FsError::NoSpace(_)
                        | FsError::InvalidArgument
                        | FsError::AccessDenied
                        | FsError::NotEmpty
                        | FsError::NotSupported
                ),
                "step {step} {op:?}: unexpected {err:?}"
            );
            if !matches!(op, Op::Unlink { .. }) {
                assert_eq!(
                    (snapshot(&e, &made), e.stats().used_bytes),
                    before,
                    "step {step}: refused {op:?} changed something"
                );
            }
        }
        check(&e, &made);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn acls_stay_consistent_with_modes_and_the_quota(ops in prop::collection::vec(op(), 1..60)) {
        run(ops);
    }
}
