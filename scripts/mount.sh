#!/usr/bin/env bash
# mount.sh - the one command that gets you a scratch directory: installs what
# mounting needs (the fuse3 package), builds and installs scratchfs, and
# mounts it with sensible defaults (quota: 50% of available memory; memory
# guard on; nosuid,nodev).
#
# Usage: scripts/mount.sh [MOUNTPOINT] [scratchfs options...]
#   MOUNTPOINT defaults to /mnt/scratch (root) or ~/scratch (other users).
#   e.g. scripts/mount.sh /mnt/scratch --size 2G --max-nodes 100k
# Unmount with: umount MOUNTPOINT   (or fusermount3 -u MOUNTPOINT)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
root=$(repo_root)
if [ $# -gt 0 ] && [[ "$1" != -* ]]; then mnt=$1; shift
elif [ "$(id -u)" -eq 0 ]; then mnt=/mnt/scratch
else mnt=$HOME/scratch; fi
# The mount point comes first: one given after the options would be taken
# by scratchfs as the mount point, with ours as its source.
prev=
for arg in "$@"; do
  case "$prev" in --log-file | --pid-file | -o) prev=$arg; continue ;; esac
  case "$arg" in
    /* | ./* | ../* | '~'*)
      echo "mount.sh: '$arg' looks like a mount point: give it first (scripts/mount.sh MOUNTPOINT [options])" >&2
      exit 2
      ;;
  esac
  prev=$arg
done

command -v fusermount3 >/dev/null || "$root/scripts/setup.sh" --mount-only
if [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; then
  "$root/scripts/install.sh" >&2
  bin=/usr/local/bin/scratchfs
else
  bin=$(build_release)
fi
mkdir -p "$mnt"
"$bin" "$mnt" "$@"
df -h "$mnt"
echo "scratchfs mounted on $mnt. Try: $bin stats $mnt; unmount with: umount $mnt"
