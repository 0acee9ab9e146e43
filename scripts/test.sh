#!/usr/bin/env bash
# test.sh - the whole test suite, from a fresh machine: installs what the
# tests need (scripts/setup.sh), then format and lint checks, the layering
# check, the API docs (no rustdoc warnings), every cargo test (unit, engine,
# model, concurrency and the mount-level tests with real tools), and the
# conformance suites.
#
# Usage: scripts/test.sh
# Mount tests need FUSE; with CI=true they fail (never skip) without it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
root=$(repo_root)
cd "$root"
"$root/scripts/setup.sh"
cargo_path
step() { echo; echo "==== $*"; }
# A one-shot run gains nothing from incremental caches, which would add about
# half a GiB to target/.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
# Free disk where target/ lives: printed at the start and the end, with a
# warning up front when a cold build may not fit: a cold run from a fresh clone
# left 1.0 GiB in target/ (2026-11-23: debug 618 MiB, release 379 MiB).
build_dir=${CARGO_TARGET_DIR:-$root}
free_gib() { df -Pk "$build_dir" 2>/dev/null | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }'; }
echo "disk: $(free_gib) GiB free under $build_dir"
if awk -v f="$(free_gib)" 'BEGIN { exit !(f != "" && f < 1.5) }'; then
  echo "warning: under 1.5 GiB free; a cold build and test run writes about 1 GiB" >&2
fi
# scratchfs mounts that exist before the run (e.g. a user's own scratch dir,
# or one left by an interrupted run) are not ours: reported, not failed on.
scratch_mounts() { awk '$3 == "fuse.scratchfs" { print $2 }' /proc/self/mounts | sort; }
mounts_before=$(scratch_mounts)

step "format";     cargo fmt --check
step "clippy";     cargo clippy --locked --all-targets -- -D warnings
step "layering";   scripts/check-layering.sh
step "docs";       RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --locked --quiet
step "cargo test"; cargo test --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
if [ -x scripts/conformance/run.sh ]; then
  step "conformance"; scripts/conformance/run.sh
fi
step "no stray mounts"
if [ -n "$mounts_before" ]; then
  echo "note: scratchfs mounts present before the run (not checked):"
  sed 's/^/  /' <<<"$mounts_before"
fi
stray=$(comm -13 <(echo "$mounts_before") <(scratch_mounts))
if [ -n "$stray" ]; then
  sed 's/^/  /' <<<"$stray" >&2; echo "stray scratchfs mounts left behind by this run" >&2; exit 1
fi
echo "disk: $(free_gib) GiB free at the end"
echo "all tests passed"
