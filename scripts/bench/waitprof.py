#!/usr/bin/env python3
"""waitprof.py BIN [TARBALL] - where the wall time of `tar -x`, `rm -rf` and
2,000 sqlite single-row transactions goes, on tmpfs and on a scratchfs mount
of BIN, one after the other: the caller's CPU time (user + system, from
getrusage), the time it was not running (waiting for answers, or for a
CPU), the daemon's CPU time (/proc/PID/stat) and the requests it answered
(its stats, FORGET and RELEASE left out: nobody waits for them).

Run as root (it mounts). TARBALL defaults to the benchmark's source tree,
/var/tmp/scratchfs-bench/srctree-v2.tar (scripts/bench.sh builds it).
docs/performance.md, "The budgets against the caller's clock", has a run."""
import json, os, resource, sqlite3, subprocess, sys, tempfile, time

if len(sys.argv) < 2:
    sys.exit(__doc__)
BIN = os.path.realpath(sys.argv[1])
TARBALL = sys.argv[2] if len(sys.argv) > 2 else "/var/tmp/scratchfs-bench/srctree-v2.tar"
HZ = os.sysconf("SC_CLK_TCK")

def daemon_cpu(pid):
    if not pid: return 0.0
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / HZ

def requests(mnt):
    try:
        out = subprocess.run([BIN, "stats", mnt, "--json"], capture_output=True, check=True).stdout
        r = json.loads(out)["requests"]
        return sum(v for k, v in r.items() if not k.endswith("_bytes") and k not in ("forget", "release"))
    except Exception:
        return 0

def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN); return r.ru_utime + r.ru_stime
def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime

def measure(mnt, pid, name, fn, cpu):
    q0, d0, c0, t0 = requests(mnt), daemon_cpu(pid), cpu(), time.perf_counter()
    fn()
    t, c, d, q = time.perf_counter() - t0, cpu() - c0, daemon_cpu(pid) - d0, requests(mnt) - q0
    # the stats request itself is one getxattr
    return dict(name=name, wall=t, caller_cpu=c, not_running=t - c, daemon_cpu=d, requests=max(q - 1, 0))

def workloads(mnt, pid):
    tree = os.path.join(mnt, "tree"); os.mkdir(tree)
    out = [measure(mnt, pid, "tar -x", lambda: subprocess.run(["tar", "-xf", TARBALL, "-C", tree], check=True), children_cpu)]
    out.append(measure(mnt, pid, "rm -rf", lambda: subprocess.run(["rm", "-rf", tree], check=True), children_cpu))
    d = os.path.join(mnt, "sq"); os.mkdir(d)
    con = sqlite3.connect(os.path.join(d, "b.db"))
    con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)"); con.execute("CREATE INDEX t_k ON t(k)"); con.commit()
    con.executemany("INSERT INTO t (k, v) VALUES (?, ?)", [(i * 7919 % 1000003, f"{i:08d}" + "v" * 100) for i in range(200000)]); con.commit()
    def txns():
        for i in range(2000):
            con.execute("INSERT INTO t (k, v) VALUES (?, ?)", (i, "v" * 100)); con.commit()
    out.append(measure(mnt, pid, "sqlite 2,000 txns", txns, self_cpu))
    con.close()
    return out

subprocess.run(["cat", TARBALL], stdout=subprocess.DEVNULL, check=True)
res = {}
for fs in ["tmpfs", "scratchfs"]:
    mnt = tempfile.mkdtemp(prefix="wp.")
    pid = 0
    if fs == "tmpfs":
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4G", "tmpfs", mnt], check=True)
    else:
        pidf = mnt + ".pid"
        subprocess.run([BIN, mnt, "--size", "4G", "--pid-file", pidf], check=True)
        time.sleep(0.3); pid = int(open(pidf).read())
    try:
        res[fs] = workloads(mnt, pid)
    finally:
        subprocess.run(["umount", mnt]); os.rmdir(mnt)
for a, b in zip(res["tmpfs"], res["scratchfs"]):
    print(f"{a['name']:<18} tmpfs wall {a['wall']:6.2f} s (caller CPU {a['caller_cpu']:5.2f}) | scratchfs wall {b['wall']:6.2f} s = "
          f"caller CPU {b['caller_cpu']:5.2f} + not running {b['not_running']:5.2f}; daemon CPU {b['daemon_cpu']:5.2f}; "
          f"{b['requests']:,} requests waited for: {1e6 * b['not_running'] / max(b['requests'], 1):.1f} us not running and "
          f"{1e6 * (b['caller_cpu'] - a['caller_cpu']) / max(b['requests'], 1):.1f} us more caller CPU per request; ratio {a['wall'] / b['wall']:.3f}")
