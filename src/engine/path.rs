//! A path-based convenience layer for in-process use, built only on the
//! inode API. Paths are byte strings split on `/` and resolved from the root
//! (a leading `/` is optional); `.` and `..` are understood; symbolic links
//! are not followed.
//!
//! ```
//! use scratchfs::{EngineConfig, FsError, NoSpaceCause, ScratchFs};
//!
//! let fs = ScratchFs::new(EngineConfig::with_quota(1 << 20))?;
//! fs.create_dir_all("logs/today")?;
//! fs.write("logs/today/a.txt", b"hello")?;
//! fs.append("logs/today/a.txt", b", world")?;
//! assert_eq!(fs.read("logs/today/a.txt")?, b"hello, world");
//! fs.rename("logs/today/a.txt", "logs/a.txt")?;
//! let names: Vec<Vec<u8>> = fs.read_dir("logs")?.into_iter().map(|e| e.name).collect();
//! assert_eq!(names, [b"today".to_vec(), b"a.txt".to_vec()]);
//!
//! // A write that does not fit is refused, and changes nothing.
//! match fs.write("big", &vec![0u8; 2 << 20]) {
//!     Err(FsError::NoSpace(NoSpaceCause::Quota { .. })) => {}
//!     other => panic!("expected a quota refusal, got {other:?}"),
//! }
//! assert_eq!(fs.metadata("big")?.size, 0);
//! fs.remove_file("big")?;
//! assert!(fs.stats().used_bytes < 4096);
//! # Ok::<(), FsError>(())
//! ```

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use super::types::{Attr, Caller, DirEntry, Fh, Ino, OpenFlags, RenameMode, WriteOptions};
use super::{Engine, EngineConfig, FsError, Result, Stats};

/// An in-memory filesystem used through paths, without mounting.
pub struct ScratchFs {
    engine: Arc<Engine>,
    caller: Caller,
}

fn bytes(path: &Path) -> &[u8] {
    path.as_os_str().as_bytes()
}

fn components(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    path.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".")
}

impl ScratchFs {
    /// A new, empty filesystem. Fails if the memory guard refuses the quota.
    pub fn new(cfg: EngineConfig) -> Result<ScratchFs> {
        Ok(ScratchFs::from_engine(Arc::new(Engine::new(cfg)?)))
    }

    /// Path access to an existing engine (new nodes are owned by root).
    pub fn from_engine(engine: Arc<Engine>) -> ScratchFs {
        ScratchFs { engine, caller: Caller::ROOT }
    }

    /// The engine underneath, for inode-level calls.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Quota, node and storage figures.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// The inode at `path`.
    pub fn lookup(&self, path: impl AsRef<Path>) -> Result<Ino> {
        let mut ino = Ino::ROOT;
        for name in components(bytes(path.as_ref())) {
            ino = self.engine.resolve(ino, name)?.ino;
        }
        Ok(ino)
    }

    /// The parent directory's inode and the last component of `path`.
    fn split<'p>(&self, path: &'p Path) -> Result<(Ino, &'p [u8])> {
        let mut parts: Vec<&[u8]> = components(bytes(path)).collect();
        let last = parts.pop().ok_or(FsError::InvalidArgument)?;
        let mut ino = Ino::ROOT;
        for name in parts {
            ino = self.engine.resolve(ino, name)?.ino;
        }
        Ok((ino, last))
    }

    /// Attributes of `path`.
    pub fn metadata(&self, path: impl AsRef<Path>) -> Result<Attr> {
        self.engine.getattr(self.lookup(path)?)
    }

    /// Creates a directory (mode 0755).
    pub fn create_dir(&self, path: impl AsRef<Path>) -> Result<()> {
        let (parent, name) = self.split(path.as_ref())?;
        let attr = self.engine.mkdir(parent, name, 0o755, &self.caller)?;
        self.engine.forget(attr.ino, 1);
        Ok(())
    }

    /// Creates a directory and any missing parents.
    pub fn create_dir_all(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut ino = Ino::ROOT;
        for name in components(bytes(path.as_ref())) {
            ino = match self.engine.resolve(ino, name) {
                Ok(node) if node.is_dir() => node.ino,
                Ok(_) => return Err(FsError::NotDir),
                Err(FsError::NotFound) => match self.engine.mkdir(ino, name, 0o755, &self.caller) {
                    Ok(attr) => {
                        self.engine.forget(attr.ino, 1);
                        attr.ino
                    }
                    Err(FsError::Exists) => self.engine.resolve(ino, name)?.ino,
                    Err(e) => return Err(e),
                },
                Err(e) => return Err(e),
            };
        }
        Ok(())
    }

    fn open_for_write(&self, path: &Path, truncate: bool) -> Result<(Ino, Fh)> {
        let (parent, name) = self.split(path)?;
        let flags = OpenFlags { read: false, write: true, truncate, exclusive: false, append: false };
        let (attr, fh) = self.engine.create(parent, name, 0o644, flags, &self.caller)?;
        self.engine.forget(attr.ino, 1);
        Ok((attr.ino, fh))
    }

    fn write_from(&self, fh: Fh, data: &[u8], start: u64) -> Result<()> {
        let mut off = start;
        for piece in data.chunks(1 << 20) {
            self.engine.write(fh, off, piece, WriteOptions::default())?;
            off += piece.len() as u64;
        }
        Ok(())
    }

    /// Creates or truncates the file at `path` and writes `data` to it. A
    /// write refused part-way leaves the bytes written before the refusal.
    pub fn write(&self, path: impl AsRef<Path>, data: &[u8]) -> Result<()> {
        let (_, fh) = self.open_for_write(path.as_ref(), true)?;
        let result = self.write_from(fh, data, 0);
        self.engine.release(fh)?;
        result
    }

    /// Appends `data` to the file at `path`, creating it if needed.
    pub fn append(&self, path: impl AsRef<Path>, data: &[u8]) -> Result<()> {
        let (ino, fh) = self.open_for_write(path.as_ref(), false)?;
        let result = self.engine.getattr(ino).and_then(|a| self.write_from(fh, data, a.size));
        self.engine.release(fh)?;
        result
    }

    /// The whole content of the file at `path`.
    pub fn read(&self, path: impl AsRef<Path>) -> Result<Vec<u8>> {
        let ino = self.lookup(path)?;
        let fh = self.engine.open(ino, OpenFlags { read: true, ..OpenFlags::default() }, &self.caller)?;
        let mut out = Vec::new();
        let result = loop {
            match self.engine.read(fh, out.len() as u64, 1 << 20) {
                Ok(piece) if piece.is_empty() => break Ok(()),
                Ok(piece) => out.extend_from_slice(&piece),
                Err(e) => break Err(e),
            }
        };
        self.engine.release(fh)?;
        result.map(|()| out)
    }

    /// The entries of the directory at `path`, without `.` and `..`, in
    /// creation order.
    pub fn read_dir(&self, path: impl AsRef<Path>) -> Result<Vec<DirEntry>> {
        let ino = self.lookup(path)?;
        let mut out = Vec::new();
        self.engine.readdir(ino, 2, |d| {
            out.push(DirEntry { ino: d.ino, kind: d.kind, name: d.name.to_vec(), cookie: d.cookie });
            false
        })?;
        Ok(out)
    }

    /// Renames `from` to `to`, replacing a file or empty directory at `to`.
    pub fn rename(&self, from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<()> {
        let (op, oname) = self.split(from.as_ref())?;
        let (np, nname) = self.split(to.as_ref())?;
        self.engine.rename(op, oname, np, nname, RenameMode::Replace)
    }

    /// Removes the file (or link, or special file) at `path`.
    pub fn remove_file(&self, path: impl AsRef<Path>) -> Result<()> {
        let (parent, name) = self.split(path.as_ref())?;
        self.engine.unlink(parent, name)
    }

    /// Removes the empty directory at `path`.
    pub fn remove_dir(&self, path: impl AsRef<Path>) -> Result<()> {
        let (parent, name) = self.split(path.as_ref())?;
        self.engine.rmdir(parent, name)
    }

    /// Creates a symbolic link at `path` pointing to `target`.
    pub fn symlink(&self, target: impl AsRef<Path>, path: impl AsRef<Path>) -> Result<()> {
        let (parent, name) = self.split(path.as_ref())?;
        let attr = self.engine.symlink(parent, name, bytes(target.as_ref()), &self.caller)?;
        self.engine.forget(attr.ino, 1);
        Ok(())
    }
}
