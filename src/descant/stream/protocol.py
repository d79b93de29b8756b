"""Sans-I/O XML stream (RFC 6120 §4): headers, restarts, errors, close.

Theory of operation: an :class:`XMLStream` owns the parser of the current
stream instance. ``feed(bytes)`` returns events (:class:`StreamOpened`,
top-level elements, :class:`StreamClosed`) or raises StreamError. After
STARTTLS or SASL success the owner calls :meth:`restart`, which discards the
parser, so the next bytes must start a new stream header (RFC 6120 §4.3.3).
Output is produced as text: :meth:`header`, :meth:`element`, :data:`CLOSE`.
It performs no I/O, keeps no clock, and is tested on bytes alone.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET

from descant.errors import StreamError
from descant.xml import ns
from descant.xml.parser import Event, StreamClosed, StreamOpened, StreamParser
from descant.xml.serialize import escape_attr, serialize

CLOSE = "</stream:stream>"

__all__ = ["CLOSE", "Event", "StreamClosed", "StreamOpened", "XMLStream"]


class XMLStream:
    def __init__(self, content_ns: str, max_stanza_size: int) -> None:
        self.content_ns = content_ns
        self.max_stanza_size = max_stanza_size
        self.parser = StreamParser(max_stanza_size)
        self.header_sent = False
        self.id = ""

    def feed(self, data: bytes) -> list[Event]:
        return self.parser.feed(data)

    def restart(self) -> None:
        self.parser = StreamParser(self.max_stanza_size)
        self.header_sent = False

    def check_header(self, ev: StreamOpened) -> None:
        """Validate a received stream header (RFC 6120 §4.7, §4.9.3)."""
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

    def header(self, frm: str, to: str | None = None, lang: str = "en") -> str:
        """Our stream header, with a fresh unguessable id (RFC 6120 §4.7.3)."""
        self.id = secrets.token_urlsafe(12)
        self.header_sent = True
        to_attr = f" to='{escape_attr(to)}'" if to else ""
        return (
            "<?xml version='1.0'?>"
            f"<stream:stream xmlns='{self.content_ns}' xmlns:stream='{ns.STREAM}'"
            f" id='{self.id}' from='{escape_attr(frm)}'{to_attr} version='1.0'"
            f" xml:lang='{escape_attr(lang)}'>"
        )

    def element(self, el: ET.Element) -> str:
        return serialize(el, self.content_ns)

    def error(self, err: StreamError) -> str:
        """The stream error followed by the closing tag."""
        return serialize(err.to_element(), self.content_ns) + CLOSE
