//! Model-based test: random operation sequences run against the engine and
//! against a plain reference model (nested maps and byte vectors). After
//! every step the two trees must be identical — names, kinds, link counts,
//! sizes, contents, link targets, xattrs, hard-link identity — and the quota
//! invariants must hold (`used == sum of charges <= max`, node count exact).
//!
//! Errors are compared too: where the model predicts an error the engine
//! must give the same one. The only divergence allowed is a `NoSpace`
//! refusal where the model would have succeeded; the model then stays
//! unchanged, so the comparison proves the refusal changed nothing.
//!
//! `PROPTEST_CASES` sets the number of sequences (default 256).

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use proptest::prelude::*;
use scratchfs::{
    Engine, EngineConfig, Fallocate, FileKind, FsError, Ino, OpenFlags, RenameMode, ScratchFs, SetAttr, StoragePolicy,
    WriteOptions, XattrSet,
};

const NAMES: [&[u8]; 4] = [b"a", b"b", b"c", b"\xff\xfe"];

type PathIdx = Vec<usize>;

#[derive(Clone, Debug)]
enum Op {
    Create(PathIdx, usize),
    Mkdir(PathIdx, usize),
    Symlink(PathIdx, usize, usize),
    Link(PathIdx, PathIdx, usize),
    Unlink(PathIdx),
    Rmdir(PathIdx),
    /// Modes 0-2: replace, no-replace, exchange; 3-4: replace and
    /// no-replace leaving a whiteout.
    Rename(PathIdx, PathIdx, usize, u8),
    Write(PathIdx, u32, u32, u8),
    Truncate(PathIdx, u32),
    Punch(PathIdx, u32, u32),
    Allocate(PathIdx, u32, u32, bool),
    SetXattr(PathIdx, usize, usize),
    RemoveXattr(PathIdx, usize),
}

/// A path naming an entry: mostly one level deep, where creations happen.
fn path() -> impl Strategy<Value = PathIdx> {
    prop_oneof![
        1 => Just(Vec::new()),
        7 => prop::collection::vec(0..NAMES.len(), 1),
        2 => prop::collection::vec(0..NAMES.len(), 2),
    ]
}

/// A directory to create in: mostly the root.
fn dir_path() -> impl Strategy<Value = PathIdx> {
    prop_oneof![
        6 => Just(Vec::new()),
        3 => prop::collection::vec(0..NAMES.len(), 1),
        1 => prop::collection::vec(0..NAMES.len(), 2),
    ]
}

fn offset() -> impl Strategy<Value = u32> {
    prop_oneof![0..5000u32, 0..(2u32 << 20) + 300_000]
}

fn length() -> impl Strategy<Value = u32> {
    prop_oneof![1..100u32, 1..70_000u32, 1..1_200_000u32]
}

fn op() -> impl Strategy<Value = Op> {
    let name = 0..NAMES.len();
    prop_oneof![
        5 => (dir_path(), name.clone()).prop_map(|(p, n)| Op::Create(p, n)),
        2 => (dir_path(), name.clone()).prop_map(|(p, n)| Op::Mkdir(p, n)),
        1 => (dir_path(), name.clone(), 1..300usize).prop_map(|(p, n, t)| Op::Symlink(p, n, t)),
        1 => (path(), dir_path(), name.clone()).prop_map(|(s, d, n)| Op::Link(s, d, n)),
        2 => path().prop_map(Op::Unlink),
        1 => path().prop_map(Op::Rmdir),
        3 => (path(), dir_path(), name.clone(), 0..5u8).prop_map(|(s, d, n, m)| Op::Rename(s, d, n, m)),
        10 => (path(), offset(), length(), any::<u8>()).prop_map(|(p, o, l, b)| Op::Write(p, o, l, b)),
        2 => (path(), offset()).prop_map(|(p, s)| Op::Truncate(p, s)),
        1 => (path(), offset(), length()).prop_map(|(p, o, l)| Op::Punch(p, o, l)),
        1 => (path(), offset(), length(), any::<bool>()).prop_map(|(p, o, l, k)| Op::Allocate(p, o, l, k)),
        1 => (path(), name.clone(), 0..3000usize).prop_map(|(p, n, l)| Op::SetXattr(p, n, l)),
        1 => (path(), name).prop_map(|(p, n)| Op::RemoveXattr(p, n)),
    ]
}

// ------------------------------------------------------------------ model

#[derive(Clone, Debug, PartialEq)]
enum Body {
    File(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, usize>),
    Link(Vec<u8>),
    /// What `RENAME_WHITEOUT` leaves: a character device 0:0, mode 0.
    Whiteout,
}

#[derive(Clone, Debug)]
struct MNode {
    body: Body,
    nlink: u32,
    parent: usize,
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

#[derive(Clone, Debug)]
struct Model {
    nodes: HashMap<usize, MNode>,
    next: usize,
}

type MResult = Result<(), FsError>;

impl Model {
    fn new() -> Model {
        let root = MNode { body: Body::Dir(BTreeMap::new()), nlink: 2, parent: 0, xattrs: BTreeMap::new() };
        Model { nodes: HashMap::from([(0, root)]), next: 1 }
    }

    fn entries(&self, dir: usize) -> &BTreeMap<Vec<u8>, usize> {
        match &self.nodes[&dir].body {
            Body::Dir(e) => e,
            _ => unreachable!("not a directory"),
        }
    }

    fn entries_mut(&mut self, dir: usize) -> &mut BTreeMap<Vec<u8>, usize> {
        match self.nodes.get_mut(&dir).map(|n| &mut n.body) {
            Some(Body::Dir(e)) => e,
            _ => unreachable!("not a directory"),
        }
    }

    fn is_dir(&self, id: usize) -> bool {
        matches!(self.nodes[&id].body, Body::Dir(_))
    }

    fn resolve(&self, path: &[usize]) -> Result<usize, FsError> {
        let mut id = 0;
        for &c in path {
            if !self.is_dir(id) {
                return Err(FsError::NotDir);
            }
            id = *self.entries(id).get(NAMES[c]).ok_or(FsError::NotFound)?;
        }
        Ok(id)
    }

    fn dir(&self, path: &[usize]) -> Result<usize, FsError> {
        let id = self.resolve(path)?;
        if self.is_dir(id) { Ok(id) } else { Err(FsError::NotDir) }
    }

    fn add(&mut self, dir: usize, name: &[u8], body: Body) -> MResult {
        let dir_body = matches!(body, Body::Dir(_));
        if self.entries(dir).contains_key(name) {
            return Err(FsError::Exists);
        }
        let id = self.next;
        self.next += 1;
        let nlink = if dir_body { 2 } else { 1 };
        self.nodes.insert(id, MNode { body, nlink, parent: dir, xattrs: BTreeMap::new() });
        self.entries_mut(dir).insert(name.to_vec(), id);
        if dir_body {
            self.nodes.get_mut(&dir).unwrap().nlink += 1;
        }
        Ok(())
    }

    fn drop_link(&mut self, id: usize) {
        let n = self.nodes.get_mut(&id).unwrap();
        n.nlink = if matches!(n.body, Body::Dir(_)) { 0 } else { n.nlink - 1 };
        if n.nlink == 0 {
            self.nodes.remove(&id);
        }
    }

    fn is_ancestor_or_self(&self, a: usize, mut d: usize) -> bool {
        loop {
            if a == d {
                return true;
            }
            if d == 0 {
                return false;
            }
            d = self.nodes[&d].parent;
        }
    }

    fn file_mut(&mut self, id: usize) -> Result<&mut Vec<u8>, FsError> {
        match &mut self.nodes.get_mut(&id).unwrap().body {
            Body::File(data) => Ok(data),
            Body::Dir(_) => Err(FsError::IsDir),
            Body::Link(_) | Body::Whiteout => Err(FsError::InvalidArgument),
        }
    }

    fn rename(&mut self, sdir: usize, sname: &[u8], ddir: usize, dname: &[u8], mode: RenameMode) -> MResult {
        let src = *self.entries(sdir).get(sname).ok_or(FsError::NotFound)?;
        let dst = self.entries(ddir).get(dname).copied();
        match (mode, dst) {
            (RenameMode::NoReplace, Some(_)) => return Err(FsError::Exists),
            (RenameMode::Exchange, None) => return Err(FsError::NotFound),
            (_, Some(d)) if d == src => return Ok(()),
            _ => {}
        }
        let same = sdir == ddir;
        let (src_dir, dst_dir) = (self.is_dir(src), dst.is_some_and(|d| self.is_dir(d)));
        if src_dir && !same && self.is_ancestor_or_self(src, ddir) {
            return Err(FsError::InvalidArgument);
        }
        if let Some(d) = dst
            && dst_dir
            && !same
            && self.is_ancestor_or_self(d, sdir)
        {
            return Err(if mode == RenameMode::Exchange { FsError::InvalidArgument } else { FsError::NotEmpty });
        }
        if mode != RenameMode::Exchange
            && let Some(d) = dst
        {
            if src_dir && !dst_dir {
                return Err(FsError::NotDir);
            }
            if !src_dir && dst_dir {
                return Err(FsError::IsDir);
            }
            if dst_dir && !self.entries(d).is_empty() {
                return Err(FsError::NotEmpty);
            }
        }
        if mode == RenameMode::Exchange {
            let d = dst.unwrap();
            self.entries_mut(ddir).insert(dname.to_vec(), src);
            self.entries_mut(sdir).insert(sname.to_vec(), d);
            if src_dir {
                self.nodes.get_mut(&src).unwrap().parent = ddir;
            }
            if dst_dir {
                self.nodes.get_mut(&d).unwrap().parent = sdir;
            }
            if !same && src_dir != dst_dir {
                let delta: i32 = if src_dir { 1 } else { -1 };
                let s = self.nodes.get_mut(&sdir).unwrap();
                s.nlink = s.nlink.saturating_add_signed(-delta);
                let t = self.nodes.get_mut(&ddir).unwrap();
                t.nlink = t.nlink.saturating_add_signed(delta);
            }
            return Ok(());
        }
        self.entries_mut(sdir).remove(sname);
        self.entries_mut(ddir).insert(dname.to_vec(), src);
        if let Some(d) = dst {
            if dst_dir {
                self.nodes.get_mut(&ddir).unwrap().nlink -= 1;
            }
            self.drop_link(d);
        }
        if src_dir && !same {
            self.nodes.get_mut(&src).unwrap().parent = ddir;
            self.nodes.get_mut(&sdir).unwrap().nlink -= 1;
            self.nodes.get_mut(&ddir).unwrap().nlink += 1;
        }
        Ok(())
    }
}

fn split(p: &[usize]) -> Option<(&[usize], &[u8])> {
    p.split_last().map(|(last, parent)| (parent, NAMES[*last]))
}

// ------------------------------------------------------------ execution

struct Harness {
    fs: ScratchFs,
    model: Model,
}

impl Harness {
    fn e(&self) -> &Engine {
        self.fs.engine()
    }

    fn ino(&self, p: &[usize]) -> Result<Ino, FsError> {
        let path: Vec<u8> = p.iter().flat_map(|&c| [b"/".as_slice(), NAMES[c]].concat()).collect();
        self.fs.lookup(std::ffi::OsStr::from_encoded_bytes_unchecked_safe(&path))
    }

    /// Runs one operation on both sides; returns the engine's result.
    fn step(&mut self, op: &Op) -> Result<(), String> {
        let mut m = self.model.clone();
        let (got, want): (MResult, MResult) = match op {
            Op::Create(d, n) => (
                self.ino(d).and_then(|p| {
                    let flags = OpenFlags { exclusive: true, ..rw() };
                    let (a, fh) = self.e().create(p, NAMES[*n], 0o644, flags, &ROOT)?;
                    self.e().release(fh)?;
                    self.e().forget(a.ino, 1);
                    Ok(())
                }),
                m.dir(d).and_then(|id| m.add(id, NAMES[*n], Body::File(Vec::new()))),
            ),
            Op::Mkdir(d, n) => (
                self.ino(d).and_then(|p| self.e().mkdir(p, NAMES[*n], 0o755, &ROOT).map(|a| self.e().forget(a.ino, 1))),
                m.dir(d).and_then(|id| m.add(id, NAMES[*n], Body::Dir(BTreeMap::new()))),
            ),
            Op::Symlink(d, n, len) => {
                let target = vec![b't'; *len];
                (
                    self.ino(d).and_then(|p| {
                        self.e().symlink(p, NAMES[*n], &target, &ROOT).map(|a| self.e().forget(a.ino, 1))
                    }),
                    m.dir(d).and_then(|id| m.add(id, NAMES[*n], Body::Link(target.clone()))),
                )
            }
            Op::Link(s, d, n) => (
                self.ino(s).and_then(|src| {
                    let dir = self.ino(d)?;
                    self.e().link(src, dir, NAMES[*n]).map(|a| self.e().forget(a.ino, 1))
                }),
                m.resolve(s).and_then(|src| {
                    let dir = m.resolve(d)?;
                    if m.is_dir(src) {
                        return Err(FsError::NotPermitted);
                    }
                    if !m.is_dir(dir) {
                        return Err(FsError::NotDir);
                    }
                    if m.entries(dir).contains_key(NAMES[*n]) {
                        return Err(FsError::Exists);
                    }
                    m.entries_mut(dir).insert(NAMES[*n].to_vec(), src);
                    m.nodes.get_mut(&src).unwrap().nlink += 1;
                    Ok(())
                }),
            ),
            Op::Unlink(p) | Op::Rmdir(p) => {
                let Some((parent, name)) = split(p) else { return Ok(()) };
                let want_dir = matches!(op, Op::Rmdir(_));
                (
                    self.ino(parent)
                        .and_then(|d| if want_dir { self.e().rmdir(d, name) } else { self.e().unlink(d, name) }),
                    m.dir(parent).and_then(|d| {
                        let id = *m.entries(d).get(name).ok_or(FsError::NotFound)?;
                        match (want_dir, m.is_dir(id)) {
                            (true, false) => return Err(FsError::NotDir),
                            (false, true) => return Err(FsError::IsDir),
                            (true, true) if !m.entries(id).is_empty() => return Err(FsError::NotEmpty),
                            _ => {}
                        }
                        m.entries_mut(d).remove(name);
                        if want_dir {
                            m.nodes.get_mut(&d).unwrap().nlink -= 1;
                        }
                        m.drop_link(id);
                        Ok(())
                    }),
                )
            }
            Op::Rename(s, d, n, mode) => {
                let Some((sp, sname)) = split(s) else { return Ok(()) };
                let (mode, whiteout) = match *mode {
                    0 => (RenameMode::Replace, false),
                    1 => (RenameMode::NoReplace, false),
                    2 => (RenameMode::Exchange, false),
                    3 => (RenameMode::Replace, true),
                    _ => (RenameMode::NoReplace, true),
                };
                (
                    self.ino(sp).and_then(|a| {
                        let b = self.ino(d)?;
                        if whiteout {
                            self.e().rename_whiteout(a, sname, b, NAMES[*n], mode == RenameMode::NoReplace, &ROOT)
                        } else {
                            self.e().rename(a, sname, b, NAMES[*n], mode)
                        }
                    }),
                    m.resolve(sp).and_then(|a| {
                        let b = m.resolve(d)?;
                        if !m.is_dir(a) || !m.is_dir(b) {
                            return Err(FsError::NotDir);
                        }
                        // Two names of one file: nothing happens, no whiteout either.
                        let same = m.entries(a).get(sname).is_some_and(|s| m.entries(b).get(NAMES[*n]) == Some(s));
                        m.rename(a, sname, b, NAMES[*n], mode)?;
                        if whiteout && !same {
                            m.add(a, sname, Body::Whiteout)?;
                        }
                        Ok(())
                    }),
                )
            }
            Op::Write(p, off, len, byte) => {
                let data = vec![*byte; *len as usize];
                let off = u64::from(*off);
                (
                    self.ino(p).and_then(|ino| {
                        let fh = self.e().open(ino, rw(), &ROOT)?;
                        let r = self.e().write(fh, off, &data, WriteOptions::default()).map(drop);
                        self.e().release(fh)?;
                        r
                    }),
                    m.resolve(p).and_then(|id| {
                        let f = m.file_mut(id)?;
                        let end = off as usize + data.len();
                        if f.len() < end {
                            f.resize(end, 0);
                        }
                        f[off as usize..end].copy_from_slice(&data);
                        Ok(())
                    }),
                )
            }
            Op::Truncate(p, size) => (
                self.ino(p).and_then(|ino| {
                    self.e()
                        .setattr(ino, &SetAttr { size: Some(u64::from(*size)), ..SetAttr::default() }, &ROOT)
                        .map(drop)
                }),
                m.resolve(p).and_then(|id| {
                    m.file_mut(id)?.resize(*size as usize, 0);
                    Ok(())
                }),
            ),
            Op::Punch(p, off, len) | Op::Allocate(p, off, len, _) => {
                let (off, len) = (u64::from(*off), u64::from(*len));
                let mode = match op {
                    Op::Allocate(.., keep) => Fallocate::Allocate { keep_size: *keep },
                    _ => Fallocate::PunchHole,
                };
                (
                    self.ino(p).and_then(|ino| {
                        let fh = self.e().open(ino, rw(), &ROOT)?;
                        let r = self.e().fallocate(fh, off, len, mode);
                        self.e().release(fh)?;
                        r
                    }),
                    m.resolve(p).and_then(|id| {
                        let f = m.file_mut(id)?;
                        let end = (off + len) as usize;
                        match mode {
                            Fallocate::PunchHole => {
                                let e = end.min(f.len());
                                if (off as usize) < e {
                                    f[off as usize..e].fill(0);
                                }
                            }
                            Fallocate::Allocate { keep_size: false } if f.len() < end => f.resize(end, 0),
                            _ => {}
                        }
                        Ok(())
                    }),
                )
            }
            Op::SetXattr(p, n, len) => {
                let name = [b"user.".as_slice(), NAMES[*n]].concat();
                let value = vec![7u8; *len];
                (
                    self.ino(p).and_then(|ino| self.e().setxattr(ino, &name, &value, XattrSet::Upsert)),
                    m.resolve(p).map(|id| {
                        m.nodes.get_mut(&id).unwrap().xattrs.insert(name.clone(), value.clone());
                    }),
                )
            }
            Op::RemoveXattr(p, n) => {
                let name = [b"user.".as_slice(), NAMES[*n]].concat();
                (
                    self.ino(p).and_then(|ino| self.e().removexattr(ino, &name)),
                    m.resolve(p).and_then(|id| {
                        m.nodes.get_mut(&id).unwrap().xattrs.remove(&name).map(drop).ok_or(FsError::NoData)
                    }),
                )
            }
        };
        match (&got, &want) {
            (Ok(()), Ok(())) => self.model = m,
            (Err(FsError::NoSpace(_)), Ok(())) => {}
            (Err(a), Err(b)) if a == b => {}
            _ => return Err(format!("{op:?}: engine {got:?}, model {want:?}")),
        }
        Ok(())
    }

    /// Compares the whole tree and the accounting.
    fn compare(&self) -> Result<(), String> {
        self.e().check_invariants()?;
        let mut ids: HashMap<usize, Ino> = HashMap::new();
        self.compare_node_meta(b"/", 0, Ino::ROOT)?;
        self.compare_dir(0, Ino::ROOT, &mut ids)?;
        let nodes = self.e().stats().nodes;
        if nodes != self.model.nodes.len() as u64 {
            return Err(format!("engine has {nodes} nodes, model {}", self.model.nodes.len()));
        }
        Ok(())
    }

    /// Link count and xattrs of one node.
    fn compare_node_meta(&self, name: &[u8], id: usize, ino: Ino) -> Result<scratchfs::Attr, String> {
        let node = &self.model.nodes[&id];
        let attr = self.e().getattr(ino).map_err(|e| e.to_string())?;
        if attr.nlink != node.nlink {
            return Err(format!("{name:?}: nlink {} vs model {}", attr.nlink, node.nlink));
        }
        let xattrs = self.e().listxattr(ino, || true).map_err(|e| e.to_string())?;
        let mut names: Vec<&[u8]> = xattrs.split(|&b| b == 0).filter(|s| !s.is_empty()).collect();
        names.sort();
        let want: Vec<&[u8]> = node.xattrs.keys().map(Vec::as_slice).collect();
        if names != want {
            return Err(format!("{name:?}: xattrs {names:?} vs {want:?}"));
        }
        for (k, v) in &node.xattrs {
            if self.e().getxattr(ino, k).as_ref() != Ok(v) {
                return Err(format!("{name:?}: xattr {k:?} differs"));
            }
        }
        Ok(attr)
    }

    fn compare_dir(&self, id: usize, ino: Ino, ids: &mut HashMap<usize, Ino>) -> Result<(), String> {
        let mut listed = Vec::new();
        self.e()
            .readdir(ino, 2, |d| {
                listed.push((d.name.to_vec(), d.ino, d.kind));
                false
            })
            .map_err(|e| e.to_string())?;
        listed.sort_by(|a, b| a.0.cmp(&b.0));
        let expect: Vec<&Vec<u8>> = self.model.entries(id).keys().collect();
        let got: Vec<&Vec<u8>> = listed.iter().map(|(n, ..)| n).collect();
        if got != expect {
            return Err(format!("dir {id}: engine lists {got:?}, model {expect:?}"));
        }
        for (name, cino, kind) in &listed {
            let cid = self.model.entries(id)[name];
            if let Some(prev) = ids.insert(cid, *cino)
                && prev != *cino
            {
                return Err(format!("hard link identity broken for {name:?}"));
            }
            let node = &self.model.nodes[&cid];
            let attr = self.compare_node_meta(name, cid, *cino)?;
            match (&node.body, kind) {
                (Body::Dir(_), FileKind::Directory) => self.compare_dir(cid, *cino, ids)?,
                (Body::Link(t), FileKind::Symlink) => {
                    if self.e().readlink(*cino).as_ref() != Ok(t) {
                        return Err(format!("{name:?}: link target differs"));
                    }
                }
                (Body::Whiteout, FileKind::CharDevice) => {
                    if (attr.perm, attr.rdev) != (0, 0) {
                        return Err(format!("{name:?}: whiteout mode {:o} rdev {}", attr.perm, attr.rdev));
                    }
                }
                (Body::File(data), FileKind::RegularFile) => {
                    if attr.size != data.len() as u64 {
                        return Err(format!("{name:?}: size {} vs model {}", attr.size, data.len()));
                    }
                    let fh = self.e().open(*cino, OpenFlags { read: true, ..OpenFlags::default() }, &ROOT).unwrap();
                    let got = content(self.e(), fh);
                    self.e().release(fh).unwrap();
                    if &got != data {
                        let at = got.iter().zip(data).position(|(a, b)| a != b);
                        return Err(format!("{name:?}: content differs (first at {at:?})"));
                    }
                }
                (b, k) => return Err(format!("{name:?}: kind {k:?} vs model {b:?}")),
            }
        }
        Ok(())
    }
}

/// `OsStr` from bytes on Unix.
trait FromBytes {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr;
}

impl FromBytes for std::ffi::OsStr {
    fn from_encoded_bytes_unchecked_safe(b: &[u8]) -> &std::ffi::OsStr {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn run(cfg: EngineConfig, ops: &[Op]) -> Result<(), String> {
    let engine = Engine::with_probe(cfg, Box::new(FakeProbe::new(u64::MAX))).map_err(|e| e.to_string())?;
    let mut h = Harness { fs: ScratchFs::from_engine(std::sync::Arc::new(engine)), model: Model::new() };
    for (i, op) in ops.iter().enumerate() {
        h.step(op).map_err(|e| format!("step {i}: {e}"))?;
        h.compare().map_err(|e| format!("after step {i} {op:?}: {e}"))?;
    }
    // Deleting everything returns the quota to the root's own charge.
    for (name, _) in h.model.entries(0).clone() {
        remove_tree(h.e(), Ino::ROOT, &name);
    }
    for name in h.model.nodes[&0].xattrs.keys() {
        h.e().removexattr(Ino::ROOT, name).map_err(|e| e.to_string())?;
    }
    let s = h.e().stats();
    let baseline = scratchfs::NODE_COST + scratchfs::DIR_INDEX_COST;
    if s.used_bytes != baseline || s.nodes != 1 {
        return Err(format!("after deleting everything: {} bytes, {} nodes", s.used_bytes, s.nodes));
    }
    h.e().check_invariants()
}

fn remove_tree(e: &Engine, parent: Ino, name: &[u8]) {
    let node = e.lookup(parent, name).unwrap();
    e.forget(node.ino, 1);
    if node.kind == FileKind::Directory {
        let mut kids = Vec::new();
        e.readdir(node.ino, 2, |d| {
            kids.push(d.name.to_vec());
            false
        })
        .unwrap();
        for k in kids {
            remove_tree(e, node.ino, &k);
        }
        e.rmdir(parent, name).unwrap();
    } else {
        e.unlink(parent, name).unwrap();
    }
}

fn config_strategy() -> impl Strategy<Value = EngineConfig> {
    (
        prop_oneof![Just(64u64 << 10), Just(3 << 20), Just(64 << 20)],
        prop_oneof![Just(None), Just(Some(12u64))],
        prop_oneof![Just(StoragePolicy::Auto), Just(StoragePolicy::Sequential), Just(StoragePolicy::RandomAccess)],
        prop_oneof![Just(0u64), Just(100_000), Just(512 << 20)],
    )
        .prop_map(|(quota, nodes, storage, limit)| {
            let mut cfg = config(quota, storage);
            cfg.max_nodes = nodes;
            cfg.promotion_limit = limit;
            cfg
        })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        max_shrink_iters: 2000,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engine_matches_model(cfg in config_strategy(), ops in prop::collection::vec(op(), 1..70)) {
        if let Err(msg) = run(cfg, &ops) {
            return Err(TestCaseError::fail(msg));
        }
    }
}
