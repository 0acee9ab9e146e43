#!/usr/bin/env python3
"""bench.py - runs the scratchfs benchmark workloads on scratchfs and tmpfs
(and optionally peers: rclone's :memory: backend and, when a locally built
binary is given, libfuse's memfs_ll example) and writes the raw results as JSON.

Called by scripts/bench.sh, which installs the tools, builds scratchfs and
cleans up stray mounts; run that rather than this. Standard library only.

Every workload runs on every filesystem in the same run, repetition by
repetition, alternating which filesystem goes first, so slow drift on a busy
machine (other jobs, thermal) hits both sides alike. The figure reported is
the median over the repetitions; the ratio is always "fraction of tmpfs
speed" (scratchfs/tmpfs for rates, tmpfs/scratchfs for times).
"""

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

# ---------------------------------------------------------------------------
# Small helpers

VERBOSE = True


def log(msg):
    if VERBOSE:
        print(msg, flush=True)


def warn(msg):
    print(f"bench: warning: {msg}", file=sys.stderr, flush=True)


def parse_size(text):
    """'4G', '512M', '64k', '1048576' -> bytes (powers of 1024)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", str(text))
    if not m:
        raise ValueError(f"bad size: {text!r}")
    mult = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def human(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            v = n / div
            return f"{v:.0f} {unit}" if v == int(v) else f"{v:.1f} {unit}"
    return f"{n} B"


def as_root_cmd(cmd):
    return cmd if os.geteuid() == 0 else ["sudo", "-n"] + cmd


def run(cmd, cwd=None, check=True, capture=True, shell=False, env=None):
    r = subprocess.run(cmd, cwd=cwd, shell=shell, env=env, text=True,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        err = r.stderr.strip().splitlines()
        more = f"[{len(err) - 4} more lines] " if len(err) > 4 else ""
        raise RuntimeError(f"command failed ({r.returncode}): "
                           f"{cmd if isinstance(cmd, str) else shlex.join(cmd)}: {more}"
                           + " | ".join(l[:300] for l in err[-4:]))
    return r


def timed(cmd, **kw):
    """Runs a command, returns its wall-clock time in seconds."""
    t0 = time.perf_counter()
    run(cmd, **kw)
    return time.perf_counter() - t0


@contextlib.contextmanager
def counting(fs, ctx, metric):
    """Counts the FUSE requests a step costs, by kind, where the filesystem
    counts them (scratchfs); kept per repetition in ctx["requests"][metric].
    The counts are read outside the timed region. Requests the kernel sends
    without waiting (FORGET, RELEASE) count when they arrive, which may be
    after the step."""
    before = fs.request_counts()
    yield
    if before is None:
        return
    after = fs.request_counts()
    own = getattr(fs, "stats_requests", {})
    diff = {k: v - before.get(k, 0) - own.get(k, 0) for k, v in after.items() if k not in ("read_bytes", "write_bytes")}
    ctx.setdefault("requests", {}).setdefault(metric, []).append({k: v for k, v in diff.items() if v > 0})


DROP_CACHES_OK = None


def cpu_busy(window=0.25):
    """Fraction of all CPUs busy (not idle or iowait) over `window` seconds."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = sample()
    time.sleep(window)
    t1, i1 = sample()
    return 1.0 - (i1 - i0) / max(1, t1 - t0)


def wait_quiet(limit=30.0, busy=0.10):
    """Waits (up to `limit` s) until the machine is quiet: under `busy` of
    all CPUs in use for a quarter second. A peer's daemon still working in
    the background (rclone writes back its cache after close) would
    otherwise take CPU from whichever filesystem runs next. Returns seconds
    waited, and whether it got quiet."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        if cpu_busy() < busy:
            return time.perf_counter() - t0, True
    return time.perf_counter() - t0, False


def drop_caches():
    """sync + drop page cache, dentries and inodes (needs root)."""
    global DROP_CACHES_OK
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        DROP_CACHES_OK = True
    except OSError:
        r = subprocess.run(["sudo", "-n", "sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"],
                           capture_output=True)
        if r.returncode == 0:
            DROP_CACHES_OK = True
        else:
            if DROP_CACHES_OK is None:
                warn("cannot drop caches: 'cold' figures will be warm")
            DROP_CACHES_OK = False


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return 0


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def is_mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mounts") as f:
        for line in f:
            mp = line.split()[1].encode().decode("unicode_escape")
            if mp == path:
                return True
    return False


def clear_dir(path):
    """Removes everything inside path (untimed clean-up between runs)."""
    for name in os.listdir(path):
        p = os.path.join(path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            shutil.rmtree(p)
        else:
            os.unlink(p)


# ---------------------------------------------------------------------------
# Filesystems under test


class Fs:
    name = "?"
    label = "?"

    def __init__(self, mnt):
        self.mnt = mnt
        self.mounted = False

    def daemon_pids(self):
        return []

    def rss(self):
        """Resident memory of the daemon(s), bytes (None: no daemon)."""
        pids = self.daemon_pids()
        if not pids:
            return None
        return sum(proc_status(p, "VmRSS") or 0 for p in pids)

    def extra_mem(self):
        """Memory held outside the daemon RSS that belongs to this fs (bytes)."""
        return 0

    def after_group(self, group):
        return {}

    def request_counts(self):
        """FUSE requests answered so far, by kind (None: not counted here)."""
        return None

    def settle(self):
        """Waits until the fs has released what the last clean-up freed; returns seconds waited."""
        return 0.0

    def unmount(self):
        if self.mounted or is_mounted(self.mnt):
            for _ in range(30):  # EBUSY for a moment after an interrupted workload
                r = run(as_root_cmd(["umount", self.mnt]), check=False)
                if r.returncode == 0 or not is_mounted(self.mnt):
                    break
                time.sleep(0.1)
            else:
                warn(f"{self.mnt} busy; lazy unmount")
                run(as_root_cmd(["umount", "-l", self.mnt]), check=False)
            self.mounted = False


class TmpFs(Fs):
    name = "tmpfs"
    label = "tmpfs"

    def __init__(self, mnt, size, max_nodes=None):
        super().__init__(mnt)
        self.size = size
        self.max_nodes = max_nodes

    def options(self):
        o = f"size={self.size},mode=1777"
        if self.max_nodes:
            o += f",nr_inodes={self.max_nodes}"
        return o

    def mount(self):
        os.makedirs(self.mnt, exist_ok=True)
        self.mounted = True
        run(as_root_cmd(["mount", "-t", "tmpfs", "-o", self.options(), "bench-tmpfs", self.mnt]))
        self.mounted = True


class ScratchFs(Fs):
    name = "scratchfs"
    label = "scratchfs"

    def __init__(self, mnt, binary, size, threads, extra, workdir, max_nodes=None):
        super().__init__(mnt)
        self.binary = binary
        self.size = size
        self.threads = threads
        self.extra = extra
        self.max_nodes = max_nodes
        base = os.path.basename(mnt)
        self.pidfile = os.path.join(workdir, f"{base}.pid")
        self.logfile = os.path.join(workdir, f"{base}.log")
        self.pid = None
        self.baseline_used = None
        self.stats_requests = {}

    def args(self):
        a = ["--size", self.size]
        if self.threads:
            a += ["--threads", str(self.threads)]
        if self.max_nodes:
            a += ["--max-nodes", str(self.max_nodes)]
        return a + shlex.split(self.extra or "")

    def mount(self):
        os.makedirs(self.mnt, exist_ok=True)
        if os.path.exists(self.pidfile):
            os.unlink(self.pidfile)
        self.mounted = True  # from here on, unmount() tries
        run([self.binary, self.mnt] + self.args() + ["--pid-file", self.pidfile, "--log-file", self.logfile])
        for _ in range(100):
            if os.path.exists(self.pidfile) and open(self.pidfile).read().strip():
                break
            time.sleep(0.05)
        self.pid = int(open(self.pidfile).read().strip())
        self.baseline_used = self.stats()["quota"]["used_bytes"]
        # what asking costs: the requests of one `stats` call, left out of each count
        a = self.stats()["requests"]
        b = self.stats()["requests"]
        self.stats_requests = {k: b[k] - a.get(k, 0) for k in b if b[k] != a.get(k, 0)}

    def daemon_pids(self):
        return [self.pid] if self.pid and pid_alive(self.pid) else []

    def stats(self):
        r = run([self.binary, "stats", self.mnt, "--json"])
        return json.loads(r.stdout)

    def request_counts(self):
        return self.stats()["requests"]

    def settle(self, limit=10.0):
        """After unlink + close, the kernel sends RELEASE/FORGET asynchronously, so the
        quota comes back a little later. Wait for it (so the next run is not refused)."""
        t0 = time.perf_counter()
        while True:
            used = self.stats()["quota"]["used_bytes"]
            waited = time.perf_counter() - t0
            if used <= self.baseline_used or waited > limit:
                self.last_settle = (waited, used)
                return waited
            time.sleep(0.02)

    def after_group(self, group):
        """Checks the daemon after a group (which has cleaned up after itself)."""
        notes = {}
        if not pid_alive(self.pid):
            notes["daemon"] = "daemon died"
            return notes
        try:
            waited = self.settle()
            st = self.stats()
        except Exception as e:  # noqa: BLE001
            notes["stats"] = f"stats failed: {e}"
            return notes
        ref = st.get("refusals", {})
        if any(ref.get(k) for k in ref):
            notes["refusals"] = ref
        used = st["quota"]["used_bytes"]
        if used != self.baseline_used:
            notes["quota_after_cleanup"] = {"used_bytes": used, "baseline": self.baseline_used,
                                            "waited_s": round(waited, 2)}
        notes["rss_after_group"] = self.rss()
        notes["promotions"] = st.get("promotions")
        notes["busy_poll"] = st.get("busy_poll")  # cumulative since mount
        return notes

    def unmount(self):
        pid = self.pid
        super().unmount()
        if pid:
            for _ in range(600):  # freeing a few GiB can take a moment
                if not pid_alive(pid):
                    break
                time.sleep(0.05)
            else:
                warn(f"scratchfs daemon {pid} still alive 30 s after umount; sending SIGTERM")
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
        self.pid = None

    def log_problems(self):
        try:
            with open(self.logfile, errors="replace") as f:
                lines = [l.rstrip() for l in f if re.search(r"\b(WARN|ERROR|panick)", l)]
        except OSError:
            return []
        return lines


class RcloneMem(Fs):
    """rclone mount :memory: with --vfs-cache-mode writes (cache on its own tmpfs)."""
    name = "rclone"
    label = "rclone :memory:"

    def __init__(self, mnt, size, workdir):
        super().__init__(mnt)
        self.size = size
        self.cache = os.path.join(workdir, "rclone-cache")
        self.cache_tmpfs = TmpFs(self.cache, size)
        self.logfile = os.path.join(workdir, "rclone.log")
        self.pid = None

    def mount(self):
        os.makedirs(self.mnt, exist_ok=True)
        self.cache_tmpfs.mount()
        self.mounted = True
        # the daemonised child inherits stdout/stderr: do not capture them or we wait forever
        r = subprocess.run(["rclone", "mount", ":memory:", self.mnt, "--daemon", "--vfs-cache-mode", "writes",
                            "--cache-dir", self.cache, "--log-file", self.logfile, "--log-level", "NOTICE"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if r.returncode != 0:
            raise RuntimeError(f"rclone mount failed ({r.returncode}); see {self.logfile}")
        for _ in range(200):
            if is_mounted(self.mnt):
                break
            time.sleep(0.05)
        self.mounted = True
        self.pid = self._find_pid()

    def _find_pid(self):
        want = os.path.realpath(self.mnt)
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                args = open(f"/proc/{d}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if args and os.path.basename(args[0].decode(errors="replace")) == "rclone" \
                    and want.encode() in args:
                return int(d)
        return None

    def daemon_pids(self):
        return [self.pid] if self.pid and pid_alive(self.pid) else []

    def extra_mem(self):
        st = os.statvfs(self.cache)
        return (st.f_blocks - st.f_bfree) * st.f_frsize

    def unmount(self):
        pid = self.pid
        super().unmount()
        if pid:
            for _ in range(200):
                if not pid_alive(pid):
                    break
                time.sleep(0.05)
            else:
                try:
                    os.kill(pid, signal.SIGTERM)
                except OSError:
                    pass
        self.cache_tmpfs.unmount()


class MemfsLL(Fs):
    """libfuse's example/memfs_ll (low-level API, multi-threaded loop, everything in
    std::vectors), built locally from the public example (never shipped here). It runs
    in the foreground (-f) only so that we own its pid and its stderr; otherwise its
    default options. No size limit. Its code hangs or dies on some operations in some
    versions, so the harness can SIGKILL it (which aborts the FUSE connection and
    fails the workload instead of hanging the run) and mount a fresh one."""
    name = "memfs_ll"
    label = "libfuse memfs_ll"
    restartable = True

    def __init__(self, mnt, binary, workdir):
        super().__init__(mnt)
        self.binary = binary
        self.logfile = os.path.join(workdir, f"{os.path.basename(mnt)}.log")
        self.proc = None

    def mount(self):
        os.makedirs(self.mnt, exist_ok=True)
        self.mounted = True
        log_f = open(self.logfile, "ab")
        self.proc = subprocess.Popen([self.binary, "-f", self.mnt], stdin=subprocess.DEVNULL,
                                     stdout=log_f, stderr=log_f, start_new_session=True)
        log_f.close()
        for _ in range(200):
            if is_mounted(self.mnt) or self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if not is_mounted(self.mnt):
            self.kill()
            raise RuntimeError(f"memfs_ll did not mount (exit {self.proc.returncode}); see {self.logfile}")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def daemon_pids(self):
        return [self.pid] if self.alive() else []

    def kill(self):
        """SIGKILL: the kernel aborts the connection, so requests stuck in it fail (ENOTCONN)."""
        if self.alive():
            try:
                self.proc.kill()
            except OSError:
                pass
            self.proc.wait()

    def unmount(self):
        super().unmount()
        if self.proc:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                warn(f"memfs_ll daemon {self.pid} still alive 10 s after umount; sending SIGKILL")
                self.kill()
        self.proc = None

    def log_problems(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return [l.rstrip() for l in f if l.strip()]
        except OSError:
            return []


# ---------------------------------------------------------------------------
# Workloads. Each group function runs one repetition on one filesystem and
# returns {metric_key: value}. Groups clean up after themselves so the quota
# is reused.


def fio(fs_dir, name, extra, out):
    cmd = ["fio", f"--name={name}", f"--directory={fs_dir}", "--ioengine=psync", "--direct=0",
           "--fallocate=none", "--output-format=json"] + extra
    r = run(cmd)
    # fio may print warnings before the JSON document
    text = r.stdout[r.stdout.index("{"):]
    d = json.loads(text)
    j = d["jobs"][0]
    res = {"read_bw": j["read"]["bw_bytes"] / 2**20, "write_bw": j["write"]["bw_bytes"] / 2**20,
           "read_iops": j["read"]["iops"], "write_iops": j["write"]["iops"]}
    out.setdefault("fio_cmds", set()).add(shlex.join(cmd))
    return res


def g_seq(fs, P, ctx):
    d = os.path.join(fs.mnt, "seq")
    os.makedirs(d, exist_ok=True)
    size = P["seq_size"]
    common = ["--bs=1M", f"--size={size}", "--filename=seq.dat"]
    res = {}
    with counting(fs, ctx, "seq_write"):
        r = fio(d, "seqwrite", ["--rw=write"] + common, ctx)
    res["seq_write"] = r["write_bw"]
    drop_caches()
    with counting(fs, ctx, "seq_read_cold"):
        r = fio(d, "seqread-cold", ["--rw=read"] + common, ctx)
    res["seq_read_cold"] = r["read_bw"]
    # warm: read once untimed, then time-based reads with the cache kept
    run(["cat", os.path.join(d, "seq.dat")], capture=False)
    with counting(fs, ctx, "seq_read_warm"):
        r = fio(d, "seqread-warm", ["--rw=read", "--invalidate=0", "--time_based",
                                    f"--runtime={P['warm_secs']}"] + common, ctx)
    res["seq_read_warm"] = r["read_bw"]
    shutil.rmtree(d)
    return res


def g_rand(fs, P, ctx):
    d = os.path.join(fs.mnt, "rand")
    os.makedirs(d, exist_ok=True)
    common = ["--bs=4k", f"--size={P['rand_size']}", f"--nrfiles={P['rand_files']}",
              "--filename_format=rand.$filenum"]
    # lay the files out (sequential 1 MiB writes, untimed)
    fio(d, "layout", ["--rw=write", "--bs=1M", f"--size={P['rand_size']}",
                      f"--nrfiles={P['rand_files']}", "--filename_format=rand.$filenum"], ctx)
    res = {}
    drop_caches()
    with counting(fs, ctx, "rand_write"):
        r = fio(d, "randwrite", ["--rw=randwrite", "--time_based", f"--runtime={P['rand_secs']}"] + common, ctx)
    res["rand_write"] = r["write_iops"]
    drop_caches()
    # number-based: every 4 KiB block of the files read exactly once, all cold
    with counting(fs, ctx, "rand_read_cold"):
        r = fio(d, "randread-cold", ["--rw=randread"] + common, ctx)
    res["rand_read_cold"] = r["read_iops"]
    shutil.rmtree(d)
    return res


def g_parallel(fs, P, ctx):
    d = os.path.join(fs.mnt, "par")
    os.makedirs(d, exist_ok=True)
    with counting(fs, ctx, "par_write"):
        r = fio(d, "parwrite", ["--rw=write", "--bs=1M", f"--size={P['par_size']}", "--numjobs=2",
                                "--group_reporting"], ctx)
    shutil.rmtree(d)
    return {"par_write": r["write_bw"]}


def g_smallfiles(fs, P, ctx):
    root = os.path.join(fs.mnt, "small")
    n, ndirs = P["small_files"], P["small_dirs"]
    per = -(-n // ndirs)
    data = b"x" * 4096
    paths = []
    os.mkdir(root)
    res = {}
    with counting(fs, ctx, "small_create"):
        t0 = time.perf_counter()
        for i in range(ndirs):
            dd = os.path.join(root, f"d{i:03d}")
            os.mkdir(dd)
            for j in range(min(per, n - i * per)):
                p = os.path.join(dd, f"f{j:05d}")
                fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                os.write(fd, data)
                os.close(fd)
                paths.append(p)
        res["small_create"] = time.perf_counter() - t0
    with counting(fs, ctx, "small_stat"):
        t0 = time.perf_counter()
        for p in paths:
            os.stat(p)
        res["small_stat"] = time.perf_counter() - t0
    with counting(fs, ctx, "small_unlink"):
        t0 = time.perf_counter()
        for p in paths:
            os.unlink(p)
        for i in range(ndirs):
            os.rmdir(os.path.join(root, f"d{i:03d}"))
        res["small_unlink"] = time.perf_counter() - t0
    os.rmdir(root)
    return res


GIT_ENV = None


def git_env():
    global GIT_ENV
    if GIT_ENV is None:
        e = dict(os.environ)
        e.update({"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
                  "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
                  "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost",
                  "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z"})
        GIT_ENV = e
    return GIT_ENV


def g_tree(fs, P, ctx):
    tree = os.path.join(fs.mnt, "tree")
    os.mkdir(tree)
    tarball = P["tarball"]
    run(["cat", tarball], capture=False)  # tarball in page cache: time the fs, not the disk
    res = {}

    def step(metric, cmd, **kw):
        with counting(fs, ctx, metric):
            res[metric] = timed(cmd, **kw)

    step("tar_x", ["tar", "-xf", tarball, "-C", tree])
    step("find_stat", "find . -ls > /dev/null", cwd=tree, shell=True)
    drop_caches()
    step("read_tree", "find . -type f -print0 | xargs -0 -r cat > /dev/null", cwd=tree, shell=True)
    env = git_env()
    run(["git", "init", "-q", "."], cwd=tree, env=env)
    # no detached auto-gc/maintenance after the commit: it would race with rm -rf and load the
    # machine during the next runs
    run(["git", "config", "gc.auto", "0"], cwd=tree, env=env)
    run(["git", "config", "maintenance.auto", "false"], cwd=tree, env=env)
    step("git_commit", "git add -A && git commit -q -m bench", cwd=tree, shell=True, env=env)
    step("rm_rf", ["rm", "-rf", tree])
    return res


def g_sqlite(fs, P, ctx):
    d = os.path.join(fs.mnt, "sqlite")
    os.mkdir(d)
    db = os.path.join(d, "bench.db")
    con = sqlite3.connect(db)  # defaults: rollback journal (DELETE), synchronous=FULL
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)")
    con.execute("CREATE INDEX t_k ON t(k)")
    con.commit()
    payload = "v" * 100
    rows = [(i * 7919 % 1000003, f"{i:08d}{payload}") for i in range(P["sqlite_rows"])]
    res = {}
    with counting(fs, ctx, "sqlite_bulk"):
        t0 = time.perf_counter()
        con.executemany("INSERT INTO t (k, v) VALUES (?, ?)", rows)
        con.commit()
        res["sqlite_bulk"] = time.perf_counter() - t0
    with counting(fs, ctx, "sqlite_txn"):
        t0 = time.perf_counter()
        for i in range(P["sqlite_txns"]):
            con.execute("INSERT INTO t (k, v) VALUES (?, ?)", (i, payload))
            con.commit()
        res["sqlite_txn"] = time.perf_counter() - t0
    con.close()
    shutil.rmtree(d)
    return res


GROUPS = {
    "seq": g_seq,
    "rand": g_rand,
    "parallel": g_parallel,
    "smallfiles": g_smallfiles,
    "tree": g_tree,
    "sqlite": g_sqlite,
}
GROUP_ORDER = ["seq", "rand", "parallel", "smallfiles", "tree", "sqlite"]


def metric_defs(P):
    """key -> (group, label, unit, kind, target). kind: rate (higher is better) or time."""
    sq, rs = human(P["seq_size"]), human(P["rand_size"])
    return {
        "seq_write": ("seq", f"seq write 1 MiB ({sq})", "MiB/s", "rate", 0.6),
        "seq_read_warm": ("seq", f"seq read 1 MiB, warm ({P['warm_secs']} s)", "MiB/s", "rate", 0.9),
        "seq_read_cold": ("seq", f"seq read 1 MiB, cold ({sq})", "MiB/s", "rate", 0.25),
        "rand_write": ("rand", f"rand write 4 KiB ({rs}, {P['rand_secs']} s)", "IOPS", "rate", 0.08),
        "rand_read_cold": ("rand", f"rand read 4 KiB, cold ({rs})", "IOPS", "rate", 0.08),
        "par_write": ("parallel", f"2 parallel seq writers (2x{human(P['par_size'])})", "MiB/s", "rate", None),
        "small_create": ("smallfiles", f"create {P['small_files']:,} x 4 KiB files", "s", "time", 0.25),
        "small_stat": ("smallfiles", f"stat {P['small_files']:,} files", "s", "time", None),
        "small_unlink": ("smallfiles", f"unlink {P['small_files']:,} files", "s", "time", 0.25),
        "tar_x": ("tree", "tar -x source tree", "s", "time", 0.5),
        "find_stat": ("tree", "find -ls (stat every entry)", "s", "time", None),
        "read_tree": ("tree", "read every file, cold", "s", "time", None),
        "git_commit": ("tree", "git add -A && git commit", "s", "time", 0.5),
        "rm_rf": ("tree", "rm -rf source tree + .git", "s", "time", 0.5),
        "sqlite_bulk": ("sqlite", f"sqlite {P['sqlite_rows']:,}-row insert, 1 txn", "s", "time", 0.5),
        "sqlite_txn": ("sqlite", f"sqlite {P['sqlite_txns']:,} single-row txns", "s", "time", 0.5),
    }


# ---------------------------------------------------------------------------
# Memory: resident memory of the daemon per byte of data, on fresh mounts.


def tree_data_bytes(path):
    total, files, entries = 0, 0, 0
    for dirpath, dirnames, filenames in os.walk(path):
        entries += len(dirnames) + len(filenames)
        for n in filenames:
            st = os.lstat(os.path.join(dirpath, n))
            if (st.st_mode & 0o170000) == 0o100000:
                total += st.st_size
                files += 1
    return total, files, entries


def memory_phase(make_fs, P, errors, peer_timeout=900):
    """make_fs() -> list of fresh, unmounted Fs objects (one per filesystem)."""
    out = {}
    for case in ("big", "tree"):
        for fs in make_fs():
            watchdog = None
            if getattr(fs, "restartable", False):
                watchdog = threading.Timer(peer_timeout, fs.kill)
                watchdog.daemon = True
                watchdog.start()
            try:
                fs.mount()
                time.sleep(0.2)
                drop_caches()
                rss0 = fs.rss()
                shm0 = meminfo("Shmem")
                x0 = fs.extra_mem()
                if case == "big":
                    n = P["big_size"] // 2**20
                    run(["dd", "if=/dev/zero", f"of={os.path.join(fs.mnt, 'big.dat')}", "bs=1M",
                         f"count={n}"], capture=True)
                    data = n * 2**20
                    extra = {}
                else:
                    tree = os.path.join(fs.mnt, "tree")
                    os.mkdir(tree)
                    run(["tar", "-xf", P["tarball"], "-C", tree])
                    data, files, entries = tree_data_bytes(tree)
                    extra = {"files": files, "entries": entries}
                time.sleep(0.5)  # rclone uploads from its cache in the background
                rss1 = fs.rss()
                shm1 = meminfo("Shmem")
                x1 = fs.extra_mem()
                rec = {"data_bytes": data, "shmem_delta": shm1 - shm0, **extra}
                if rss1 is not None:
                    rec.update({"rss_before": rss0, "rss": rss1, "rss_delta": rss1 - rss0,
                                "hwm": sum(proc_status(p, "VmHWM") or 0 for p in fs.daemon_pids()),
                                "extra_mem": x1 - x0})
                if isinstance(fs, ScratchFs):
                    st = fs.stats()
                    rec["quota_used"] = st["quota"]["used_bytes"] - fs.baseline_used
                    rec["nodes"] = st["nodes"]["used"]
                    # after deleting everything, does the memory go back?
                    clear_dir(fs.mnt)
                    rec["quota_release_wait_s"] = round(fs.settle(), 3)
                    rec["quota_after_delete"] = fs.stats()["quota"]["used_bytes"] - fs.baseline_used
                    time.sleep(0.3)
                    rec["rss_after_delete"] = fs.rss()
                out.setdefault(case, {})[fs.name] = rec
                log(f"  memory/{case:<4} {fs.label:<16} data {human(data):>10}"
                    + (f"  RSS {human(rss1):>10} ({rss1 / data:.3f} x data)" if rss1 is not None else "")
                    + f"  Shmem +{human(max(shm1 - shm0, 0))} ({(shm1 - shm0) / data:.3f} x data)")
            except Exception as e:  # noqa: BLE001 - record and go on
                msg = f"memory/{case} on {fs.name}: {e}"
                warn(msg)
                errors.append(msg)
            finally:
                if watchdog:
                    watchdog.cancel()
                fs.unmount()
    return out


# ---------------------------------------------------------------------------


def tool_versions():
    v = {}
    for name, cmd in (("fio", ["fio", "--version"]), ("tar", ["tar", "--version"]),
                      ("git", ["git", "--version"]), ("rclone", ["rclone", "--version"])):
        try:
            v[name] = subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0].strip()
        except (OSError, IndexError):
            pass
    v["sqlite"] = sqlite3.sqlite_version
    v["python"] = platform.python_version()
    return v


def cpu_ticks():
    """(stolen, total) clock ticks of all CPUs so far, from /proc/stat: time
    the hypervisor ran something else while this machine's vCPUs wanted to run."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:9]]  # user .. steal (guest is inside user)
    return fields[7], sum(fields)


def steal_share(before, after):
    """Percentage of CPU time stolen between two cpu_ticks() readings."""
    total = after[1] - before[1]
    return round(100 * (after[0] - before[0]) / total, 1) if total > 0 else None


def machine_info():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    distro = "?"
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    # how long an idle vCPU polls before it halts (cpuidle-haltpoll): decides what waking a
    # sleeping thread costs, so every FUSE round trip; docs/performance.md "Guest halt polling"
    halt_poll_ns = None
    try:
        with open("/sys/module/haltpoll/parameters/guest_halt_poll_ns") as f:
            halt_poll_ns = int(f.read().strip())
    except (OSError, ValueError):
        pass
    return {"cpu": cpu, "cpus": os.cpu_count(), "mem_total": meminfo("MemTotal"),
            "kernel": platform.release(), "distro": distro, "hostname": platform.node(),
            "guest_halt_poll_ns": halt_poll_ns}


def main():
    global VERBOSE
    ap = argparse.ArgumentParser()
    ap.add_argument("--scratchfs", required=True, help="scratchfs binary")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--tarball", required=True)
    ap.add_argument("--out", required=True, help="results JSON")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--size", default="4G")
    ap.add_argument("--max-nodes", default=None)
    ap.add_argument("--threads", default=None)
    ap.add_argument("--scratchfs-opts", default="")
    ap.add_argument("--only", default="", help="comma-separated groups (and/or 'memory')")
    ap.add_argument("--peers", action="store_true")
    ap.add_argument("--memfs-ll", default="", help="locally built libfuse memfs_ll binary (a peer, with --peers)")
    ap.add_argument("--memfs-ll-info", default="", help="one line describing that build (timeouts, source)")
    ap.add_argument("--peer-timeout", type=int, default=900,
                    help="seconds one repetition of a group may take on a restartable peer before its daemon is killed")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--meta", default="{}", help="JSON merged into the result's meta")
    a = ap.parse_args()
    VERBOSE = not a.quiet

    def env_size(name, default):
        return parse_size(os.environ.get(name, default))

    def env_int(name, default):
        return int(os.environ.get(name, default))

    q = a.quick
    P = {
        "seq_size": env_size("BENCH_SEQ_SIZE", "256M" if q else "2G"),
        "warm_secs": env_int("BENCH_WARM_SECS", 1 if q else 3),
        "rand_size": env_size("BENCH_RAND_SIZE", "64M" if q else "512M"),
        "rand_files": env_int("BENCH_RAND_FILES", 2),
        "rand_secs": env_int("BENCH_RAND_SECS", 1 if q else 3),
        "par_size": env_size("BENCH_PAR_SIZE", "128M" if q else "1G"),
        "small_files": env_int("BENCH_SMALL_FILES", 2000 if q else 20000),
        "small_dirs": env_int("BENCH_SMALL_DIRS", 20),
        "sqlite_rows": env_int("BENCH_SQLITE_ROWS", 20000 if q else 200000),
        "sqlite_txns": env_int("BENCH_SQLITE_TXNS", 200 if q else 2000),
        "big_size": env_size("BENCH_BIG_SIZE", "256M" if q else "1G"),
        "tarball": os.path.realpath(a.tarball),
    }
    only = [g for g in a.only.split(",") if g] or (GROUP_ORDER + ["memory"])
    for g in only:
        if g not in GROUPS and g != "memory":
            sys.exit(f"bench: unknown group {g!r} (groups: {', '.join(GROUP_ORDER)}, memory)")
    groups = [g for g in GROUP_ORDER if g in only]

    wd = os.path.realpath(a.workdir)
    mounts = []

    def make_all(suffix):
        fss = [TmpFs(os.path.join(wd, f"tmpfs{suffix}"), a.size, a.max_nodes),
               ScratchFs(os.path.join(wd, f"scratchfs{suffix}"), a.scratchfs, a.size, a.threads,
                         a.scratchfs_opts, wd, a.max_nodes)]
        if a.peers:
            fss.append(RcloneMem(os.path.join(wd, f"rclone{suffix}"), a.size, wd))
            if a.memfs_ll:
                fss.append(MemfsLL(os.path.join(wd, f"memfs_ll{suffix}"), a.memfs_ll, wd))
        return fss

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)

    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, on_signal)

    result = {"meta": json.loads(a.meta), "params": P, "reps": a.reps, "groups": groups,
              "metrics": {}, "samples": {}, "notes": {}, "errors": [], "memory": {}}
    result["meta"].update({
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": machine_info(), "tools": tool_versions(),
        "scratchfs_args": ["--size", a.size] + (["--threads", a.threads] if a.threads else [])
        + (["--max-nodes", a.max_nodes] if a.max_nodes else []) + shlex.split(a.scratchfs_opts),
        "tmpfs_options": TmpFs("", a.size, a.max_nodes).options(),
        "filesystems": [f.name for f in make_all("")],
        "labels": {f.name: f.label for f in make_all("")},
    })
    if a.peers and a.memfs_ll:
        result["meta"]["memfs_ll"] = {"bin": a.memfs_ll, "info": a.memfs_ll_info}
    defs = metric_defs(P)
    result["metrics"] = {k: {"group": g, "label": l, "unit": u, "kind": kd, "target": t}
                         for k, (g, l, u, kd, t) in defs.items() if g in groups}
    ctx = {}
    settle_waits = result["quota_release_waits"] = {}
    quiet_waits = result["quiet_waits"] = {}
    interrupted = None
    t_start = time.perf_counter()
    result["meta"]["loadavg_start"] = os.getloadavg()
    try:
        if "memory" in only:
            log("== memory: daemon resident memory per byte of data (fresh mounts)")
            result["memory"] = memory_phase(lambda: make_all("-mem"), P, result["errors"], a.peer_timeout)

        if groups:
            fss = make_all("")
            for fs in fss:
                mounts.append(fs)
                fs.mount()
            sfs = next(f for f in fss if isinstance(f, ScratchFs))
            log(f"== workloads ({a.reps} repetition(s) each; figures per run, medians at the end)")
            for g in groups:
                ticks = cpu_ticks()
                for rep in range(a.reps):
                    order = fss if rep % 2 == 0 else list(reversed(fss))
                    for fs in order:
                        t0 = time.perf_counter()
                        try:
                            clear_dir(fs.mnt)
                            w = fs.settle()
                            if w > 0.1:
                                settle_waits.setdefault(g, []).append(round(w, 2))
                            qw, quiet = wait_quiet()
                            if qw > 1.0 or not quiet:
                                quiet_waits.setdefault(g, []).append(
                                    f"{round(qw, 1)} s before {fs.name}" + ("" if quiet else " (still busy)"))
                            watchdog = None
                            if getattr(fs, "restartable", False):
                                def on_hang(fs=fs, g=g):
                                    warn(f"{g} on {fs.name} still running after {a.peer_timeout} s; "
                                         "killing its daemon")
                                    fs.kill()
                                watchdog = threading.Timer(a.peer_timeout, on_hang)
                                watchdog.daemon = True
                                watchdog.start()
                            try:
                                res = GROUPS[g](fs, P, ctx)
                            finally:
                                if watchdog:
                                    watchdog.cancel()
                        except Exception as e:  # noqa: BLE001 - record and go on
                            msg = f"{g} rep {rep + 1} on {fs.name}: {e}"
                            warn(msg)
                            result["errors"].append(msg)
                            res = {}
                            try:
                                clear_dir(fs.mnt)
                            except Exception as e2:  # noqa: BLE001
                                result["errors"].append(f"clean-up after {g} on {fs.name}: {e2}")
                        if getattr(fs, "restartable", False) and not fs.alive():
                            msg = f"{g} rep {rep + 1} on {fs.name}: daemon died; mounting a fresh one"
                            warn(msg)
                            result["errors"].append(msg)
                            res = {}
                            try:
                                fs.unmount()
                                fs.mount()
                            except Exception as e2:  # noqa: BLE001
                                result["errors"].append(f"remount of {fs.name}: {e2}")
                        for k, v in res.items():
                            result["samples"].setdefault(k, {}).setdefault(fs.name, []).append(v)
                        figs = "  ".join(
                            f"{k}={v:.3f}s" if defs[k][3] == "time" else f"{k}={v:,.0f}{defs[k][2]}"
                            for k, v in res.items())
                        log(f"  {g:<10} rep {rep + 1}/{a.reps} {fs.label:<16} "
                            f"[{time.perf_counter() - t0:5.1f}s] {figs}")
                result.setdefault("steal_pct", {})[g] = steal_share(ticks, cpu_ticks())
                notes = sfs.after_group(g)
                result["notes"][g] = notes
                for key in ("refusals", "quota_after_cleanup", "daemon", "stats"):
                    if key in notes:
                        warn(f"scratchfs after {g}: {key} = {notes[key]}")
            result["final_rss"] = {f.name: f.rss() for f in fss}
            result["scratchfs_log_problems"] = sfs.log_problems()[-50:]
            for f in fss:
                if isinstance(f, MemfsLL) and f.log_problems():
                    result.setdefault("peer_log_problems", {})[f.name] = f.log_problems()[-20:]
    except (KeyboardInterrupt, SystemExit) as e:
        interrupted = 130 if isinstance(e, KeyboardInterrupt) else (e.code if isinstance(e.code, int) else 1)
        result["interrupted"] = True
        warn("interrupted; unmounting")
    finally:
        for fs in reversed(mounts):
            fs.unmount()
        result["elapsed_s"] = time.perf_counter() - t_start
        result["meta"]["loadavg_end"] = os.getloadavg()
        result["drop_caches"] = bool(DROP_CACHES_OK)
        result["fio_commands"] = sorted(ctx.get("fio_cmds", []))
        result["requests"] = ctx.get("requests", {})
        # medians
        for k, per_fs in result["samples"].items():
            for name, vals in per_fs.items():
                result.setdefault("median", {}).setdefault(k, {})[name] = statistics.median(vals)
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1, default=str)
    if interrupted:
        return interrupted
    return 0 if not result["errors"] else 2


if __name__ == "__main__":
    sys.exit(main())
