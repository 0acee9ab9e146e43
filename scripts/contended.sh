#!/usr/bin/env bash
# contended.sh - small-file round trips while every CPU is busy: a Python
# loop creates, writes (100 B) and stats FILES files on tmpfs and on
# scratchfs, each run beside one CPU-bound shell loop per CPU, and prints
# microseconds per file (docs/performance.md, "When every CPU is busy").
#
# Usage: scripts/contended.sh [RUNS] [FILES] [-- scratchfs options...]
#        (as root, or a user with password-less sudo for the tmpfs mount)
# Environment: SCRATCHFS_BIN (skip the build); CONTENDED_TAR=FILE: instead
# of the Python loop, `tar -x` FILE and then `rm -rf` the result, printing
# seconds for each ("tar/rm"; FILES is then ignored).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

runs=${1:-4}; files=${2:-8000}
shift $(( $# < 2 ? $# : 2 ))
[ "${1:-}" = "--" ] && shift
bin=${SCRATCHFS_BIN:-$(build_release)}
cpus=$(nproc)
work=$(mktemp -d /tmp/scratchfs-contended.XXXXXX)
hogs=()

stop_hogs() {
  local p
  for p in "${hogs[@]+"${hogs[@]}"}"; do kill "$p" 2>/dev/null || true; done
  for p in "${hogs[@]+"${hogs[@]}"}"; do wait "$p" 2>/dev/null || true; done
  hogs=()
}
cleanup() {
  stop_hogs
  umount_fs "$work/scratchfs" 2>/dev/null || true
  as_root umount "$work/tmpfs" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat > "$work/loop.py" <<'PY'
import os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
t = time.perf_counter()
for i in range(n):
    p = os.path.join(d, 'f%d' % i)
    with open(p, 'wb') as f:
        f.write(b'x' * 100)
    os.stat(p)
print('%.1f' % ((time.perf_counter() - t) / n * 1e6))
PY

# measure DIR: the workload in DIR (new); prints its figure.
measure() {
  if [ -z "${CONTENDED_TAR:-}" ]; then
    python3 "$work/loop.py" "$1" "$files"
    return
  fi
  local t0 t1 t2
  mkdir "$1"
  t0=$(date +%s%N)
  tar -xf "$CONTENDED_TAR" -C "$1"
  t1=$(date +%s%N)
  rm -rf "$1"
  t2=$(date +%s%N)
  awk -v a="$t0" -v b="$t1" -v c="$t2" 'BEGIN { printf "%.2f/%.2f", (b - a) / 1e9, (c - b) / 1e9 }'
}

# one FS [OPTIONS...]: starts the loops, mounts, runs, unmounts, stops the
# loops; prints its figure.
one() {
  local i us
  trap stop_hogs EXIT # runs in a subshell: its loops end with it, also on failure
  for ((i = 0; i < cpus; i++)); do sh -c 'while :; do :; done' & hogs+=($!); done
  sleep 0.3
  if [ "$1" = tmpfs ]; then
    as_root mount -t tmpfs -o size=1G,mode=1777 scratchfs-contended "$work/tmpfs"
    us=$(measure "$work/tmpfs/x")
    as_root umount "$work/tmpfs"
  else
    "$bin" --size 1G "$@" "$work/scratchfs"
    wait_mounted "$work/scratchfs"
    us=$(measure "$work/scratchfs/x")
    umount_fs "$work/scratchfs"
  fi
  stop_hogs
  echo "$us"
}

mkdir -p "$work/tmpfs" "$work/scratchfs"
if [ -n "${CONTENDED_TAR:-}" ]; then
  [ -r "$CONTENDED_TAR" ] || { echo "contended: cannot read CONTENDED_TAR=$CONTENDED_TAR" >&2; exit 2; }
  echo "contended: $runs runs of tar -x $CONTENDED_TAR, then rm -rf, beside $cpus CPU-bound loops; seconds tar/rm (scratchfs options: ${*:-none})"
else
  echo "contended: $runs runs of $files files beside $cpus CPU-bound loops; µs per file (scratchfs options: ${*:-none})"
fi
t=(); s=()
for ((r = 1; r <= runs; r++)); do
  t+=("$(one tmpfs)")
  s+=("$(one scratchfs "$@")")
done
echo "tmpfs      ${t[*]}"
echo "scratchfs  ${s[*]}"
