"""The servers under test, each run with its own configuration under a temporary directory.

Both get the same accounts (one password, the same salt and 4096 SCRAM iterations, so
a login costs each server the same key derivation) and, for the presence scenario,
the same rosters of mutual ('both') contacts, written straight into each server's
own storage: Descant's through ``descant.storage``, Prosody's as files in its
internal storage format.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
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
        self.config = self.dir / "server.cfg"  # each server's own name
        self.archive = False  # the message archive as configured

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

    def archive_config(self, archive: bool) -> list[str]:
        """The parts of the configuration file that say whether the message archive
        (XEP-0313) is on, as they read with it on or off."""
        raise NotImplementedError

    def set_archive(self, archive: bool) -> None:
        """Turn the message archive on or off in the configuration file, in place:
        what else a subclass changed in the file stays (bench/soak.py)."""
        if archive == self.archive:
            return
        text = self.config.read_text()
        before, after = self.archive_config(self.archive), self.archive_config(archive)
        for old, new in zip(before, after, strict=True):
            if old not in text:
                raise RuntimeError(f"{self.config} no longer has {old!r}")
            text = text.replace(old, new, 1)
        self.config.write_text(text)
        self.archive = archive

    def start(self, archive: bool | None = None) -> None:
        """Start a process; ``archive``: with the message archive on (the archive
        scenarios) or off (every other scenario); None: as configured."""
        if archive is not None:
            self.set_archive(archive)
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

    def supports_archive(self) -> str | None:
        """None if the archive scenarios can run, else why not."""
        return None

    def archive_rows(self) -> int:
        """Messages in the archive's storage, all accounts (read with the server stopped)."""
        raise NotImplementedError

    def archive_never(self, users: list[str]) -> None:
        """Archive preferences ``default='never'`` for ``users``, written into storage
        with the server stopped (XEP-0313 §6.2)."""
        raise NotImplementedError

    def fill_archive(self, owner: str, contacts: list[str], n: int) -> list[tuple[str, str]]:
        """``n`` messages in ``owner``'s archive, written into storage with the server
        stopped: exchanged with ``contacts`` in turn, each direction in turn. Returns
        (archive id, contact) of every message, oldest first."""
        raise NotImplementedError


def _sqlite_count(path: Path, table: str) -> int:
    import sqlite3

    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        known = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
        if not db.execute(known, (table,)).fetchone()[0]:
            return 0  # Prosody makes its tables on its first connection
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


ARCHIVE_BODY = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod."


class Descant(Server):
    name = "Descant"

    def __init__(
        self, workdir: Path, muc: bool = False, archive: bool = True, metrics: bool = True
    ) -> None:
        """``archive``: the message archive on (Descant's default) or off (bench/run.py
        turns it off, and on for the archive scenarios only); ``metrics``: /metrics and
        the counting behind it (``[http] metrics``, on by default)."""
        super().__init__(workdir)
        self.metrics = metrics
        self.config = self.dir / "descant.toml"
        self.db = self.dir / "descant.db"
        self.archive = archive
        mam = self.archive_config(archive)[0]
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
{self._metrics_line(metrics)}

[storage]
url = "sqlite:///{self.db}"

[limits]
max_connections_per_ip = 1000000
c2s_rate = 1099511627776

{mam}
[log]
level = "warning"
"""
        )

    @staticmethod
    def _metrics_line(on: bool) -> str:
        return f"metrics = {'true' if on else 'false'}"

    def set_metrics(self, on: bool) -> None:
        """Turn ``[http] metrics`` on or off for the next process (chat-metrics)."""
        if on == self.metrics:
            return
        text = self.config.read_text()
        old = self._metrics_line(self.metrics)
        if old not in text:
            raise RuntimeError(f"{self.config} no longer has {old!r}")
        self.config.write_text(text.replace(old, self._metrics_line(on), 1))
        self.metrics = on

    def archive_config(self, archive: bool) -> list[str]:
        # Prosody's configuration has no archive outside the archive scenarios, so
        # Descant's neither; in them both keep everything (no expiry) and return at
        # most 250 messages per query.
        if archive:
            return [
                '[mam]\nenabled = true\ndefault = "always"\nexpire_after = ""\nmax_page = 250\n'
            ]
        return ["[mam]\nenabled = false\n"]

    def command(self) -> list[str]:
        return [sys.executable, "-m", "descant", "--config", str(self.config), "serve"]

    def modules(self) -> str:
        from descant.features import DEFAULT_MODULES

        names = ", ".join(m.name for m in DEFAULT_MODULES)
        muc = " and its MUC service" if self.supports_muc() else ""
        return (
            f"default modules ({names}){muc}; HTTP listener with WebSocket, BOSH and "
            "host-meta; c2s.resume_timeout 300 s (default); message archive off "
            "(mam.enabled = false) except in chat-mam and mam-query, which run with "
            "mam.enabled = true, mam.default = always, mam.expire_after = '' (never), "
            "mam.max_page = 250, on the same SQLite file"
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

    def archive_rows(self) -> int:
        return _sqlite_count(self.db, "mam")

    def archive_never(self, users: list[str]) -> None:
        asyncio.run(self._archive_never(users))

    async def _archive_never(self, users: list[str]) -> None:
        from descant.features.mam.policy import Prefs
        from descant.storage import open_storage

        prefs = Prefs("never").to_json()  # as the module stores a <prefs default='never'/>
        storage = open_storage(f"sqlite:///{self.db}", str(self.dir))
        await storage.open()
        try:
            for user in users:
                await storage.keyval.set(DOMAIN, user, "mam", "prefs", prefs)
        finally:
            await storage.close()

    def fill_archive(self, owner: str, contacts: list[str], n: int) -> list[tuple[str, str]]:
        return asyncio.run(self._fill_archive(owner, contacts, n))

    async def _fill_archive(self, owner: str, contacts: list[str], n: int) -> list[tuple[str, str]]:
        """Entries as the archive module makes them (features/mam/module.py
        ``MamModule._entry``): an id from the archive's allocator (``MamIds``), the message
        serialized with the archive's stanza-id on incoming ones, in batches through
        ``MamStore.add`` as its background writer does."""
        import xml.etree.ElementTree as ET

        from descant.storage import open_storage
        from descant.storage.api import MamEntry, MamIds, mam_key, mam_stamp
        from descant.xml.serialize import serialize

        ids = MamIds()
        me = f"{owner}@{DOMAIN}"
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=10 * n)
        storage = open_storage(f"sqlite:///{self.db}", str(self.dir))
        await storage.open()
        out: list[tuple[str, str]] = []
        try:
            batch: list[tuple[str, str, MamEntry]] = []
            for i in range(n):
                contact = f"{contacts[(i // 2) % len(contacts)]}@{DOMAIN}"
                outgoing = i % 2 == 0
                stamp = start + datetime.timedelta(seconds=10 * i)
                id_ = ids.next(stamp)
                stamp = mam_stamp(mam_key(id_) or 0)  # the key's time is the stamp
                attrs = (
                    {"to": contact, "type": "chat", "id": f"m{i}", "from": f"{me}/bench"}
                    if outgoing
                    else {"to": me, "type": "chat", "id": f"m{i}", "from": f"{contact}/bench"}
                )
                msg = ET.Element("{jabber:client}message", attrs)
                ET.SubElement(msg, "{jabber:client}body").text = ARCHIVE_BODY
                if not outgoing:
                    ET.SubElement(msg, "{urn:xmpp:sid:0}stanza-id", {"id": id_, "by": me})
                entry = MamEntry(
                    id=id_,
                    stamp=stamp,
                    with_jid=contact,
                    with_resource="" if outgoing else "bench",
                    outgoing=outgoing,
                    origin_id=f"m{i}",
                    text=ARCHIVE_BODY,
                    stanza=serialize(msg),
                )
                batch.append((DOMAIN, owner, entry))
                out.append((id_, contact))
                if len(batch) == ARCHIVE_BATCH:
                    await storage.mam.add(batch)
                    batch = []
            await storage.mam.add(batch)
        finally:
            await storage.close()
        return out


ARCHIVE_BATCH = 1000  # messages per MamStore.add in fill_archive


def _lua(s: str) -> str:
    out = []
    for ch in s.encode("latin-1"):
        out.append(chr(ch) if 32 <= ch < 127 and chr(ch) not in '\\"' else f"\\{ch:03d}")
    return '"' + "".join(out) + '"'


# mod_storage_sql's prosodyarchive table and indexes, as util/sql.lua of Prosody 0.12
# writes them for SQLite3 (create_table in mod_storage_sql.lua, on the first connection).
PROSODY_ARCHIVE_TABLE = (
    'CREATE TABLE IF NOT EXISTS "prosodyarchive" ("sort_id" INTEGER PRIMARY KEY '
    'AUTOINCREMENT, "host" TEXT NOT NULL, "user" TEXT NOT NULL, "store" TEXT NOT NULL, '
    '"key" TEXT NOT NULL, "when" INTEGER NOT NULL, "with" TEXT NOT NULL, '
    '"type" TEXT NOT NULL, "value" TEXT NOT NULL);',
    'CREATE UNIQUE INDEX IF NOT EXISTS "prosodyarchive_index" ON "prosodyarchive" '
    '("host", "user", "store", "key");',
    'CREATE INDEX IF NOT EXISTS "prosodyarchive_with_when" ON "prosodyarchive" '
    '("host", "user", "store", "with", "when");',
    'CREATE INDEX IF NOT EXISTS "prosodyarchive_when" ON "prosodyarchive" '
    '("host", "user", "store", "when");',
    'CREATE INDEX IF NOT EXISTS "prosodyarchive_sort" ON "prosodyarchive" '
    '("host", "user", "store", "sort_id");',
)


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

    def __init__(self, workdir: Path, cert: tuple[str, str], archive: bool = False) -> None:
        """``archive``: mod_mam on SQLite (the archive scenarios), or none (Prosody's
        configuration in every other scenario)."""
        super().__init__(workdir)
        self.config = self.dir / "prosody.cfg.lua"
        self.data = self.dir / "data"
        self.data.mkdir(exist_ok=True)
        self.sqlite = self.data / "prosody.sqlite"  # mod_storage_sql: the archive
        self.crt, self.key = self.dir / "cert.pem", self.dir / "key.pem"
        shutil.copy(cert[0], self.crt)
        shutil.copy(cert[1], self.key)
        os.chmod(self.key, 0o600)
        self.archive = archive
        crt, key = self.crt, self.key
        enabled, storage = self.archive_config(archive)
        self.config.write_text(
            f"""-- Written by bench/servers.py: plain TCP and PLAIN for load (never in production).
run_as_root = true
pidfile = "{self.dir}/prosody.pid"
data_path = "{self.data}"
network_backend = "event"
log = {{ warn = "{self.dir}/prosody.log" }}
{enabled}modules_disabled = {{ "s2s" }}
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
{storage}ssl = {{ certificate = "{crt}"; key = "{key}" }}
VirtualHost "{DOMAIN}"
Component "conference.{DOMAIN}" "muc"
    muc_room_locking = true
"""
        )

    def archive_config(self, archive: bool) -> list[str]:
        # The archive scenarios: mod_mam keeping every message of every account, for
        # ever, on mod_storage_sql with SQLite (lua-dbi-sqlite3); everything else in
        # the internal (file) storage, as in the other scenarios.
        modules = self.MODULES + (("mam",) if archive else ())
        enabled = "modules_enabled = { " + ", ".join(_lua(m) for m in modules) + " }\n"
        if not archive:
            return [enabled, 'storage = "internal"\n']
        storage = (
            'default_storage = "internal"\n'
            'storage = { archive = "sql"; archive2 = "sql" }\n'
            f'sql = {{ driver = "SQLite3", database = "{self.sqlite}" }}\n'
            "default_archive_policy = true\n"
            'archive_expires_after = "never"\n'
            "max_archive_query_results = 250\n"
        )
        return [enabled, storage]

    def command(self) -> list[str]:
        return ["prosody", "--config", str(self.config), "-F"]

    def modules(self) -> str:
        return (
            "modules_enabled = {"
            + ", ".join(self.MODULES)
            + "} (+ built-in presence, message, iq; mod_http for websocket, mod_csi for "
            "csi_simple) and a muc component at conference.localhost; "
            "smacks_hibernation_time 600 s; storage internal. In chat-mam and mam-query "
            "also mam, with default_archive_policy = true, archive_expires_after = "
            '"never", max_archive_query_results = 250 and the archive store on '
            'mod_storage_sql: sql = { driver = "SQLite3" } (Prosody 0.12\'s SQLite '
            "settings: rollback journal, synchronous FULL)"
        )

    def supports_archive(self) -> str | None:
        # mod_storage_sql needs LuaDBI's SQLite driver (make peers installs it).
        for lua in ("5.4", "5.3", "5.2", "5.1"):
            if Path(f"/usr/lib/x86_64-linux-gnu/lua/{lua}/dbi/sqlite3.so").exists():
                return None
        if shutil.which("dpkg-query"):
            out = subprocess.run(
                ["dpkg-query", "-W", "-f", "${Status}", "lua-dbi-sqlite3"],
                capture_output=True,
                text=True,
            )
            if "install ok installed" in out.stdout:
                return None
        return "lua-dbi-sqlite3 is not installed (make peers)"

    def archive_rows(self) -> int:
        return _sqlite_count(self.sqlite, "prosodyarchive")

    def archive_never(self, users: list[str]) -> None:
        # mod_mam's preferences store (archive_prefs) is a keyval store, so it stays in
        # the internal storage: { [false] = default } with false meaning never.
        prefs = self.data / DOMAIN / "archive_prefs"
        prefs.mkdir(parents=True, exist_ok=True)
        for user in users:
            (prefs / f"{user}.dat").write_text("return {\n\t[false] = false;\n};\n")

    def fill_archive(self, owner: str, contacts: list[str], n: int) -> list[tuple[str, str]]:
        """Rows of ``prosodyarchive`` as mod_mam writes them through mod_storage_sql's
        ``archive_store:append``: store ``archive``, a UUID key, ``when`` in whole
        seconds, ``with`` the contact's bare JID, type ``xml`` and the stanza as
        ``tostring`` gives it (what mod_mam stores: the routed message, without the
        stanza-id it adds to the copy it delivers). The table is made as Prosody makes
        it when it first connects (``PROSODY_ARCHIVE_TABLE``), which it then leaves
        as it is."""
        import sqlite3
        import uuid

        me = f"{owner}@{DOMAIN}"
        now = int(time.time()) - 10 * n
        out: list[tuple[str, str]] = []
        rows = []
        for i in range(n):
            contact = f"{contacts[(i // 2) % len(contacts)]}@{DOMAIN}"
            frm, to = (f"{me}/bench", contact) if i % 2 == 0 else (f"{contact}/bench", me)
            key = str(uuid.uuid4())
            # As mod_mam stored a message of the bench's clients (compared with rows
            # it wrote itself in chat-mam): no xmlns, the stream's xml:lang.
            value = (
                f"<message type='chat' id='m{i}' xml:lang='en' from='{frm}' to='{to}'>"
                f"<body>{ARCHIVE_BODY}</body></message>"
            )
            rows.append((DOMAIN, owner, "archive", key, now + 10 * i, contact, "xml", value))
            out.append((key, contact))
        with contextlib.closing(sqlite3.connect(self.sqlite)) as db, db:
            for statement in PROSODY_ARCHIVE_TABLE:
                db.execute(statement)
            db.executemany(
                'INSERT INTO prosodyarchive ("host", "user", "store", "key", "when", '
                '"with", "type", "value") VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
                rows,
            )
        return out

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
