"""``server.c2s``: the client listeners, every client stream, and hibernated sessions.

Streams of every transport (TCP here; WebSocket and BOSH from http/) run
through :meth:`ClientManager.serve`, which applies the per-address connection
limit and keeps the stream for shutdown. Sessions that asked for resumption
(XEP-0198) are registered under their unguessable SM-ID; a hibernated one
waits here until it is resumed or its timer ends it. The SM-ID and final ``h``
of an ended session are remembered for a while (bounded) so a late
``<resume/>`` can be told how much was handled (XEP-0198 §5).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import secrets
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from descant.c2s.session import ClientSession
from descant.c2s.sm import StreamManagement
from descant.c2s.stream import ClientStream
from descant.errors import StanzaError
from descant.jid import JID
from descant.net.limits import PerAddress
from descant.net.tcp import TCPTransport
from descant.tasks import TaskGroup

if TYPE_CHECKING:
    from descant.server import Server

log = logging.getLogger(__name__)

# Ended resumable sessions remembered for a late <resume/>: how many, how long.
EXPIRED_KEEP = 10000
EXPIRED_SECONDS = 3600.0


@dataclass(slots=True)
class Undelivered:
    """A stanza sent to a session that ended before the client acknowledged it
    (``stanza-undelivered``): a handler that returns non-None took care of it."""

    session: ClientSession
    stanza: ET.Element
    stamp: float  # when it was first sent (time.time())


class ClientManager:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.streams: set[ClientStream] = set()
        self.hibernated: set[ClientSession] = set()
        self.resumable: dict[str, ClientSession] = {}
        self._expired: collections.OrderedDict[str, tuple[JID, int, float]] = (
            collections.OrderedDict()
        )
        self.tasks = TaskGroup("c2s")
        # One task per TCP connection, bounded by the per-address limit and file limits.
        self._conns = TaskGroup("c2s connections", limit=1 << 30)
        self.per_ip = PerAddress(server.config.limits.max_connections_per_ip)
        self._listeners: list[asyncio.Server] = []
        self.stopping = False

    # -- listeners and streams -------------------------------------------------------------

    async def start(self) -> None:
        server = self.server
        for addr in server.config.c2s.listen:
            self._listeners.append(await server.listen("c2s", addr, self._factory(False)))
        for addr in server.config.c2s.tls_listen:
            factory = self._factory(True)
            self._listeners.append(
                # Each handshake switches to the certificate it should get (net/certs.py).
                await server.listen("c2s_tls", addr, factory, server.certs.listener_context("c2s"))
            )

    def _factory(self, direct_tls: bool) -> Any:
        cfg = self.server.config

        def make() -> TCPTransport:
            return TCPTransport(
                self._made,
                direct_tls=direct_tls,
                rate=cfg.limits.c2s_rate,
                keepalive_idle=cfg.c2s.tcp_keepalive,
            )

        return make

    def _made(self, transport: TCPTransport) -> None:
        # The stream (which receives the bytes) exists before any data arrives.
        self._conns.spawn(self.serve(ClientStream(self.server, transport)))

    async def serve(self, stream: ClientStream) -> None:
        """Run a client stream of any transport to its end, within the limits."""
        ip = stream.ip
        if self.stopping:
            await stream.close("system-shutdown")
            return
        if not self.per_ip.admit(ip):
            log.warning("refusing connection from %s: too many connections", ip)
            # Say why (RFC 6120 §4.9.3.17) rather than drop the connection silently.
            await stream.close("policy-violation", "too many connections from your address")
            return
        self.streams.add(stream)
        try:
            await stream.run()
        finally:
            self.streams.discard(stream)
            self.per_ip.release(ip)

    async def stop(self) -> None:
        """End every stream with <system-shutdown/> and every session, hibernated too."""
        self.stopping = True
        for srv in self._listeners:
            srv.close()
        streams = list(self.streams)
        for stream in streams:
            await stream.close("system-shutdown")
        for session in list(self.hibernated):
            await session.end()
        await self._conns.wait(2.0)
        # A TLS peer that never answers close_notify would keep its socket open.
        await asyncio.sleep(0.05 if streams else 0)
        for stream in streams:
            stream.transport.abort()
        for srv in self._listeners:
            await srv.wait_closed()
        await self.tasks.close(2.0)
        await self._conns.close()

    # -- stream resumption (XEP-0198 §5) --------------------------------------------------

    def make_resumable(self, session: ClientSession) -> str:
        """Register a session for resumption under a fresh unguessable SM-ID."""
        sm_id = secrets.token_urlsafe(24)
        self.resumable[sm_id] = session
        return sm_id

    def find(self, sm_id: str, account: JID) -> ClientSession | None:
        """The resumable session ``sm_id`` of this account (never another's)."""
        session = self.resumable.get(sm_id)
        if session is None or session.ended or session.jid.bare != account:
            return None
        return session

    def expired_h(self, sm_id: str, account: JID) -> int | None:
        """The final inbound count of this account's ended session ``sm_id``, if known."""
        entry = self._expired.get(sm_id)
        if entry is None or entry[0] != account:
            return None
        if time.monotonic() - entry[2] > EXPIRED_SECONDS:
            del self._expired[sm_id]
            return None
        return entry[1]

    def forget(self, session: ClientSession, sm: StreamManagement | None) -> None:
        """A session ended: unregister it, remembering its SM-ID and ``h`` for a while."""
        self.hibernated.discard(session)
        if sm is None or not sm.id or self.resumable.get(sm.id) is not session:
            return
        del self.resumable[sm.id]
        self._expired[sm.id] = (session.jid.bare, sm.handled, time.monotonic())
        while len(self._expired) > EXPIRED_KEEP:
            self._expired.popitem(last=False)

    async def undelivered(self, session: ClientSession, stanza: ET.Element, stamp: float) -> None:
        """XEP-0198 §4: an unacknowledged stanza is treated as sent to an unavailable
        resource — a module stores or redelivers it, else its sender gets an error."""
        ev = Undelivered(session, stanza, stamp)
        if await session.host.events.fire("stanza-undelivered", ev) is not None:
            return
        kind, type_ = stanza.tag, stanza.get("type")
        if kind == "message" and type_ in (None, "normal", "chat"):
            await self.server.router.bounce(stanza, StanzaError("recipient-unavailable"))
        elif kind == "iq" and type_ in ("get", "set"):
            await self.server.router.bounce(stanza, StanzaError("service-unavailable"))
