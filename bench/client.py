"""A minimal XMPP client for load: raw asyncio protocol, pre-serialised XML, no parser.

Negotiation waits for byte patterns (``</stream:features>``, ``<success``…) rather than
parsing XML, and once logged in a connection only counts what it receives: the
occurrences of a marker (``</message>``, ``<presence``) and, for latency runs, the
send timestamps carried in message bodies. Every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import ssl
import time

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
TIMEOUT = 60.0

_TS = re.compile(rb"<body>(\d+)</body>")
_CHALLENGE = re.compile(rb"<challenge[^>]*>([^<]*)</challenge>")
_SUCCESS_OR_FAILURE = re.compile(rb"<success|<failure")


def header(domain: str) -> bytes:
    return (
        "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>" % domain
    ).encode()


class LoginFailed(Exception):
    pass


class Conn(asyncio.Protocol):
    """One client connection; counts ``marker`` once ``counting`` is on."""

    def __init__(self, progress: asyncio.Event | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self._waiter: asyncio.Future[bytes] | None = None
        self._pattern: re.Pattern[bytes] | None = None
        self.counting = False
        self.marker = b"</message>"
        self.count = 0
        self.timing = False
        self.latencies: list[int] = []
        self.progress = progress
        self.lost = False

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.counting:
            self._count(data)
            return
        self.buf += data
        if self.progress is not None:
            self.progress.set()
        if self._waiter is not None and not self._waiter.done():
            assert self._pattern is not None
            m = self._pattern.search(self.buf)
            if m:
                out = bytes(self.buf[: m.end()])
                del self.buf[: m.end()]
                self._waiter.set_result(out)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError("connection lost"))

    # -- waiting and counting -----------------------------------------------------------

    async def expect(self, pattern: bytes | re.Pattern[bytes], timeout: float = TIMEOUT) -> bytes:
        pat = re.compile(re.escape(pattern)) if isinstance(pattern, bytes) else pattern
        m = pat.search(self.buf)
        if m:
            out = bytes(self.buf[: m.end()])
            del self.buf[: m.end()]
            return out
        if self.lost:
            raise ConnectionError("connection lost")
        self._pattern = pat
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(self._waiter, timeout)
        finally:
            self._waiter = None

    def drop_input(self) -> None:
        """Forget what was received and not waited for (and stop counting)."""
        self.counting = False
        self.buf.clear()

    def start_counting(self, marker: bytes, timing: bool = False) -> None:
        """From now on only count ``marker`` (complete stanzas when timing)."""
        self.marker = marker
        self.count = 0
        self.timing = timing
        self.latencies = []
        data = bytes(self.buf)
        self.buf = bytearray()
        self.counting = True
        if data:
            self._count(data)

    def _count(self, data: bytes) -> None:
        marker = self.marker
        buf = self.buf
        buf += data
        if self.timing:
            # Whole stanzas only: the timestamp must not be cut in two.
            end = buf.rfind(marker)
            if end < 0:
                return
            end += len(marker)
            chunk = bytes(buf[:end])
            del buf[:end]
            now = time.perf_counter_ns()
            stamps = _TS.findall(chunk)
            self.latencies.extend(now - int(s) for s in stamps)
            self.count += chunk.count(marker)
        else:
            self.count += buf.count(marker)
            # Keep a tail shorter than the marker: a marker cut in two is counted
            # once it completes, and none is counted twice.
            keep = len(marker) - 1
            if len(buf) > keep:
                del buf[: len(buf) - keep]
        if self.progress is not None:
            self.progress.set()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"</stream:stream>")
            self.transport.close()


# -- logging in ------------------------------------------------------------------------


class Login:
    """Everything one login needs; the salted-password cache is shared (PBKDF2 is
    the client's cost too, and every benchmark account has the same password)."""

    def __init__(self, host: str, port: int, domain: str, password: str) -> None:
        self.host = host
        self.port = port
        self.domain = domain
        self.password = password
        self.header = header(domain)
        self._salted: dict[tuple[bytes, int], bytes] = {}
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE

    async def connect(self, progress: asyncio.Event | None = None) -> Conn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: Conn(progress), self.host, self.port)
        return conn

    async def plain(
        self, user: str, resource: str, presence: bytes | None, progress: asyncio.Event | None
    ) -> Conn:
        """PLAIN over TCP, bind, initial presence, then a ping as a barrier: when its
        answer is back, the server has handled everything sent before it."""
        conn = await self.connect(progress)
        try:
            conn.write(self.header)
            await conn.expect(b"</stream:features>")
            creds = base64.b64encode(f"\0{user}\0{self.password}".encode()).decode()
            conn.write(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{creds}</auth>".encode())
            if b"<failure" in await conn.expect(_SUCCESS_OR_FAILURE):
                raise LoginFailed(user)
            await self._bind(conn, resource)
            if presence is not None:
                conn.write(presence)
            conn.write(
                b"<iq type='get' id='bar' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                % self.domain.encode()
            )
            await conn.expect(b"id='bar'")
            return conn
        except BaseException:
            conn.close()
            raise

    async def scram(self, user: str, resource: str) -> Conn:
        """STARTTLS, SCRAM-SHA-256 (no channel binding), bind."""
        loop = asyncio.get_running_loop()
        conn = await self.connect()
        try:
            conn.write(self.header)
            await conn.expect(b"</stream:features>")
            conn.write(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            await conn.expect(b"<proceed")
            assert conn.transport is not None
            tls_transport = await loop.start_tls(
                conn.transport, conn, self.tls, server_hostname=self.domain
            )
            if tls_transport is None:
                raise LoginFailed("TLS handshake")
            conn.transport = tls_transport
            conn.buf.clear()
            conn.write(self.header)
            await conn.expect(b"</stream:features>")
            nonce = base64.b64encode(os.urandom(18)).decode()
            bare = f"n={user},r={nonce}"
            first = base64.b64encode(("n,," + bare).encode()).decode()
            conn.write(f"<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>".encode())
            got = await conn.expect(_CHALLENGE)
            m = _CHALLENGE.search(got)
            assert m is not None
            server_first = base64.b64decode(m.group(1)).decode()
            attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
            salt, iters = base64.b64decode(attrs["s"]), int(attrs["i"])
            salted = self._salted.get((salt, iters))
            if salted is None:
                salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iters)
                self._salted[(salt, iters)] = salted
            without_proof = f"c=biws,r={attrs['r']}"
            auth_msg = f"{bare},{server_first},{without_proof}".encode()
            client_key = hmac.digest(salted, b"Client Key", "sha256")
            stored_key = hashlib.sha256(client_key).digest()
            sig = hmac.digest(stored_key, auth_msg, "sha256")
            proof = base64.b64encode(bytes(a ^ b for a, b in zip(client_key, sig, strict=True)))
            final = base64.b64encode(f"{without_proof},p={proof.decode()}".encode()).decode()
            conn.write(f"<response xmlns='{NS_SASL}'>{final}</response>".encode())
            if b"<failure" in await conn.expect(_SUCCESS_OR_FAILURE):
                raise LoginFailed(user)
            await self._bind(conn, resource)
            return conn
        except BaseException:
            conn.close()
            raise

    async def _bind(self, conn: Conn, resource: str) -> None:
        conn.write(self.header)
        await conn.expect(b"</stream:features>")
        conn.write(
            b"<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            b"<resource>%s</resource></bind></iq>" % resource.encode()
        )
        got = await conn.expect(b"</iq>")
        if b"type='result'" not in got and b'type="result"' not in got:
            raise LoginFailed(f"bind: {got[-200:]!r}")
