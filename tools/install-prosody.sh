#!/usr/bin/env bash
# Installs Prosody (Debian package) for the federation tests and the benchmark.
# Needs root (CI and developer machines run as root); otherwise says why and exits 0,
# and the tests that need Prosody skip with that reason.
set -u
if command -v prosody >/dev/null 2>&1 || [ -x /usr/bin/prosody ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-prosody: not root; Prosody-based tests will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# A lock held by another apt run is waited for, boundedly.
for _ in $(seq 1 60); do
  if apt-get -o DPkg::Lock::Timeout=60 install -y -q --no-install-recommends prosody lua-event >/dev/null 2>&1; then
    break
  fi
  apt-get -o DPkg::Lock::Timeout=60 update -q >/dev/null 2>&1 || true
  if apt-get -o DPkg::Lock::Timeout=60 install -y -q --no-install-recommends prosody lua-event >/dev/null 2>&1; then
    break
  fi
  sleep 5
done
# The package starts a system instance; the tests run their own.
(service prosody stop || pkill -x prosody || true) >/dev/null 2>&1
command -v prosody >/dev/null 2>&1 || { echo "install-prosody: installation failed" >&2; exit 0; }
