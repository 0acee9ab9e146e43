#!/usr/bin/env python3
"""phases.py BIN [--only NAMES] [--reps N] - where one FUSE request's time
goes, phase by phase, in the benchmark's slowest workloads.

profile.py says whose CPU did what; this says what the caller waited for.
For every request the workload's own processes wait on, the kernel's FUSE
tracepoints (fuse:fuse_request_send, fuse:fuse_request_end), the daemon's
read(2) and writev(2) of /dev/fuse and the scheduler split its time into
six phases:

  before    from the caller's previous system call (or previous request)
            to this request being queued: its own code, the system call's
            entry, the path walk
  queued    queued -> the daemon's read(2) returns it: taking it from
            /dev/fuse (the busy-polling worker's next read, or the end of
            whatever it was doing, a FORGET say) and copying it out
  scratchfs read returned -> the answer's writev(2) starts: fuser decoding
            the request, scratchfs's work, fuser encoding the answer
  answer    writev(2) -> the kernel has the answer (it copies it in)
  wakeup    answer in -> the caller running again on its CPU
  after     running again -> its system call returns (or its next request):
            what the kernel does with the answer (instantiating the inode,
            evicting an unlinked one, queueing its FORGET)

Each workload is timed on tmpfs and on scratchfs without tracing (median of
N alternating repetitions), then once more on scratchfs under bpftrace.
Tracing costs time in every phase (a probe runs at each request, context
switch and system call of the caller, and at each of the busy poller's
reads), so the traced run is slower; the
table gives both wall times, and the phases are best read as shares. The
last line per workload estimates the ratio a daemon that answered
instantly would reach: the caller's phases (before, wakeup, after) at
their traced share of the untraced time.

Run as root, with bpftrace installed (`apt-get install bpftrace`), on a
kernel with the fuse tracepoints (Linux 6.12+). Same workloads, tarball and
mounts as profile.py. docs/performance.md ("A request, phase by phase") has
a run."""
import argparse, os, re, signal, statistics, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # leave no __pycache__ in the repository
sys.path.insert(0, HERE)
from profile import WORKLOADS, Mount, preflight, sh, time_once  # noqa: E402

# Opcodes of the requests nobody waits for (sent in the background).
ASYNC = {2: "FORGET", 18: "RELEASE", 29: "RELEASEDIR", 36: "INTERRUPT", 42: "BATCH_FORGET"}
NAMES = {1: "LOOKUP", 3: "GETATTR", 4: "SETATTR", 5: "READLINK", 6: "SYMLINK", 8: "MKNOD",
         9: "MKDIR", 10: "UNLINK", 11: "RMDIR", 12: "RENAME", 13: "LINK", 14: "OPEN", 15: "READ",
         16: "WRITE", 17: "STATFS", 21: "SETXATTR", 22: "GETXATTR", 23: "LISTXATTR",
         27: "OPENDIR", 28: "READDIR", 35: "CREATE", 39: "IOCTL", 43: "FALLOCATE",
         44: "READDIRPLUS", 45: "RENAME2", 46: "LSEEK"}
PHASES = ["before", "queued", "scratchfs", "answer", "wakeup", "after"]
CALLER_PHASES = ["before", "wakeup", "after"]  # the ones no daemon can shorten

# $1: the daemon's pid. A caller is any task of the workload (comm listed in
# the filter, filled in below) that sends a request; per caller thread the
# program follows: last system call exit -> send -> answer -> switched in ->
# next send or system call exit. A worker's read buffer is taken to be the
# same on every read (fuser reuses one per thread): its address is noted at
# the worker's first read, and the request's `unique` read from it (offset 8
# of fuse_in_header) when a read returns data; an answer's `unique` is at
# offset 8 of its first iovec (fuse_out_header).
PROGRAM = r"""
tracepoint:fuse:fuse_request_send /pid != $1 && (COMMS) && !(ASYNC)/ {
  @caller[tid] = 1;
  @sent[args->unique] = nsecs; @op[args->unique] = args->opcode; @who[args->unique] = tid;
  if (@answered[tid]) {
    $from = @running[tid] ? @running[tid] : @answered[tid];
    @after[@aop[tid]] = sum(nsecs - $from);
    delete(@answered[tid]); delete(@running[tid]); delete(@aop[tid]);
    @last[tid] = nsecs;
  }
  if (@last[tid]) { @before[args->opcode] = sum(nsecs - @last[tid]); }
  @n[args->opcode] = count();
}
tracepoint:syscalls:sys_enter_read /pid == $1 && !@bufset[tid]/ { @buf[tid] = (uint64)args->buf; @bufset[tid] = 1; }
tracepoint:syscalls:sys_exit_read /pid == $1 && args->ret > 0/ {
  $u = *(uint64 *)uptr(@buf[tid] + 8);
  if (@sent[$u]) { @queued[@op[$u]] = sum(nsecs - @sent[$u]); @read[$u] = nsecs; }
}
tracepoint:syscalls:sys_enter_writev /pid == $1/ {
  $base = *(uint64 *)uptr(args->vec);
  $u = *(uint64 *)uptr($base + 8);
  if (@read[$u]) { @scratchfs[@op[$u]] = sum(nsecs - @read[$u]); delete(@read[$u]); }
  if (@sent[$u]) { @answering[$u] = nsecs; }
}
tracepoint:fuse:fuse_request_end /@sent[args->unique]/ {
  $u = args->unique; $w = @who[$u];
  if (@answering[$u]) { @answer[@op[$u]] = sum(nsecs - @answering[$u]); delete(@answering[$u]); }
  @answered[$w] = nsecs; @aop[$w] = @op[$u];
  delete(@sent[$u]); delete(@op[$u]); delete(@who[$u]);
}
tracepoint:sched:sched_switch /@answered[args->next_pid] && !@running[args->next_pid]/ {
  $t = args->next_pid;
  @running[$t] = nsecs; @wakeup[@aop[$t]] = sum(nsecs - @answered[$t]);
}
tracepoint:raw_syscalls:sys_exit /@caller[tid]/ {
  if (@answered[tid]) {
    $from = @running[tid] ? @running[tid] : @answered[tid];
    @after[@aop[tid]] = sum(nsecs - $from);
    delete(@answered[tid]); delete(@running[tid]); delete(@aop[tid]);
  }
  @last[tid] = nsecs;
}
END {
  clear(@caller); clear(@sent); clear(@op); clear(@who); clear(@answered); clear(@running);
  clear(@aop); clear(@last); clear(@answering); clear(@buf); clear(@bufset); clear(@read);
}
"""


def program(comms):
    comm_filter = " || ".join(f'comm == "{c}"' for c in sorted(comms))
    async_filter = " || ".join(f"args->opcode == {op}" for op in sorted(ASYNC))
    return PROGRAM.replace("COMMS", comm_filter).replace("ASYNC", async_filter)


def parse(out):
    """{map: {opcode: value}} from bpftrace's printout of @map[op]: value."""
    maps = {}
    for name, op, value in re.findall(r"^@(\w+)\[(\d+)\]: (\d+)$", out, re.M):
        maps.setdefault(name, {})[int(op)] = int(value)
    return maps


def traced(mount, w):
    """One traced run: (wall seconds, {map: {opcode: value}})."""
    d = mount.prepare(w)
    bt = subprocess.Popen(["bpftrace", "-e", program(w.comms), str(mount.pid)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in bt.stdout:  # wait until the probes are in
        if line.startswith("Attaching"):
            break
    else:
        sys.exit("phases.py: bpftrace did not start (as root, with the fuse tracepoints?)")
    try:
        t0 = time.perf_counter()
        out = sh(w.cmd(d), stdout=subprocess.PIPE, text=True).stdout
        wall = w.seconds(out, time.perf_counter() - t0)
    finally:
        bt.send_signal(signal.SIGINT)
        printed = bt.communicate(timeout=120)[0]
    sh(["rm", "-rf", d])
    return wall, parse(printed)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("binary")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--only", default="tar,rm,sqlite-txns")
    ap.add_argument("--min-share", type=float, default=2.0, metavar="PCT",
                    help="list request types with at least this share of the waited-for requests")
    a = ap.parse_args()
    names, binary = preflight("phases.py", "bpftrace", a)
    print("| workload | request | count | " + " | ".join(f"{p} µs" for p in PHASES) + " | sum µs |")
    print("|:--|:--|--:|" + "--:|" * (len(PHASES) + 1))
    notes = []
    with Mount("tmpfs", binary) as tmp, Mount("scratchfs", binary) as sfs:
        for w in (w for w in WORKLOADS if w.name in names):
            times = {"tmpfs": [], "scratchfs": []}
            for r in range(a.reps):
                for m in ([tmp, sfs] if r % 2 == 0 else [sfs, tmp]):
                    times[m.kind].append(time_once(m, w))
            t_tmp, t_sfs = statistics.median(times["tmpfs"]), statistics.median(times["scratchfs"])
            wall, maps = traced(sfs, w)
            counts = maps.get("n", {})
            total = sum(counts.values())
            per = {p: sum(maps.get(p, {}).values()) / max(total, 1) / 1000 for p in PHASES}
            for op in sorted(counts, key=lambda o: -counts[o]) + ["all"]:
                if op == "all":
                    n, cols = total, per
                else:
                    n = counts[op]
                    if 100 * n / max(total, 1) < a.min_share:
                        continue
                    cols = {p: maps.get(p, {}).get(op, 0) / n / 1000 for p in PHASES}
                label = "**all**" if op == "all" else NAMES.get(op, str(op))
                print(f"| {w.name} | {label} | {n:,} | "
                      + " | ".join(f"{cols[p]:.2f}" for p in PHASES) + f" | {sum(cols.values()):.2f} |")
            # An instant daemon: queued, scratchfs and answer at zero, the
            # caller's phases scaled from the traced run to the untraced one.
            callers = sum(per[p] for p in CALLER_PHASES) / max(sum(per.values()), 1e-9)
            bound = t_tmp / max(t_sfs * callers, 1e-9)
            notes.append(f"{w.name}: tmpfs {t_tmp:.3f} s, scratchfs {t_sfs:.3f} s (ratio {t_tmp / t_sfs:.3f}); "
                         f"traced {wall:.3f} s; {total:,} requests waited for, "
                         f"{1e6 * t_sfs / max(total, 1):.2f} µs of untraced wall time each, "
                         f"{1e6 * t_tmp / max(total, 1):.2f} µs on tmpfs; the caller's own phases "
                         f"are {100 * callers:.0f}% of a request, so a daemon that answered "
                         f"instantly would reach a ratio of about {bound:.2f}")
            print(notes[-1], file=sys.stderr, flush=True)
    print()
    for n in notes:
        print(f"- {n}")


if __name__ == "__main__":
    main()
