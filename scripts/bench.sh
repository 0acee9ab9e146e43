#!/usr/bin/env bash
# bench.sh - benchmark scratchfs against tmpfs (same size, same run) and
# write docs/benchmarks.md (+ .svg chart, + .json raw figures).
#
# Usage: scripts/bench.sh [options]      (as root, or a user with password-less sudo)
#   -r, --reps N           repetitions per workload, median reported (default 3; env BENCH_REPS)
#   --quick                small sizes, 1 repetition (smoke test)
#   --only LIST            comma-separated groups: seq,rand,parallel,smallfiles,tree,sqlite,memory
#   --peers                also run rclone mount :memory: (installs Debian package rclone) and,
#                          if a local build exists, libfuse's memfs_ll example (see MEMFS_LL_BIN)
#   --size SIZE            scratchfs quota and tmpfs size (default 4G; env BENCH_SIZE)
#   --max-nodes N          node limit for both (scratchfs --max-nodes, tmpfs nr_inodes)
#   --threads N            scratchfs --threads (default: scratchfs's default)
#   --scratchfs-opts STR   more scratchfs options, e.g. '--storage random-access'
#   --no-docs              print the table only; leave docs/ untouched
#   --halt-poll NS         run with the host's guest halt polling set to NS nanoseconds
#                          (/sys/module/haltpoll/parameters/guest_halt_poll_ns, restored on
#                          exit); an experiment on the host's setting, so implies --no-docs
#                          (docs/performance.md, "Guest halt polling")
#   --check                exit 1 if a target is missed
#   -h, --help
# Environment: SCRATCHFS_BIN (skip the build), CARGO_TARGET_DIR, BENCH_CACHE
# (default /var/tmp/scratchfs-bench: source-tree tarball, last results and logs),
# MEMFS_LL_BIN (default /var/tmp/peers/memfs_ll: a local build of libfuse's public
# example/memfs_ll.cc, never part of this repository; skipped with a note if absent),
# BENCH_PEER_TIMEOUT (seconds one repetition may take on memfs_ll before it is killed; 900),
# workload sizes BENCH_SEQ_SIZE, BENCH_WARM_SECS, BENCH_RAND_SIZE, BENCH_RAND_FILES,
# BENCH_RAND_SECS, BENCH_PAR_SIZE, BENCH_SMALL_FILES, BENCH_SMALL_DIRS,
# BENCH_SQLITE_ROWS, BENCH_SQLITE_TXNS, BENCH_BIG_SIZE (see docs/benchmarks.md).
# Exit status: 0 ok, 1 targets missed (--check only), 2 a workload failed.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
root=$(repo_root)
here="$root/scripts/bench"
t_start=$(date +%s)

reps=${BENCH_REPS:-3}
size=${BENCH_SIZE:-4G}
quick=0 peers=0 docs=1 check=0
only="" max_nodes="" threads="" sfs_opts=""
halt_poll=""
usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    -r|--reps) reps=$2; shift 2 ;;
    --quick) quick=1; reps=1; shift ;;
    --only) only=$2; shift 2 ;;
    --peers) peers=1; shift ;;
    --size) size=$2; shift 2 ;;
    --max-nodes) max_nodes=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --scratchfs-opts) sfs_opts=$2; shift 2 ;;
    --no-docs) docs=0; shift ;;
    --halt-poll) halt_poll=$2; shift 2 ;;
    --check) check=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench: unknown option $1 (see --help)" >&2; exit 64 ;;
  esac
done

say() { echo "bench: $*"; }

if [ "$(id -u)" -ne 0 ] && ! sudo -n true 2>/dev/null; then
  echo "bench: needs root (or password-less sudo) to mount tmpfs and drop caches" >&2; exit 1
fi

if [ -n "$halt_poll" ]; then
  case "$halt_poll" in ''|*[!0-9]*) echo "bench: --halt-poll takes nanoseconds, e.g. 200000" >&2; exit 64 ;; esac
  [ -e /sys/module/haltpoll/parameters/guest_halt_poll_ns ] ||
    { echo "bench: --halt-poll: this kernel has no haltpoll cpuidle driver" >&2; exit 1; }
  docs=0
fi

# --- tools ------------------------------------------------------------------
# command -> Debian package
declare -A NEED=([fio]=fio [sqlite3]=sqlite3 [git]=git [python3]=python3 [fusermount3]=fuse3
                 [tar]=tar [xargs]=findutils [mountpoint]=util-linux)
[ "$peers" -eq 1 ] && NEED[rclone]=rclone
missing=()
for c in "${!NEED[@]}"; do command -v "$c" >/dev/null || missing+=("${NEED[$c]}"); done
# the Python sqlite3 module ships with Debian's python3; make sure we use that one
[ -x /usr/bin/python3 ] || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  apt_install() { as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; }
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || ! apt_install; then
    as_root apt-get update -q
    apt_install
  fi
fi
PY=/usr/bin/python3

# --- scratchfs binary ----------------------------------------------------------
if [ -n "${SCRATCHFS_BIN:-}" ]; then
  bin=$SCRATCHFS_BIN
else
  cargo_path
  command -v cargo >/dev/null || { echo "bench: cargo not found (install rustup, or set SCRATCHFS_BIN)" >&2; exit 1; }
  say "building scratchfs (cargo build --release --locked)"
  (cd "$root" && cargo build --release --locked --quiet)
  bin="${CARGO_TARGET_DIR:-$root/target}/release/scratchfs"
fi
[ -x "$bin" ] || { echo "bench: no scratchfs binary at $bin" >&2; exit 1; }
bin=$(realpath "$bin")

# --- source-tree tarball (built once, cached) ----------------------------------
cache=${BENCH_CACHE:-/var/tmp/scratchfs-bench}
mkdir -p "$cache"
# Regular files and directories only: the FUSE peers (memfs_ll has no
# symlink support, rclone answers EIO) could not extract symlinks.
tarball="$cache/srctree-v2.tar"
if [ ! -s "$tarball" ]; then
  say "building the source-tree tarball $tarball (once)"
  dirs=() total=0
  for d in /usr/include /usr/lib/python3.11 /usr/lib/python3/dist-packages /usr/share/perl \
           /usr/lib/python3.* /usr/share/perl5 /usr/share/vim /usr/lib/x86_64-linux-gnu/perl \
           /usr/share/doc; do
    [ -d "$d" ] || continue
    case " ${dirs[*]-} " in *" ${d#/} "*) continue ;; esac
    dirs+=("${d#/}")
    total=$((total + $(du -sb "$d" | cut -f1)))
    [ "$total" -ge $((220 * 1024 * 1024)) ] && break
  done
  (cd / && find "${dirs[@]}" \( -type f -o -type d \) -print0) |
    tar -C / -cf "$tarball.tmp" --null --no-recursion -T - --warning=no-file-changed || [ $? -eq 1 ]
  mv "$tarball.tmp" "$tarball"
  echo "${dirs[*]}" >"$tarball.dirs"
fi
tar_desc="$(du -h "$tarball" | cut -f1) from /$(sed 's| | /|g' "$tarball.dirs" 2>/dev/null || echo '?')"

# --- work dir, clean-up on every exit path ----------------------------------------
work=$(mktemp -d /tmp/scratchfs-bench.XXXXXX)
# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
  local rc=$? mp pidf pid i
  trap - EXIT INT TERM HUP
  # anything still mounted under the work dir (normally bench.py has unmounted it all)
  for mp in $(awk -v w="$work/" 'index($2, w) == 1 {print $2}' /proc/self/mounts | sort -r); do
    echo "bench: cleaning up mount $mp" >&2
    as_root umount "$mp" 2>/dev/null || as_root umount -l "$mp" 2>/dev/null || true
  done
  # daemons we started: scratchfs (pid files), rclone and memfs_ll (mount points under $work)
  for pidf in "$work"/*.pid; do
    [ -e "$pidf" ] || continue
    pid=$(cat "$pidf" 2>/dev/null || true)
    if [ -z "$pid" ] || ! grep -qa scratchfs "/proc/$pid/cmdline" 2>/dev/null; then continue; fi
    for ((i = 0; i < 100; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && { echo "bench: stopping daemon $pid" >&2; kill "$pid" 2>/dev/null || true; }
  done
  for pid in $(grep -las -- "$work/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    [ "$pid" = $$ ] && continue
    if tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q '^[^ ]*rclone mount '; then
      kill "$pid" 2>/dev/null || true
    elif tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q '^[^ ]*memfs_ll '; then
      # a worker stuck in the example's code keeps it from exiting on SIGTERM
      echo "bench: stopping memfs_ll $pid" >&2
      kill "$pid" 2>/dev/null || true
      for ((i = 0; i < 20; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  if [ -n "${halt_poll_was:-}" ]; then
    echo "$halt_poll_was" | as_root tee /sys/module/haltpoll/parameters/guest_halt_poll_ns >/dev/null &&
      say "guest halt polling restored to $halt_poll_was ns"
  fi
  if [ -d "$work" ]; then
    rm -rf "$cache/last" && mkdir -p "$cache/last"
    cp -f "$work"/*.log "$work"/results.json "$cache/last/" 2>/dev/null || true
    if awk -v w="$work/" 'index($2, w) == 1 {f=1} END {exit !f}' /proc/self/mounts; then
      echo "bench: warning: something is still mounted under $work; not removing it" >&2
    else
      rm -rf "$work"
    fi
  fi
  exit "$rc"
}
# bench.py runs in the background so that a signal to this script is handled at
# once (bash defers traps while a foreground child runs): it is forwarded, bench.py
# unmounts what it mounted, then cleanup() checks.
pypid=""
on_signal() {
  trap '' INT TERM HUP
  if [ -n "$pypid" ] && kill -0 "$pypid" 2>/dev/null; then
    echo "bench: interrupted; stopping the workloads and unmounting" >&2
    kill -TERM "$pypid" 2>/dev/null || true
    wait "$pypid" 2>/dev/null || true
  fi
  exit "$1"
}
trap cleanup EXIT
if [ -n "$halt_poll" ]; then
  halt_poll_was=$(cat /sys/module/haltpoll/parameters/guest_halt_poll_ns)
  echo "$halt_poll" | as_root tee /sys/module/haltpoll/parameters/guest_halt_poll_ns >/dev/null
  say "guest halt polling set to $halt_poll ns for this run (was $halt_poll_was; restored on exit)"
fi
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP

# --- run ------------------------------------------------------------------------
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
dirty=false
[ -n "$(git -C "$root" status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ] && dirty=true
version=$("$bin" --version 2>/dev/null || echo '?')
meta=$(printf '{"commit":"%s","dirty":%s,"scratchfs_version":"%s","quick":%s,"tarball_desc":"%s","bin":"%s"}' \
  "$commit" "$dirty" "$version" "$([ $quick -eq 1 ] && echo true || echo false)" "$tar_desc" "$bin")

say "scratchfs $version ($bin), commit $commit$([ "$dirty" = true ] && echo ' + uncommitted changes')"
say "tarball: $tarball ($tar_desc); work dir $work; $reps repetition(s)"
args=(--scratchfs "$bin" --workdir "$work" --tarball "$tarball" --out "$work/results.json"
      --reps "$reps" --size "$size" --meta "$meta")
[ -n "$only" ] && args+=(--only "$only")
[ -n "$max_nodes" ] && args+=(--max-nodes "$max_nodes")
[ -n "$threads" ] && args+=(--threads "$threads")
[ -n "$sfs_opts" ] && args+=(--scratchfs-opts "$sfs_opts")
if [ "$peers" -eq 1 ]; then
  args+=(--peers)
  memfs_ll=${MEMFS_LL_BIN:-/var/tmp/peers/memfs_ll}
  if [ -x "$memfs_ll" ]; then
    info=$(head -n 1 "$memfs_ll.buildinfo" 2>/dev/null || echo "local build, no $memfs_ll.buildinfo")
    say "peer memfs_ll: $memfs_ll ($info)"
    args+=(--memfs-ll "$(realpath "$memfs_ll")" --memfs-ll-info "$info"
           --peer-timeout "${BENCH_PEER_TIMEOUT:-900}")
  else
    say "note: no memfs_ll peer: $memfs_ll not found (a local build of libfuse's example/memfs_ll.cc;" \
        "see docs/benchmarks.md, Reproduce); running the rclone peer only"
  fi
fi
[ "$quick" -eq 1 ] && args+=(--quick)

status=0
"$PY" "$here/bench.py" "${args[@]}" &
pypid=$!
wait "$pypid" || status=$?
pypid=""
if [ "$status" -gt 2 ] || [ ! -s "$work/results.json" ]; then
  echo "bench: interrupted or failed (status $status); no report" >&2; exit $((status ? status : 1))
fi

echo
rep_args=("$work/results.json")
if [ "$docs" -eq 1 ]; then
  mkdir -p "$root/docs"
  rep_args+=(--markdown "$root/docs/benchmarks.md" --svg "$root/docs/benchmarks.svg")
  cp "$work/results.json" "$root/docs/benchmarks.json"
fi
[ "$check" -eq 1 ] && rep_args+=(--check)
rstatus=0
"$PY" "$here/report.py" "${rep_args[@]}" || rstatus=$?
echo
[ "$docs" -eq 1 ] && say "wrote docs/benchmarks.md, docs/benchmarks.svg, docs/benchmarks.json"
say "raw results and daemon logs: $cache/last/"
say "total time $(( ($(date +%s) - t_start) / 60 )) min $(( ($(date +%s) - t_start) % 60 )) s"
[ "$status" -ne 0 ] && { say "some workloads failed (see above)"; exit 2; }
exit "$rstatus"
