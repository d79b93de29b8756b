"""Sans-I/O XML stream (RFC 6120 §4), with the WebSocket (RFC 7395) and BOSH
(XEP-0206) framings.

Theory of operation
-------------------
An :class:`XMLStream` is what one transport connection speaks. The transport
hands it what arrived — ``receive_data(bytes)`` for a TCP stream in any chunking,
one call per WebSocket message, or ``receive_events(...)`` for the elements of a
BOSH body — and the owner takes events one at a time with :meth:`next_event`:
:class:`StreamOpened` (a header, or RFC 7395 ``<open/>``), a top-level element
(a stanza or a nonza), :class:`StreamClosed`, or :class:`StreamFault` (the input
went bad at this point; everything complete before it was handed out first, so
the outcome does not depend on how bytes were split in transit). Input is parsed
lazily, when the owner asks for the next event; ``buffered`` says how many
bytes wait, so a transport can stop reading from a peer that outpaces its
handling (backpressure).

Layer switches. After STARTTLS (RFC 6120 §5.4.3.3) and SASL success (§6.4.6)
the owner calls :meth:`restart` before it asks for another event: everything
received and not yet handed out is dropped with the parser. The owner handles
one event at a time, so nothing that arrived before a switch — whatever was
pipelined after ``<starttls/>`` in the same packet, or sent during the SASL
exchange — is ever processed on the new layer (the STARTTLS command-injection
class, CVE-2011-0411 and CVE-2021-33515). The new layer starts with a new
header.

Framings (``framing``):

- ``tcp``: ``<stream:stream>`` headers and ``</stream:stream>``, elements in the
  stream's default namespace written without ``xmlns``.
- ``websocket``: RFC 7395 — every message holds exactly one complete element
  (else ``<bad-format/>``); ``<open/>`` and ``<close/>`` in
  ``urn:ietf:params:xml:ns:xmpp-framing`` are the header and the close; output
  pieces are standalone elements with their namespaces declared.
- ``bosh``: elements arrive already parsed from a ``<body/>``; output pieces are
  standalone elements (the BOSH layer wraps them); headers and the close are
  expressed by the BOSH layer, so their text is empty.

Output is text, one piece per call (one WebSocket message each): :meth:`header`,
:meth:`element`, :meth:`error`, :meth:`close`. The stream performs no I/O,
keeps no clock, and is tested on bytes alone.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from descant.errors import StreamError
from descant.xml import ns
from descant.xml.parser import StreamClosed, StreamOpened, StreamParser, without_declaration
from descant.xml.serialize import escape_attr, serialize

CLOSE = "</stream:stream>"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
TCP, WEBSOCKET, BOSH = "tcp", "websocket", "bosh"
_OPEN = "{%s}open" % FRAMING
_CLOSE = "{%s}close" % FRAMING

__all__ = [
    "BOSH",
    "CLOSE",
    "FRAMING",
    "TCP",
    "WEBSOCKET",
    "Event",
    "StreamClosed",
    "StreamFault",
    "StreamOpened",
    "XMLStream",
]


@dataclass(slots=True)
class StreamFault:
    """The input turned bad here; the stream ends with this error."""

    error: StreamError


Event = StreamOpened | ET.Element | StreamClosed | StreamFault


class XMLStream:
    __slots__ = (
        "_events",
        "_pending",
        "buffered",
        "content_ns",
        "framed",
        "framing",
        "header_sent",
        "id",
        "max_stanza_size",
        "parser",
    )

    def __init__(self, content_ns: str, max_stanza_size: int, framing: str = TCP) -> None:
        self.content_ns = content_ns
        self.max_stanza_size = max_stanza_size
        self.framing = framing
        self.framed = framing != TCP  # output pieces stand alone (WebSocket, BOSH)
        self.header_sent = False
        self.id = ""
        self.buffered = 0
        self._pending: deque[bytes | str] = deque()
        self._events: deque[Event] = deque()
        self.parser = self._new_parser()

    def _new_parser(self) -> StreamParser:
        parser = StreamParser(self.max_stanza_size)
        if self.framing == WEBSOCKET:
            # Messages are parsed as children of a root of our own: each holds one
            # whole element, which then carries its own namespace declarations.
            parser.feed(f"<framed xmlns='{self.content_ns}'>".encode())
        return parser

    # -- input ----------------------------------------------------------------------

    def receive_data(self, data: bytes | str) -> None:
        """Bytes from a TCP stream, or one WebSocket message (parsed when asked for)."""
        if data:
            self._pending.append(data)
            self.buffered += len(data)

    def receive_events(self, events: Iterable[Event]) -> None:
        """Events parsed by the transport itself (the elements of a BOSH body)."""
        self._events.extend(events)

    def next_event(self) -> Event | None:
        """The next event, or None until more input arrives."""
        events = self._events
        while not events:
            if not self._pending:
                return None
            chunk = self._pending.popleft()
            self.buffered -= len(chunk)
            self._parse(chunk)
        return events.popleft()

    def _parse(self, chunk: bytes | str) -> None:
        try:
            if self.framing == WEBSOCKET:
                self._events.extend(self._message(chunk))
            else:
                self._events.extend(self.parser.feed(chunk))  # type: ignore[arg-type]
        except StreamError as err:
            self._events.extend(err.completed)  # type: ignore[arg-type]
            err.completed = []
            self._events.append(StreamFault(err))
            self._pending.clear()
            self.buffered = 0

    def _message(self, data: bytes | str) -> list[Event]:
        """One WebSocket message: exactly one complete element (RFC 7395 §3.3.3)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        if data.startswith(b"<?xml"):
            # RFC 7395 §3.3.3: a message is a standalone document and may open with
            # a declaration (not recommended, not forbidden).
            data = without_declaration(data)
        events = self.parser.feed_whole(data)
        if len(events) != 1:
            if events:
                raise StreamError("bad-format", "one element per WebSocket message")
            return []  # whitespace only
        ev = events[0]
        if isinstance(ev, ET.Element):  # always, below the framing root
            if ev.tag == _OPEN:
                return [StreamOpened(_OPEN, dict(ev.attrib), None, {})]
            if ev.tag == _CLOSE:
                return [StreamClosed()]
        return [ev]

    def feed(self, data: bytes) -> list[Event]:
        """Receive data and take every event it completes; a fault is raised as its
        StreamError, with the events before it in ``completed`` (tests, tools)."""
        self.receive_data(data)
        out: list[Event] = []
        while (ev := self.next_event()) is not None:
            if isinstance(ev, StreamFault):
                ev.error.completed = list(out)
                raise ev.error
            out.append(ev)
        return out

    def restart(self) -> None:
        """A layer switch or stream restart: what was received and not yet handed
        out is discarded, and the next input must open a new stream (RFC 6120 §4.3.3)."""
        self._pending.clear()
        self._events.clear()
        self.buffered = 0
        self.parser = self._new_parser()
        self.header_sent = False

    def check_header(self, ev: StreamOpened) -> None:
        """Validate a received stream header (RFC 6120 §4.7, §4.9.3; RFC 7395 §3.4)."""
        if self.framing == WEBSOCKET:
            if ev.tag != _OPEN:
                raise StreamError("bad-format", "expected <open/>")
        elif self.framing == TCP:
            if ev.tag != "{%s}stream" % ns.STREAM:
                if ev.tag.endswith("}stream") or ev.tag == "stream":
                    raise StreamError("invalid-namespace", "wrong stream namespace")
                raise StreamError("bad-format", "expected a stream header")
            if ev.prefix_ns.get("stream", ns.STREAM) != ns.STREAM:
                raise StreamError("bad-namespace-prefix")
            if ev.default_ns != self.content_ns:
                raise StreamError("invalid-namespace", f"expected {self.content_ns}")
        version = ev.attrs.get("version", "0.9")
        major = version.partition(".")[0]
        if not major.isdigit() or int(major) != 1:
            raise StreamError("unsupported-version", "version 1.0 is required")

    # -- output -----------------------------------------------------------------------

    def header(
        self, frm: str, to: str | None = None, lang: str = "en", with_id: bool = True
    ) -> str:
        """Our stream header, with a fresh unguessable id (RFC 6120 §4.7.3) unless we
        initiate the stream (``with_id=False``: the initiating entity sends none)."""
        self.id = secrets.token_urlsafe(12) if with_id else ""
        self.header_sent = True
        to_attr = f" to='{escape_attr(to)}'" if to else ""
        id_attr = f" id='{self.id}'" if with_id else ""
        if self.framing == BOSH:
            return ""
        if self.framing == WEBSOCKET:
            return (
                f"<open xmlns='{FRAMING}' id='{self.id}' from='{escape_attr(frm)}'{to_attr}"
                f" version='1.0' xml:lang='{escape_attr(lang)}'/>"
            )
        return (
            "<?xml version='1.0'?>"
            f"<stream:stream xmlns='{self.content_ns}' xmlns:stream='{ns.STREAM}'"
            f"{id_attr} from='{escape_attr(frm)}'{to_attr} version='1.0'"
            f" xml:lang='{escape_attr(lang)}'>"
        )

    def element(self, el: ET.Element) -> str:
        return serialize(el, self.content_ns, self.framed)

    def error(self, err: StreamError) -> str:
        """The stream error element (the close follows it, RFC 6120 §4.9.1.1)."""
        return serialize(err.to_element(), self.content_ns, self.framed)

    def close(self) -> str:
        """The end of our stream: ``</stream:stream>`` or RFC 7395 ``<close/>``."""
        if self.framing == WEBSOCKET:
            return f"<close xmlns='{FRAMING}'/>"
        return "" if self.framing == BOSH else CLOSE
