#!/usr/bin/env bash
# Installs ejabberd (Debian package; bookworm: 23.01) for the federation tests.
# Needs root (CI and developer machines run as root); otherwise says why and exits 0,
# and the tests that need ejabberd skip with that reason. The tests run their own
# ejabberd nodes from their own configs, with a private epmd port; the system
# instance the package would start is kept from running, since it would take ports
# 5222, 5269 and 5280.
set -u

stop_system_instance() {
  # The packaged node runs as the ejabberd user (HOME /var/lib/ejabberd); test nodes
  # run as the test user from temp dirs. Its epmd is left alone: other Erlang
  # services (RabbitMQ, CouchDB) may share the default one on port 4369, and the
  # test nodes never use it.
  if [ -x /usr/sbin/ejabberdctl ] && pgrep -u ejabberd -f beam >/dev/null 2>&1; then
    timeout 20 /usr/sbin/ejabberdctl stop >/dev/null 2>&1 || true
    sleep 1
    pkill -u ejabberd -f beam 2>/dev/null || true
  fi
}

if [ -x /usr/sbin/ejabberdctl ]; then
  stop_system_instance
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-ejabberd: not root; ejabberd-based tests will be skipped" >&2
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
  apt-get -o DPkg::Lock::Timeout=120 install -y -q --no-install-recommends ejabberd \
    >/dev/null 2>&1
}
if ! apt_install; then
  apt-get -o DPkg::Lock::Timeout=120 update -q >/dev/null 2>&1 || true
  apt_install || echo "install-ejabberd: apt-get install ejabberd failed" >&2
fi
[ "$made_policy" = 1 ] && rm -f "$policy"
stop_system_instance
[ -x /usr/sbin/ejabberdctl ] || echo "install-ejabberd: ejabberd is not available" >&2
exit 0
