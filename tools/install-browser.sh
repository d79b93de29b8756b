#!/usr/bin/env bash
# Installs Chromium (Debian package) for the web client tests (tests/client/test_web_client.py),
# which drive it headless through Playwright's Python package at /usr/bin/chromium (no
# `playwright install`: Playwright's own browser downloads are not used).
# Needs root (CI and developer machines run as root); otherwise says why and exits 0,
# and the browser tests skip with that reason.
set -u

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-browser: not root; cannot install chromium; the web client browser tests" \
    "will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt_install() {
  apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends chromium \
    fonts-liberation >/dev/null 2>&1
}
if ! apt_install; then
  apt-get -o DPkg::Lock::Timeout=120 update -q >/dev/null 2>&1 || true
  apt_install || echo "install-browser: apt-get install chromium failed" >&2
fi
[ -x /usr/bin/chromium ] || echo "install-browser: chromium is not available" >&2
exit 0
