"""Server-to-server streams: the shared stream base, and incoming sessions
(RFC 6120, XEP-0220 dialback, XEP-0178 SASL EXTERNAL).

Incoming stream (a peer connected to us), one ordered task:

    CONNECTED --header (to: a domain served here)--> OPEN, features: STARTTLS, dialback
    OPEN --<starttls/>--> (TLS, restart) --header--> OPEN; under the "verify" policy
         for the header's ``from`` a client certificate is requested and checked
    OPEN (verified certificate) --<auth mechanism='EXTERNAL'>--> the pair (R, domain)
         is authenticated when the certificate covers the domain (RFC 6125)
    OPEN --<db:result from=O to=R>key--> verify by asking O's Authoritative Server
         (our outgoing stream to O, <db:verify/>) --> <db:result type='valid'/>: the pair
         (R, O) is authenticated; several pairs may share the stream (piggybacking)
    OPEN --<db:verify/>--> we are the Authoritative Server: answer valid/invalid
    OPEN --stanza--> ``from`` must be of an authenticated remote domain (else
         <invalid-from/>), ``to`` of a local domain paired with it (else
         <host-unknown/>) --> Router.route(stanza, origin=None)
    any --</stream>, error, EOF, idle--> CLOSED

Outgoing streams: outgoing.py.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.errors import StanzaError, StreamError
from descant.jid import InvalidJID, parse, prep_domain
from descant.net import tls
from descant.net.connection import StreamConnection
from descant.net.tcp import TCPTransport
from descant.s2s import dialback
from descant.stanza import STANZA_KINDS, valid_iq
from descant.stream.protocol import StreamClosed, StreamOpened
from descant.xml import ns

if TYPE_CHECKING:
    from descant.s2s.manager import S2SManager

log = logging.getLogger(__name__)

MAX_PENDING_DIALBACK = 64
STREAM_ERROR = "{%s}error" % ns.STREAM
FEATURES = "{%s}features" % ns.STREAM
STARTTLS = "{%s}starttls" % ns.TLS


_DIALBACK = f"{{{dialback.NS}}}"


class S2SStream(StreamConnection):
    """What both directions share: the XML stream, output, close, idle watch."""

    transport: TCPTransport

    def __init__(self, manager: S2SManager, transport: TCPTransport) -> None:
        super().__init__(manager.server, transport, ns.SERVER)
        self.manager = manager
        self.last_active = time.monotonic()
        self.peer = f"{transport.ip}:{transport.port}"

    def _label(self) -> str:
        return self.peer

    def header(self, frm: str, to: str | None, initiating: bool = False) -> str:
        # The dialback namespace is declared on the header (XEP-0220 §2.1); the
        # initiating entity's header has no id (RFC 6120 §4.7.3).
        return self.stream.header(frm, to, with_id=not initiating).replace(
            " xmlns:stream=", f" xmlns:db='{dialback.NS}' xmlns:stream=", 1
        )

    def send(self, stanza: ET.Element) -> None:
        if stanza.tag.startswith(_DIALBACK):
            self.write(dialback.text(stanza))  # with the declared db: prefix
        else:
            super().send(stanza)

    async def watchdog(self) -> None:
        """Close after ``s2s.idle_timeout`` without stanzas; whitespace keepalives."""
        cfg = self.server.config.s2s
        while not self.closing:
            await asyncio.sleep(min(cfg.keepalive, cfg.idle_timeout))
            if time.monotonic() - self.last_active >= cfg.idle_timeout:
                log.info("s2s %s: idle, closing", self.peer)
                await self.close()
                return
            self.write(" ")  # RFC 6120 §4.6.1


class IncomingSession(S2SStream):
    def __init__(self, manager: S2SManager, transport: TCPTransport) -> None:
        super().__init__(manager, transport)
        self.local = ""
        self.peer_domain = ""  # the first header's ``from``, to pick the TLS policy
        self.cert_names: list[str] = []  # names of a verified client certificate
        # (local, remote) pairs authenticated on this stream.
        self.authed: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def _our_name(self) -> str:
        return self.local or self.server.default_domain

    def _label(self) -> str:
        return f"s2s in {self.peer}"

    async def run(self) -> None:
        watchdog = asyncio.get_running_loop().create_task(self.watchdog())
        try:
            await super().run()
        finally:
            watchdog.cancel()
            for t in self._tasks:
                t.cancel()

    async def _handle(self, ev: object) -> None:
        if isinstance(ev, StreamOpened):
            self._open(ev)
        elif isinstance(ev, StreamClosed):
            await self.close()
        elif isinstance(ev, ET.Element):
            await self._element(ev)

    def _open(self, ev: StreamOpened) -> None:
        to = ev.attrs.get("to", "")
        if to and not self.manager.is_local(to):
            self.write(self.header(self.server.default_domain, None))
            raise StreamError("host-unknown", f"{to!r} is not served here")
        self.local = to or self.local or self.server.default_domain
        frm = ev.attrs.get("from", "")
        self.peer_domain = self.peer_domain or frm
        self.write(self.header(self.local, frm or None))
        self.stream.check_header(ev)
        feats = ET.Element(FEATURES)
        if not self.secure and self.manager.tls_server is not None:
            ET.SubElement(ET.SubElement(feats, STARTTLS), "{%s}required" % ns.TLS)
        if self.cert_names and not self.authed:
            mechs = ET.SubElement(feats, "{%s}mechanisms" % ns.SASL)
            ET.SubElement(mechs, "{%s}mechanism" % ns.SASL).text = "EXTERNAL"
        ET.SubElement(ET.SubElement(feats, "{%s}dialback" % dialback.FEATURE_NS), "errors")
        self.send(feats)

    async def _element(self, el: ET.Element) -> None:
        tag = el.tag
        if tag in STANZA_KINDS:
            await self._stanza(el)
        elif tag == dialback.RESULT:
            self._db_result(el)
        elif tag == dialback.VERIFY:
            self._db_verify(el)
        elif tag == STARTTLS:
            await self._starttls()
        elif tag == "{%s}auth" % ns.SASL:
            self._external(el)
        elif tag == STREAM_ERROR:
            log.info("s2s in %s: peer sent a stream error", self.peer)
            await self.close()
        else:
            raise StreamError("unsupported-stanza-type", f"unexpected {tag}")

    async def _starttls(self) -> None:
        # Ask for a client certificate under "verify" (SASL EXTERNAL, XEP-0178); one
        # that does not verify fails the handshake, as the strict policy wants. Ours is
        # the certificate of the domain the header named, unless SNI names another.
        verify = bool(self.peer_domain) and self.manager.policy(self.peer_domain) == "verify"
        ctx = self.manager.server_context(self._our_name(), verify)
        if self.secure:
            raise StreamError("policy-violation", "TLS is not available again")
        self.write("<proceed xmlns='%s'/>" % ns.TLS)
        # What the peer pipelined after <starttls/> was plaintext: dropped.
        self.stream.restart()
        try:
            await self.transport.start_tls(ctx)
        except (TimeoutError, OSError, ConnectionError, ssl.SSLError) as exc:
            log.info("s2s in %s: TLS handshake failed: %s", self.peer, exc)
            self.closing = True
            self.transport.close()
            return
        cert = self.transport.get_extra_info("peercert")
        if cert:
            self.cert_names = [v for k, v in cert.get("subjectAltName", ()) if k == "DNS"]

    def _external(self, el: ET.Element) -> None:
        """SASL EXTERNAL (RFC 6120 §6.4, XEP-0178): the verified certificate names us."""
        text = (el.text or "").strip()
        try:
            authzid = base64.b64decode(text).decode() if text and text != "=" else ""
        except ValueError:
            authzid = "\0"
        domain = authzid or self.peer_domain
        if el.get("mechanism") != "EXTERNAL" or not self.cert_names:
            cond = "invalid-mechanism"
        elif not tls.covers(self.cert_names, domain) or not self.manager.is_local(self.local):
            cond = "not-authorized"
        else:
            self.write(f"<success xmlns='{ns.SASL}'/>")
            self.authed.add((self.local, domain))
            log.info("s2s in %s: %s authenticated by certificate (EXTERNAL)", self.peer, domain)
            self.stream.restart()
            return
        self.write(f"<failure xmlns='{ns.SASL}'><{cond}/></failure>")

    def _domains(self, el: ET.Element) -> tuple[str, str]:
        try:
            remote = prep_domain(el.get("from", ""))
        except (InvalidJID, ValueError):
            raise StreamError("invalid-from", "a domain is required") from None
        to = el.get("to", "")
        if not self.manager.is_local(to):
            raise StreamError("host-unknown", f"{to!r} is not served here")
        return to, remote

    def _db_result(self, el: ET.Element) -> None:
        """XEP-0220 §2.1.2: the Originating Server asks us to accept a domain."""
        local, remote = self._domains(el)
        policy = self.manager.policy(remote)
        if policy != "insecure" and not self.secure:
            raise StreamError("policy-violation", "TLS is required first")
        key = (el.text or "").strip()
        if len(self._tasks) >= MAX_PENDING_DIALBACK:
            raise StreamError("policy-violation", "too many dialback requests at once")
        task = asyncio.get_running_loop().create_task(self._check(local, remote, key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _check(self, local: str, remote: str, key: str) -> None:
        ok = await self.manager.verify_dialback(local, remote, self.stream.id, key)
        if self.closing:
            return
        log.info("s2s in %s: dialback for %s → %s %s", self.peer, remote, local, ok)
        self.send(dialback.result(local, remote, type_="valid" if ok else "invalid"))
        if ok:
            self.authed.add((local, remote))
            self.last_active = time.monotonic()

    def _db_verify(self, el: ET.Element) -> None:
        """XEP-0220 §2.3: we are the Authoritative Server for ``to``."""
        local, remote = self._domains(el)
        stream_id = el.get("id", "")
        ok = dialback.check_key(self.manager.secret, remote, local, stream_id, el.text or "")
        self.send(dialback.verify(local, remote, stream_id, type_="valid" if ok else "invalid"))

    async def _stanza(self, el: ET.Element) -> None:
        try:
            frm = parse(el.get("from", ""))
        except InvalidJID:
            raise StreamError("invalid-from", "missing or invalid from") from None
        if not any(r == frm.domain for _, r in self.authed):
            raise StreamError("invalid-from", f"{frm.domain} is not authenticated here")
        try:
            to = parse(el.get("to", ""))
        except InvalidJID:
            raise StreamError("improper-addressing", "missing or invalid to") from None
        if (to.domain, frm.domain) not in self.authed:
            raise StreamError("host-unknown", f"{to.domain} is not authenticated for {frm}")
        if el.tag == "iq" and not valid_iq(el):
            if el.get("type") not in ("error", "result"):
                err = StanzaError("bad-request", "an iq needs an id, a type and one child")
                await self.server.router.bounce(el, err)
            return
        self.last_active = time.monotonic()
        self.server.metrics.received("s2s", el.tag)
        await self.server.router.process(el)
