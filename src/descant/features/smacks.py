"""Stream management (XEP-0198 v1.6): acknowledgements and stream resumption.

Offered as the ``<sm xmlns='urn:xmpp:sm:3'/>`` stream feature after
authentication. The counters and the unacknowledged queue live on the session
(c2s/sm.py) so they survive its transport; this module speaks the protocol:

- ``<enable/>`` after binding (§3; before it, or twice: ``<failed>`` with
  <unexpected-request/>): ``<enabled/>``, with an unguessable ``id``,
  ``resume='true'`` and ``max`` (``c2s.resume_timeout``, or less if the client
  asks for less) when the client asks for resumption;
- ``<r/>`` is answered ``<a h=…/>`` at once (§4); ``<a h=…/>`` drops what it
  acknowledges from the queue, and acknowledging more than was sent ends the
  stream with <undefined-condition/> and <handled-count-too-high/> (§6); the
  server asks for acknowledgements itself (c2s/stream.py), one ``<r/>`` out at
  a time: at once when 5 stanzas are unacknowledged, else after 2 seconds;
- ``<resume previd h/>`` after authentication, before binding (§5): only a
  session of the same account is found (anyone else's id, a guessed one or an
  expired one answers <item-not-found/>, with the final ``h`` when the session
  is remembered as expired); the old stream, if still open, ends with
  <conflict/>; ``<resumed h=…/>`` follows and every unacknowledged stanza is
  sent again, in order.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from descant.c2s.sm import NS, HandledCountTooHigh, StreamManagement, parse_h
from descant.c2s.stream import NonzaEvent
from descant.errors import StreamError
from descant.jid import JID
from descant.modules import Module
from descant.xml import ns
from descant.xml.parser import parse_element
from descant.xml.serialize import escape_attr

_TRUE = ("true", "1")


def _failed(condition: str, h: int | None = None, text: str | None = None) -> str:
    h_attr = f" h='{h}'" if h is not None else ""
    text_el = f"<text xmlns='{ns.STANZAS_ERR}'>{text}</text>" if text else ""
    return f"<failed xmlns='{NS}'{h_attr}><{condition} xmlns='{ns.STANZAS_ERR}'/>{text_el}</failed>"


class StreamManagementModule(Module):
    name = "smacks"

    def load(self) -> None:
        self._feature = ET.Element(f"{{{NS}}}sm")
        self.host.stream_features.append(self._feature)
        self.hook(f"nonza/{NS}:enable", self.enable)
        # Acks come every few stanzas and need no waiting.
        self.hook_nonza(f"{NS}:r", self.request)
        self.hook_nonza(f"{NS}:a", self.ack)
        self.hook(f"nonza/{NS}:resume", self.resume)

    def unload(self) -> None:
        super().unload()
        if self._feature in self.host.stream_features:
            self.host.stream_features.remove(self._feature)

    async def enable(self, ev: NonzaEvent) -> bool:
        session, stream = ev.session, ev.stream
        if session is None:
            stream.write(_failed("unexpected-request", text="bind a resource first"))
            return True
        if session.sm is not None:
            stream.write(_failed("unexpected-request", text="already enabled"))
            return True
        cfg = self.server.config.c2s
        resumable = ev.element.get("resume", "") in _TRUE and cfg.resume_timeout > 0
        wanted = parse_h(ev.element.get("max"))
        seconds = int(cfg.resume_timeout)
        if wanted:
            seconds = min(seconds, wanted)
        sm = StreamManagement(cfg.max_unacked, resumable, max=seconds)
        attrs = ""
        if resumable:
            sm.id = self.server.c2s.make_resumable(session)
            attrs = f" id='{sm.id}' resume='true' max='{seconds}'"
        # Written before counting starts: stanzas queued so far precede <enabled/>.
        stream.write(f"<enabled xmlns='{NS}'{attrs}/>")
        session.sm = sm
        return True

    def request(self, ev: NonzaEvent) -> bool:
        session = ev.session
        if session is not None and session.sm is not None:
            # Out with this turn's output: one write, not one per request.
            ev.stream.send_text(session.sm.answer())
        return True  # an <r/> before <enable/> means nothing: ignored

    def ack(self, ev: NonzaEvent) -> bool:
        session = ev.session
        sm = session.sm if session is not None else None
        if sm is None:
            return True
        h = parse_h(ev.element.get("h"))
        if h is None:
            raise StreamError("bad-format", "<a/> needs an unsigned 32-bit 'h'")
        try:
            sm.ack(h)
        except HandledCountTooHigh as exc:
            raise StreamError("undefined-condition", str(exc), exc.element()) from None
        # Stanzas sent after our last request may still be unacknowledged.
        ev.stream.acked(sm)
        return True

    async def resume(self, ev: NonzaEvent) -> bool:
        stream = ev.stream
        if ev.session is not None or stream.username is None:
            stream.write(_failed("unexpected-request", text="resume after authenticating"))
            return True
        previd = ev.element.get("previd", "")
        h = parse_h(ev.element.get("h"))
        if h is None or not previd:
            stream.write(_failed("bad-request", text="'previd' and 'h' are required"))
            return True
        account = JID(stream.username, stream.host.domain, "")
        manager = self.server.c2s
        session = manager.find(previd, account)
        if session is None or session.sm is None:
            stream.write(_failed("item-not-found", manager.expired_h(previd, account)))
            return True
        sm = session.sm
        try:
            sm.ack(h)
        except HandledCountTooHigh as exc:
            raise StreamError("undefined-condition", str(exc), exc.element()) from None
        old = session.detach()
        if old is not None:
            # §5: the previous stream is still open; it ends, the session does not.
            manager.tasks.spawn(old.close("conflict", "the session was resumed elsewhere"))
        session.attach(stream)
        stream.resumed()
        stream.write(f"<resumed xmlns='{NS}' previd='{escape_attr(previd)}' h='{sm.handled}'/>")
        framed = stream.stream.framed
        for text, _, was_framed in sm.pending():
            # Already counted: written again, not queued again; re-serialized only
            # when the new transport frames stanzas otherwise (TCP ↔ WebSocket/BOSH).
            if was_framed == framed:
                stream.send_text(text)
            else:
                stream.send(parse_element(text))
        self.log.info("%s resumed (%d stanzas sent again)", session.jid_str, sm.unacked)
        await self.host.events.fire("session-resumed", session)
        return True
