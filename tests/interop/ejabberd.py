"""A real ejabberd process (Debian's package, 23.01) for federation tests.

How it is started: ``/usr/sbin/ejabberdctl foreground`` is a shell script that, run
as root, re-runs itself as the ``ejabberd`` user (who cannot read a test's temp dir)
and needs an Erlang distribution node and epmd. So this module does what that
script does at its core, directly: ``erl -noinput -mnesia dir "SPOOL" -s ejabberd``
with ``ERL_LIBS`` taken from the script, ``EJABBERD_CONFIG_PATH`` pointing at a
YAML config written here, ``EJABBERD_LOG_PATH`` in the temp dir, and mnesia's
spool there too. The node is not distributed (``-start_epmd false``, no
``-sname``; it runs as ``nonode@nohost``): nothing registers with, starts or
talks to an epmd, so a system epmd (RabbitMQ's, say) or a system ejabberd
cannot interfere, and concurrent runs need no unique node names. The process
runs in its own session and the whole process group is killed at teardown.

Accounts: without distribution ``ejabberdctl register`` cannot reach the node,
so the config opens ``mod_http_api`` on a loopback HTTP port (only the
``register`` command, only from 127.0.0.0/8) and accounts are made with
``POST /api/register`` (fast: no Erlang VM per account).

Addressing, with no resolver outside the machine ever asked. Descant reaches
ejabberd's domains through its ``[s2s.routes]``. ejabberd has no static routes;
it dials every remote domain at ``outgoing_s2s_port`` (Descant's s2s port; Descant
is its only peer), after an SRV lookup (``inet_res``) and an address lookup. In
23.01 (xmpp 1.6.1) the address lookup is ``net:getaddrinfo``, i.e. the C
library, which an Erlang inetrc file does not reach. So:

- an inetrc file (``ERL_INETRC``) gives Erlang's own resolver no DNS server but a
  closed loopback port (and switches off ``/etc/resolv.conf``): the SRV lookups
  fail at once with ``econnrefused``;
- ejabberd runs in a mount namespace of its own (``unshare --mount``, or with
  ``--map-root-user`` when not root) where a hosts file naming Descant's domains,
  its MUC service included, is bind-mounted on ``/etc/hosts``, and a
  ``resolv.conf`` whose only nameserver is an unused loopback address on
  ``/etc/resolv.conf``. The machine's files are untouched.

An IP-literal domain, as the Prosody set-up uses, would need neither, but cannot
give Descant a MUC service (``conference.<domain>``) that ejabberd can reach.

Certificates come from the tests' ``ScratchCA`` (tests/interop/prosody.py);
``ca_file`` is that CA, so ejabberd verifies Descant's certificate and Descant
ejabberd's (SASL EXTERNAL both ways). A host with a self-signed certificate
authenticates by dialback.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.live import free_port

ERL = shutil.which("erl") or "/usr/bin/erl"
EJABBERDCTL = "/usr/sbin/ejabberdctl"


def _erl_libs() -> str:
    """The Erlang library root the package's ejabberdctl uses (ERL_LIBS)."""
    try:
        script = Path(EJABBERDCTL).read_text()
    except OSError:
        return ""
    m = re.search(r"^ERL_LIBS='([^']*)'", script, re.M)
    if m and glob.glob(os.path.join(m.group(1), "ejabberd-*", "ebin", "ejabberd.app")):
        return m.group(1)
    found = glob.glob("/usr/lib/*/ejabberd-*/ebin/ejabberd.app")
    return str(Path(found[0]).parents[2]) if found else ""


ERL_LIBS = _erl_libs()
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"
# The nameserver ejabberd's C library is given: a loopback address nothing serves.
NO_NAMESERVER = "127.53.53.53"


def _namespace() -> list[str]:
    """The command prefix for a private mount namespace."""
    if os.geteuid() == 0:
        return [UNSHARE, "--mount"]
    return [UNSHARE, "--map-root-user", "--mount"]


def unavailable() -> str:
    """Why ejabberd cannot run here, or "" when it can."""
    if not (os.path.exists(ERL) and ERL_LIBS):
        return "ejabberd is not installed (make peers installs it)"
    try:
        probe = subprocess.run([*_namespace(), "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a mount namespace for ejabberd: {exc}"
    if probe.returncode != 0:
        return f"cannot make a mount namespace for ejabberd: {probe.stderr.decode().strip()}"
    return ""


def _yaml(v: object) -> str:
    """JSON is YAML: quoted scalars, flow lists and maps, nothing to escape by hand."""
    return json.dumps(v)


class Ejabberd:
    """``hosts`` are ejabberd's virtual hosts, each with a mod_muc service at
    ``conference.<host>``; ``certs`` (certificate, key) pairs, matched to domains by
    ejabberd; ``peers`` maps each of Descant's domains to the loopback address it
    resolves to, and ``peer_port`` is where ejabberd dials them."""

    def __init__(
        self,
        root: Path,
        hosts: list[str],
        certs: list[tuple[Path, Path]],
        ca_file: Path,
        peers: dict[str, str],
        peer_port: int,
    ) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.spool = root / "spool"
        self.logs = root / "logs"
        self.spool.mkdir(exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.c2s_port = free_port()
        self.s2s_port = free_port()
        self.http_port = free_port()
        self.log_path = self.logs / "ejabberd.log"
        pems = []
        for i, (cert, key) in enumerate(certs):
            pem = root / f"cert{i}.pem"
            pem.write_text(cert.read_text() + key.read_text())
            pems.append(str(pem))
        by_address: dict[str, list[str]] = {}
        for name, ip in peers.items():
            by_address.setdefault(ip, []).append(name)
        # The C library's view (getaddrinfo), bind-mounted in ejabberd's namespace.
        self.hosts_file = root / "hosts"
        self.hosts_file.write_text(
            "127.0.0.1 localhost\n"
            + "".join(f"{ip} {' '.join(names)}\n" for ip, names in by_address.items())
        )
        self.resolv_conf = root / "resolv.conf"
        self.resolv_conf.write_text(f"nameserver {NO_NAMESERVER}\noptions timeout:1 attempts:1\n")
        # Erlang's own resolver (SRV lookups): the same names, no DNS server but a
        # closed port. One entry per address: a second one would replace the first.
        self.inetrc = root / "inetrc"
        self.inetrc.write_text(
            "{lookup, [file]}.\n"
            '{resolv_conf, ""}.\n'
            '{hosts_file, ""}.\n'
            f"{{nameserver, {{127,0,0,1}}, {free_port()}}}.\n"
            + "".join(
                f"{{host, {{{ip.replace('.', ',')}}}, {_yaml(names)}}}.\n"
                for ip, names in by_address.items()
            )
        )
        self.config = root / "ejabberd.yml"
        self.config.write_text(
            f"""hosts: {_yaml(hosts)}
loglevel: info
log_rotate_count: 0
certfiles: {_yaml(pems)}
ca_file: {_yaml(str(ca_file))}
s2s_use_starttls: required
outgoing_s2s_port: {peer_port}
outgoing_s2s_families: [ipv4]
s2s_dns_timeout: 1
s2s_dns_retries: 1
auth_method: internal
auth_password_format: scram
default_db: mnesia
listen:
  - port: {self.c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
  - port: {self.s2s_port}
    ip: "127.0.0.1"
    module: ejabberd_s2s_in
  - port: {self.http_port}
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
acl:
  loopback:
    ip: ["127.0.0.0/8"]
api_permissions:
  "test rig":
    from: [mod_http_api]
    who:
      acl: loopback
    what: ["register"]
modules:
  mod_caps: {{}}
  mod_disco: {{}}
  mod_http_api: {{}}
  mod_ping: {{}}
  mod_pubsub:
    plugins: ["flat", "pep"]
  mod_roster: {{}}
  mod_s2s_dialback: {{}}
  mod_version: {{}}
  mod_muc:
    host: "conference.@HOST@"
    access_create: all
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ERL_", "EJABBERD_"))}
        env.update(
            EJABBERD_CONFIG_PATH=str(self.config),
            EJABBERD_LOG_PATH=str(self.log_path),
            ERL_INETRC=str(self.inetrc),
            ERL_LIBS=ERL_LIBS,
            ERL_CRASH_DUMP=str(self.logs / "erl_crash.dump"),
            ERL_CRASH_DUMP_BYTES="0",
            HOME=str(self.root),  # nothing of the user's (.erlang, .erlang.cookie) is read
        )
        return env

    def start(self) -> None:
        with open(self.root / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(
                [
                    *_namespace(),
                    "sh",
                    "-c",
                    'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf'
                    ' && shift 2 && exec "$@"',
                    "sh",
                    str(self.hosts_file),
                    str(self.resolv_conf),
                    ERL,
                    "-noinput",
                    "-start_epmd",
                    "false",
                    "-mnesia",
                    "dir",
                    f'"{self.spool}"',
                    "-s",
                    "ejabberd",
                ],
                cwd=self.spool,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed whole at stop()
            )
        deadline = time.monotonic() + 30
        ports = [self.s2s_port, self.c2s_port, self.http_port]
        while ports and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ejabberd exited: {self.output()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", ports[0]), timeout=0.5):
                    ports.pop(0)
            except OSError:
                time.sleep(0.1)
        if ports:
            self.stop()
            raise RuntimeError(f"ejabberd did not start: {self.output()[-3000:]}")

    def register(self, user: str, domain: str, password: str) -> None:
        body = json.dumps({"user": user, "host": domain, "password": password}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/api/register",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        # Straight to the loopback port, whatever proxy the environment names.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(req, timeout=15) as resp:
            answer = resp.read().decode()
        assert "successfully registered" in answer, answer

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        # SIGTERM makes the VM stop cleanly (init:stop); then anything left in the
        # group (the VM, erl_child_setup, inet_gethost) is killed.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=10)

    def log(self) -> str:
        """ejabberd's log (level info)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def output(self) -> str:
        """What the VM wrote: the log lines again, and why it would not start."""
        p = self.root / "stdout.log"
        return p.read_text(errors="replace") if p.exists() else ""
