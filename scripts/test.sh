#!/usr/bin/env bash
# test.sh - the whole test suite, from a fresh machine: installs what the
# tests need (scripts/setup.sh), then format and lint checks, the layering
# check, every cargo test (unit, engine, model, concurrency and the
# mount-level tests with real tools), and the conformance suites.
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

step "format";     cargo fmt --check
step "clippy";     cargo clippy --locked --all-targets -- -D warnings
step "layering";   scripts/check-layering.sh
step "cargo test"; cargo test --locked --no-fail-fast -- --test-threads="${TEST_THREADS:-4}"
if [ -x scripts/conformance/run.sh ]; then
  step "conformance"; scripts/conformance/run.sh
fi
step "no stray mounts"
if grep -q ' fuse.scratchfs ' /proc/self/mounts; then
  grep ' fuse.scratchfs ' /proc/self/mounts >&2; echo "stray scratchfs mounts left behind" >&2; exit 1
fi
echo "all tests passed"
