#!/usr/bin/env bash
# fsx.sh - run fsx (random file operations + verification) on one file.
#
# Usage: scripts/conformance/fsx.sh FILE_DIR OPS SEED [extra fsx args]
#   e.g. scripts/conformance/fsx.sh /mnt/scratch 100000 1
#
# Creates FILE_DIR/fsx.SEED (removed on success), runs OPS operations chosen
# by SEED with the op mix in fsx.toml beside this script, prints ops/s and
# exits non-zero on any miscompare, size error or failed syscall.
# Runs: fsx -f fsx.toml -N OPS -S SEED -P ARTIFACTS [extra args] FILE_DIR/fsx.SEED
# (op mix, sizes and the FUSE notes on each op are in fsx.toml; extra args e.g. -v).
# Environment:
#   FSX_CONFIG=FILE        config (default: fsx.toml beside this script)
#   FSX_DISABLE="op ..."   set these weights to 0, e.g. "punch_hole copy_file_range"
#   FSX_ARTIFACTS=DIR      where the log and fsx.SEED.fsxgood go (default: new
#                          /tmp/fsx.* dir, kept on failure, removed on success)
set -euo pipefail

[ $# -ge 3 ] || { sed -n '2,17s/^# \{0,1\}//p' "$0" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
dir=$1 ops=$2 seed=$3; shift 3
file=$dir/fsx.$seed
art=${FSX_ARTIFACTS:-$(mktemp -d /tmp/fsx.XXXXXX)}
mkdir -p "$art"
config=$art/fsx.toml
cp "${FSX_CONFIG:-$here/fsx.toml}" "$config"
for op in ${FSX_DISABLE:-}; do sed -i "s/^$op *=[^#]*/$op = 0 /" "$config"; done
command -v fsx >/dev/null || PATH="$HOME/.cargo/bin:$PATH"

log=$art/fsx.$seed.log
echo "fsx: $(fsx --version), $ops ops, seed $seed, file $file, log $log"
start=$(date +%s.%N)
rc=0
NO_COLOR=1 fsx -f "$config" -N "$ops" -S "$seed" -P "$art" "$@" "$file" >"$log" 2>&1 || rc=$?
secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
if [ "$rc" -ne 0 ] || ! grep -q 'All operations completed A-OK!' "$log"; then
  tail -n 40 "$log" >&2
  echo "fsx: FAILED (exit $rc) after $secs s, artifacts in $art" >&2
  exit 1
fi
rm -f "$file"
[ -n "${FSX_ARTIFACTS:-}" ] || rm -rf "$art"
awk -v n="$ops" -v t="$secs" 'BEGIN { printf "fsx: OK, %d ops in %.2f s (%.0f ops/s)\n", n, t, n / (t > 0 ? t : 0.01) }'
