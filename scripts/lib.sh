# shellcheck shell=bash
# lib.sh - shell helpers shared by the scripts (source it, do not run it).

# The repository root.
repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# Runs a command as root (via sudo when not root).
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Makes cargo's tools visible.
cargo_path() { export PATH="$HOME/.cargo/bin:$PATH"; }

# Builds the release binary; prints its path.
build_release() {
  local root; root=$(repo_root)
  cargo_path
  (cd "$root" && cargo build --release --locked --quiet) >&2
  echo "$root/target/release/scratchfs"
}

# wait_mounted DIR [SECONDS]: true once DIR is a mount point.
wait_mounted() {
  local i
  for ((i = 0; i < ${2:-10} * 20; i++)); do mountpoint -q "$1" && return 0; sleep 0.05; done
  return 1
}

# umount_fs DIR: lazy unmount if mounted; waits until it is gone.
umount_fs() {
  mountpoint -q "$1" || return 0
  as_root umount -l "$1" 2>/dev/null || fusermount3 -u -z "$1" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do mountpoint -q "$1" || return 0; sleep 0.05; done
  echo "warning: $1 still mounted" >&2
}
