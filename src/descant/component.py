"""External components (XEP-0114: Jabber Component Protocol).

A component (gateway, bot) connects to ``[components] listen`` and claims a
domain with a secret from ``[components.secrets]``.

Session state machine (one ordered task):

    CONNECTED --header, to = a configured component domain--> OPEN
              (else <host-unknown/>); our header carries the stream id
    OPEN --<handshake>hex(SHA-1(stream id + secret))</handshake>--> AUTHENTICATED,
              answered <handshake/> (a wrong digest: <not-authorized/>; the domain
              already connected: <conflict/>)
    AUTHENTICATED --stanza--> ``from`` must be in the component's domain (else
              <invalid-from/>), ``to`` present --> Router.route(stanza, origin=None)
    any --</stream>, error, EOF--> CLOSED (the domain is free again)

Routing to the component: the router fires ``route/remote`` on the server bus
for any domain without a Host; :class:`ComponentService` hooks it ahead of the
s2s manager and takes stanzas for component domains — written to the
connected component, or bounced with <service-unavailable/> when it is not
connected (XEP-0114 §3.1 leaves this to the server).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import hmac
import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.errors import StanzaError, StreamError
from descant.jid import JID, InvalidJID, parse
from descant.net.connection import StreamConnection
from descant.net.tcp import TCPTransport
from descant.stanza import STANZA_KINDS, error_reply
from descant.stream.protocol import StreamClosed, StreamOpened
from descant.tasks import TaskGroup
from descant.xml import ns

if TYPE_CHECKING:
    from descant.server import Server

log = logging.getLogger(__name__)

# Elements in the content namespace are parsed without one (xml/parser.py).
HANDSHAKE = "handshake"


def handshake_digest(stream_id: str, secret: str) -> str:
    """XEP-0114 §3: lower-case hex SHA-1 of the stream id followed by the secret."""
    return hashlib.sha1((stream_id + secret).encode("utf-8")).hexdigest()


class State(enum.Enum):
    CONNECTED = "connected"
    OPEN = "open"
    AUTHENTICATED = "authenticated"
    CLOSED = "closed"


class ComponentSession(StreamConnection):
    __slots__ = ("domain", "peer", "service", "state")

    def __init__(self, service: ComponentService, transport: TCPTransport) -> None:
        super().__init__(service.server, transport, ns.COMPONENT)
        self.service = service
        self.state = State.CONNECTED
        self.domain = ""
        self.peer = f"{transport.ip}:{transport.port}"

    def _our_name(self) -> str:
        return self.domain or self.server.default_domain

    def _label(self) -> str:
        return f"component {self.domain or self.peer}"

    async def _teardown(self) -> None:
        if self.state is State.AUTHENTICATED:
            self.service.unregister(self)
        self.state = State.CLOSED
        await super()._teardown()

    async def _handle(self, ev: object) -> None:
        if isinstance(ev, StreamOpened):
            self._open(ev)
        elif isinstance(ev, StreamClosed):
            await self.close()
        elif isinstance(ev, ET.Element):
            if self.state is State.AUTHENTICATED:
                await self._stanza(ev)
            elif self.state is State.OPEN and ev.tag == HANDSHAKE:
                self._handshake(ev)
            else:
                raise StreamError("not-authorized", "handshake first")

    def _open(self, ev: StreamOpened) -> None:
        to = ev.attrs.get("to", "")
        if not self.service.serves(to):
            raise StreamError("host-unknown", f"{to!r} is not a component of this server")
        self.domain = to
        self.write(self.stream.header(to))
        # XEP-0114 streams carry no version (they predate RFC 3920's 1.0).
        ev.attrs.setdefault("version", "1.0")
        self.stream.check_header(ev)
        self.state = State.OPEN

    def _handshake(self, el: ET.Element) -> None:
        expected = handshake_digest(self.stream.id, self.service.secrets[self.domain])
        given = (el.text or "").strip().lower()
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise StreamError("not-authorized", "wrong handshake")
        if self.domain in self.service.sessions:
            raise StreamError("conflict", f"{self.domain} is already connected")
        self.state = State.AUTHENTICATED
        self.service.register(self)
        self.write(f"<handshake xmlns='{ns.COMPONENT}'/>")
        log.info("component %s connected from %s", self.domain, self.peer)

    async def _stanza(self, el: ET.Element) -> None:
        if el.tag not in STANZA_KINDS:
            raise StreamError("unsupported-stanza-type", f"<{el.tag}/> is not a stanza")
        try:
            frm = parse(el.get("from", ""))
        except InvalidJID:
            raise StreamError("invalid-from", "missing or invalid from") from None
        if frm.domain != self.domain:
            raise StreamError("invalid-from", f"{frm} is not in {self.domain}")
        try:
            parse(el.get("to", ""))
        except InvalidJID:
            if el.get("type") != "error":
                self.send(_error_to(el, StanzaError("jid-malformed", "missing or invalid to")))
            return
        self.server.metrics.received("component", el.tag)
        await self.server.router.process(el)


def _error_to(el: ET.Element, err: StanzaError) -> ET.Element:
    reply = error_reply(el, err)
    reply.attrib.pop("from", None)
    return reply


class ComponentService:
    """The ``[components]`` listener and the routing of component domains."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.secrets = dict(server.config.components.secrets)
        self.sessions: dict[str, ComponentSession] = {}
        self._all: set[ComponentSession] = set()
        self._conns = TaskGroup("component connections", limit=10000)
        self._listeners: list[asyncio.Server] = []

    def serves(self, domain: str) -> bool:
        return domain in self.secrets

    async def start(self) -> None:
        # Ahead of the s2s manager: component domains never go to DNS.
        self.server.events.hook("route/remote", self._route, priority=10)
        for addr in self.server.config.components.listen:
            factory = lambda: TCPTransport(self._made)  # noqa: E731
            self._listeners.append(await self.server.listen("component", addr, factory))

    async def stop(self) -> None:
        self.server.events.unhook("route/remote", self._route)
        for srv in self._listeners:
            srv.close()
        for session in list(self._all):
            await session.close("system-shutdown")
        for srv in self._listeners:
            await srv.wait_closed()
        await self._conns.close(1.0)

    def _made(self, transport: TCPTransport) -> None:
        # The session (which receives the bytes) exists before any data arrives.
        self._conns.spawn(self._accept(ComponentSession(self, transport)))

    async def _accept(self, session: ComponentSession) -> None:
        self._all.add(session)
        try:
            await session.run()
        finally:
            self._all.discard(session)

    def register(self, session: ComponentSession) -> None:
        self.sessions[session.domain] = session

    def unregister(self, session: ComponentSession) -> None:
        if self.sessions.get(session.domain) is session:
            del self.sessions[session.domain]
            log.info("component %s disconnected", session.domain)

    async def _route(self, args: tuple[ET.Element, JID, JID]) -> bool | None:
        stanza, _frm, to = args
        if not self.serves(to.domain):
            return None
        session = self.sessions.get(to.domain)
        if session is None or session.closing:
            await self.server.router.bounce(stanza, StanzaError("service-unavailable"))
        else:
            self.server.metrics.sent("component", stanza.tag)
            session.send(stanza)
        return True
