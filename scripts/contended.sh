#!/usr/bin/env bash
# contended.sh - small-file round trips while every CPU is busy: a Python
# loop creates, writes (100 B) and stats FILES files on tmpfs and on
# scratchfs, each run beside one CPU-bound shell loop per CPU, and prints
# microseconds per file (docs/performance.md, "When every CPU is busy").
#
# Usage: scripts/contended.sh [RUNS] [FILES] [-- scratchfs options...]
#        (as root, or a user with password-less sudo for the tmpfs mount)
# Environment: SCRATCHFS_BIN (skip the build).
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

# one FS [OPTIONS...]: starts the loops, mounts, runs, unmounts, stops the
# loops; prints µs per file.
one() {
  local i us
  trap stop_hogs EXIT # runs in a subshell: its loops end with it, also on failure
  for ((i = 0; i < cpus; i++)); do sh -c 'while :; do :; done' & hogs+=($!); done
  sleep 0.3
  if [ "$1" = tmpfs ]; then
    as_root mount -t tmpfs -o size=1G,mode=1777 scratchfs-contended "$work/tmpfs"
    us=$(python3 "$work/loop.py" "$work/tmpfs/x" "$files")
    as_root umount "$work/tmpfs"
  else
    "$bin" --size 1G "$@" "$work/scratchfs"
    wait_mounted "$work/scratchfs"
    us=$(python3 "$work/loop.py" "$work/scratchfs/x" "$files")
    umount_fs "$work/scratchfs"
  fi
  stop_hogs
  echo "$us"
}

mkdir -p "$work/tmpfs" "$work/scratchfs"
echo "contended: $runs runs of $files files beside $cpus CPU-bound loops; µs per file (scratchfs options: ${*:-none})"
t=(); s=()
for ((r = 1; r <= runs; r++)); do
  t+=("$(one tmpfs)")
  s+=("$(one scratchfs "$@")")
done
echo "tmpfs      ${t[*]}"
echo "scratchfs  ${s[*]}"
