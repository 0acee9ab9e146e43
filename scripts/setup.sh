#!/usr/bin/env bash
# setup.sh - install everything the scratchfs conformance scripts need.
#
# Usage: scripts/setup.sh [--mount-only]   (as root, or a user with sudo)
#   --mount-only: just what mounting needs (the fuse3 package)
#
# Idempotent and quick when everything is already present. Installs:
#   * Debian packages: fuse3 fio sqlite3 git attr acl psmisc util-linux python3
#     make gcc binutils (the compile-and-link test; gold comes with binutils)
#     e2fsprogs (lsattr and chattr)
#   * cargo tools (crates.io, --locked): pjdfstest 0.2.2, fsx 0.3.2
#   * the dummy user/group pjdfstest switches to: "tests" (group "tests");
#     "nobody" (group "nogroup") comes with Debian.
set -euo pipefail

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

mount_only=0
[ "${1:-}" = --mount-only ] && mount_only=1

# --- Debian packages -------------------------------------------------------
# package -> a file it provides (fast presence check without dpkg-query)
declare -A PKGS=(
  [fuse3]=/usr/bin/fusermount3 [fio]=/usr/bin/fio [sqlite3]=/usr/bin/sqlite3
  [git]=/usr/bin/git [attr]=/usr/bin/setfattr [psmisc]=/usr/bin/fuser
  [util-linux]=/usr/bin/mount [python3]=/usr/bin/python3
  [make]=/usr/bin/make [gcc]=/usr/bin/gcc [binutils]=/usr/bin/ld.gold [acl]=/usr/bin/setfacl
  [e2fsprogs]=/usr/bin/lsattr
)
[ "$mount_only" -eq 1 ] && PKGS=([fuse3]=/usr/bin/fusermount3)
missing=()
for p in "${!PKGS[@]}"; do [ -e "${PKGS[$p]}" ] || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  apt_install() {
    $SUDO env DEBIAN_FRONTEND=noninteractive \
      apt-get install -y -q --no-install-recommends "${missing[@]}"
  }
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null || ! apt_install; then
    echo "setup: running apt-get update"
    $SUDO apt-get update -q
    apt_install
  fi
fi

[ "$mount_only" -eq 1 ] && exit 0

# --- cargo tools -----------------------------------------------------------
export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "setup: cargo not found (install rustup)" >&2; exit 1; }
declare -A CRATES=([pjdfstest]=0.2.2 [fsx]=0.3.2)
for c in "${!CRATES[@]}"; do
  v=${CRATES[$c]}
  if "$c" --version 2>/dev/null | grep -qx "$c $v"; then continue; fi
  echo "setup: cargo install --locked $c@$v"
  cargo install --locked --quiet "$c@$v"
done

# --- dummy users for pjdfstest (see scripts/conformance/pjdfstest.toml) ----
getent group nogroup >/dev/null || { echo "setup: groupadd nogroup"; $SUDO groupadd -g 65534 nogroup; }
getent passwd nobody >/dev/null || { echo "setup: useradd nobody"; \
  $SUDO useradd -r -u 65534 -g nogroup -d /nonexistent -s /usr/sbin/nologin nobody; }
getent group tests >/dev/null || { echo "setup: groupadd tests"; $SUDO groupadd -r tests; }
getent passwd tests >/dev/null || { echo "setup: useradd tests"; \
  $SUDO useradd -r -g tests -d / -s /usr/sbin/nologin -c "Dummy user for pjdfstest" tests; }

echo "setup: ok"
