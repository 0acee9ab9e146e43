#!/usr/bin/env bash
# uring-probe.sh - what one FUSE round trip costs on this machine, over
# /dev/fuse and over FUSE-over-io_uring, with the same minimal filesystem
# (scripts/uring-probe) behind both; scratchfs and tmpfs for reference, and
# a pipe ping-pong for the cost of a wakeup without FUSE.
# Results and their reading: docs/performance.md, "FUSE over io_uring, measured".
#
# Usage: scripts/uring-probe.sh            (as root; Linux 6.14+ with CONFIG_FUSE_IO_URING)
# Env: ROUNDS (2), N files for create/unlink (10000), STATS stat calls (100000),
#      VARIANTS (default "dev dev:qos uring uring:qos scratchfs"):
#        dev        the probe reading /dev/fuse, 2 blocking threads (libfuse's shape)
#        uring      the probe over io_uring, one queue per CPU, thread pinned to it
#        scratchfs  scratchfs as built (busy polling; create/unlink only: it caches attributes)
#        suffixes   :qos   hold a CPU latency request of 0 µs meanwhile (idle CPUs poll)
#                   :coop, :none  ring task-work mode (default: defer)
#                   :pin   run the client on CPU 0
# Leaves the fuse module's enable_uring as it found it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
root=$(repo_root)
[ "$(id -u)" -eq 0 ] || { echo "uring-probe.sh: run as root (it mounts, and sets a fuse module parameter)" >&2; exit 2; }
param=/sys/module/fuse/parameters/enable_uring
[ -w "$param" ] || { echo "uring-probe.sh: $param missing: this kernel has no FUSE over io_uring" >&2; exit 2; }

ROUNDS=${ROUNDS:-2} N=${N:-10000} STATS=${STATS:-100000}
VARIANTS=${VARIANTS:-dev dev:qos uring uring:qos scratchfs}
cargo_path
target="${CARGO_TARGET_DIR:-$root/target}/uring-probe"
CARGO_TARGET_DIR=$target cargo build --release --locked --quiet --manifest-path "$root/scripts/uring-probe/Cargo.toml"
probe="$target/release/uring-probe"
case " $VARIANTS " in *" scratchfs"*) scratchfs=$(build_release) ;; esac

old_uring=$(cat "$param")
mnt=$(mktemp -d /tmp/uring-probe.XXXXXX)
log=$(mktemp /tmp/uring-probe.log.XXXXXX)
server="" holder=""
cleanup() {
  umount_fs "$mnt" || true
  [ -n "$server" ] && { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; }
  [ -n "$holder" ] && { kill "$holder" 2>/dev/null; wait "$holder" 2>/dev/null; }
  echo "$old_uring" > "$param"
  rmdir "$mnt" 2>/dev/null || true
  rm -f "$log"
}
trap cleanup EXIT

# mount_variant TRANSPORT TASKRUN ATTR_VALID
mount_variant() {
  if [ "$1" = scratchfs ]; then
    "$scratchfs" "$mnt" >/dev/null 2>&1 &
  else
    if [ "$1" = uring ]; then echo Y > "$param"; else echo N > "$param"; fi
    "$probe" serve "$mnt" --transport "$1" --taskrun "$2" --attr-valid "$3" 2>"$log" &
  fi
  server=$!
  wait_mounted "$mnt" || { echo "uring-probe.sh: $1 did not mount" >&2; exit 1; }
}
unmount_variant() {
  umount "$mnt"
  wait "$server" || { echo "uring-probe.sh: server exited with $?" >&2; cat "$log" >&2; exit 1; }
  server=""
}
# requests_per_file: requests the probe answered per file, and the share over io_uring
requests_per_file() {
  sed -n 's/^uring-probe: \([0-9]*\) requests, \([0-9]*\) over io_uring$/\1 \2/p' "$log" |
    awk -v n="$N" '{ printf "%.1f (%.0f%% ring)", $1 / n, $1 ? 100 * $2 / $1 : 0 }'
}
per_op() { sed -n 's/.*s, \([0-9.]*\) us\/op/\1/p'; }

steal_prev=""
steal() { # share of CPU time stolen since the last call
  local now; now=$(awk '/^cpu /{t=0; for (i = 2; i <= NF; i++) t += $i; print $9, t}' /proc/stat)
  # shellcheck disable=SC2086
  [ -n "$steal_prev" ] && set -- $steal_prev $now && awk -v a="$1" -v b="$2" -v c="$3" -v d="$4" 'BEGIN { printf "%.0f%%", 100 * (c - a) / (d - b) }'
  steal_prev=$now
}

run_variant() {
  local v=$1 transport=${1%%:*} taskrun=defer pin=() stat="-" create unlink reqs="-"
  case $v in *:coop*) taskrun=coop ;; *:none*) taskrun=none ;; esac
  case $v in *:pin*) pin=(taskset -c 0) ;; esac
  case $v in *:qos*) "$probe" hold-latency & holder=$!; sleep 0.2 ;; esac
  steal >/dev/null
  if [ "$transport" != scratchfs ]; then
    mount_variant "$transport" "$taskrun" 0 # attributes never cached: stat = 2 GETATTR
    touch "$mnt/s"
    stat=$("${pin[@]}" "$probe" stat "$mnt/s" "$STATS" | per_op)
    unmount_variant
  fi
  mount_variant "$transport" "$taskrun" 3600
  create=$("${pin[@]}" "$probe" create "$mnt" "$N" 4096 | per_op)
  unlink=$("${pin[@]}" "$probe" unlink "$mnt" "$N" | per_op)
  unmount_variant
  [ "$transport" != scratchfs ] && reqs=$(requests_per_file)
  [ -n "$holder" ] && { kill "$holder"; wait "$holder" 2>/dev/null || true; holder=""; }
  printf '%-14s %16s %16s %16s %22s %6s\n' "$v" "$stat" "$create" "$unlink" "$reqs" "$(steal)"
}

echo "kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); N=$N STATS=$STATS"
same=$("$probe" pingpong 100000 same | per_op)
cross=$("$probe" pingpong 20000 cross | per_op)
"$probe" hold-latency & holder=$!
sleep 0.2
cross_qos=$("$probe" pingpong 100000 cross | per_op)
kill "$holder"; wait "$holder" 2>/dev/null || true; holder=""
echo "pipe ping-pong, µs per round trip: one CPU $same, two CPUs $cross, two CPUs with a CPU latency request $cross_qos"
printf '%-14s %16s %16s %16s %22s %6s\n' variant "stat µs (2 req)" "create µs/file" "unlink µs/file" "requests/file" steal
for round in $(seq "$ROUNDS"); do
  order=$VARIANTS
  [ $((round % 2)) -eq 0 ] && order=$(echo "$VARIANTS" | tr ' ' '\n' | tac | tr '\n' ' ')
  for v in $order; do run_variant "$v"; done
done
