#!/usr/bin/env python3
"""profile.py BIN [--reps N] [--only NAMES] [--keep DIR] - where the time of
the benchmark's slowest workloads goes on scratchfs, by whose CPU did what.

For each workload (seq-write, create, tar, rm, sqlite-bulk, sqlite-txns; the
same commands and sizes as scripts/bench.sh) it
  1. times it on tmpfs and on a scratchfs mount of BIN, alternating, N
     repetitions each (no profiler attached), and reports the median ratio;
  2. runs it once more on scratchfs under `perf record -a -g` (every CPU,
     call graphs) and sorts each sample by whose CPU it is and what it did:
       caller, own code      the program itself in user space (fio, tar, ...)
       caller, FUSE request  the caller's kernel time inside a FUSE request
                             (__fuse_simple_request: building it, queueing it,
                             sleeping for the answer, being switched back in)
       caller, other kernel  the rest of its kernel time (page-cache copies,
                             path walks, page faults)
       daemon, scratchfs     the daemon's own code (the scratchfs binary)
       daemon, libc          copies and allocation in the daemon's libc
       daemon, kernel        the daemon's system calls: reading requests from
                             /dev/fuse (busy polling included), writing
                             answers, waking the caller, faulting memory in
       zeroing new pages     any process, clear_page*: fresh memory touched
                             for the first time (counted here, not above)
       idle                  CPUs with nothing to run (they poll: the daemon
                             keeps a CPU latency request while busy)
       other                 everything else on the machine

Run as root (it mounts, and perf needs it). Needs fio, tar, git, sqlite3 and
perf (`apt-get install linux-perf`); the source tree is the benchmark's cached
tarball (BENCH_CACHE, default /var/tmp/scratchfs-bench/srctree-v2.tar; run
scripts/bench.sh once to build it). Prints a Markdown table per question.
docs/performance.md ("Profiles of the missed targets") has a run."""
import argparse, collections, json, os, shutil, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("BENCH_CACHE", "/var/tmp/scratchfs-bench")
TARBALL = os.path.join(CACHE, "srctree-v2.tar")
sys.dont_write_bytecode = True  # leave no __pycache__ in the repository
sys.path.insert(0, HERE)
from bench import git_env  # noqa: E402  (the benchmark's own git settings)

SQLITE_STEP = r"""
import sqlite3, sys, time
step, db = sys.argv[1], sys.argv[2]
con = sqlite3.connect(db)  # defaults: rollback journal, synchronous=FULL
payload = "v" * 100
if step == "bulk":
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)")
    con.execute("CREATE INDEX t_k ON t(k)")
    con.commit()
    rows = [(i * 7919 % 1000003, f"{i:08d}{payload}") for i in range(200000)]
    t0 = time.perf_counter()
    con.executemany("INSERT INTO t (k, v) VALUES (?, ?)", rows)
    con.commit()
else:
    t0 = time.perf_counter()
    for i in range(2000):
        con.execute("INSERT INTO t (k, v) VALUES (?, ?)", (i, payload))
        con.commit()
print(time.perf_counter() - t0)  # the step alone, without starting Python
con.close()
"""
CREATE_STEP = r"""
import os, sys, time
root, data = sys.argv[1], b"x" * 4096
t0 = time.perf_counter()
for i in range(20):  # 20,000 files of 4 KiB in 20 directories, as in the benchmark
    d = os.path.join(root, f"d{i:03d}")
    os.mkdir(d)
    for j in range(1000):
        fd = os.open(os.path.join(d, f"f{j:05d}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
print(time.perf_counter() - t0)
"""
CATEGORIES = ["caller, own code", "caller, FUSE request", "caller, other kernel",
              "daemon, scratchfs", "daemon, libc", "daemon, kernel",
              "zeroing new pages", "idle", "other"]


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


class Workload:
    """setup(d) prepares, untimed; cmd(d) is the timed (and profiled) command; comms
    are the names the caller's processes run under. seconds(out, wall) is the
    step's time: the wall time, or what the command says of itself (its start-up
    left out)."""

    def __init__(self, name, comms, cmd, setup=None, seconds=lambda out, wall: wall):
        self.name, self.comms, self.cmd, self.setup = name, comms, cmd, setup
        self.seconds = seconds


def printed_seconds(out, wall):
    return float(out.split()[-1])


def fio_seconds(out, wall):
    job = json.loads(out[out.index("{"):])["jobs"][0]
    return job["write"]["runtime"] / 1000.0


def sqlite_cmd(step):
    return lambda d: [sys.executable, "-c", SQLITE_STEP, step, os.path.join(d, "b.db")]


def rm_setup(d):
    tree = os.path.join(d, "tree")
    os.mkdir(tree)
    sh(["tar", "-xf", TARBALL, "-C", tree])
    sh(["git", "init", "-q"], cwd=tree, env=git_env())
    sh(["git", "config", "gc.auto", "0"], cwd=tree, env=git_env())
    sh("git add -A && git commit -q -m bench", shell=True, cwd=tree, env=git_env())


def tar_setup(d):
    os.mkdir(os.path.join(d, "tree"))


WORKLOADS = [
    Workload("seq-write", {"fio"}, lambda d: [
        "fio", "--name=w", f"--directory={d}", "--ioengine=psync", "--direct=0",
        "--fallocate=none", "--rw=write", "--bs=1M", "--size=2G", "--output-format=json"],
             seconds=fio_seconds),
    Workload("create", {"python3"}, lambda d: [sys.executable, "-c", CREATE_STEP, d],
             seconds=printed_seconds),
    Workload("tar", {"tar"}, lambda d: ["tar", "-xf", TARBALL, "-C", os.path.join(d, "tree")],
             tar_setup),
    Workload("rm", {"rm"}, lambda d: ["rm", "-rf", os.path.join(d, "tree")], rm_setup),
    Workload("sqlite-bulk", {"python3"}, sqlite_cmd("bulk"), seconds=printed_seconds),
    Workload("sqlite-txns", {"python3"}, sqlite_cmd("txns"),
             lambda d: sh(sqlite_cmd("bulk")(d), stdout=subprocess.DEVNULL), seconds=printed_seconds),
]


class Mount:
    """A tmpfs or a scratchfs on a fresh directory, unmounted on every path."""

    def __init__(self, kind, binary):
        self.kind, self.binary, self.pid = kind, binary, None
        self.dir = tempfile.mkdtemp(prefix=f"prof-{kind}.")

    def __enter__(self):
        if self.kind == "tmpfs":
            sh(["mount", "-t", "tmpfs", "-o", "size=4G,mode=1777", "prof-tmpfs", self.dir])
        else:
            pidfile = self.dir + ".pid"
            sh([self.binary, self.dir, "--size", "4G", "--pid-file", pidfile])
            self.pid = int(open(pidfile).read().strip())
            os.unlink(pidfile)
        return self

    def __exit__(self, *exc):
        for _ in range(50):
            if subprocess.run(["umount", self.dir], stderr=subprocess.DEVNULL).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", self.dir])
        os.rmdir(self.dir)

    def scratch(self):
        """An empty working directory for one run."""
        d = os.path.join(self.dir, "w")
        shutil.rmtree(d, ignore_errors=True)
        os.mkdir(d)
        return d

    def prepare(self, w):
        """A working directory set up for workload w, written out (sync)."""
        d = self.scratch()
        if w.setup:
            w.setup(d)
        subprocess.run(["sync"])
        return d


def time_once(mount, w):
    d = mount.prepare(w)
    t0 = time.perf_counter()
    out = sh(w.cmd(d), stdout=subprocess.PIPE, text=True).stdout
    t = time.perf_counter() - t0
    shutil.rmtree(d)
    return w.seconds(out, t)


def classify(stack, comm, pid, daemon_pid, comms):
    """stack: [(symbol, dso)] innermost first."""
    syms = [s for s, _ in stack]
    if any(s.startswith("clear_page") for s in syms[:3]):
        return "zeroing new pages"
    if pid == 0:
        return "idle"
    top_dso = stack[0][1] if stack else ""
    kernel = "kernel.kallsyms" in top_dso
    if pid == daemon_pid:
        if not kernel:
            return "daemon, scratchfs" if os.path.basename(top_dso) == "scratchfs" else "daemon, libc"
        return "daemon, kernel"
    if comm in comms:
        if not kernel:
            return "caller, own code"
        return "caller, FUSE request" if "__fuse_simple_request" in syms else "caller, other kernel"
    return "other"


def perf_samples(data):
    """Yields (comm, pid, [(sym, dso)]) from `perf script`."""
    p = subprocess.Popen(["perf", "script", "-i", data, "-F", "comm,pid,ip,sym,dso"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, errors="replace")
    head, stack = None, []
    for line in p.stdout:
        if not line.strip():
            if head:
                yield head[0], head[1], stack
            head, stack = None, []
        elif line[0] in " \t":
            parts = line.strip().split(None, 1)
            rest = parts[1] if len(parts) > 1 else ""
            sym, _, dso = rest.rpartition(" (")
            stack.append((sym.split("+")[0], dso.rstrip(")")))
        else:
            comm, _, pid = line.rstrip().rpartition(" ")
            head = (comm.strip(), int(pid) if pid.isdigit() else -1)
    if head:
        yield head[0], head[1], stack
    p.wait()


def profile(mount, w, keep):
    d = mount.prepare(w)
    data = os.path.join(keep or tempfile.gettempdir(), f"profile-{w.name}.data")
    sh(["perf", "record", "-q", "-a", "-g", "-o", data, "--"] + w.cmd(d),
       stdout=subprocess.DEVNULL)
    shutil.rmtree(d)
    counts, leaves, total = collections.Counter(), collections.defaultdict(collections.Counter), 0
    for comm, pid, stack in perf_samples(data):
        c = classify(stack, comm, pid, mount.pid, w.comms)
        counts[c] += 1
        leaves[c][stack[0][0] if stack else "?"] += 1
        total += 1
    if not keep:
        os.unlink(data)
    return total, counts, leaves


def preflight(prog, tracer, a):
    """Exits with a message unless this can run; returns the workload names
    asked for (a.only) and the binary's path (a.binary), and reads the
    tarball into the page cache once."""
    if os.geteuid() != 0:
        sys.exit(f"{prog}: run as root (it mounts and traces the kernel with {tracer})")
    if not os.path.exists(TARBALL):
        sys.exit(f"{prog}: {TARBALL} missing; run scripts/bench.sh once to build it")
    for tool in (tracer, "fio", "tar", "git"):
        if not shutil.which(tool):
            sys.exit(f"{prog}: {tool} not installed")
    names = a.only.split(",")
    unknown = set(names) - {w.name for w in WORKLOADS}
    if unknown:
        sys.exit(f"{prog}: unknown workload(s) {', '.join(sorted(unknown))}")
    sh(["cat", TARBALL], stdout=subprocess.DEVNULL)
    return names, os.path.realpath(a.binary)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default=",".join(w.name for w in WORKLOADS))
    ap.add_argument("--keep", help="keep the perf data files in this directory")
    ap.add_argument("--detail", type=int, default=4, metavar="N",
                    help="list the N functions with most samples in each category (0: none)")
    a = ap.parse_args()
    names, binary = preflight("profile.py", "perf", a)
    rows = []
    with Mount("tmpfs", binary) as tmp, Mount("scratchfs", binary) as sfs:
        for w in (w for w in WORKLOADS if w.name in names):
            times = {"tmpfs": [], "scratchfs": []}
            for r in range(a.reps):
                order = [tmp, sfs] if r % 2 == 0 else [sfs, tmp]
                for m in order:
                    times[m.kind].append(time_once(m, w))
            t_tmp, t_sfs = statistics.median(times["tmpfs"]), statistics.median(times["scratchfs"])
            total, counts, leaves = profile(sfs, w, a.keep)
            rows.append((w.name, t_tmp, t_sfs, total, counts, leaves))
            print(f"{w.name}: tmpfs {t_tmp:.3f} s, scratchfs {t_sfs:.3f} s, ratio {t_tmp / t_sfs:.3f}, "
                  f"{total:,} samples", file=sys.stderr, flush=True)
    print("| workload | tmpfs s | scratchfs s | ratio | samples | "
          + " | ".join(CATEGORIES) + " |")
    print("|:--|--:|--:|--:|--:|" + "--:|" * len(CATEGORIES))
    for name, t_tmp, t_sfs, total, counts, _ in rows:
        shares = " | ".join(f"{100 * counts[c] / max(total, 1):.1f}%" for c in CATEGORIES)
        print(f"| {name} | {t_tmp:.3f} | {t_sfs:.3f} | {t_tmp / t_sfs:.3f} | {total:,} | {shares} |")
    for name, _, _, total, counts, leaves in rows if a.detail else []:
        print(f"\n{name}, the functions the samples were taken in (% of all samples):")
        for c in CATEGORIES:
            top = leaves[c].most_common(a.detail)
            if top:
                print(f"- {c}: " + ", ".join(f"{sym} {100 * n / total:.1f}%" for sym, n in top))


if __name__ == "__main__":
    main()
