#!/usr/bin/env python3
"""report.py - turns bench.py's results JSON into a text table (stdout), the
Markdown page docs/benchmarks.md and the SVG chart next to it.

Usage: report.py RESULTS.json [--markdown FILE] [--svg FILE] [--check]
Standard library only.
"""

import argparse
import html
import json
import os
import sys

MEM_TARGETS = {"big": 1.02, "tree": 1.05}
MEM_LABELS = {"big": "one large file (dd, 1 MiB writes)", "tree": "source tree (tar -x)"}


def human(n):
    if n is None:
        return "-"
    neg = n < 0
    n = abs(n)
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= div:
            v = n / div
            return f"{'-' if neg else ''}{v:.0f} {unit}" if v == int(v) else f"{'-' if neg else ''}{v:.1f} {unit}"
    return f"{'-' if neg else ''}{n} B"


def fmt_val(v, unit):
    if v is None:
        return "error"
    if unit == "s":
        return f"{v:.3f}" if v < 10 else f"{v:.2f}"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.1f}"


def ratio(m, a, b):
    """Fraction of tmpfs speed: b relative to a (a = tmpfs figure)."""
    if a is None or b is None or a == 0 or b == 0:
        return None
    return b / a if m["kind"] == "rate" else a / b


def spread(vals):
    if not vals or len(vals) < 2:
        return None
    vs = sorted(vals)
    med = vs[len(vs) // 2] if len(vs) % 2 else (vs[len(vs) // 2 - 1] + vs[len(vs) // 2]) / 2
    return (vs[-1] - vs[0]) / med if med else None


def rows(R):
    """One dict per metric with medians, ratios, targets."""
    out = []
    med = R.get("median", {})
    peers = [f for f in R["meta"]["filesystems"] if f not in ("tmpfs", "scratchfs")]
    for key, m in R["metrics"].items():
        t = med.get(key, {}).get("tmpfs")
        s = med.get(key, {}).get("scratchfs")
        r = ratio(m, t, s)
        sp = [spread(R["samples"].get(key, {}).get(f)) for f in ("tmpfs", "scratchfs")]
        sp = [x for x in sp if x is not None]
        best = {}
        for f in ("tmpfs", "scratchfs"):
            vs = R["samples"].get(key, {}).get(f)
            best[f] = (max(vs) if m["kind"] == "rate" else min(vs)) if vs else None
        row = {"key": key, **m, "tmpfs": t, "scratchfs": s, "ratio": r,
               "best_ratio": ratio(m, best["tmpfs"], best["scratchfs"]),
               "met": None if m["target"] is None or r is None else r >= m["target"],
               "noise": max(sp) if sp else None,
               "n": {f: len(R["samples"].get(key, {}).get(f, [])) for f in R["meta"]["filesystems"]},
               "peers": {}}
        for p in peers:
            pv = med.get(key, {}).get(p)
            row["peers"][p] = (pv, ratio(m, t, pv))
        out.append(row)
    return out, peers


def mem_rows(R):
    out = []
    for case in ("big", "tree"):
        per = R.get("memory", {}).get(case)
        if not per:
            continue
        s = per.get("scratchfs", {})
        t = per.get("tmpfs", {})
        data = s.get("data_bytes") or t.get("data_bytes")
        r = s["rss"] / s["data_bytes"] if s.get("rss") and s.get("data_bytes") else None
        row = {"case": case, "label": MEM_LABELS[case], "data": data,
               "rss": s.get("rss"), "rss_before": s.get("rss_before"), "ratio": r,
               "delta_ratio": s["rss_delta"] / s["data_bytes"] if s.get("rss_delta") is not None else None,
               "quota_ratio": s["quota_used"] / s["data_bytes"] if s.get("quota_used") else None,
               "rss_after_delete": s.get("rss_after_delete"), "hwm": s.get("hwm"),
               "target": MEM_TARGETS[case],
               "met": None if r is None else r <= MEM_TARGETS[case],
               "tmpfs_ratio": t["shmem_delta"] / t["data_bytes"] if t.get("data_bytes") else None,
               "files": s.get("files"), "entries": s.get("entries"), "peers": {}}
        for p, pr in per.items():
            if p in ("tmpfs", "scratchfs") or not pr.get("data_bytes"):
                continue
            tot = (pr.get("rss") or 0) + (pr.get("extra_mem") or 0)
            row["peers"][p] = tot / pr["data_bytes"]
        out.append(row)
    return out


# Requests the kernel sends without waiting for the answer.
NO_WAIT = ("forget", "release", "releasedir")
# Fewer requests than this in a workload: no per-request figures.
MIN_REQUESTS = 100


def duration(R, key, value):
    """Seconds a workload took on scratchfs, from its figure: times are
    durations; a rate is turned back into one from its fio job's run time or
    the amount it moved."""
    m, P = R["metrics"][key], R["params"]
    if value is None or value <= 0:
        return None
    if m["kind"] == "time":
        return value
    fixed = {"seq_read_warm": P["warm_secs"], "rand_write": P["rand_secs"]}
    if key in fixed:
        return fixed[key]
    moved = {"seq_write": P["seq_size"] / 2**20, "seq_read_cold": P["seq_size"] / 2**20,
             "rand_read_cold": P["rand_size"] / 4096, "par_write": 2 * P["par_size"] / 2**20}
    return moved[key] / value if key in moved else None


def request_rows(R):
    """Per workload: the FUSE requests scratchfs answered in its median
    repetition (by request count), the wall time per request the caller
    waited for, tmpfs's whole time per such request, and the most a request
    may cost for the ratio to reach the target."""
    out = []
    med = R.get("median", {})
    for key, m in R["metrics"].items():
        reps = R.get("requests", {}).get(key)
        if not reps:
            continue
        mid = sorted(reps, key=lambda r: sum(r.values()))[len(reps) // 2]
        waited = sum(v for k, v in mid.items() if k not in NO_WAIT)
        sv, tv = med.get(key, {}).get("scratchfs"), med.get(key, {}).get("tmpfs")
        s = duration(R, key, sv)
        # what tmpfs took for the same work (a time-based job did less of it on scratchfs)
        t = None if s is None or not tv else (tv if m["kind"] == "time" else s * sv / tv)
        # a handful of requests (warm reads come from the page cache) says nothing per request
        per = lambda secs: None if secs is None or waited < MIN_REQUESTS else secs / waited * 1e6
        out.append({"key": key, "label": m["label"], "total": sum(mid.values()), "waited": waited,
                    "kinds": sorted(mid.items(), key=lambda kv: -kv[1])[:4],
                    "us": per(s), "tmpfs_us": per(t),
                    "budget_us": per(t / m["target"]) if t is not None and m["target"] else None})
    return out


def request_table(R):
    """Header, body and alignment of the round-trip table (text or markdown)."""
    us = lambda v: "-" if v is None else f"{v:,.1f}"
    hdr = ["workload", "requests", "waited for", "largest kinds", "scratchfs µs / request",
           "tmpfs µs / request", "µs / request at target"]
    body = [[r["label"], f"{r['total']:,}", f"{r['waited']:,}",
             ", ".join(f"{k} {v:,}" for k, v in r["kinds"]), us(r["us"]), us(r["tmpfs_us"]),
             us(r["budget_us"])]
            for r in request_rows(R)]
    return hdr, body, ["l", "r", "r", "l", "r", "r", "r"]


def met_word(met):
    return "-" if met is None else ("yes" if met else "NO")


def per_group(d):
    """`{group: [values]}` as "group: v1, v2; group2: v3"."""
    return "; ".join(f"{g}: {', '.join(map(str, w))}" for g, w in d.items())


def memory_row(m, peers, ratio_fmt, target_fmt, met):
    """One row of the memory table; the formats differ between text and markdown."""
    opt = lambda v: "-" if v is None else f"{v:.3f}"
    row = [m["label"], human(m["data"]), human(m["rss"]),
           "-" if m["ratio"] is None else ratio_fmt.format(m["ratio"]), target_fmt.format(m["target"]), met,
           opt(m["delta_ratio"]), opt(m["quota_ratio"]), human(m["rss_after_delete"]), opt(m["tmpfs_ratio"])]
    return row + [opt(m["peers"].get(p)) for p in peers]


def text_table(R):
    rs, peers = rows(R)
    labels = R["meta"]["labels"]
    hdr = ["workload", "unit", "tmpfs", "scratchfs", "ratio", "target", "met", "noise", "best-of ratio"]
    for p in peers:
        hdr += [labels.get(p, p), f"{p} ratio"]
    lines = []
    body = []
    for r in rs:
        line = [r["label"], r["unit"], fmt_val(r["tmpfs"], r["unit"]), fmt_val(r["scratchfs"], r["unit"]),
                "-" if r["ratio"] is None else f"{r['ratio']:.3f}",
                "-" if r["target"] is None else f">={r['target']:.2f}", met_word(r["met"]),
                "-" if r["noise"] is None else f"{r['noise'] * 100:.0f}%",
                "-" if r["best_ratio"] is None else f"{r['best_ratio']:.3f}"]
        for p in peers:
            pv, pr = r["peers"][p]
            line += [fmt_val(pv, r["unit"]), "-" if pr is None else f"{pr:.3f}"]
        body.append(line)
    widths = [max(len(str(x[i])) for x in [hdr] + body) for i in range(len(hdr))]

    def fmt(cols):
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cols, widths)))
    lines.append(fmt(hdr))
    lines.append("  ".join("-" * w for w in widths))
    lines += [fmt(b) for b in body]
    lines.append("ratio = fraction of tmpfs speed (rates: scratchfs/tmpfs, times: tmpfs/scratchfs) of the medians; "
                 "noise = (max-min)/median, worse of the two columns;\n"
                 "best-of ratio = the same ratio between each side's best repetition (less sensitive to other load)")
    mr = mem_rows(R)
    if mr:
        lines.append("")
        hdr = ["memory (fresh mount)", "data", "daemon RSS", "RSS/data", "target", "met",
               "(RSS-idle)/data", "quota/data", "RSS after rm", "tmpfs Shmem/data"]
        for p in peers:
            hdr.append(f"{p} (RSS+cache)/data")
        body = [memory_row(m, peers, "{:.3f}", "<={:.2f}", met_word(m["met"])) for m in mr]
        widths = [max(len(str(x[i])) for x in [hdr] + body) for i in range(len(hdr))]
        lines.append(fmt(hdr))
        lines.append("  ".join("-" * w for w in widths))
        lines += [fmt(b) for b in body]
        for m in mr:
            if m["case"] == "tree" and m["files"]:
                lines.append(f"source tree: {m['files']:,} files, {m['entries']:,} entries, "
                             f"{human(m['data'])} of file data")
    hdr, body, _ = request_table(R)
    if body:
        lines.append("")
        widths = [max(len(str(x[i])) for x in [hdr] + body) for i in range(len(hdr))]
        lines.append(fmt(hdr))
        lines.append("  ".join("-" * w for w in widths))
        lines += [fmt(b) for b in body]
        lines.append("requests = FUSE requests scratchfs answered (median repetition); waited for = without "
                     "FORGET/RELEASE;\nµs / request = the workload's wall time per waited-for request")
    qw = R.get("quota_release_waits")
    if qw:
        lines.append("scratchfs released the quota of deleted files late (s waited before a run): "
                     + per_group(qw))
    b = busy_polling(R)
    if b:
        lines.append(f"scratchfs busy polling over the timed workloads: {b['bursts']:,} bursts, "
                     f"{b.get('yielded', 0):,} yielded to other work, "
                     f"{b.get('withheld', 0):,} withheld (more tasks runnable than CPUs), "
                     f"{b['polling_ms'] / 1000:.1f} s polling"
                     + latency_text(b))
    qt = R.get("quiet_waits")
    if qt:
        lines.append("waited for the machine to go quiet (under 10% CPU) before a run: "
                     + per_group(qt))
    fr = (R.get("final_rss") or {}).get("scratchfs")
    if fr:
        lines.append(f"scratchfs daemon RSS after the timed workloads, every file deleted: {human(fr)}")
    ml = (R["meta"].get("memfs_ll") or {}).get("info")
    if ml and "memfs_ll" in peers:
        lines.append(f"memfs_ll peer: {ml}")
    for name, pl in (R.get("peer_log_problems") or {}).items():
        lines.append(f"{name} daemon output (last lines): " + " | ".join(l[:160] for l in pl[-5:]))
    la = R["meta"].get("loadavg_start"), R["meta"].get("loadavg_end")
    if all(la):
        lines.append(f"load average at start {la[0][0]:.1f}, at end {la[1][0]:.1f} (2 cores: above ~2 means contention)")
    if R.get("steal_pct"):
        lines.append(f"CPU time stolen by the host, per group: {steal_text(R)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# SVG chart


def svg_chart(R):
    rs, peers = rows(R)
    rs = [r for r in rs if r["ratio"] is not None or any(v[1] for v in r["peers"].values())]
    bar_h, gap = 16, 10
    per_row = bar_h * (1 + len(peers)) + gap
    left, right, top = 290, 70, 54
    plot_w = 520
    width = left + plot_w + right
    height = top + per_row * len(rs) + 40
    vals = [r["ratio"] or 0 for r in rs] + [v[1] or 0 for r in rs for v in r["peers"].values()]
    xmax = max(1.2, min(3.0, max(vals + [0]) * 1.05))

    def X(v):
        return left + plot_w * min(v, xmax) / xmax

    e = html.escape
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{left}" y="18" font-size="14" font-weight="bold">scratchfs speed as a fraction of '
           f'tmpfs (median of {R["reps"]}; higher is better)</text>',
           f'<text x="{left}" y="36" fill="#555">{e(R["meta"].get("date", ""))} · commit '
           f'{e(str(R["meta"].get("commit", "?")))} · black tick = target</text>']
    step = 0.25 if xmax <= 1.6 else 0.5
    v = 0.0
    while v <= xmax + 1e-9:
        x = X(v)
        out.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 34}" '
                   f'stroke="{"#999" if abs(v - 1) < 1e-9 else "#e3e3e3"}" stroke-width="1"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 20}" text-anchor="middle" fill="#555">{v:g}</text>')
        v += step
    out.append(f'<text x="{left + plot_w / 2}" y="{height - 5}" text-anchor="middle" fill="#555">'
               f'ratio to tmpfs (1 = as fast as tmpfs)</text>')
    colors = {True: "#3a9d4a", False: "#d9534f", None: "#8c8c8c"}
    peer_col = ["#5b7fbf", "#c08a3e", "#8a5bbf"]
    y = top
    for r in rs:
        out.append(f'<text x="{left - 8}" y="{y + bar_h - 3}" text-anchor="end">{e(r["label"])}</text>')
        if r["ratio"] is not None:
            out.append(f'<rect x="{left}" y="{y}" width="{X(r["ratio"]) - left:.1f}" height="{bar_h}" '
                       f'fill="{colors[r["met"]]}"><title>{e(r["label"])}: {r["ratio"]:.3f}</title></rect>')
            lab = f'{r["ratio"]:.2f}' + ("+" if r["ratio"] > xmax else "")
            lx = max(X(r["ratio"]), X(r["target"]) if r["target"] is not None else 0) + 5
            out.append(f'<text x="{lx:.1f}" y="{y + bar_h - 3}" fill="#222">{lab}</text>')
        else:
            out.append(f'<text x="{left + 4}" y="{y + bar_h - 3}" fill="#d9534f">error</text>')
        if r["target"] is not None:
            tx = X(r["target"])
            out.append(f'<line x1="{tx:.1f}" y1="{y - 3}" x2="{tx:.1f}" y2="{y + bar_h * (1 + len(peers)) + 3}" '
                       f'stroke="black" stroke-width="2.5"/>')
        yy = y + bar_h
        for i, p in enumerate(peers):
            pr = r["peers"][p][1]
            if pr is not None:
                out.append(f'<rect x="{left}" y="{yy + 2}" width="{X(pr) - left:.1f}" height="{bar_h - 4}" '
                           f'fill="{peer_col[i % 3]}" opacity="0.75"/>')
                plx = max(X(pr), X(r["target"]) if r["target"] is not None else 0) + 5
                out.append(f'<text x="{plx:.1f}" y="{yy + bar_h - 4}" fill="#555" font-size="10">'
                           f'{pr:.2f} {e(p)}</text>')
            yy += bar_h
        y += per_row
    # legend
    lx = left + plot_w - 250
    for i, (lab, col) in enumerate((("target met", colors[True]), ("missed", colors[False]),
                                    ("no target", colors[None]))):
        out.append(f'<rect x="{lx + i * 85}" y="42" width="10" height="10" fill="{col}"/>'
                   f'<text x="{lx + i * 85 + 14}" y="51" font-size="11">{lab}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# Markdown


def peer_desc(meta, p):
    if p == "rclone":
        return " (`rclone mount :memory: --vfs-cache-mode writes`, cache dir on its own tmpfs)"
    if p == "memfs_ll":
        info = (meta.get("memfs_ll") or {}).get("info")
        return (" (libfuse's `example/memfs_ll.cc`, built locally, not part of this repository, run as "
                "`memfs_ll -f MOUNTPOINT`; no size limit" + (f"; build: {info}" if info else "") + ")")
    return ""


def md_table(hdr, body, align):
    lines = ["| " + " | ".join(hdr) + " |",
             "|" + "|".join(":--" if a == "l" else "--:" for a in align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in b) + " |" for b in body]
    return "\n".join(lines)


def markdown(R, svg_name):
    meta = R["meta"]
    mi = meta["machine"]
    P = R["params"]
    rs, peers = rows(R)
    labels = meta["labels"]
    o = []
    o.append("# scratchfs benchmarks\n")
    o.append("Generated by `scripts/bench.sh`; do not edit by hand (re-run the script). "
             "Every workload runs on scratchfs and on a tmpfs of the same size in the same run, "
             "alternating which goes first; figures are medians, and the **ratio is the fraction of "
             "tmpfs speed** (scratchfs/tmpfs for rates, tmpfs/scratchfs for times), so higher is better "
             "and 1.0 means as fast as tmpfs.\n")
    o.append("## Latest run\n")
    o.append(f"- **Date:** {meta.get('date')}; full run took {R.get('elapsed_s', 0) / 60:.1f} min "
             f"({R['reps']} repetition(s) per workload{', quick mode' if meta.get('quick') else ''})")
    o.append(f"- **Machine:** {mi['cpu']}, {mi['cpus']} CPUs, {human(mi['mem_total'])} RAM, "
             f"{mi['distro']}, Linux {mi['kernel']}"
             + (f"; guest halt polling {mi['guest_halt_poll_ns'] // 1000} µs "
                "(`/sys/module/haltpoll/parameters/guest_halt_poll_ns`: what waking an idle vCPU "
                "costs, see docs/performance.md)" if mi.get("guest_halt_poll_ns") is not None else ""))
    la = meta.get("loadavg_start"), meta.get("loadavg_end")
    if all(la):
        o.append(f"- **Load average** (1 min) at start {la[0][0]:.1f}, at end {la[1][0]:.1f} "
                 "(other jobs on the machine; timings are noisier above the core count)")
    if R.get("steal_pct"):
        o.append(f"- **CPU time stolen by the host** (`steal` in /proc/stat) while each group ran: "
                 f"{steal_text(R)}; a few percent is usual here, tens of percent means the host was busy "
                 "and every ratio that depends on wakeups suffers")
    o.append(f"- **Commit:** `{meta.get('commit', '?')}`"
             + (" (working tree had uncommitted changes)" if meta.get("dirty") else ""))
    o.append(f"- **scratchfs:** `{meta.get('scratchfs_version', '?')}`, options "
             f"`{' '.join(meta['scratchfs_args'])}` (everything else default); tmpfs `-o {meta['tmpfs_options']}`")
    bp = busy_polling(R)
    if bp:
        if bp.get("cpu_latency"):
            held = latency_held_s(bp)
            held = (f" for {held:.1f} s, the bursts and the busy stretches between them"
                    if held is not None else " while polling lasted")
            how = f"idle CPUs kept polling by a CPU latency request (the daemon runs as root){held}"
        else:
            how = "meanwhile a keeper thread spinning on a second CPU"
        o.append(f"- **scratchfs busy polling** over the timed workloads: {bp['bursts']:,} bursts, "
                 f"{bp['polling_ms'] / 1000:.1f} s polling; {how} (docs/performance.md)")
    if peers:
        o.append("- **Peers:** " + ", ".join(f"{labels.get(p, p)}" + peer_desc(meta, p) for p in peers))
    t = meta.get("tools", {})
    o.append("- **Tools:** " + ", ".join(
        (v if v.lower().startswith(k) or k in v else f"{k} {v}") for k, v in t.items()
        if k != "rclone" or "rclone" in peers))
    if not R.get("drop_caches"):
        o.append("- **Warning:** could not drop caches; 'cold' figures are warm.")
    o.append("")
    hdr = ["workload", "unit", "tmpfs", "scratchfs", "ratio", "target", "met", "noise", "best-of ratio"]
    align = ["l", "l", "r", "r", "r", "r", "l", "r", "r"]
    for p in peers:
        hdr += [labels.get(p, p), f"{p} ratio"]
        align += ["r", "r"]
    body = []
    for r in rs:
        b = [r["label"], r["unit"], fmt_val(r["tmpfs"], r["unit"]), fmt_val(r["scratchfs"], r["unit"]),
             "-" if r["ratio"] is None else f"**{r['ratio']:.3f}**",
             "-" if r["target"] is None else f"≥ {r['target']:.2f}",
             {None: "–", True: "✅", False: "❌"}[r["met"]],
             "-" if r["noise"] is None else f"{r['noise'] * 100:.0f}%",
             "-" if r["best_ratio"] is None else f"{r['best_ratio']:.3f}"]
        for p in peers:
            pv, pr = r["peers"][p]
            b += [fmt_val(pv, r["unit"]), "-" if pr is None else f"{pr:.3f}"]
        body.append(b)
    o.append(md_table(hdr, body, align))
    o.append("")
    o.append("*noise* = (max − min) / median over the repetitions, the worse of the two columns; "
             "more than ~20% means the row is not trustworthy on this run (the machine is shared). "
             "*best-of ratio* is the same ratio computed from each side's best repetition: other load only "
             "ever slows a run down, so when the two ratio columns disagree, the truth is usually nearer "
             "the best-of one. Targets are judged on the median ratio. Rows without a target are "
             "informational.\n")
    o.append(f"![scratchfs/tmpfs ratio per workload]({svg_name})\n")
    hdr, body, align = request_table(R)
    if body:
        o.append("### Round trips\n")
        o.append("What each workload asked of the scratchfs daemon: the FUSE requests it answered in the "
                 "repetition with the median count (`scratchfs stats --json`, read before and after the step, "
                 "outside the timed region), and of them the ones the caller waited for (all but FORGET and "
                 "RELEASE, which the kernel sends on its own time). *scratchfs µs / request* is the workload's "
                 "median wall time divided by those; *tmpfs µs / request* is tmpfs's whole time for the same "
                 "workload divided by the same number; *µs / request at target* is the most a request may cost, "
                 "everything included, for the ratio to reach its target. Where that is below what a round trip "
                 "through the kernel costs on this machine (with busy polling, 6–12 µs on the hosts this VM has run on, docs/performance.md), "
                 "the target is out of reach through this transport however little the daemon's own code takes: "
                 "the number of requests is the kernel's choice.\n")
        o.append(md_table(hdr, body, align))
        o.append("")
    mr = mem_rows(R)
    if mr:
        o.append("### Memory\n")
        o.append("Resident memory (`VmRSS`) of the scratchfs daemon on a fresh mount after storing the data, "
                 "divided by the bytes of file data stored. tmpfs has no daemon; its equivalent is the growth "
                 "of `Shmem` in `/proc/meminfo` (system-wide, so other activity on the machine adds noise). "
                 "Note that data read or written through FUSE may also sit in the kernel page cache "
                 "(reclaimable, not counted here).\n")
        hdr = ["data set", "data", "daemon RSS", "RSS / data", "target", "met", "(RSS − idle RSS) / data",
               "quota used / data", "RSS after deleting it", "tmpfs Shmem / data"]
        align = ["l", "r", "r", "r", "r", "l", "r", "r", "r", "r"]
        for p in peers:
            hdr.append(f"{p} (RSS + cache) / data")
            align.append("r")
        body = [memory_row(m, peers, "**{:.3f}**", "≤ {:.2f}", {None: "–", True: "✅", False: "❌"}[m["met"]])
                for m in mr]
        o.append(md_table(hdr, body, align))
        o.append("")
        fr = (R.get("final_rss") or {}).get("scratchfs")
        if fr:
            notes = R.get("notes", {})
            last = notes.get(R["groups"][-1], {}) if R.get("groups") else {}
            if "quota_after_cleanup" in last:
                o.append(f"The scratchfs daemon of the timed workloads still had {human(fr)} resident at the end, "
                         "with every file deleted (its quota usage had not come back to empty, see below).\n")
            else:
                o.append(f"The scratchfs daemon of the timed workloads still had {human(fr)} resident at the end, "
                         "with every file deleted and its quota usage back to empty (memory the filesystem freed "
                         "but the process did not give back to the system).\n")
        for m in mr:
            if m["case"] == "tree" and m["files"]:
                o.append(f"The source tree: {m['files']:,} regular files, {m['entries']:,} entries, "
                         f"{human(m['data'])} of file data (tarball `{os.path.basename(P['tarball'])}`, "
                         f"{meta.get('tarball_desc', '')}).\n")
    probs = []
    if R.get("errors"):
        probs += [f"- error: {x}" for x in R["errors"]]
    for g, n in R.get("notes", {}).items():
        for k in ("refusals", "quota_after_cleanup", "daemon", "stats"):
            if k in n:
                probs.append(f"- after `{g}`: {k} = `{n[k]}`")
    qw = R.get("quota_release_waits")
    if qw:
        probs.append("- scratchfs gave back the quota of deleted files only after a delay (unlink/close return "
                     "before the space is free; the script waits before each run). Seconds waited: "
                     + per_group(qw))
    for line in R.get("scratchfs_log_problems", [])[:10]:
        probs.append(f"- daemon log: `{line[:200]}`")
    for name, pl in (R.get("peer_log_problems") or {}).items():
        probs += [f"- {name} output: `{line[:200]}`" for line in pl[-5:]]
    if probs:
        o.append("### Problems seen in this run\n")
        o += probs
        o.append("")
    o.append("## Workloads\n")
    o.append(f"""All I/O goes through the ordinary page-cache path (fio `--ioengine=psync --direct=0
--fallocate=none`; `fallocate=none` because fio would otherwise preallocate on tmpfs outside the timed
region). *Cold* means `sync; echo 3 > /proc/sys/vm/drop_caches` just before (and fio's own
`invalidate=1`); on tmpfs this changes nothing, since tmpfs pages *are* the data.

| group | what runs (per repetition, per filesystem) |
|:--|:--|
| seq | fio `--rw=write --bs=1M --size={human(P['seq_size'])}` on a new file; drop caches; fio `--rw=read` of it (cold); `cat` it once, then fio `--rw=read --invalidate=0 --time_based --runtime={P['warm_secs']}` (warm); unlink |
| rand | lay out {P['rand_files']} files totalling {human(P['rand_size'])} (1 MiB writes, untimed); drop caches; fio `--rw=randwrite --bs=4k --time_based --runtime={P['rand_secs']}`; drop caches; fio `--rw=randread --bs=4k`, every block read once (cold); unlink. Files up to the promotion limit, so scratchfs promotes them to random-access storage |
| parallel | fio `--rw=write --bs=1M --size={human(P['par_size'])} --numjobs=2 --group_reporting` (aggregate bandwidth); unlink |
| smallfiles | Python: create {P['small_files']:,} files of 4 KiB in {P['small_dirs']} directories (`open(O_CREAT\\|O_EXCL)`, `write`, `close`), then `stat` each, then `unlink` each (+ `rmdir`), each phase timed |
| tree | `tar -xf` the cached source-tree tarball (tarball pre-read into the page cache); `find . -ls` (warm); drop caches; `find -type f -print0 \\| xargs -0 cat` (cold); `git init` (untimed; `gc.auto=0`, `maintenance.auto=false` so no detached gc races the next step) then `git add -A && git commit` (otherwise default git settings, no global config); `rm -rf` of the tree including `.git` |
| sqlite | Python `sqlite3` with default settings (rollback journal, `synchronous=FULL`), table with an index: {P['sqlite_rows']:,} rows (~110 B each) inserted in one transaction, then {P['sqlite_txns']:,} single-row transactions |
| memory | fresh mounts: `dd bs=1M` of {human(P['big_size'])} of zeros; separately `tar -x` of the source tree; daemon `VmRSS` before/after, quota used, then everything deleted and RSS read again |

Targets (ratios to tmpfs): sequential write ≥ 0.6, warm read ≥ 0.9, cold read ≥ 0.25, 4 KiB random
write and read ≥ 0.08, small-file create/unlink ≥ 0.25 (within 4×), tar/git/rm/sqlite ≥ 0.5 (within 2×);
daemon RSS ≤ 1.05 × data for the source tree and ≤ 1.02 × for one large file.

Why the small-request rows sit where they do (a cross-CPU wakeup per FUSE round trip on this VM,
requests per operation, levers pulled and left): `docs/performance.md`.
""")
    o.append("## Reproduce\n")
    o.append("""```sh
scripts/bench.sh                      # full run (3 repetitions), rewrites docs/benchmarks.{md,svg,json}
scripts/bench.sh --reps 5             # more repetitions (median is reported)
scripts/bench.sh --quick --no-docs    # smoke test: small sizes, 1 repetition, docs untouched
scripts/bench.sh --only seq,rand      # some groups only (seq rand parallel smallfiles tree sqlite memory)
scripts/bench.sh --peers              # add rclone mount :memory: (and memfs_ll, if built; below) as columns
scripts/bench.sh --threads 4 --scratchfs-opts '--storage random-access'
SCRATCHFS_BIN=/path/to/scratchfs scripts/bench.sh   # skip the build
```

Run as root (or with password-less sudo): it mounts tmpfs and drops caches. It installs what it needs
from Debian (`fio sqlite3 git python3 fuse3 tar`, plus `rclone` with `--peers`), builds
`cargo build --release --locked` (honours `CARGO_TARGET_DIR`) unless `SCRATCHFS_BIN` is set, builds the
source-tree tarball once from directories on the machine (`/usr/include`, `/usr/lib/python3*`, …) and caches
it under `/var/tmp/scratchfs-bench/` (`BENCH_CACHE`), mounts scratchfs and tmpfs (same size) on temporary
directories, and unmounts them on every exit path.

The `memfs_ll` peer (calibration: the in-memory example filesystem of libfuse, measured on the same
machine in the same run) is **not part of this repository and is never downloaded by the script**:
`--peers` runs it only if an executable exists at `MEMFS_LL_BIN` (default `/var/tmp/peers/memfs_ll`),
otherwise it prints a note and runs rclone alone. It is built locally from the public example: take
`example/memfs_ll.cc` from github.com/libfuse/libfuse (the runs here used the version at commit
`004c3288`), save it outside the repository as `/var/tmp/peers/memfs_ll.cc`, port it to the installed
libfuse (Debian 12 has 3.14: `FUSE_USE_VERSION 314`, drop the `.tmpfile`/`.statx` members of
`fuse_lowlevel_ops`, add `#include <limits>`) and compile it with
`g++ -std=c++17 -O2 $(pkg-config --cflags fuse3) -o memfs_ll memfs_ll.cc $(pkg-config --libs fuse3)`
(`apt-get install g++ libfuse3-dev`). That version of the example hangs on `truncate` (it locks a
`std::mutex` twice), aborts or crashes on every `rename` and `link` (a shared lock taken under the
exclusive one, Dentries used after `delete`, a lookup count not taken) and loses files when
`drop_caches` makes the kernel forget their inodes; its LOOKUP answers carry no size (with 0 s
timeouts every path walk then resets the cached size to 0 and drops the page cache: `git add` died of
SIGBUS) and its GETATTR answers uninitialised fields. So the local build also carries small, marked
locking, lifetime and attribute fixes (14 in the build of 2026-11-22, listed in its source; an open
with `O_TRUNC` still does not truncate, which no workload here depends on). Its design is unchanged: file contents in a per-inode `std::vector<char>`,
linear search of a directory's entries, 0 s attribute and entry timeouts, libfuse's default
multi-threaded loop; it is started as `memfs_ll -f MOUNTPOINT` (`-f` only to keep its pid and output)
and has no size limit. It implements no symlinks (and `rclone mount` as run here answers EIO to
them), so the source-tree tarball holds only regular files and directories. A run that
includes it prints the build's one-line description (kept in the results JSON and the Peers line). A
repetition on memfs_ll that takes longer than `BENCH_PEER_TIMEOUT` (900 s) gets its daemon killed, and
a memfs_ll that died is replaced by a fresh mount for the next run.

Sizes can be changed with environment variables: `BENCH_SEQ_SIZE` (2G), `BENCH_WARM_SECS` (3),
`BENCH_RAND_SIZE` (512M), `BENCH_RAND_FILES` (2), `BENCH_RAND_SECS` (3), `BENCH_PAR_SIZE` (1G per writer),
`BENCH_SMALL_FILES` (20000), `BENCH_SMALL_DIRS` (20), `BENCH_SQLITE_ROWS` (200000), `BENCH_SQLITE_TXNS` (2000),
`BENCH_BIG_SIZE` (1G), `BENCH_REPS` (3), `BENCH_SIZE` (4G quota), `BENCH_CACHE`. Raw per-repetition figures
are in `docs/benchmarks.json`. The machine is shared and has 2 cores: compare ratios, not absolute figures,
and look at the noise column before trusting a row.
""")
    return "\n".join(o)


def steal_text(R):
    return ", ".join(f"{g} {'?' if v is None else f'{v:g}%'}" for g, v in R["steal_pct"].items())


def latency_held_s(bp):
    """Seconds the daemon held its CPU latency request (idle CPUs polling:
    the bursts and the busy stretches between them), or None without one or
    for results from builds that did not report it."""
    return bp["latency_ms"] / 1000 if bp.get("cpu_latency") and "latency_ms" in bp else None


def latency_text(bp):
    held = latency_held_s(bp)
    return "" if held is None else f", CPU latency request held {held:.1f} s"


def busy_polling(R):
    """The scratchfs daemon's busy-polling counters at the end of the timed
    workloads (cumulative since mount, so the largest), or None."""
    bp = [n["busy_poll"] for n in R.get("notes", {}).values() if n.get("busy_poll")]
    return max(bp, key=lambda x: x.get("polling_ms", 0)) if bp else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("--markdown")
    ap.add_argument("--svg")
    ap.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    a = ap.parse_args()
    R = json.load(open(a.results))
    print(text_table(R))
    if a.svg:
        with open(a.svg, "w") as f:
            f.write(svg_chart(R))
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(markdown(R, os.path.relpath(a.svg, os.path.dirname(os.path.abspath(a.markdown)))
                             if a.svg else "benchmarks.svg"))
    if a.check:
        rs, _ = rows(R)
        missed = [r["label"] for r in rs if r["met"] is False or (r["target"] is not None and r["ratio"] is None)]
        missed += [m["label"] for m in mem_rows(R) if m["met"] is False]
        if missed:
            print("targets missed: " + "; ".join(missed), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
