#!/usr/bin/env bash
# check-layering.sh - fails if a layer reaches up: the engine and storage
# must know nothing of FUSE or the CLI; the adapter nothing of the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
fail=0
check() { # check DIR PATTERN WHAT
  if grep -rnE "$2" "$1"; then echo "layering: $1 must not use $3" >&2; fail=1; fi
}
check src/engine  '\bfuser\b|\bclap\b|crate::(cli|fuse)\b' "fuser, clap or the cli/fuse modules"
check src/storage '\bfuser\b|\bclap\b|crate::(cli|fuse|engine)\b' "fuser, clap, or the cli/fuse/engine modules"
check src/fuse    '\bclap\b|crate::cli\b' "clap or the cli module"
[ "$fail" -eq 0 ] && echo "layering: ok"
