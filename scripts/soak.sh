#!/usr/bin/env bash
# soak.sh - a long mixed workload on one scratchfs mount with the reliability
# checks running throughout; not part of scripts/test.sh.
#
# Usage: scripts/soak.sh            (as root, or a user with sudo; needs FUSE)
#
# Mounts scratchfs (--size SOAK_SIZE) and for SOAK_SECONDS runs, at once:
#   writers  SOAK_WRITERS writer processes (the test binary's
#            concurrent_writer_worker: write/append/overwrite/truncate/punch/
#            allocate/create/delete, each keeping its own record and verifying
#            every file at the end; ENOSPC means nothing changed, a short write
#            means exactly that many bytes were written)
#   tar      tar of SOAK_TREE into the mount, diff -r against the source, delete
#   git      init, add, commit, amend a file, commit, gc, fsck --strict, delete
#   sqlite   50,000 rows in one transaction, updates, integrity_check, delete
#   churn    2,000 small files created, half deleted, renamed, all deleted
# and every second checks: quota used <= quota (scratchfs stats --json),
# daemon RSS <= quota + the baseline the daemon states (checked as in
# tests/mount_reliability.rs: at least RSS right after mount + threads x
# (1 MiB + 4 KiB request buffer + 1 MiB reply copy) + 4 MiB of spare append
# buffers + 1 MiB of held-back request copies, at most 8 MiB more),
# daemon alive. A workload step that fails after one of its system calls got
# ENOSPC (traced with strace) counts as a refusal; any other failure, or a
# content check failing (tar/diff, git history, sqlite integrity), counts
# as an error.
#
# At the end: deletes everything (usage must return to its value right after
# mount), unmounts, and reports max used vs quota, max RSS vs bound, refusals
# by cause (daemon stats and per workload), errors. Exit status 1 if any check
# failed or any error occurred.
#
# Environment:
#   SOAK_SECONDS=600      duration
#   SOAK_SIZE=192M        quota (small enough that the workloads meet it)
#   SOAK_WRITERS=8        writer processes
#   SOAK_THREADS=2        daemon request threads (--threads)
#   SOAK_TREE=/usr/include  tree for the tar step
#   SCRATCHFS_BIN=PATH    daemon binary (default: cargo build --release, honouring CARGO_TARGET_DIR)
#   SOAK_WORKER_BIN=PATH  mount_reliability test binary (default: built with cargo)
#   SOAK_KEEP=1           keep the work directory (logs) even on success
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
root=$(repo_root)

if [ "$(id -u)" -ne 0 ]; then exec sudo -E "$0" "$@"; fi

SOAK_SECONDS=${SOAK_SECONDS:-600}
SOAK_SIZE=${SOAK_SIZE:-192M}
SOAK_WRITERS=${SOAK_WRITERS:-8}
SOAK_THREADS=${SOAK_THREADS:-2}
SOAK_TREE=${SOAK_TREE:-/usr/include}

# --- tools and binaries ------------------------------------------------------
# strace tells a refused step (a system call of the tool failed with ENOSPC)
# from a broken one: git and sqlite report a failed create or rename in words
# that do not name the error.
command -v strace >/dev/null || { apt-get install -y -q --no-install-recommends strace >/dev/null ||
  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends strace >/dev/null; }; }
command -v strace >/dev/null || { echo "soak: strace is needed (apt-get install strace)" >&2; exit 1; }
cargo_path
target=${CARGO_TARGET_DIR:-$root/target}
case "$target" in /*) ;; *) target="$root/$target" ;; esac
if [ -z "${SCRATCHFS_BIN:-}" ]; then
  (cd "$root" && cargo build --release --locked --quiet)
  SCRATCHFS_BIN="$target/release/scratchfs"
fi
if [ -z "${SOAK_WORKER_BIN:-}" ]; then
  SOAK_WORKER_BIN=$(cd "$root" && cargo test --release --locked --no-run --test mount_reliability \
    --message-format=json 2>/dev/null | grep -o '"executable":"[^"]*mount_reliability[^"]*"' | tail -1 | cut -d'"' -f4)
fi
[ -x "$SCRATCHFS_BIN" ] || { echo "soak: no scratchfs binary at $SCRATCHFS_BIN" >&2; exit 1; }
[ -x "$SOAK_WORKER_BIN" ] || { echo "soak: no mount_reliability test binary" >&2; exit 1; }

# --- set-up and cleanup on every path ----------------------------------------
work=$(mktemp -d /tmp/scratchfs-soak.XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt" "$work/counts"
pids=()
daemon=""
status=1 # until the report says passed
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  umount_fs "$mnt"
  if [ -n "$daemon" ]; then
    for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$daemon" 2>/dev/null || true
  fi
  if [ "$status" -eq 0 ] && [ -z "${SOAK_KEEP:-}" ]; then rm -rf "$work"; else echo "soak: logs kept in $work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bytes() { # 384M -> bytes (powers of 1024)
  local v=${1%[KkMmGgTt]} u=${1: -1}
  case "$u" in
    K|k) echo $((v << 10)) ;; M|m) echo $((v << 20)) ;; G|g) echo $((v << 30)) ;; T|t) echo $((v << 40)) ;;
    *) echo "$1" ;;
  esac
}
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
rss_of() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status" 2>/dev/null || echo 0; }
stats_json() { "$SCRATCHFS_BIN" stats --json "$mnt" 2>/dev/null; }
json_num() { sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"; }

quota=$(bytes "$SOAK_SIZE")
export mnt SOAK_TREE
"$SCRATCHFS_BIN" "$mnt" --size "$SOAK_SIZE" --threads "$SOAK_THREADS" \
  --pid-file "$work/pid" --log-file "$work/daemon.log"
daemon=$(cat "$work/pid")
rss0=$(rss_of "$daemon")
# The bound is the one the daemon states and tests/mount_reliability.rs
# checks: quota + the daemon's baseline (RSS when ready + a request buffer
# and a reply copy per thread + the spare append buffers + the copies of
# requests held back after a delete + a margin for growth between its
# readings). That baseline must cover at least our own sum, and be at most
# 8 MiB above it. The spares (4 MiB) and held copies (1 MiB) are
# storage::SPARE_BYTES and fuse::HELD_BYTES, which the test uses by name.
spares=$((4 << 20)) held=$((1 << 20))
ours=$((rss0 + SOAK_THREADS * ((1 << 20) + 4096 + (1 << 20)) + spares + held))
baseline=$(stats_json | json_num baseline_bytes)
if [ -z "$baseline" ] || ((baseline < ours || baseline > ours + (8 << 20))); then
  echo "soak: the daemon's stated baseline '${baseline}' is not within [$ours, $ours + 8 MiB]" >&2; exit 1
fi
bound=$((quota + baseline))
used0=$(stats_json | json_num used_bytes)
deadline=$(( $(date +%s) + SOAK_SECONDS ))
echo "soak: $SOAK_SECONDS s on $mnt, quota $(mib "$quota"), RSS bound $(mib "$bound")" \
     "(stated baseline $(mib "$baseline"): RSS at mount $(mib "$rss0") + $SOAK_THREADS threads x 2 MiB + spares and held copies 5 MiB + margin)," \
     "used at mount $used0 bytes"

# --- workloads ----------------------------------------------------------------
# Each loop runs steps until the deadline and appends one word per step to its
# counts file: ok, refused (ENOSPC) or error (with the reason in its log).
# A step that fails is "refused" only if one of its own system calls failed
# with ENOSPC (traced: strace -f -Z records failed calls only) and it did not
# fail a content check (exit status 2); anything else is an error.
step() { # step NAME LOG CMD...: runs CMD, classifies the outcome
  local name=$1 log=$2 rc=0; shift 2
  # The step functions run in a traced bash (their variables are exported).
  strace -f -Z -qq -e trace=%file,%desc -o "$log.strace" \
    bash -c "$(declare -f "$1"); $(printf '%q ' "$@")" >"$log" 2>&1 || rc=$?
  if [ "$rc" -eq 0 ]; then echo ok >>"$work/counts/$name"
  elif [ "$rc" -ne 2 ] && grep -q ' = -1 ENOSPC ' "$log.strace"; then echo refused >>"$work/counts/$name"
  else
    echo error >>"$work/counts/$name"
    { echo "== $name step failed (exit $rc):"; tail -5 "$log"; echo "-- its failed system calls (last 5):"
      grep -v ' ENOENT \| EEXIST \| EAGAIN ' "$log.strace" | tail -5; } >>"$work/errors.log"
  fi
  rm -f "$log.strace"
}
alive() { [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$daemon" 2>/dev/null; }

tar_step() {
  local d=$mnt/tar
  rm -rf "$d" && mkdir "$d" || return 1
  tar -C "$SOAK_TREE" -cf - . | tar -C "$d" -xf - || return 1
  diff -r --no-dereference "$SOAK_TREE" "$d" >/dev/null || { echo "tar: content differs" >&2; return 2; }
  rm -rf "$d"
}
git_step() {
  local d=$mnt/git f
  local g=(git -C "$d" -c user.name=soak -c user.email=soak@example.invalid -c init.defaultBranch=main)
  rm -rf "$d" && mkdir "$d" || return 1
  "${g[@]}" init -q && cp "$SOAK_TREE"/*.h "$d"/ && "${g[@]}" add -A && "${g[@]}" commit -qm one || return 1
  for f in $(find "$d" -maxdepth 1 -name '*.h' | head -20); do echo "// soak $RANDOM" >>"$f" || return 1; done
  "${g[@]}" commit -qam two && "${g[@]}" gc -q && "${g[@]}" fsck --strict || return 1
  [ "$("${g[@]}" log --oneline | wc -l)" -eq 2 ] || { echo "git: history wrong" >&2; return 2; }
  rm -rf "$d"
}
sqlite_step() {
  local db=$mnt/soak.db
  rm -f "$db" "$db-journal" "$db-wal"
  sqlite3 "$db" "PRAGMA journal_mode=$1; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
    BEGIN; WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 50000)
    INSERT INTO t(v) SELECT hex(randomblob(40)) FROM c; COMMIT;
    UPDATE t SET v = 'u' || v WHERE id % 7 = 0; DELETE FROM t WHERE id % 11 = 0;" >/dev/null || return 1
  [ "$(sqlite3 "$db" 'PRAGMA integrity_check; SELECT count(*) FROM t;' | tr '\n' ' ')" = "ok 45455 " ] ||
    { echo "sqlite: integrity or row count wrong" >&2; return 2; }
  rm -f "$db" "$db-journal" "$db-wal"
}
churn_step() {
  local d=$mnt/churn i
  rm -rf "$d" && mkdir "$d" || return 1
  for ((i = 0; i < 2000; i++)); do printf 'small file %d\n' "$i" >"$d/f$i" || return 1; done
  for ((i = 0; i < 2000; i += 2)); do rm "$d/f$i" || return 1; done
  for ((i = 1; i < 2000; i += 2)); do mv "$d/f$i" "$d/g$i" || return 1; done
  [ "$(find "$d" -mindepth 1 | wc -l)" -eq 1000 ] && [ "$(cat "$d/g1999")" = "small file 1999" ] || return 2
  rm -rf "$d"
}

for ((w = 0; w < SOAK_WRITERS; w++)); do
  mkdir "$mnt/w$w"
  SCRATCHFS_WORKER_DIR=$mnt/w$w SCRATCHFS_WORKER_SEED=$((RANDOM * 1000 + w)) SCRATCHFS_WORKER_SECS=$SOAK_SECONDS \
    "$SOAK_WORKER_BIN" concurrent_writer_worker --exact --ignored --nocapture --test-threads=1 -q \
    >"$work/writer$w.log" 2>&1 &
  pids+=($!)
done
(while alive; do step tar "$work/tar.log" tar_step; done) & pids+=($!)
(while alive; do step git "$work/git.log" git_step; done) & pids+=($!)
(n=0; while alive; do mode=delete; [ $((n++ % 2)) -eq 1 ] && mode=wal; step sqlite "$work/sqlite.log" sqlite_step "$mode"; done) &
pids+=($!)
(while alive; do step churn "$work/churn.log" churn_step; done) & pids+=($!)

# --- checks every second --------------------------------------------------------
max_used=0 max_rss=0 samples=0 violations=0 used_over=0 rss_over=0 t0=$(date +%s)
violation() { # prints the first 10, counts all
  violations=$((violations + 1))
  if ((violations <= 10)); then echo "soak: t=$(( $(date +%s) - t0 ))s: $*" >&2; fi
  if ((violations == 10)); then echo "soak: (further violations counted, not printed)" >&2; fi
}
while [ "$(date +%s)" -lt "$deadline" ]; do
  if ! kill -0 "$daemon" 2>/dev/null; then violation "the daemon died"; break; fi
  json=$(stats_json || true)
  used=$(json_num used_bytes <<<"$json"); rss=$(rss_of "$daemon")
  if [ -z "$used" ]; then violation "stats unreadable"; sleep 1; continue; fi
  samples=$((samples + 1))
  ((used > max_used)) && max_used=$used
  ((rss > max_rss)) && max_rss=$rss
  if ((used > quota)); then used_over=$((used_over + 1)); violation "used $used > quota $quota"; fi
  if ((rss > bound)); then rss_over=$((rss_over + 1)); violation "RSS $(mib "$rss") > bound $(mib "$bound") (used $(mib "$used"))"; fi
  if (( ($(date +%s) - t0) % 10 == 0 )); then
    echo "  t=$(( $(date +%s) - t0 ))s used $(mib "$used") RSS $(mib "$rss")"
  fi
  sleep 1
done

# --- results ---------------------------------------------------------------------
writer_failures=0
for ((w = 0; w < SOAK_WRITERS; w++)); do
  if ! wait "${pids[$w]}"; then writer_failures=$((writer_failures + 1)); { echo "== writer $w:"; tail -20 "$work/writer$w.log"; } >>"$work/errors.log"; fi
done
for p in "${pids[@]:$SOAK_WRITERS}"; do wait "$p" || true; done
pids=()
alive_at_end=yes; kill -0 "$daemon" 2>/dev/null || alive_at_end=no
json=$(stats_json || true)
refusals=$(sed -n 's/.*"refusals":{\([^}]*\)}.*/\1/p' <<<"$json" | tr -d '"')
count() { grep -c "^$2\$" "$work/counts/$1" 2>/dev/null || true; }
sum_writers() { cat "$work"/writer*.log 2>/dev/null | grep -o "$1=[0-9]*" | cut -d= -f2 | awk '{ s += $1 } END { print s + 0 }'; }

# Deleting everything gives every byte back.
rm -rf "${mnt:?}"/* 2>/dev/null || true
back=no
for _ in $(seq 100); do
  [ "$(stats_json | json_num used_bytes)" = "$used0" ] && { back=yes; break; }
  sleep 0.1
done
end_used=$(stats_json | json_num used_bytes)
end_rss=$(rss_of "$daemon")
umount_fs "$mnt"
for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
exited=yes; kill -0 "$daemon" 2>/dev/null && exited=no
errors=$(( $(count tar error) + $(count git error) + $(count sqlite error) + $(count churn error) + writer_failures ))

echo
echo "==== soak report ($SOAK_SECONDS s, $samples samples)"
echo "quota        max used $(mib "$max_used") of $(mib "$quota") ($max_used of $quota bytes)"
echo "memory       max RSS $(mib "$max_rss") vs bound $(mib "$bound") (baseline $(mib "$baseline")); after deleting everything $(mib "$end_rss")"
echo "daemon       alive throughout: $alive_at_end; exited on unmount: $exited"
echo "refusals     daemon stats: ${refusals:-unavailable}"
for w in tar git sqlite churn; do
  printf '  %-8s   steps ok %s, refused (ENOSPC) %s, errors %s\n' "$w" "$(count $w ok)" "$(count $w refused)" "$(count $w error)"
done
printf '  %-8s   %s processes: %s ops, %s writes, %s ENOSPC, %s short writes, %s failed verification\n' writers \
  "$SOAK_WRITERS" "$(sum_writers ops)" "$(sum_writers writes)" "$(sum_writers enospc)" "$(sum_writers short)" "$writer_failures"
echo "usage back   $back (used $end_used bytes after deleting everything, $used0 right after mount)"
echo "violations   $violations: used > quota in $used_over samples, RSS > bound in $rss_over samples, of $samples"
echo "errors       $errors"
[ -s "$work/errors.log" ] && { echo "---- errors:"; cat "$work/errors.log"; }
if [ "$violations" -ne 0 ] || [ "$errors" -ne 0 ] || [ "$back" != yes ] || [ "$exited" != yes ]; then
  echo "soak: FAILED"
  exit 1
fi
status=0
echo "soak: passed"
