"""The router: where every stanza goes after its session admitted it.

A stanza from a local client first fires ``pre-<kind>`` on the sender's host,
where modules may take it (outbound presence processing, RFC 6121 §3-4).
For a local domain it then fires ``<kind>/<to>`` on that host's bus, where ``<to>``
is ``self`` (no ``to``; or an iq to the sender's own bare JID), ``host``,
``bare`` or ``full``; iq get/set fire ``iq-<type>/<to>/<ns>:<tag>`` (one dict
lookup), and nothing handling them gets the RFC default: ``<service-unavailable/>``
(RFC 6120 §8.4). Other domains go to ``route/remote`` on the server bus
(federation); with no handler the sender gets ``<remote-server-not-found/>``.

Handlers return True (or any non-None) when they took the stanza.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from time import perf_counter
from typing import TYPE_CHECKING

from descant.errors import StanzaError
from descant.jid import JID, InvalidJID, parse
from descant.metrics import SAMPLE_EVERY
from descant.stanza import drop_qualified_attributes, error_reply, payload_key

if TYPE_CHECKING:
    from descant.host import Host
    from descant.routing.sessions import Session
    from descant.server import Server

log = logging.getLogger(__name__)

_PRE_EVENTS = {kind: f"pre-{kind}" for kind in ("message", "presence", "iq")}


@dataclass(slots=True)
class StanzaEvent:
    """One stanza in flight: what handlers receive."""

    stanza: ET.Element
    origin: Session | None
    host: Host
    frm: JID
    to: JID
    to_kind: str


class Router:
    def __init__(self, server: Server) -> None:
        self.server = server
        # Routing latency for one stanza in SAMPLE_EVERY (metrics.py: timing each would
        # cost about 1 µs of a chat message's ~20); None when metrics are off.
        metrics = server.metrics
        self._latency = metrics.routing if metrics.enabled else None
        self._countdown = SAMPLE_EVERY

    async def route(self, stanza: ET.Element, origin: Session | None = None) -> None:
        """Deliver a stanza whose ``from`` is already trustworthy."""
        try:
            frm = parse(stanza.get("from", ""))
            to_s = stanza.get("to")
            to = parse(to_s) if to_s else frm.bare
        except InvalidJID:
            log.debug("dropping stanza with invalid address: %s", stanza.attrib)
            return
        kind = stanza.tag
        if origin is not None:
            # The sender's own host sees it first (outbound presence, carbons, …).
            # With no handler (messages, most of the time) no event is built at all.
            events = origin.host.events
            pre_name = _PRE_EVENTS.get(kind) or f"pre-{kind}"
            if events.has(pre_name):
                pre = StanzaEvent(stanza, origin, origin.host, frm, to, "pre")
                if await events.fire(pre_name, pre) is not None:
                    return
        host = self.server.hosts.get(to.domain)
        if host is None:
            await self._route_remote(stanza, frm, to)
            return
        if to.resource:
            to_kind = "full"
        elif not to.local:
            to_kind = "host"
        elif to_s is None or (kind == "iq" and to == frm.bare):
            to_kind = "self"
        else:
            to_kind = "bare"
        event = StanzaEvent(stanza, origin, host, frm, to, to_kind)
        if kind == "iq":
            await self._route_iq(event)
            return
        handled = await host.events.fire(f"{kind}/{to_kind}", event)
        if handled is None and kind == "message":
            await self.bounce(stanza, StanzaError("service-unavailable"))

    async def process(self, stanza: ET.Element, origin: Session | None = None) -> None:
        """Route a stanza that just entered from a stream, behind a fault boundary: a
        handler's exception costs that stanza (answered <internal-server-error/> and
        logged), not the stream it came on. Qualified attributes (``x:from``) are
        dropped here, at the one entry of client, server and component stanzas."""
        drop_qualified_attributes(stanza)
        t0 = 0.0
        if self._latency is not None:
            countdown = self._countdown - 1
            if countdown:
                self._countdown = countdown
            else:
                self._countdown = SAMPLE_EVERY
                t0 = perf_counter()
        try:
            await self.route(stanza, origin)
        except Exception:
            log.exception("error handling a stanza from %s", stanza.get("from"))
            try:
                await self.bounce(stanza, StanzaError("internal-server-error"))
            except Exception:
                log.exception("answering a failed stanza failed too")
        if t0 and self._latency is not None:
            self._latency.observe(perf_counter() - t0)

    async def _route_iq(self, event: StanzaEvent) -> None:
        stanza = event.stanza
        type_ = stanza.get("type")
        host = event.host
        if type_ in ("get", "set"):
            if event.to_kind != "full":
                key = payload_key(stanza)
                name = f"iq-{type_}/{event.to_kind}/{key}"
                if await host.events.fire(name, event) is not None:
                    return
            if await host.events.fire(f"iq/{event.to_kind}", event) is None:
                await self.bounce(stanza, StanzaError("service-unavailable"))
        elif type_ in ("result", "error"):
            # Never answered (RFC 6120 §8.2.3): delivered to a resource, or handed to
            # whoever on the server is waiting for it, else dropped.
            if event.to_kind == "full":
                await host.events.fire("iq/full", event)
            else:
                await host.events.fire(f"iq-{type_}/{event.to_kind}", event)
        else:
            await self.bounce(stanza, StanzaError("bad-request", "missing or invalid iq type"))

    async def _route_remote(self, stanza: ET.Element, frm: JID, to: JID) -> None:
        if await self.server.events.fire("route/remote", (stanza, frm, to)) is None:
            await self.bounce(stanza, StanzaError("remote-server-not-found"))

    async def bounce(self, stanza: ET.Element, err: StanzaError) -> None:
        """Answer a stanza with an error, unless it is one that must not be answered."""
        type_ = stanza.get("type")
        if type_ == "error" or (stanza.tag == "iq" and type_ == "result"):
            return
        if stanza.tag == "presence" and type_ not in (None, "subscribe", "probe"):
            return
        reply = error_reply(stanza, err)
        if not reply.get("to"):
            return
        if not reply.get("from"):
            # Addressed to the sender's own account: answer from the bare JID.
            reply.set("from", reply.get("to", "").partition("/")[0])
        await self.route(reply)
