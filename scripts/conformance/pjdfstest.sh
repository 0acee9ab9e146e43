#!/usr/bin/env bash
# pjdfstest.sh - run the pjdfstest POSIX suite against a mounted file system.
#
# Usage: scripts/conformance/pjdfstest.sh DIR [pjdfstest args / test patterns]
#   e.g. scripts/conformance/pjdfstest.sh /mnt/scratch
#        scripts/conformance/pjdfstest.sh /mnt/scratch -v chmod:: rename::
#
# Runs as root (re-execs via sudo otherwise) from inside DIR, with -p DIR,
# using pjdfstest.toml next to this script. Prints
#   pjdfstest: PASSED/TOTAL passed, F failed, S skipped
# and exits non-zero if any case failed (or pjdfstest itself failed).
# Environment:
#   PJDFSTEST_LOG=FILE          full log (default: a new /tmp/pjdfstest.*.log)
#   PJDFSTEST_CONFIG=FILE       config (default: pjdfstest.toml beside this script)
#   PJDFSTEST_SECONDARY_FS=DIR  a dir on another fs, for the EXDEV cases; default:
#                               a temp dir in the first of $TMPDIR,/tmp,/var/tmp,/dev/shm
#                               on a different device than DIR; "none" disables
#   PJDFSTEST_ALLOW_REMOUNT=1   enable the 13 EROFS cases (remount DIR's fs ro, then rw).
#                               Run them on their own: `... pjdfstest.sh DIR erofs`;
#                               posix_fallocate::affected_only_create_flags leaks
#                               O_RDWR fds, so later ro remounts fail with EBUSY.
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,21s/^# \{0,1\}//p' "$0" >&2; exit 2; }
if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi

here=$(cd "$(dirname "$0")" && pwd)
dir=$(cd "$1" && pwd -P); shift
config=${PJDFSTEST_CONFIG:-$here/pjdfstest.toml}
log=${PJDFSTEST_LOG:-$(mktemp /tmp/pjdfstest.XXXXXX.log)}
command -v pjdfstest >/dev/null || PATH="$HOME/.cargo/bin:$PATH"

cleanup=()
trap 'rm -rf "${cleanup[@]}"' EXIT

if [ "${PJDFSTEST_ALLOW_REMOUNT:-0}" = 1 ]; then
  tmpconf=$(mktemp /tmp/pjdfstest.XXXXXX.toml); cleanup+=("$tmpconf")
  sed 's/^allow_remount *=.*/allow_remount = true/' "$config" >"$tmpconf"
  config=$tmpconf
fi

args=(-c "$config" -p "$dir")
sec=${PJDFSTEST_SECONDARY_FS:-}
if [ -z "$sec" ]; then
  dev=$(stat -c %d "$dir")
  for d in "${TMPDIR:-/tmp}" /tmp /var/tmp /dev/shm; do
    if [ -d "$d" ] && [ "$(stat -c %d "$d")" != "$dev" ]; then
      sec=$(mktemp -d "$d/pjdfstest-secondary.XXXXXX"); cleanup+=("$sec"); break
    fi
  done
fi
[ -z "$sec" ] || [ "$sec" = none ] || args+=(-s "$sec")

echo "pjdfstest: $(pjdfstest --version) on $dir ($(stat -f -c %T "$dir")), log: $log"
rc=0
(cd "$dir" && NO_COLOR=1 pjdfstest "${args[@]}" "$@") >"$log" 2>&1 || rc=$?

grep -E '[[:space:]](FAILED|PASSED UNEXPECTEDLY)$' "$log" | sed 's/^/  /' || true
# "Summary: F failed, S skipped, P passed, E expected failures, T total"
read -r f s p t < <(sed -nE 's/^Summary: ([0-9]+) failed, ([0-9]+) skipped, ([0-9]+) passed, [0-9]+ expected failures, ([0-9]+) total$/\1 \2 \3 \4/p' "$log") \
  || { tail -n 20 "$log" >&2; echo "pjdfstest: no summary (exit $rc), see $log" >&2; exit 1; }
echo "pjdfstest: $p/$t passed, $f failed, $s skipped"
echo "pjdfstest: full log in $log"
[ "$f" -eq 0 ] && [ "$rc" -eq 0 ]
