//! Helpers shared by the integration tests: engine builders with tiny
//! limits and a fake memory probe; mount helpers live in `mount.rs`, a
//! shared file mapping in `map.rs`, threads acting as another user in
//! `creds.rs`.
#![allow(dead_code)]

pub mod creds;
pub mod map;
pub mod mount;
pub mod tree;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use scratchfs::{
    Caller, Engine, EngineConfig, Fh, GuardAction, GuardConfig, GuardMode, Ino, MemoryProbe, MemoryReading, OpenFlags,
    StoragePolicy, WriteOptions,
};

pub const ROOT: Caller = Caller::ROOT;
pub const USER: Caller = Caller { uid: 1000, gid: 1000, umask: 0, fsetid: false };

/// A memory probe whose reading the test controls.
#[derive(Clone)]
pub struct FakeProbe(pub Arc<AtomicU64>);

impl FakeProbe {
    pub fn new(available: u64) -> FakeProbe {
        FakeProbe(Arc::new(AtomicU64::new(available)))
    }
    pub fn set(&self, available: u64) {
        self.0.store(available, Ordering::Relaxed);
    }
}

impl MemoryProbe for FakeProbe {
    fn read(&self) -> Option<MemoryReading> {
        Some(MemoryReading { available: self.0.load(Ordering::Relaxed), source: "fake", cgroup_limit: None })
    }
}

/// Configuration with the guard off.
pub fn config(quota: u64, storage: StoragePolicy) -> EngineConfig {
    let mut cfg = EngineConfig::with_quota(quota);
    cfg.storage = storage;
    cfg.guard = GuardConfig { mode: GuardMode::None, action: GuardAction::Deny, interval: Duration::ZERO, headroom: 0 };
    cfg
}

pub fn engine(quota: u64, storage: StoragePolicy) -> Engine {
    Engine::with_probe(config(quota, storage), Box::new(FakeProbe::new(u64::MAX))).expect("engine")
}

/// The attribute names of POSIX ACLs.
pub const ACL_ACCESS: &[u8] = b"system.posix_acl_access";
pub const ACL_DEFAULT: &[u8] = b"system.posix_acl_default";

/// An ACL in the kernel's form: version 2, then (tag, perm, id) entries.
pub fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for &(tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

/// An engine that keeps POSIX ACLs, guard off.
pub fn acl_engine(quota: u64) -> Engine {
    let mut cfg = config(quota, StoragePolicy::Auto);
    cfg.posix_acl = true;
    Engine::with_probe(cfg, Box::new(FakeProbe::new(u64::MAX))).expect("engine")
}

pub fn rw() -> OpenFlags {
    OpenFlags { read: true, write: true, truncate: false, exclusive: false, append: false }
}

/// Creates `name` in `parent` holding `data`; returns its inode and an open handle.
pub fn file_with(e: &Engine, parent: Ino, name: &str, data: &[u8]) -> (Ino, Fh) {
    let (attr, fh) = e.create(parent, name.as_bytes(), 0o644, rw(), &ROOT).expect("create");
    if !data.is_empty() {
        e.write(fh, 0, data, WriteOptions::default()).expect("write");
    }
    (attr.ino, fh)
}

/// The whole content of an open file.
pub fn content(e: &Engine, fh: Fh) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let piece = e.read(fh, out.len() as u64, 1 << 20).expect("read");
        if piece.is_empty() {
            return out;
        }
        out.extend_from_slice(&piece);
    }
}

/// Names in a directory, excluding `.` and `..`.
pub fn names(e: &Engine, dir: Ino) -> Vec<String> {
    let mut out = Vec::new();
    e.readdir(dir, 2, |d| {
        out.push(String::from_utf8_lossy(d.name).into_owned());
        false
    })
    .expect("readdir");
    out
}

pub fn invariants(e: &Engine) {
    if let Err(msg) = e.check_invariants() {
        panic!("invariant broken: {msg}");
    }
}

/// Runs `f` on `e` on another thread and returns its result. The operations
/// tested with it take microseconds; a watchdog of a minute turns one that
/// walks a huge range (hours) into a failure instead of a hung test run.
pub fn returns<T: Send + 'static>(e: &Arc<Engine>, f: impl FnOnce(&Engine) -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let e = e.clone();
    std::thread::spawn(move || {
        let _ = tx.send(f(&e));
    });
    rx.recv_timeout(Duration::from_secs(60)).expect("still running after a minute")
}
