"""A bound client session, apart from the transport carrying it (RFC 6120 §7, XEP-0198).

The session is what routing and features see (routing/sessions.py): the bound
full JID, presence, priority, per-module data, the stream management counters
and queue. The stream carrying it (c2s/stream.py, over TCP, WebSocket or BOSH)
can go away and another take its place:

    LIVE        a stream is attached; output is written to it
    LIVE --transport lost, SM resumption on--> HIBERNATED: no stream; the session
                stays bound and available, output waits in the SM queue, a timer
                runs for ``sm.max`` seconds (c2s/manager.py)
    HIBERNATED --<resume/> by the same account, on any transport--> LIVE
    LIVE --<resume/> on another stream--> the old stream ends with <conflict/>,
                the session is LIVE on the new one
    any --clean close, stream error, resource conflict, timeout, queue overflow,
                shutdown--> ENDED: unbound (``resource-unbound``), and every stanza
                the client never acknowledged goes to ``stanza-undelivered``
                (offline storage with its original delay stamp, or a bounce)

Output passes an optional filter first (client state indication may hold it),
then the SM queue, then the stream.
"""

from __future__ import annotations

import asyncio
import logging
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import TYPE_CHECKING

from descant.c2s.sm import StreamManagement
from descant.jid import JID
from descant.xml.serialize import serialize

if TYPE_CHECKING:
    from descant.c2s.manager import ClientManager
    from descant.c2s.stream import ClientStream
    from descant.host import Host

log = logging.getLogger(__name__)

HOLD_LIMIT = 1000  # stanzas held while a new session's stored messages are read

# Takes a stanza on its way to the client (True) or lets it pass (False).
OutputFilter = Callable[["ClientSession", ET.Element], bool]


class ClientSession:
    # Thousands of these live at once; slots keep an idle session small.
    __slots__ = (
        "_ahead",
        "_held",
        "_overflowed",
        "_timer",
        "data",
        "directed",
        "ended",
        "filter",
        "host",
        "interested",
        "jid",
        "jid_str",
        "manager",
        "presence",
        "priority",
        "since",
        "sm",
        "stream",
    )

    def __init__(self, manager: ClientManager, host: Host, jid: JID, stream: ClientStream) -> None:
        self.manager = manager
        self.host = host
        self.jid = jid
        self.jid_str = str(jid)
        self.priority = 0
        self.presence: ET.Element | None = None
        self.interested = False
        self.directed: set[JID] = set()
        self.data: dict[str, object] = {}  # per-session state owned by feature modules
        self.stream: ClientStream | None = stream
        self.sm: StreamManagement | None = None
        self.filter: OutputFilter | None = None
        self.ended = False
        self.since = time.time()  # when it was bound (the admin page shows it)
        self._timer: asyncio.TimerHandle | None = None
        self._overflowed = False
        self._held: list[ET.Element] | None = None
        self._ahead: list[ET.Element] = []

    def __repr__(self) -> str:
        return f"<ClientSession {self.jid_str}>"

    @property
    def hibernated(self) -> bool:
        """Waiting for the client to resume: no transport, still bound."""
        return self.stream is None and not self.ended

    # -- output ------------------------------------------------------------------------

    def hold(self) -> None:
        """Keep what is sent from now on until :meth:`release`, so that what
        ``send_ahead`` adds meanwhile goes out first: at initial presence, stored
        messages before live ones that race them (XEP-0160, RFC 6120 §10.1)."""
        if self._held is None:
            self._held = []

    def send_ahead(self, stanza: ET.Element) -> None:
        """Send ``stanza`` before what is held (at once when nothing is)."""
        if self._held is None:
            self.send(stanza)
        else:
            self._ahead.append(stanza)

    def release(self) -> None:
        held, ahead = self._held or [], self._ahead
        self._held, self._ahead = None, []
        for stanza in ahead:
            self.send(stanza)
        for stanza in held:
            self.send(stanza)

    def send(self, stanza: ET.Element) -> None:
        """Queue a stanza for the client (the only delivery path)."""
        held = self._held
        if held is not None:
            held.append(stanza)
            if len(held) >= HOLD_LIMIT:
                # A flood while stored messages are read: let it through rather than grow.
                log.warning("%s: %d stanzas held at login, released", self.jid_str, len(held))
                self.release()
            return
        f = self.filter
        if f is not None and f(self, stanza):
            return
        self.deliver(stanza)

    def deliver(self, stanza: ET.Element) -> None:
        """Past the filter: written if live, and kept until acknowledged (XEP-0198)."""
        counts = self.manager.server.metrics.sent_c2s
        if counts is not None:  # a plain int: a prometheus Counter costs ~1 µs (metrics.py)
            tag = stanza.tag
            if tag in counts:
                counts[tag] += 1
        stream = self.stream
        sm = self.sm
        if sm is None:
            if stream is not None:
                stream.send(stanza)
            return
        if stream is not None:
            xml_stream = stream.stream
            text = xml_stream.element(stanza)
            framed = xml_stream.framed
            stream.send_text(text)
        else:
            text, framed = serialize(stanza), False
        if not sm.track(text, framed) and not self._overflowed:
            self._overflow()

    def _overflow(self) -> None:
        self._overflowed = True
        log.warning("%s: too many unacknowledged stanzas, ending the session", self.jid_str)
        stream = self.stream
        if stream is not None:
            self.manager.tasks.spawn(
                stream.close("resource-constraint", "too many unacknowledged stanzas")
            )
        else:
            self.manager.tasks.spawn(self.end())

    # -- transports --------------------------------------------------------------------

    def attach(self, stream: ClientStream) -> None:
        """Carry on over ``stream`` (bind, or resumption)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.manager.hibernated.discard(self)
        self.stream = stream
        stream.session = self

    def detach(self) -> ClientStream | None:
        """Let go of the current stream (it is closing, or another one takes over)."""
        stream, self.stream = self.stream, None
        if stream is not None and stream.session is self:
            stream.session = None
        return stream

    async def hibernate(self) -> None:
        """The transport was lost: wait ``sm.max`` seconds for the client to resume."""
        self.detach()
        sm = self.sm
        assert sm is not None
        self.manager.hibernated.add(self)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(sm.max, self._expire)
        log.info("%s hibernating (%d unacknowledged, %d s)", self.jid_str, sm.unacked, sm.max)
        await self._fire("session-hibernated")

    def _expire(self) -> None:
        self._timer = None
        log.info("%s: not resumed in time", self.jid_str)
        self.manager.tasks.spawn(self.end())

    # -- the end -----------------------------------------------------------------------

    async def close(self, condition: str | None = None, text: str | None = None) -> None:
        """End the session; its stream, if any, closes with this stream error."""
        stream = self.stream
        if stream is not None:
            await stream.close(condition, text)  # the stream's teardown ends us
        await self.end()

    async def end(self) -> None:
        """Unbind, then hand every unacknowledged stanza to ``stanza-undelivered``."""
        if self.ended:
            return
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.detach()
        self.filter = None
        sm, self.sm = self.sm, None
        # Taken before unbinding: what unbinding sends us (our own unavailable
        # presence, room exits) is not undelivered traffic.
        unacked = sm.take_unacked() if sm is not None else []
        self.manager.forget(self, sm)
        if self.host.sessions.remove(self):
            await self._fire("resource-unbound")
        for stanza, stamp in unacked:
            try:
                await self.manager.undelivered(self, stanza, stamp)
            except Exception:
                log.exception("%s: handling an unacknowledged stanza failed", self.jid_str)

    async def _fire(self, event: str) -> None:
        try:
            await self.host.events.fire(event, self)
        except Exception:
            log.exception("%s: error in %s", self.jid_str, event)
