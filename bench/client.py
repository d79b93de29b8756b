"""A minimal XMPP client for load: raw asyncio protocol, pre-serialised XML, no parser.

Negotiation waits for byte patterns (``</stream:features>``, ``<success``…) rather than
parsing XML, and once logged in a connection only counts what it receives: the
occurrences of a marker (``</message>``, ``<presence``) and, for latency runs, the
send timestamps carried in message bodies. Every wait has a timeout.

With entity capabilities (the ``pep`` scenario), a connection also answers every
disco#info ``<iq type='get'>`` it receives, whatever else it is doing with the bytes,
with the fixed disco#info its presence's caps hash stands for (:data:`CAPS_ANSWER`).

Two variants of the same client: over WebSocket (RFC 7395: an HTTP Upgrade done by
hand, one masked text frame per element, ``<open/>`` and ``<close/>`` instead of the
stream header and its end), and with stream management (XEP-0198), where the
connection counts the stanzas it receives by the starts of top-level elements and
answers every ``<r/>`` of the server with that count, exactly.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import os
import re
import ssl
import struct
import time

NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
WS_PATH = "/xmpp-websocket"
TIMEOUT = 60.0
# Stanzas sent over WebSocket carry their namespace (RFC 7395: every message is a
# standalone element); over TCP they inherit the stream's default namespace.
JC = b" xmlns='jabber:client'"
SM_REQUEST = b"<r xmlns='urn:xmpp:sm:3'/>"

_TS = re.compile(rb"<body>(\d+)</body>")
_CHALLENGE = re.compile(rb"<challenge[^>]*>([^<]*)</challenge>")
_SUCCESS_OR_FAILURE = re.compile(rb"<success|<failure")
# Over WebSocket the features element may come with the stream prefix or without.
_FEATURES_END = re.compile(rb"</(?:stream:)?features>")
_HTTP_HEAD = re.compile(rb"\r\n\r\n")
_ENABLED_OR_FAILED = re.compile(rb"<enabled[^>]*>|<failed")
_RESUMED_OR_FAILED = re.compile(rb"<resumed[^>]*>|<failed")
_SM_ID = re.compile(rb"""\bid=['"]([^'"]+)['"]""")
SM_ANSWER = re.compile(rb"<a\s[^>]*>")
# What the stanza count of stream management counts: the starts of top-level stanzas
# (nothing the servers send the bench nests one stanza in another), and the server's
# ack requests. The tail kept across chunks is shorter than the longest of them.
_STANZA_STARTS = (b"<message", b"<presence", b"<iq ")
_REQUESTS = (b"<r ", b"<r/")
_SM_TAIL = max(len(m) for m in _STANZA_STARTS + _REQUESTS) - 1
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Entity capabilities (XEP-0115) of the ``pep`` scenario's clients: one identity and
# the features of a client that wants User Tune notifications (XEP-0118, XEP-0163).
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_CAPS = "http://jabber.org/protocol/caps"
NS_TUNE = "http://jabber.org/protocol/tune"
CAPS_NODE = "https://descant.bench"
CAPS_IDENTITY = ("client", "pc")
CAPS_FEATURES = (NS_DISCO_INFO, NS_CAPS, NS_TUNE, NS_TUNE + "+notify")


def caps_ver(identity: tuple[str, str], features: tuple[str, ...]) -> str:
    """The XEP-0115 §5.1 sha-1 verification hash of a disco#info with one identity
    (no lang, no name) and ``features`` (no extended forms)."""
    s = "%s/%s//<" % identity + "".join(f + "<" for f in sorted(features))
    return base64.b64encode(hashlib.sha1(s.encode()).digest()).decode()


# HeKkbSw04duxJ8hRq+1MIC8e1Jw= (descant.features.caps.ver_hash agrees).
CAPS_VER = caps_ver(CAPS_IDENTITY, CAPS_FEATURES)
CAPS_PRESENCE = (
    f"<presence><c xmlns='{NS_CAPS}' hash='sha-1' node='{CAPS_NODE}' ver='{CAPS_VER}'/></presence>"
).encode()
# The <query/> of every disco#info answer (the node asked: <node>#<ver>, §6.2).
CAPS_ANSWER = (
    f"<query xmlns='{NS_DISCO_INFO}' node='{CAPS_NODE}#{CAPS_VER}'>"
    f"<identity category='{CAPS_IDENTITY[0]}' type='{CAPS_IDENTITY[1]}'/>"
    + "".join(f"<feature var='{f}'/>" for f in CAPS_FEATURES)
    + "</query>"
).encode()
_IQ_TAIL = len(b"<iq") - 1
_ATTR = {
    name: re.compile(rb"""\s%s=(?:'([^']*)'|"([^"]*)")""" % name)
    for name in (b"type", b"from", b"id")
}


def ws_frame(payload: bytes) -> bytes:
    """A final text frame as a client must send it (RFC 6455 §5.2, §5.3): masked.

    The masking key is zero, so the masked payload is the payload itself: the frame
    is well formed and the generator XORs nothing (the frame of a message is built
    once and written many times). The key's entropy protects intermediaries from
    forged requests; on loopback there are none."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


def ws_open(domain: str) -> bytes:
    """The RFC 7395 ``<open/>`` that takes the place of the stream header."""
    return f"<open xmlns='{NS_FRAMING}' to='{domain}' version='1.0'/>".encode()


def header(domain: str) -> bytes:
    return (
        "<?xml version='1.0'?><stream:stream to='%s' xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>" % domain
    ).encode()


def _attr(head: bytes, name: bytes) -> bytes | None:
    """The raw (still escaped) value of attribute ``name`` in a start tag."""
    m = _ATTR[name].search(head)
    if m is None:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


class LoginFailed(Exception):
    pass


class Conn(asyncio.Protocol):
    """One client connection; counts ``marker`` once ``counting`` is on.

    ``ws``: the connection speaks WebSocket (after the Upgrade): :meth:`send` and
    :meth:`pack` wrap elements in frames. ``sm``: stream management is enabled:
    every received chunk is scanned first for stanza starts (``h``) and ack requests,
    which are answered at once, whatever else the connection does with the bytes.
    ``disco``: the ``<query/>`` to answer every disco#info get with (entity
    capabilities); every chunk is scanned for those requests first too."""

    def __init__(self, progress: asyncio.Event | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.ws = False
        self.sm = False
        self.sm_id = ""
        self.h = 0  # stanzas received since <enabled/>, modulo 2^32
        self.acks_sent = 0
        self._sm_tail = b""
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
        self.disco: bytes | None = None
        self.disco_answered = 0
        self._iq_buf = b""

    # -- asyncio.Protocol --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.disco is not None:
            self._disco_scan(data)
        if self.sm:
            self._sm_scan(data)
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

    # -- stream management ---------------------------------------------------------------

    def start_sm(self, sm_id: str) -> None:
        """``<enabled/>`` has been received: count from now on (what is still
        buffered came after it, so it is scanned too)."""
        self.sm = True
        self.sm_id = sm_id
        self.h = 0
        self._sm_tail = b""
        if self.buf:
            self._sm_scan(bytes(self.buf))

    def _sm_scan(self, data: bytes) -> None:
        """Count stanza starts into ``h`` and answer each ``<r/>`` with it.

        A marker cut in two by a chunk boundary completes in the next chunk: the
        scan runs over the previous tail + this chunk and subtracts what lies wholly
        in the tail (counted last time; no marker overlaps itself)."""
        tail = self._sm_tail
        buf = tail + data
        n = 0
        for m in _STANZA_STARTS:
            n += buf.count(m) - tail.count(m)
        if n:
            self.h = (self.h + n) & 0xFFFFFFFF
        r = 0
        for m in _REQUESTS:
            r += buf.count(m) - tail.count(m)
        self._sm_tail = buf[-_SM_TAIL:]
        if r:
            # Everything received so far has been handled (counted): the exact h.
            self.write(self.pack(b"<a xmlns='urn:xmpp:sm:3' h='%d'/>" % self.h) * r)
            self.acks_sent += r

    # -- entity capabilities -------------------------------------------------------------

    def _disco_scan(self, data: bytes) -> None:
        """Answer each disco#info ``<iq type='get'>`` in the received bytes.

        An ``<iq`` whose end has not arrived yet is kept (with what follows) for the
        next chunk; otherwise only a tail shorter than ``<iq``. Nothing the servers send
        the bench nests an ``<iq>`` in another element, nor ``</iq>`` inside one."""
        buf = self._iq_buf + data if self._iq_buf else data
        pos = 0
        while True:
            start = buf.find(b"<iq", pos)
            if start < 0:
                self._iq_buf = buf[-_IQ_TAIL:]
                return
            gt = buf.find(b">", start)
            if gt < 0:
                self._iq_buf = buf[start:]
                return
            if buf[gt - 1] == 0x2F:  # '/': an empty <iq/>, no query in it
                pos = gt + 1
                continue
            end = buf.find(b"</iq>", gt)
            if end < 0:
                self._iq_buf = buf[start:]
                return
            head = buf[start : gt + 1]
            if NS_DISCO_INFO.encode() in buf[gt:end] and _attr(head, b"type") == b"get":
                self._answer_disco(head)
            pos = end + 5

    def _answer_disco(self, head: bytes) -> None:
        assert self.disco is not None
        frm, id_ = _attr(head, b"from"), _attr(head, b"id")
        to = b" to='%s'" % frm if frm is not None else b""
        self.send(
            b"<iq%s type='result'%s id='%s'>%s</iq>"
            % (JC if self.ws else b"", to, id_ or b"", self.disco)
        )
        self.disco_answered += 1

    # -- sending ---------------------------------------------------------------------------

    def pack(self, xml: bytes) -> bytes:
        """``xml`` as it goes on the wire: one frame per element over WebSocket."""
        return ws_frame(xml) if self.ws else xml

    def send(self, xml: bytes) -> None:
        """Write one element (or, over TCP, several)."""
        self.write(ws_frame(xml) if self.ws else xml)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            if self.ws:
                self.transport.write(ws_frame(f"<close xmlns='{NS_FRAMING}'/>".encode()))
            else:
                self.transport.write(b"</stream:stream>")
            self.transport.close()

    def abort(self) -> None:
        """Drop the connection without closing the stream: the session is left to
        hibernate (stream management) or to end."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


# -- logging in ------------------------------------------------------------------------


class Login:
    """Everything one login needs; the salted-password cache is shared (PBKDF2 is
    the client's cost too, and every benchmark account has the same password)."""

    def __init__(
        self, host: str, port: int, domain: str, password: str, http_port: int = 0
    ) -> None:
        self.host = host
        self.port = port
        self.http_port = http_port  # WebSocket: the server's HTTP listener
        self.domain = domain
        self.password = password
        self.header = header(domain)
        self._salted: dict[tuple[bytes, int], bytes] = {}
        self.tls = ssl.create_default_context()
        self.tls.check_hostname = False
        self.tls.verify_mode = ssl.CERT_NONE

    async def connect(self, progress: asyncio.Event | None = None, ws: bool = False) -> Conn:
        """A TCP connection to the c2s port, or a WebSocket to the HTTP port."""
        loop = asyncio.get_running_loop()
        port = self.http_port if ws else self.port
        _, conn = await loop.create_connection(lambda: Conn(progress), self.host, port)
        if ws:
            try:
                await self._upgrade(conn)
            except BaseException:
                conn.abort()
                raise
        return conn

    async def _upgrade(self, conn: Conn) -> None:
        """The WebSocket opening handshake (RFC 6455 §4.1) with the ``xmpp``
        subprotocol (RFC 7395), by hand: a 101 answer with the right accept key and
        the subprotocol, else the login fails."""
        key = base64.b64encode(os.urandom(16))
        conn.write(
            b"GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: xmpp\r\n\r\n"
            % (WS_PATH.encode(), self.host.encode(), self.http_port, key)
        )
        head = await conn.expect(_HTTP_HEAD)
        status = head.split(b"\r\n", 1)[0].split()
        accept = base64.b64encode(hashlib.sha1(key + _WS_GUID).digest())
        lower = head.lower()
        if (
            len(status) < 2
            or status[1] != b"101"
            or accept not in head
            or b"sec-websocket-protocol: xmpp" not in lower
        ):
            raise LoginFailed(f"WebSocket upgrade: {head[:300]!r}")
        conn.ws = True

    async def _open(self, conn: Conn) -> None:
        """Open (or restart) the stream and wait for its features."""
        conn.write(conn.pack(ws_open(self.domain)) if conn.ws else self.header)
        await conn.expect(_FEATURES_END)

    async def _auth_plain(self, conn: Conn, user: str) -> None:
        await self._open(conn)
        creds = base64.b64encode(f"\0{user}\0{self.password}".encode()).decode()
        conn.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{creds}</auth>".encode())
        if b"<failure" in await conn.expect(_SUCCESS_OR_FAILURE):
            raise LoginFailed(user)

    async def plain(
        self,
        user: str,
        resource: str,
        presence: bytes | None,
        progress: asyncio.Event | None,
        ws: bool = False,
        sm: bool = False,
        disco: bytes | None = None,
    ) -> Conn:
        """PLAIN over TCP (or WebSocket), bind, stream management with resumption if
        ``sm``, initial presence, then a ping as a barrier: when its answer is back,
        the server has handled everything sent before it. With ``disco`` (the
        ``<query/>`` of entity capabilities) every disco#info get is answered from
        the initial presence on."""
        conn = await self.connect(progress, ws)
        try:
            await self._auth_plain(conn, user)
            await self._bind(conn, resource)
            if sm:
                await self._enable_sm(conn)
            conn.disco = disco
            if presence is not None:
                conn.send(presence)
            conn.send(
                b"<iq%s type='get' id='bar' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                % (JC if conn.ws else b"", self.domain.encode())
            )
            await conn.expect(b"id='bar'")
            return conn
        except BaseException:
            conn.close()
            raise

    async def _enable_sm(self, conn: Conn) -> None:
        """XEP-0198 §3: ``<enable resume='true'/>``, then count from ``<enabled/>``."""
        conn.send(b"<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        got = await conn.expect(_ENABLED_OR_FAILED)
        if got.endswith(b"<failed"):
            raise LoginFailed(f"enable: {got[-200:]!r}")
        m = _SM_ID.search(got[got.rfind(b"<enabled") :])
        if m is None:
            raise LoginFailed(f"enabled without a resumption id: {got[-200:]!r}")
        conn.start_sm(m.group(1).decode())

    async def resume(self, user: str, previd: str, h: int) -> bool:
        """Log in again (PLAIN over TCP) and resume a hibernated session (XEP-0198
        §5); True when the server answered ``<resumed/>``. The resumed stream is
        closed at once, which ends the session."""
        conn = await self.connect()
        try:
            await self._auth_plain(conn, user)
            await self._open(conn)
            conn.send(b"<resume xmlns='urn:xmpp:sm:3' previd='%s' h='%d'/>" % (previd.encode(), h))
            got = await conn.expect(_RESUMED_OR_FAILED)
            return not got.endswith(b"<failed")
        finally:
            conn.close()

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
        await self._open(conn)
        conn.send(
            b"<iq%s type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            b"<resource>%s</resource></bind></iq>" % (JC if conn.ws else b"", resource.encode())
        )
        got = await conn.expect(b"</iq>")
        if b"type='result'" not in got and b'type="result"' not in got:
            raise LoginFailed(f"bind: {got[-200:]!r}")
