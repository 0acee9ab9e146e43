//! uring-probe: what one FUSE round trip costs on this machine over the two
//! transports the kernel offers, `/dev/fuse` reads and FUSE over io_uring,
//! with the same minimal filesystem behind both (one flat directory of
//! files that hold only a size).
//!
//!   uring-probe serve MNT --transport dev|uring [--threads N] [--attr-valid S]
//!   uring-probe stat FILE N            N stat(2) calls
//!   uring-probe create DIR N SIZE      N files created, SIZE bytes written each
//!   uring-probe unlink DIR N           the same N files unlinked
//!   uring-probe pingpong N same|cross  N wakeups over pipes, one or two CPUs
//!   uring-probe hold-latency           CPU latency request of 0 µs until killed
//!
//! Server options: `--threads N` (dev: blocking readers, 2), `--depth N`
//! (uring: entries per CPU queue, 2), `--taskrun defer|coop|none` (uring:
//! how the ring runs the kernel's task work, defer), `--attr-valid S` (3600).
//!
//! The server needs root, and for `uring` the fuse module parameter
//! `enable_uring` set before the mount.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use io_uring::{IoUring, cqueue, opcode, squeue, types};

// Opcodes (include/uapi/linux/fuse.h).
const LOOKUP: u32 = 1;
const FORGET: u32 = 2;
const GETATTR: u32 = 3;
const SETATTR: u32 = 4;
const UNLINK: u32 = 10;
const OPEN: u32 = 14;
const READ: u32 = 15;
const WRITE: u32 = 16;
const STATFS: u32 = 17;
const RELEASE: u32 = 18;
const GETXATTR: u32 = 22;
const FLUSH: u32 = 25;
const INIT: u32 = 26;
const OPENDIR: u32 = 27;
const READDIR: u32 = 28;
const RELEASEDIR: u32 = 29;
const ACCESS: u32 = 34;
const CREATE: u32 = 35;
const INTERRUPT: u32 = 36;
const BATCH_FORGET: u32 = 42;

// INIT flags.
const FUSE_ASYNC_READ: u32 = 1 << 0;
const FUSE_BIG_WRITES: u32 = 1 << 5;
const FUSE_PARALLEL_DIROPS: u32 = 1 << 18;
const FUSE_MAX_PAGES: u32 = 1 << 22;
const FUSE_INIT_EXT: u32 = 1 << 30;
const FUSE_OVER_IO_URING_FLAGS2: u32 = 1 << 9; // bit 41 of the 64-bit flags

const FUSE_IO_URING_CMD_REGISTER: u32 = 1;
const FUSE_IO_URING_CMD_COMMIT_AND_FETCH: u32 = 2;

const IN_HEADER: usize = 40;
const OUT_HEADER: usize = 16;
/// struct fuse_uring_req_header: in_out[128], op_in[128], ring_ent_in_out[32].
const RING_HEADER: usize = 288;
const OP_IN_AT: usize = 128;
const ENT_IN_OUT_AT: usize = 256;

const MAX_WRITE: u32 = 128 * 1024;
const MAX_PAGES: u16 = 32;
/// Kernel's ring payload floor: max(8 KiB, max_write, max_pages * 4 KiB).
const PAYLOAD: usize = 128 * 1024;

/// The `u32` at byte `at`, or 0 past the end (a short message from the
/// kernel then reads as zeros rather than taking the server down).
fn u32_at(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_ne_bytes)
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_ne_bytes)
}
fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_ne_bytes());
}
fn put64(v: &mut Vec<u8>, x: u64) {
    v.extend_from_slice(&x.to_ne_bytes());
}

#[derive(Clone, Copy)]
struct Header {
    opcode: u32,
    unique: u64,
    nodeid: u64,
}

impl Header {
    fn parse(b: &[u8]) -> Header {
        Header { opcode: u32_at(b, 4), unique: u64_at(b, 8), nodeid: u64_at(b, 16) }
    }
}

struct Node {
    mode: u32,
    size: u64,
    nlink: u32,
}

struct Inner {
    nodes: HashMap<u64, Node>,
    names: HashMap<Vec<u8>, u64>,
    next: u64,
}

struct Fs {
    inner: Mutex<Inner>,
    attr_valid: u64,
    requests: AtomicU64,
    /// Of those, the ones that came over io_uring.
    over_ring: AtomicU64,
}

enum Reply {
    Data,
    Error(i32),
    None,
}

fn name_of(payload: &[u8]) -> &[u8] {
    let end = payload.iter().position(|&c| c == 0).unwrap_or(payload.len());
    &payload[..end]
}

impl Fs {
    fn new(attr_valid: u64) -> Fs {
        let mut nodes = HashMap::new();
        nodes.insert(1, Node { mode: libc::S_IFDIR | 0o755, size: 0, nlink: 2 });
        Fs {
            inner: Mutex::new(Inner { nodes, names: HashMap::new(), next: 2 }),
            attr_valid,
            requests: AtomicU64::new(0),
            over_ring: AtomicU64::new(0),
        }
    }

    fn attr(out: &mut Vec<u8>, ino: u64, n: &Node) {
        put64(out, ino);
        put64(out, n.size);
        put64(out, n.size.div_ceil(512));
        for _ in 0..3 {
            put64(out, 1_700_000_000); // atime, mtime, ctime
        }
        for _ in 0..3 {
            put32(out, 0);
        }
        put32(out, n.mode);
        put32(out, n.nlink);
        put32(out, 0); // uid
        put32(out, 0); // gid
        put32(out, 0); // rdev
        put32(out, 4096); // blksize
        put32(out, 0); // flags
    }

    fn entry(&self, out: &mut Vec<u8>, ino: u64, n: Option<&Node>) {
        put64(out, ino);
        put64(out, 0); // generation
        put64(out, 3600); // entry_valid
        put64(out, self.attr_valid);
        put32(out, 0);
        put32(out, 0);
        match n {
            Some(n) => Fs::attr(out, ino, n),
            None => out.resize(out.len() + 88, 0),
        }
    }

    /// Serves one request; `op_in` is the opcode's fixed argument, `payload`
    /// what follows it. The reply's arguments go to `out`.
    fn handle(&self, h: Header, op_in: &[u8], payload: &[u8], out: &mut Vec<u8>) -> Reply {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let mut g = match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let inner = &mut *g;
        match h.opcode {
            LOOKUP => {
                let name = name_of(payload);
                match (h.nodeid, inner.names.get(name)) {
                    (1, Some(&ino)) => self.entry(out, ino, inner.nodes.get(&ino)),
                    // negative entry, cached by the kernel
                    _ => self.entry(out, 0, None),
                }
                Reply::Data
            }
            GETATTR | SETATTR => {
                let Some(n) = inner.nodes.get_mut(&h.nodeid) else { return Reply::Error(libc::ENOENT) };
                if h.opcode == SETATTR && u32_at(op_in, 0) & (1 << 3) != 0 {
                    n.size = u64_at(op_in, 16);
                }
                put64(out, self.attr_valid);
                put32(out, 0);
                put32(out, 0);
                Fs::attr(out, h.nodeid, n);
                Reply::Data
            }
            CREATE => {
                if h.nodeid != 1 {
                    return Reply::Error(libc::ENOTDIR);
                }
                let mode = u32_at(op_in, 4) & 0o7777 & !u32_at(op_in, 8);
                let name = name_of(payload).to_vec();
                if inner.names.contains_key(&name) {
                    return Reply::Error(libc::EEXIST);
                }
                let ino = inner.next;
                inner.next += 1;
                let n = Node { mode: libc::S_IFREG | mode, size: 0, nlink: 1 };
                self.entry(out, ino, Some(&n));
                inner.nodes.insert(ino, n);
                inner.names.insert(name, ino);
                put64(out, ino); // fh
                put32(out, 0); // open_flags
                put32(out, 0);
                Reply::Data
            }
            OPEN | OPENDIR => {
                put64(out, h.nodeid);
                put32(out, 0);
                put32(out, 0);
                Reply::Data
            }
            WRITE => {
                let off = u64_at(op_in, 8);
                let len = u32_at(op_in, 16);
                let Some(n) = inner.nodes.get_mut(&h.nodeid) else { return Reply::Error(libc::ENOENT) };
                n.size = n.size.max(off.saturating_add(u64::from(len)));
                put32(out, len);
                put32(out, 0);
                Reply::Data
            }
            READ | READDIR => Reply::Data, // empty: nothing is ever read back
            UNLINK => {
                let name = name_of(payload);
                let Some(ino) = inner.names.remove(name) else { return Reply::Error(libc::ENOENT) };
                if let Some(n) = inner.nodes.get_mut(&ino) {
                    n.nlink = 0;
                }
                Reply::Data
            }
            STATFS => {
                out.resize(80, 0);
                out[40..44].copy_from_slice(&4096u32.to_ne_bytes());
                out[44..48].copy_from_slice(&255u32.to_ne_bytes());
                Reply::Data
            }
            RELEASE | RELEASEDIR | ACCESS => Reply::Data,
            GETXATTR => Reply::Error(libc::ENODATA),
            FLUSH => Reply::Error(libc::ENOSYS),
            FORGET | BATCH_FORGET | INTERRUPT => Reply::None,
            _ => Reply::Error(libc::ENOSYS),
        }
    }
}

/// The fixed argument's size of each opcode, to split a `/dev/fuse` message.
fn op_in_size(opcode: u32) -> usize {
    match opcode {
        GETATTR => 16,
        SETATTR => 88,
        CREATE => 16,
        OPEN | OPENDIR => 8,
        READ | READDIR => 40,
        WRITE => 40,
        RELEASE | RELEASEDIR | FLUSH => 24,
        GETXATTR | ACCESS | FORGET | BATCH_FORGET | INTERRUPT => 8,
        INIT => 64,
        _ => 0,
    }
}

impl Reply {
    /// The reply's error (negated errno, 0 for data) and body, `None` for
    /// requests that get no reply.
    fn parts<'a>(&self, out: &'a [u8]) -> Option<(i32, &'a [u8])> {
        match self {
            Reply::Data => Some((0, out)),
            Reply::Error(e) => Some((-e, &[])),
            Reply::None => None,
        }
    }
}

/// struct fuse_out_header for a reply of `body_len` bytes.
fn out_header(unique: u64, error: i32, body_len: usize) -> [u8; OUT_HEADER] {
    let mut h = [0u8; OUT_HEADER];
    h[0..4].copy_from_slice(&((OUT_HEADER + body_len) as u32).to_ne_bytes());
    h[4..8].copy_from_slice(&error.to_ne_bytes());
    h[8..16].copy_from_slice(&unique.to_ne_bytes());
    h
}

fn write_reply(fd: RawFd, unique: u64, reply: &Reply, out: &[u8]) -> io::Result<()> {
    let Some((error, body)) = reply.parts(out) else { return Ok(()) };
    let mut msg = Vec::with_capacity(OUT_HEADER + body.len());
    msg.extend_from_slice(&out_header(unique, error, body.len()));
    msg.extend_from_slice(body);
    // SAFETY: msg is a valid buffer of msg.len() bytes.
    let n = unsafe { libc::write(fd, msg.as_ptr().cast(), msg.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        // ENOENT: the request was interrupted meanwhile.
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    Ok(())
}

/// Reads requests from `/dev/fuse` until the mount goes away.
fn dev_loop(fd: RawFd, fs: &Fs) {
    let mut buf = vec![0u8; PAYLOAD + 4096];
    let mut out = Vec::with_capacity(4096);
    loop {
        // SAFETY: buf is writable for buf.len() bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOENT) => continue,
                _ => return, // ENODEV: unmounted
            }
        }
        let msg = &buf[..n as usize];
        if msg.len() < IN_HEADER {
            continue;
        }
        let h = Header::parse(msg);
        let split = (IN_HEADER + op_in_size(h.opcode)).min(msg.len());
        out.clear();
        let reply = fs.handle(h, &msg[IN_HEADER..split], &msg[split..], &mut out);
        if write_reply(fd, h.unique, &reply, &out).is_err() {
            return;
        }
    }
}

/// Answers INIT (always over `/dev/fuse`).
fn init(fd: RawFd, uring: bool) -> io::Result<()> {
    let mut buf = vec![0u8; PAYLOAD + 4096];
    // SAFETY: buf is writable for buf.len() bytes.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let h = Header::parse(&buf);
    if h.opcode != INIT {
        return Err(io::Error::other(format!("expected INIT, got opcode {}", h.opcode)));
    }
    let a = buf.get(IN_HEADER..n as usize).unwrap_or_default();
    let (major, minor, readahead, flags, flags2) =
        (u32_at(a, 0), u32_at(a, 4), u32_at(a, 8), u32_at(a, 12), u32_at(a, 16));
    if major != 7 || minor < 36 {
        return Err(io::Error::other(format!("kernel FUSE {major}.{minor} too old")));
    }
    if uring && flags2 & FUSE_OVER_IO_URING_FLAGS2 == 0 {
        return Err(io::Error::other("kernel does not offer FUSE_OVER_IO_URING (enable_uring=N?)"));
    }
    let want = FUSE_ASYNC_READ | FUSE_BIG_WRITES | FUSE_PARALLEL_DIROPS | FUSE_MAX_PAGES | FUSE_INIT_EXT;
    let mut o = Vec::new();
    put32(&mut o, 7);
    put32(&mut o, minor);
    put32(&mut o, readahead);
    put32(&mut o, flags & want);
    o.extend_from_slice(&16u16.to_ne_bytes()); // max_background
    o.extend_from_slice(&12u16.to_ne_bytes()); // congestion_threshold
    put32(&mut o, MAX_WRITE);
    put32(&mut o, 1); // time_gran
    o.extend_from_slice(&MAX_PAGES.to_ne_bytes());
    o.extend_from_slice(&0u16.to_ne_bytes()); // map_alignment
    put32(&mut o, if uring { FUSE_OVER_IO_URING_FLAGS2 } else { 0 });
    o.resize(64, 0);
    write_reply(fd, h.unique, &Reply::Data, &o)
}

/// One registered ring entry: its header and payload buffers and the iovec
/// pair naming them, at addresses that never move.
struct Entry {
    header: Box<[u8; RING_HEADER]>,
    payload: Box<[u8]>,
    iov: Box<[libc::iovec; 2]>,
}

fn cmd_sqe(fd: RawFd, op: u32, qid: u16, commit_id: u64, e: &Entry, idx: u64) -> squeue::Entry128 {
    let mut cmd = [0u8; 80];
    cmd[8..16].copy_from_slice(&commit_id.to_ne_bytes());
    cmd[16..18].copy_from_slice(&qid.to_ne_bytes());
    let sqe =
        opcode::UringCmd80::new(types::Fd(fd), op).cmd(cmd).addr(Some(e.iov.as_ptr() as u64)).build().user_data(idx);
    // io-uring 0.7 sets no `len` on a uring command; FUSE wants 2 (iovecs).
    // SAFETY: Entry128 is repr(C), 128 bytes, the SQE's `len` is at byte 24.
    let mut raw: [u8; 128] = unsafe { std::mem::transmute(sqe) };
    raw[24..28].copy_from_slice(&2u32.to_ne_bytes());
    unsafe { std::mem::transmute(raw) }
}

/// Serves queue `qid` from a thread pinned to that CPU.
fn uring_loop(fd: RawFd, qid: u16, depth: usize, taskrun: &str, fs: &Fs) -> io::Result<()> {
    pin(usize::from(qid))?;
    let mut b = IoUring::<squeue::Entry128, cqueue::Entry>::builder();
    match taskrun {
        "defer" => b.setup_single_issuer().setup_defer_taskrun(),
        "coop" => b.setup_coop_taskrun(),
        _ => &mut b,
    };
    let mut ring: IoUring<squeue::Entry128, cqueue::Entry> = b.build(depth as u32 * 2)?;
    let mut ents: Vec<Entry> = (0..depth)
        .map(|_| {
            let mut header = Box::new([0u8; RING_HEADER]);
            let mut payload = vec![0u8; PAYLOAD].into_boxed_slice();
            let iov = Box::new([
                libc::iovec { iov_base: header.as_mut_ptr().cast(), iov_len: RING_HEADER },
                libc::iovec { iov_base: payload.as_mut_ptr().cast(), iov_len: PAYLOAD },
            ]);
            Entry { header, payload, iov }
        })
        .collect();
    for (i, e) in ents.iter().enumerate() {
        let sqe = cmd_sqe(fd, FUSE_IO_URING_CMD_REGISTER, qid, 0, e, i as u64);
        // SAFETY: the entry's buffers live as long as the ring.
        unsafe { ring.submission().push(&sqe) }.map_err(|_| io::Error::other("SQ full"))?;
    }
    ring.submit()?;
    let mut out = Vec::with_capacity(4096);
    loop {
        ring.submit_and_wait(1)?;
        let done: Vec<(u64, i32)> = ring.completion().map(|c| (c.user_data(), c.result())).collect();
        for (idx, res) in done {
            if res < 0 {
                if res == -libc::ENOTCONN || res == -libc::ECANCELED || res == -libc::ENODEV {
                    return Ok(()); // unmounted
                }
                return Err(io::Error::from_raw_os_error(-res));
            }
            let Some(e) = ents.get_mut(idx as usize) else { continue };
            fs.over_ring.fetch_add(1, Ordering::Relaxed);
            let h = Header::parse(&e.header[..]);
            let psz = u32_at(&e.header[..], ENT_IN_OUT_AT + 16) as usize;
            out.clear();
            let reply = fs.handle(h, &e.header[OP_IN_AT..ENT_IN_OUT_AT], &e.payload[..psz.min(PAYLOAD)], &mut out);
            // FORGET and INTERRUPT, the requests without a reply, never come over the ring.
            let (error, body) = reply.parts(&out).unwrap_or((0, &[]));
            e.header[..OUT_HEADER].copy_from_slice(&out_header(h.unique, error, body.len()));
            e.payload[..body.len()].copy_from_slice(body);
            e.header[ENT_IN_OUT_AT + 16..ENT_IN_OUT_AT + 20].copy_from_slice(&(body.len() as u32).to_ne_bytes());
            let sqe = cmd_sqe(fd, FUSE_IO_URING_CMD_COMMIT_AND_FETCH, qid, h.unique, e, idx);
            // SAFETY: as above.
            unsafe { ring.submission().push(&sqe) }.map_err(|_| io::Error::other("SQ full"))?;
        }
    }
}

fn pin(cpu: usize) -> io::Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET stays within it for cpu < 1024.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn mount(mnt: &str) -> io::Result<OwnedFd> {
    let dev = CString::new("/dev/fuse").expect("no NUL");
    // SAFETY: dev is a valid C string.
    let raw = unsafe { libc::open(dev.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raw was just opened and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let opts = format!("fd={raw},rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other");
    let c = |s: &str| CString::new(s).map_err(|_| io::Error::other("NUL in argument"));
    let (src, target, fstype, data) = (c("uring-probe")?, c(mnt)?, c("fuse.uring-probe")?, c(&opts)?);
    // SAFETY: all pointers are valid C strings.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn serve(args: &[String]) -> io::Result<()> {
    let mnt = args.first().ok_or_else(|| io::Error::other("serve MNT ..."))?;
    let mut transport = "dev".to_string();
    let mut threads = 2usize;
    let mut attr_valid = 3600u64;
    let mut depth = 2usize;
    let mut taskrun = "defer".to_string();
    let mut it = args[1..].iter();
    while let Some(a) = it.next() {
        let v = it.next().ok_or_else(|| io::Error::other(format!("{a} needs a value")))?;
        let num = || v.parse::<u64>().map_err(|_| io::Error::other(format!("{a}: not a number: {v}")));
        match a.as_str() {
            "--transport" => transport = v.clone(),
            "--threads" => threads = num()? as usize,
            "--attr-valid" => attr_valid = num()?,
            "--depth" => depth = num()? as usize,
            "--taskrun" => taskrun = v.clone(),
            _ => return Err(io::Error::other(format!("unknown option {a}"))),
        }
    }
    let uring = match transport.as_str() {
        "dev" => false,
        "uring" => true,
        t => return Err(io::Error::other(format!("unknown transport {t}"))),
    };
    let fd = mount(mnt)?;
    init(fd.as_raw_fd(), uring)?;
    let fs = Arc::new(Fs::new(attr_valid));
    let raw = fd.as_raw_fd();
    let mut handles = Vec::new();
    if uring {
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.max(1) as u16;
        for q in 0..cpus {
            let fs = Arc::clone(&fs);
            let taskrun = taskrun.clone();
            handles.push(std::thread::spawn(move || {
                if let Err(e) = uring_loop(raw, q, depth, &taskrun, &fs) {
                    eprintln!("uring-probe: queue {q}: {e}");
                }
            }));
        }
        // FORGET and INTERRUPT still come through /dev/fuse.
        let fs2 = Arc::clone(&fs);
        handles.push(std::thread::spawn(move || dev_loop(raw, &fs2)));
    } else {
        for _ in 0..threads {
            let fs = Arc::clone(&fs);
            handles.push(std::thread::spawn(move || dev_loop(raw, &fs)));
        }
    }
    for h in handles {
        let _ = h.join();
    }
    let (all, ring) = (fs.requests.load(Ordering::Relaxed), fs.over_ring.load(Ordering::Relaxed));
    eprintln!("uring-probe: {all} requests, {ring} over io_uring");
    drop(fd);
    Ok(())
}

fn cstr(p: &str) -> io::Result<CString> {
    CString::new(p).map_err(|_| io::Error::other(format!("NUL in path {p:?}")))
}

fn client(cmd: &str, args: &[String]) -> io::Result<()> {
    let target = args.first().ok_or_else(|| io::Error::other("missing path"))?;
    let n: u64 = args.get(1).and_then(|s| s.parse().ok()).ok_or_else(|| io::Error::other("missing count"))?;
    let size: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(4096);
    let data = vec![b'x'; size];
    let t = Instant::now();
    for i in 0..n {
        let r = match cmd {
            "stat" => {
                let p = cstr(target)?;
                // SAFETY: st is written by stat.
                let mut st: libc::stat = unsafe { std::mem::zeroed() };
                unsafe { libc::stat(p.as_ptr(), &mut st) }
            }
            "create" => {
                let p = cstr(&format!("{target}/f{i}"))?;
                // SAFETY: p is a valid C string.
                let fd = unsafe { libc::open(p.as_ptr(), libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC, 0o644) };
                if fd < 0 {
                    -1
                } else {
                    // SAFETY: data is valid for its length; fd is ours.
                    let w = unsafe { libc::write(fd, data.as_ptr().cast(), data.len()) };
                    unsafe { libc::close(fd) };
                    if w as usize == data.len() { 0 } else { -1 }
                }
            }
            "unlink" => {
                let p = cstr(&format!("{target}/f{i}"))?;
                // SAFETY: p is a valid C string.
                unsafe { libc::unlink(p.as_ptr()) }
            }
            _ => return Err(io::Error::other(format!("unknown command {cmd}"))),
        };
        if r != 0 {
            return Err(io::Error::other(format!("{cmd} #{i}: {}", io::Error::last_os_error())));
        }
    }
    let s = t.elapsed().as_secs_f64();
    println!("{cmd} {n}: {s:.3} s, {:.2} us/op", s * 1e6 / n as f64);
    Ok(())
}

/// Holds a CPU latency request of 0 µs (idle CPUs poll instead of halting,
/// as scratchfs does while it busy-polls) until killed.
fn hold_latency() -> io::Result<()> {
    let path = CString::new("/dev/cpu_dma_latency").map_err(io::Error::other)?;
    // SAFETY: path is a valid C string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let zero = 0i32.to_ne_bytes();
    // SAFETY: zero is 4 readable bytes.
    if unsafe { libc::write(fd, zero.as_ptr().cast(), zero.len()) } != 4 {
        return Err(io::Error::last_os_error());
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}

/// Two threads hand a byte back and forth over pipes N times, on one CPU or
/// on two: what a wakeup and a context switch cost here, with no FUSE.
fn pingpong(args: &[String]) -> io::Result<()> {
    let n: u64 = args.first().and_then(|s| s.parse().ok()).ok_or_else(|| io::Error::other("pingpong N same|cross"))?;
    let cross = match args.get(1).map(String::as_str) {
        Some("same") => false,
        Some("cross") => true,
        _ => return Err(io::Error::other("pingpong N same|cross")),
    };
    let pipe = || -> io::Result<[RawFd; 2]> {
        let mut p = [0; 2];
        // SAFETY: p has room for two descriptors.
        if unsafe { libc::pipe(p.as_mut_ptr()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(p)
    };
    let (there, back) = (pipe()?, pipe()?);
    let hop = |from: RawFd, to: RawFd| -> bool {
        let mut b = [0u8; 1];
        // SAFETY: b is one writable byte.
        unsafe { libc::read(from, b.as_mut_ptr().cast(), 1) == 1 && libc::write(to, b.as_ptr().cast(), 1) == 1 }
    };
    pin(0)?;
    let echo = std::thread::spawn(move || {
        let _ = pin(usize::from(cross));
        for _ in 0..n {
            if !hop(there[0], back[1]) {
                return;
            }
        }
    });
    let t = Instant::now();
    for _ in 0..n {
        let b = [1u8; 1];
        // SAFETY: b is one readable byte.
        if unsafe { libc::write(there[1], b.as_ptr().cast(), 1) } != 1 {
            return Err(io::Error::last_os_error());
        }
        let mut r = [0u8; 1];
        // SAFETY: r is one writable byte.
        if unsafe { libc::read(back[0], r.as_mut_ptr().cast(), 1) } != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    let s = t.elapsed().as_secs_f64();
    let _ = echo.join();
    println!("pingpong {n}: {s:.3} s, {:.2} us/op", s * 1e6 / n as f64);
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some(c @ ("stat" | "create" | "unlink")) => client(c, &args[1..]),
        Some("pingpong") => pingpong(&args[1..]),
        Some("hold-latency") => hold_latency(),
        _ => Err(io::Error::other(
            "usage: uring-probe serve MNT [options] | stat|create|unlink ... | pingpong N same|cross | hold-latency",
        )),
    };
    if let Err(e) = r {
        eprintln!("uring-probe: {e}");
        std::process::exit(1);
    }
}
