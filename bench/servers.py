"""The servers under test, each run with its own configuration under a temporary directory.

Both get the same accounts (one password, the same salt and 4096 SCRAM iterations, so
a login costs each server the same key derivation) and, for the presence scenario,
the same rosters of mutual ('both') contacts, written straight into each server's
own storage: Descant's through ``descant.storage``, Prosody's as files in its
internal storage format.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.proc import cpu_seconds, memory_kib

DOMAIN = "localhost"
PASSWORD = "bench-password"
SALT = b"descant-bench-salt"
ITERATIONS = 4096
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited ({proc.returncode}); see {log}:\n" + log.read_text()[-2000:]
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server did not listen on {port} within {timeout}s; see {log}")


def _keys(hash_name: str) -> tuple[bytes, bytes]:
    import hashlib
    import hmac

    salted = hashlib.pbkdf2_hmac(hash_name, PASSWORD.encode(), SALT, ITERATIONS)
    client_key = hmac.digest(salted, b"Client Key", hash_name)
    return hashlib.new(hash_name, client_key).digest(), hmac.digest(
        salted, b"Server Key", hash_name
    )


class Server:
    name = "?"

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir / self.name.lower()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.http_port = free_port()  # XMPP over WebSocket (RFC 7395) at /xmpp-websocket
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.dir / "server.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def memory(self) -> tuple[int, int]:
        return memory_kib(self.pid)

    def command(self) -> list[str]:
        raise NotImplementedError

    def modules(self) -> str:
        """What the server loads, as the results file states it."""
        raise NotImplementedError

    def start(self) -> None:
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.dir,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        _wait_port(self.port, self.proc, self.log)
        _wait_port(self.http_port, self.proc, self.log)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def prepare(self, users: list[str], rosters: dict[str, list[str]]) -> None:
        raise NotImplementedError

    def supports_muc(self) -> bool:
        return True


class Descant(Server):
    name = "Descant"

    def __init__(self, workdir: Path, muc: bool = False) -> None:
        super().__init__(workdir)
        self.config = self.dir / "descant.toml"
        self.db = self.dir / "descant.db"
        self.config.write_text(
            f"""# Written by bench/servers.py: plain TCP and PLAIN for load (never in production).
[server]
domains = ["{DOMAIN}"]
data_dir = "{self.dir}"

[c2s]
listen = ["127.0.0.1:{self.port}"]
require_tls = false
allow_plain_without_tls = true

[s2s]
listen = []

[http]
listen = ["127.0.0.1:{self.http_port}"]

[storage]
url = "sqlite:///{self.db}"

[limits]
max_connections_per_ip = 1000000
c2s_rate = 1099511627776

[log]
level = "warning"
"""
        )

    def command(self) -> list[str]:
        return [sys.executable, "-m", "descant", "--config", str(self.config), "serve"]

    def modules(self) -> str:
        from descant.features import DEFAULT_MODULES

        names = ", ".join(m.name for m in DEFAULT_MODULES)
        muc = " and its MUC service" if self.supports_muc() else ""
        return (
            f"default modules ({names}){muc}; HTTP listener with WebSocket, BOSH and "
            "host-meta; c2s.resume_timeout 300 s (default)"
        )

    def prepare(self, users: list[str], rosters: dict[str, list[str]]) -> None:
        asyncio.run(self._prepare(users, rosters))

    async def _prepare(self, users: list[str], rosters: dict[str, list[str]]) -> None:
        from descant.storage import open_storage
        from descant.storage.api import Account, RosterItem, ScramCredentials

        creds = {}
        for h in ("sha1", "sha256"):
            stored, server = _keys(h)
            creds[h] = ScramCredentials(SALT, ITERATIONS, stored, server)
        storage = open_storage(f"sqlite:///{self.db}", str(self.dir))
        await storage.open()
        try:
            for user in users:
                await storage.accounts.create(Account(DOMAIN, user, creds["sha1"], creds["sha256"]))
            for user, contacts in rosters.items():
                for contact in contacts:
                    item = RosterItem(jid=f"{contact}@{DOMAIN}", subscription="both")
                    await storage.roster.put_item(DOMAIN, user, item)
        finally:
            await storage.close()

    def supports_muc(self) -> bool:
        return (ROOT / "src" / "descant" / "features" / "muc").is_dir()


def _lua(s: str) -> str:
    out = []
    for ch in s.encode("latin-1"):
        out.append(chr(ch) if 32 <= ch < 127 and chr(ch) not in '\\"' else f"\\{ch:03d}")
    return '"' + "".join(out) + '"'


class Prosody(Server):
    name = "Prosody"
    # Presence, message and iq are built in; mod_http comes with websocket; csi_simple
    # brings mod_csi. pep (in Prosody's default configuration, but not autoloaded):
    # Descant loads its PEP service by default.
    MODULES = (
        "roster",
        "saslauth",
        "tls",
        "disco",
        "ping",
        "offline",
        "posix",
        "websocket",
        "smacks",
        "csi_simple",
        "pep",
    )

    def __init__(self, workdir: Path, cert: tuple[str, str]) -> None:
        super().__init__(workdir)
        self.config = self.dir / "prosody.cfg.lua"
        self.data = self.dir / "data"
        self.data.mkdir(exist_ok=True)
        crt, key = self.dir / "cert.pem", self.dir / "key.pem"
        shutil.copy(cert[0], crt)
        shutil.copy(cert[1], key)
        os.chmod(key, 0o600)
        enabled = ", ".join(_lua(m) for m in self.MODULES)
        self.config.write_text(
            f"""-- Written by bench/servers.py: plain TCP and PLAIN for load (never in production).
run_as_root = true
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.data}"
network_backend = "event"
log = {{ warn = "{self.dir}/prosody.log" }}
modules_enabled = {{ {enabled} }}
modules_disabled = {{ "s2s" }}
c2s_ports = {{ {self.port} }}
c2s_interfaces = {{ "127.0.0.1" }}
s2s_ports = {{ }}
http_ports = {{ {self.http_port} }}
http_interfaces = {{ "127.0.0.1" }}
https_ports = {{ }}
consider_websocket_secure = true
cross_domain_websocket = true
smacks_hibernation_time = 600
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
authentication = "internal_hashed"
password_hash = "SHA-256"
default_iteration_count = {ITERATIONS}
storage = "internal"
ssl = {{ certificate = "{crt}"; key = "{key}" }}
VirtualHost "{DOMAIN}"
Component "conference.{DOMAIN}" "muc"
    muc_room_locking = true
"""
        )

    def command(self) -> list[str]:
        return ["prosody", "--config", str(self.config), "-F"]

    def modules(self) -> str:
        return (
            "modules_enabled = {"
            + ", ".join(self.MODULES)
            + "} (+ built-in presence, message, iq; mod_http for websocket, mod_csi for "
            "csi_simple) and a muc component at conference.localhost; "
            "smacks_hibernation_time 600 s"
        )

    def prepare(self, users: list[str], rosters: dict[str, list[str]]) -> None:
        host = self.data / DOMAIN  # "localhost" needs no %-encoding
        (host / "accounts").mkdir(parents=True, exist_ok=True)
        (host / "roster").mkdir(parents=True, exist_ok=True)
        stored, server = _keys("sha256")
        account = (
            "return {\n"
            f'\t["iteration_count"] = {ITERATIONS};\n'
            f'\t["salt"] = {_lua(SALT.decode())};\n'
            f'\t["stored_key"] = "{stored.hex()}";\n'
            f'\t["server_key"] = "{server.hex()}";\n'
            "};\n"
        )
        for user in users:
            (host / "accounts" / f"{user}.dat").write_text(account)
        for user, contacts in rosters.items():
            lines = ["return {", '\t[false] = { ["version"] = 1; ["pending"] = {}; };']
            for contact in contacts:
                lines.append(
                    f'\t["{contact}@{DOMAIN}"] = {{ ["subscription"] = "both"; '
                    '["groups"] = {}; };'
                )
            lines.append("};\n")
            (host / "roster" / f"{user}.dat").write_text("\n".join(lines))
