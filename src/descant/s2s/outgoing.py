"""Outgoing server-to-server streams (RFC 6120, XEP-0220, XEP-0178).

One stream per (local, remote) domain pair, one task:

    CONNECTING (stanzas queued) --TCP (or direct TLS)--> header, features
    --STARTTLS (required unless the policy is "insecure"; certificate checked
      for the remote domain under the "verify" policy)--> restart, features
    --SASL EXTERNAL if offered under "verify", else <db:result/> with our key-->
    READY: queue flushed, stanzas written as they come; whitespace keepalives
    CONNECTING --failure--> every queued stanza bounced (remote-server-not-found
    or remote-server-timeout); the manager forgets the session.

The outgoing stream also carries our ``<db:verify/>`` requests to that peer
(XEP-0220 §2.3) once it is open, authenticated or not.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import logging
import ssl
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.errors import StanzaError
from descant.net.tcp import TCPTransport
from descant.s2s import dialback
from descant.s2s.resolve import NoService, resolve
from descant.s2s.session import FEATURES, STARTTLS, STREAM_ERROR, S2SStream
from descant.stream.protocol import StreamClosed, StreamFault, StreamOpened
from descant.xml import ns

if TYPE_CHECKING:
    from descant.s2s.manager import S2SManager

log = logging.getLogger(__name__)

MAX_QUEUE = 10000


class Failed(Exception):
    """Setting up an outgoing stream failed; ``condition`` is the bounce error."""

    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


class OutState(enum.Enum):
    CONNECTING = "connecting"
    READY = "ready"
    CLOSED = "closed"


class OutgoingSession:
    """One outgoing stream for (local, remote); see the module docstring."""

    def __init__(self, manager: S2SManager, local: str, remote: str) -> None:
        self.manager = manager
        self.server = manager.server
        self.local = local
        self.remote = remote
        self.state = OutState.CONNECTING
        self.queue: list[ET.Element] = []
        self.conn: S2SStream | None = None
        self.stream_open = asyncio.Event()
        self.verified_cert = False
        self._verify_waiters: dict[str, list[asyncio.Future[bool]]] = {}
        self.task: asyncio.Task[None] | None = None
        self.stage = "resolving"  # what set-up is doing, for the log

    # -- the owner's API ---------------------------------------------------------------

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self.run())

    def send(self, stanza: ET.Element) -> None:
        self.manager.server.metrics.sent("s2s", stanza.tag)
        if self.state is OutState.READY and self.conn is not None and not self.conn.closing:
            self.conn.send(stanza)
            self.conn.last_active = time.monotonic()
        elif len(self.queue) < MAX_QUEUE:
            self.queue.append(stanza)
        else:
            self._spawn_bounce([stanza], "resource-constraint", "too many queued stanzas")

    async def verify(self, stream_id: str, key: str, timeout: float) -> bool:
        """Ask the remote (Authoritative) server whether ``key`` is its key."""
        try:
            await asyncio.wait_for(self.stream_open.wait(), timeout)
        except TimeoutError:
            return False
        conn = self.conn
        if conn is None or conn.closing or self.state is OutState.CLOSED:
            return False
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        waiters = self._verify_waiters.setdefault(stream_id, [])
        waiters.append(fut)
        conn.send(dialback.verify(self.local, self.remote, stream_id, key))
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return False
        finally:
            # Answered or not, this request waits no more: nothing is left behind.
            if fut in waiters:
                waiters.remove(fut)
            if not waiters and self._verify_waiters.get(stream_id) is waiters:
                del self._verify_waiters[stream_id]

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()

    # -- the task ----------------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.server.config.s2s
        watchdog: asyncio.Task[None] | None = None
        try:
            try:
                # Connecting, TLS and authentication together are bounded.
                await asyncio.wait_for(self._establish(), cfg.connect_timeout * 3)
            except Failed as exc:
                log.info("s2s %s → %s failed: %s", self.local, self.remote, exc.text)
                self._fail(exc.condition, exc.text)
                return
            except TimeoutError:
                # Said in the log: a peer that silently drops what we send (a dialback
                # element it does not recognise, say) otherwise leaves no trace.
                log.warning(
                    "s2s %s → %s: set-up timed out after %g s while %s",
                    self.local,
                    self.remote,
                    cfg.connect_timeout * 3,
                    self.stage,
                )
                self._fail("remote-server-timeout", "timed out setting up the connection")
                return
            conn = self.conn
            assert conn is not None
            log.info("s2s %s → %s ready (%s)", self.local, self.remote, conn.peer)
            self.state = OutState.READY
            queued, self.queue = self.queue, []
            for stanza in queued:
                conn.send(stanza)
            conn.last_active = time.monotonic()
            watchdog = asyncio.get_running_loop().create_task(conn.watchdog())
            while not conn.closing:
                el = await self._next(conn)
                if el is None:
                    break
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("s2s %s → %s: internal error", self.local, self.remote)
            self._fail("remote-server-not-found", "internal error")
        finally:
            if watchdog is not None:
                watchdog.cancel()
            for futs in self._verify_waiters.values():
                for f in futs:
                    if not f.done():
                        f.set_result(False)
            was_ready = self.state is OutState.READY
            self.state = OutState.CLOSED
            if self.conn is not None and not self.conn.closing:
                await self.conn.close()
            self.manager.forget(self)
            queued, self.queue = self.queue, []
            if queued and was_ready and not self.manager.stopping:
                # Written after the peer closed an established stream: try a new one.
                fresh = self.manager.session_for(self.local, self.remote)
                for stanza in queued:
                    fresh.send(stanza)
            elif queued:
                self._spawn_bounce(queued, "remote-server-not-found", "connection lost")

    def _fail(self, condition: str, text: str) -> None:
        queued, self.queue = self.queue, []
        self.state = OutState.CLOSED
        self.stream_open.set()  # wake verify() callers; they see CLOSED
        self._spawn_bounce(queued, condition, text)

    def _spawn_bounce(self, stanzas: list[ET.Element], condition: str, text: str) -> None:
        if stanzas:
            self.manager.bounce(stanzas, StanzaError(condition, text))

    async def _establish(self) -> None:
        cfg = self.server.config.s2s
        try:
            targets = await resolve(self.remote, cfg.routes, cfg.connect_timeout)
        except NoService:
            raise Failed("remote-server-not-found", "the domain offers no XMPP service") from None
        last = Failed("remote-server-not-found", "no address")
        for target in targets:
            self.stage = f"connecting to {target.host}:{target.port}"
            try:
                await self._attempt(target.host, target.port, target.direct_tls)
                return
            except Failed as exc:
                last = exc
                if self.conn is not None:
                    await self.conn.close()
                    self.conn = None
                    self.stream_open.clear()
        raise last

    async def _attempt(self, host: str, port: int, direct_tls: bool) -> None:
        cfg = self.server.config.s2s
        policy = self.manager.policy(self.remote)
        ctx = self.manager.client_context(policy, self.local)
        loop = asyncio.get_running_loop()
        made: list[S2SStream] = []

        def factory() -> TCPTransport:
            # The stream exists before any byte can arrive.
            return TCPTransport(
                lambda t: made.append(S2SStream(self.manager, t)), direct_tls=direct_tls
            )

        try:
            _, transport = await asyncio.wait_for(
                loop.create_connection(
                    factory,
                    host,
                    port,
                    ssl=ctx if direct_tls else None,
                    server_hostname=self.remote if direct_tls else None,
                ),
                cfg.connect_timeout,
            )
        except TimeoutError:
            raise Failed("remote-server-timeout", f"{host}:{port}: connection timed out") from None
        except ssl.SSLError as exc:
            raise Failed("remote-server-not-found", f"TLS with {host}:{port}: {exc}") from None
        except OSError as exc:
            raise Failed("remote-server-not-found", f"{host}:{port}: {exc.strerror}") from None
        conn = self.conn = made[0]
        self.verified_cert = direct_tls and policy == "verify"
        self.stage = f"opening the stream with {host}:{port}"
        features = await self._open(conn)
        if not conn.secure:
            if features.find(STARTTLS) is not None:
                self.stage = f"negotiating TLS with {host}:{port}"
                conn.write("<starttls xmlns='%s'/>" % ns.TLS)
                reply = await self._expect(conn)
                if reply.tag != "{%s}proceed" % ns.TLS:
                    raise Failed("remote-server-not-found", "STARTTLS refused")
                # Anything the peer sent after <proceed/> was plaintext: dropped.
                conn.stream.restart()
                try:
                    await transport.start_tls(ctx, server_side=False, server_hostname=self.remote)
                except ssl.SSLCertVerificationError as exc:
                    raise Failed(
                        "remote-server-not-found", f"certificate refused: {exc.verify_message}"
                    ) from None
                except (ssl.SSLError, OSError, ConnectionError) as exc:
                    raise Failed("remote-server-not-found", f"TLS failed: {exc}") from None
                self.verified_cert = policy == "verify"
                features = await self._open(conn)
            elif policy != "insecure":
                raise Failed("remote-server-not-found", "the peer does not offer TLS")
        self.stream_open.set()
        self.stage = f"authenticating with {host}:{port} (SASL EXTERNAL or dialback)"
        external = self.verified_cert and self._offers_external(features)
        if external and await self._external(conn):
            return
        await self._dialback(conn)

    async def _open(self, conn: S2SStream) -> ET.Element:
        """Send our header; return the peer's features (empty for pre-1.0 peers)."""
        conn.write(conn.header(self.local, self.remote, initiating=True))
        while True:
            ev = await self._next_event(conn)
            if isinstance(ev, StreamOpened):
                conn.stream.check_header(ev)
                conn.stream.id = ev.attrs.get("id", "")
                if ev.attrs.get("version", "0.9") < "1.0":
                    return ET.Element(FEATURES)
            elif isinstance(ev, ET.Element) and ev.tag == FEATURES:
                return ev
            else:
                raise Failed("remote-server-not-found", "unexpected data before features")

    async def _expect(self, conn: S2SStream) -> ET.Element:
        ev = await self._next_event(conn)
        if not isinstance(ev, ET.Element):
            raise Failed("remote-server-not-found", "the peer closed the stream")
        return ev

    async def _next_event(self, conn: S2SStream) -> object:
        """The next event, with <db:verify/> answers and errors handled on the way."""
        while True:
            ev = conn.stream.next_event()
            if ev is None:
                if not await conn.transport.wait_input():
                    raise Failed("remote-server-not-found", "connection closed by the peer")
                continue
            if isinstance(ev, StreamFault):
                raise Failed("remote-server-not-found", f"bad stream: {ev.error}")
            if isinstance(ev, StreamClosed):
                raise Failed("remote-server-not-found", "the peer closed the stream")
            if isinstance(ev, ET.Element):
                if ev.tag == STREAM_ERROR:
                    cond = next((c.tag.rpartition("}")[2] for c in ev), "unknown")
                    raise Failed("remote-server-not-found", f"stream error: {cond}")
                if ev.tag == dialback.VERIFY and ev.get("type"):
                    self._verified(ev)
                    continue
            return ev

    async def _next(self, conn: S2SStream) -> ET.Element | None:
        """After set-up: the next element, or None when the stream is over."""
        try:
            ev = await self._next_event(conn)
        except Failed:
            return None
        return ev if isinstance(ev, ET.Element) else None

    def _verified(self, el: ET.Element) -> None:
        futs = self._verify_waiters.pop(el.get("id", ""), [])
        for f in futs:
            if not f.done():
                f.set_result(el.get("type") == "valid")

    @staticmethod
    def _offers_external(features: ET.Element) -> bool:
        mechs = features.find("{%s}mechanisms" % ns.SASL)
        if mechs is None:
            return False
        return any((m.text or "").strip() == "EXTERNAL" for m in mechs)

    async def _external(self, conn: S2SStream) -> bool:
        """SASL EXTERNAL (RFC 6120 §6, XEP-0178): our certificate identifies us."""
        authzid = base64.b64encode(self.local.encode()).decode()
        conn.write(f"<auth xmlns='{ns.SASL}' mechanism='EXTERNAL'>{authzid}</auth>")
        reply = await self._expect(conn)
        if reply.tag != "{%s}success" % ns.SASL:
            log.info("s2s %s → %s: EXTERNAL refused, trying dialback", self.local, self.remote)
            return False
        conn.stream.restart()
        await self._open(conn)
        log.info("s2s %s → %s: authenticated by certificate (EXTERNAL)", self.local, self.remote)
        return True

    async def _dialback(self, conn: S2SStream) -> None:
        key = dialback.make_key(self.manager.secret, self.remote, self.local, conn.stream.id)
        conn.send(dialback.result(self.local, self.remote, key=key))
        while True:
            el = await self._expect(conn)
            if el.tag != dialback.RESULT:
                continue
            if el.get("type") == "valid":
                return
            raise Failed("remote-server-not-found", "dialback refused by the peer")
