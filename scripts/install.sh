#!/usr/bin/env bash
# install.sh - build scratchfs in release mode and install it as
# /usr/local/bin/scratchfs (where mount(8) and /etc/fstab find it: mount
# runs helpers without PATH, so the shell falls back to the standard dirs).
#
# Usage: scripts/install.sh [PREFIX]    (default PREFIX /usr/local)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
prefix=${1:-/usr/local}
command -v fusermount3 >/dev/null || "$(repo_root)/scripts/setup.sh" --mount-only
bin=$(build_release)
as_root install -D -m 0755 "$bin" "$prefix/bin/scratchfs"
echo "installed $prefix/bin/scratchfs ($("$prefix/bin/scratchfs" --version))"
