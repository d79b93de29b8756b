"""A real Descant server process for end-to-end tests, and clients for it.

``LiveServer`` writes a TOML config into a temp dir, starts ``python -m descant
serve`` on free loopback ports, waits (bounded) until it accepts connections,
and stops it with SIGTERM. Accounts are made while it runs, through the same
SQLite file (as ``descant user add`` does).

``connect_slixmpp`` logs a slixmpp client in and waits for session start;
``RawClient`` speaks raw XML on a socket for edge cases.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import slixmpp

from descant.accounts import make_account
from descant.storage import open_storage

_counter = itertools.count(1)


# The PostgreSQL the storage and client tests use (trust auth on loopback by default).
POSTGRES_URL = os.environ.get(
    "DESCANT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_value(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


class LiveServer:
    def __init__(self, root: Path, **sections: dict[str, Any]) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.data_dir = root / "data"
        self.port = free_port()
        self.tls_port = free_port()
        self.s2s_port = free_port()
        self.http_port = free_port()
        self.https_port = free_port()
        self.db = self.data_dir / "descant.db"
        self.storage_url = str(sections.get("storage", {}).get("url", f"sqlite:///{self.db}"))
        cfg: dict[str, dict[str, Any]] = {
            "server": {"domains": ["localhost", "example.org"], "data_dir": str(self.data_dir)},
            "c2s": {
                "listen": [f"127.0.0.1:{self.port}"],
                "tls_listen": [f"127.0.0.1:{self.tls_port}"],
            },
            "s2s": {"listen": [f"127.0.0.1:{self.s2s_port}"]},
            "http": {
                "listen": [f"127.0.0.1:{self.http_port}"],
                "tls_listen": [f"127.0.0.1:{self.https_port}"],
            },
            "storage": {"url": f"sqlite:///{self.db}"},
            "limits": {"max_auth_failures": 50, "max_connections_per_ip": 1000},
            "log": {"level": "debug"},
        }
        for name, values in sections.items():
            cfg.setdefault(name, {}).update(values)
        self.config = root / "descant.toml"
        lines = []
        for name, values in cfg.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = root / "server.log"

    def cli(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "descant", "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            input=input,
            timeout=60,
        )

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "descant", "--config", str(self.config), "serve"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start within 30 s")

    def stop(self) -> int:
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def make_user(self, prefix: str = "user", domain: str = "localhost") -> tuple[str, str]:
        """A fresh account (unique name), created through the shared storage."""
        name = f"{prefix}{os.getpid()}x{next(_counter)}"
        password = f"pw-{name}"
        storage = open_storage(self.storage_url, str(self.data_dir))
        await storage.open()
        try:
            await storage.accounts.create(make_account(domain, name, password))
        finally:
            await storage.close()
        return f"{name}@{domain}", password


def client_tls_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Client(slixmpp.ClientXMPP):
    """A slixmpp client that records what it receives."""

    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.messages: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        self.presences: asyncio.Queue[slixmpp.Presence] = asyncio.Queue()
        self.started = asyncio.Event()
        self.failed = asyncio.Event()
        self.stream_errors: list[Any] = []
        self.add_event_handler("session_start", lambda _: self.started.set())
        self.add_event_handler("failed_auth", lambda _: self.failed.set())
        self.add_event_handler("message", self.messages.put_nowait)
        self.add_event_handler("presence", self.presences.put_nowait)
        self.add_event_handler("stream_error", self.stream_errors.append)
        for plugin in ("xep_0030", "xep_0199", "xep_0092", "xep_0203"):
            self.register_plugin(plugin)
        self.ssl_context = client_tls_context()

    async def next_message(self, timeout: float = 5) -> slixmpp.Message:
        return await asyncio.wait_for(self.messages.get(), timeout)

    async def next_presence(
        self, match: Callable[[slixmpp.Presence], bool] = lambda p: True, timeout: float = 5
    ) -> slixmpp.Presence:
        async def wait() -> slixmpp.Presence:
            while True:
                p = await self.presences.get()
                if match(p):
                    return p

        return await asyncio.wait_for(wait(), timeout)


async def connect_slixmpp(
    server: LiveServer,
    jid: str,
    password: str,
    *,
    presence: bool = True,
    roster: bool = True,
    direct_tls: bool = False,
    timeout: float = 15,
    setup: Callable[[Client], None] | None = None,
    before_presence: Callable[[Client], Awaitable[object]] | None = None,
) -> Client:
    """Log a slixmpp client in; ``setup`` runs before it connects (plugins, handlers),
    ``before_presence`` once it is bound, before its initial presence."""
    client = Client(jid, password)
    if setup is not None:
        setup(client)
    if direct_tls:
        client.enable_direct_tls = True  # type: ignore[attr-defined]
        client.enable_starttls = False  # type: ignore[attr-defined]
    client.connect("127.0.0.1", server.tls_port if direct_tls else server.port)
    await asyncio.wait(
        [asyncio.ensure_future(client.started.wait()), asyncio.ensure_future(client.failed.wait())],
        timeout=timeout,
        return_when=asyncio.FIRST_COMPLETED,
    )
    if not client.started.is_set():
        client.disconnect()
        raise AssertionError(f"{jid} could not log in")
    if roster:
        await asyncio.wait_for(client.get_roster(), timeout)
    if before_presence is not None:
        await asyncio.wait_for(before_presence(client), timeout)
    if presence:
        client.send_presence()
        await asyncio.sleep(0.1)
    return client


async def disconnect(*clients: Client) -> None:
    # Each client's future is taken before it is asked to disconnect: slixmpp replaces
    # it once it resolves, so one taken afterwards can wait for the next one.
    futures = [c.disconnected for c in clients]
    for c in clients:
        c.disconnect()
    for fut in futures:
        try:
            await asyncio.wait_for(fut, 5)
        except TimeoutError:
            pass


def presence_types_from(c: Client, bare: str) -> list[str]:
    """The types of the presences from ``bare`` that ``c`` has received and not yet
    taken (all others are taken too)."""
    seen: list[str] = []
    while not c.presences.empty():
        p = c.presences.get_nowait()
        if p["from"].bare == bare:
            seen.append(p["type"])
    return seen


async def wait_for_http(srv: LiveServer, timeout: float = 15) -> None:
    """LiveServer.start() waits for the c2s port; the HTTP listener opens just after it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", srv.http_port)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"HTTP port {srv.http_port} not open in {timeout} s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


class RawClient:
    """Raw XML over a socket: write strings, read until a pattern appears."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = ""
        self.last_iq = ""  # the answer to the bind request of login()

    @classmethod
    async def open(cls, port: int, tls: bool = False) -> RawClient:
        ctx = client_tls_context() if tls else None
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
        return cls(r, w)

    async def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def read_until(self, needle: str, timeout: float = 5) -> str:
        """Read until needle is in the buffer; return and consume up to its end."""
        deadline = time.monotonic() + timeout
        while needle not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {needle!r}; got {self.buffer!r}")
            chunk = await asyncio.wait_for(self.reader.read(65536), left)
            if not chunk:
                raise AssertionError(f"closed while waiting for {needle!r}; got {self.buffer!r}")
            self.buffer += chunk.decode("utf-8", "replace")
        i = self.buffer.index(needle) + len(needle)
        out, self.buffer = self.buffer[:i], self.buffer[i:]
        return out

    async def read_to_eof(self, timeout: float = 5) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection not closed; got {self.buffer!r}")
            chunk = await asyncio.wait_for(self.reader.read(65536), left)
            if not chunk:
                out, self.buffer = self.buffer, ""
                return out
            self.buffer += chunk.decode("utf-8", "replace")

    async def starttls(self) -> None:
        await self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        await self.read_until("<proceed")
        await self.writer.start_tls(client_tls_context())
        self.buffer = ""

    async def open_stream(self, to: str = "localhost") -> str:
        await self.send(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='http://etherx.jabber.org/streams' to='{to}' version='1.0'>"
        )
        return await self.read_until("</stream:features>")

    async def login(self, jid: str, password: str, resource: str = "raw") -> str:
        """STARTTLS, SASL PLAIN, bind; returns the bound full JID."""
        import base64

        user, _, domain = jid.partition("@")
        await self.open_stream(domain)
        await self.starttls()
        await self.open_stream(domain)
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await self.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        )
        await self.read_until("<success")
        self.buffer = ""
        await self.open_stream(domain)
        await self.send(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        out = self.last_iq = await self.read_until("</iq>")
        start = out.index("<jid>") + 5
        return out[start : out.index("</jid>")]

    def close(self) -> None:
        self.writer.close()
