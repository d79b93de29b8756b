#!/usr/bin/env bash
# Installs Prosody (Debian package) for the federation tests and the benchmark, with
# lua-event (its libevent backend) and lua-dbi-sqlite3 (mod_storage_sql on SQLite, which
# the benchmark's archive scenarios use for mod_mam). A machine with Prosody already
# installed gets whichever of those packages it lacks.
# Needs root (CI and developer machines run as root); otherwise says why and exits 0,
# and the tests that need Prosody skip with that reason. The tests and the benchmark
# run their own Prosody instances with their own configs; the system instance the
# package would start is kept from running, since it would take port 5222.
set -u

PACKAGES="prosody lua-event lua-dbi-sqlite3"

stop_system_instance() {
  # The packaged daemon runs from /var/lib/prosody; test instances run from temp dirs.
  for pid in $(pgrep -f '/usr/bin/prosody' 2>/dev/null); do
    if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = /var/lib/prosody ]; then
      kill "$pid" 2>/dev/null || true
    fi
  done
}

missing_packages() {
  for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
}

missing=$(missing_packages | tr '\n' ' ')
if command -v prosody >/dev/null 2>&1 && [ -z "${missing// /}" ]; then
  stop_system_instance
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-prosody: not root; cannot install ${missing}; Prosody-based tests" \
    "(and the benchmark's archive scenarios without lua-dbi-sqlite3) will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Keep the package's init script from starting the system instance.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && made_policy=1
fi
apt_install() {
  # shellcheck disable=SC2086  # one word per package
  apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends $missing \
    >/dev/null 2>&1
}
if ! apt_install; then
  apt-get -o DPkg::Lock::Timeout=120 update -q >/dev/null 2>&1 || true
  apt_install || echo "install-prosody: apt-get install ${missing}failed" >&2
fi
[ "$made_policy" = 1 ] && rm -f "$policy"
stop_system_instance
command -v prosody >/dev/null 2>&1 || echo "install-prosody: prosody is not available" >&2
missing=$(missing_packages | tr '\n' ' ')
[ -n "${missing// /}" ] && echo "install-prosody: still missing: ${missing}" >&2
exit 0
