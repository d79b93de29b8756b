"""Incremental, restricted XML parsing of one XMPP stream (RFC 6120 §11).

The parser is sans-I/O: bytes go in through :meth:`StreamParser.feed`, and a
list of events comes out. It is built on pyexpat, not hand-written, and refuses
everything RFC 6120 §11.1 forbids (DOCTYPE and so entity declarations,
comments, processing instructions) the moment expat reports it. Because no DTD
is ever accepted, no entity can be declared, so entity-expansion attacks
(billion laughs) are impossible by construction rather than by counting.

Elements are ``xml.etree.ElementTree.Element`` objects (C-implemented, small).
Names use Clark notation ``{ns}local``, except that elements in the stream's
content namespace (``jabber:client``, ``jabber:server``…) carry no namespace:
stanzas are then independent of the stream they arrived on, and the serializer
re-qualifies them for whichever stream they leave on.

A stream restart (after STARTTLS or SASL) needs a new parser (RFC 6120 §4.3.3).
"""

from __future__ import annotations

import pyexpat
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from descant.errors import StreamError

_SEP = " "
# Expat name → qualified name caches, shared by the streams of the standard
# content namespaces (a stream may declare any other one: it gets its own).
_SHARED_NAME_NS = frozenset({"jabber:client", "jabber:server", "jabber:component:accept"})
_SHARED_NAMES: dict[str, dict[str, str]] = {}
_XML_WHITESPACE = " \t\r\n"  # XML 1.0 §2.3 production S; str.strip() knows more
_DECLARATION = re.compile(rb"\A\s*<\?xml\s[^<>]*?\?>")
_DECLARED_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


@dataclass(slots=True)
class StreamOpened:
    """The stream header arrived: its qualified tag, attributes and default namespace."""

    tag: str
    attrs: dict[str, str]
    default_ns: str | None
    prefix_ns: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class StreamClosed:
    """The peer sent ``</stream:stream>``."""


Event = StreamOpened | ET.Element | StreamClosed


_NESTED_HEADER = "{http://etherx.jabber.org/streams}stream"


class StreamParser:
    """Parses one stream instance into header, top-level elements and close.

    Limits: ``max_stanza_size`` bytes for one top-level element (counted from its
    start tag to its end tag, RFC 6120 §13.12 "policy-violation") and for any
    unfinished tag expat is still buffering (the header, or a start tag that never
    ends); ``max_depth`` levels of elements in a stanza, the stanza being level 1.
    """

    def __init__(self, max_stanza_size: int = 262144, max_depth: int = 64) -> None:
        self.max_stanza_size = max_stanza_size
        self.max_depth = max_depth
        self._p = p = pyexpat.ParserCreate("UTF-8", _SEP)
        # Character data comes in one call per 1 KiB (or per text node, if shorter);
        # _text joins the pieces. Every stream holds this buffer: expat's default of
        # 8 KiB cost an idle session up to 7 KiB more memory (bench/README.md).
        p.buffer_size = 1024
        p.buffer_text = True
        p.ordered_attributes = False
        p.specified_attributes = True
        p.SetParamEntityParsing(pyexpat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        p.CharacterDataHandler = self._text
        p.StartNamespaceDeclHandler = self._ns_decl
        p.XmlDeclHandler = self._xml_decl
        p.StartDoctypeDeclHandler = self._forbidden_doctype
        p.EntityDeclHandler = self._forbidden_entity
        p.UnparsedEntityDeclHandler = self._forbidden_entity
        p.NotationDeclHandler = self._forbidden_entity
        p.CommentHandler = self._forbidden_comment
        p.ProcessingInstructionHandler = self._forbidden_pi
        p.SkippedEntityHandler = self._forbidden_entity
        self._events: list[Event] = []
        self._stack: list[ET.Element] = []
        self._depth = 0
        self._content_ns = ""
        self._pending_ns: dict[str, str] = {}
        self._names: dict[str, str] = {}
        self._stanza_start = 0
        self._fed = 0
        self.closed = False

    # -- public -------------------------------------------------------------

    def feed(self, data: bytes) -> list[Event]:
        """Parse a chunk; return the events it completed. Raises StreamError."""
        if self.closed:
            return []
        self._fed += len(data)
        try:
            self._p.Parse(data, False)
        except pyexpat.ExpatError as exc:
            raise self._fail(StreamError("not-well-formed", str(exc))) from None
        except StreamError as err:
            raise self._fail(err) from None
        if self._depth > 1:
            pending = self._fed - self._stanza_start
        else:
            # Between stanzas expat may hold an unfinished tag; after a parse it
            # reports the offset where that tag begins. Bound it too, or a start
            # tag (or header) that never ends grows without limit.
            pending = self._fed - self._p.CurrentByteIndex
        if pending > self.max_stanza_size:
            # Through _fail, as every fault: what this chunk completed before the
            # oversized part is handed out first, however the bytes were split.
            raise self._fail(StreamError("policy-violation", "stanza too large"))
        events, self._events = self._events, []
        return events

    def feed_whole(self, data: bytes) -> list[Event]:
        """Parse input that must end between elements (one WebSocket message): the
        events it completed, or StreamError('bad-format') if it leaves an element or
        a tag open. The stanza limit holds as in :meth:`feed`."""
        if self.closed:
            return []
        p = self._p
        self._fed = fed = self._fed + len(data)
        try:
            p.Parse(data, False)
        except pyexpat.ExpatError as exc:
            raise self._fail(StreamError("not-well-formed", str(exc))) from None
        except StreamError as err:
            raise self._fail(err) from None
        if self._depth != 1 or p.CurrentByteIndex != fed:
            if fed - min(p.CurrentByteIndex, self._stanza_start) > self.max_stanza_size:
                raise StreamError("policy-violation", "stanza too large")
            raise StreamError("bad-format", "a WebSocket message must hold a whole element")
        events, self._events = self._events, []
        return events

    @property
    def between_elements(self) -> bool:
        """True when every byte fed so far is accounted for by finished elements:
        no element and no tag is open below the root (RFC 7395 framing needs it)."""
        return self._depth == 1 and self._p.CurrentByteIndex == self._fed

    def _fail(self, err: StreamError) -> StreamError:
        err.completed, self._events = list(self._events), []
        self.closed = True
        return err

    # -- expat callbacks ------------------------------------------------------

    def _qname(self, name: str) -> str:
        """Expat's 'uri local' → Clark name; the content namespace is dropped."""
        q = self._names.get(name)
        if q is None:
            uri, sep, local = name.rpartition(_SEP)
            q = local if not sep or uri == self._content_ns else "{" + uri + "}" + local
            if len(self._names) < 4096:
                self._names[name] = q
        return q

    def _attrs(self, attrs: dict[str, str]) -> dict[str, str]:
        if not attrs:
            return attrs
        out = {}
        for k, v in attrs.items():
            if _SEP in k:
                uri, _, local = k.rpartition(_SEP)
                k = "{" + uri + "}" + local
            out[k] = v
        return out

    def _ns_decl(self, prefix: str | None, uri: str | None) -> None:
        if self._depth == 0:
            self._pending_ns[prefix or ""] = uri or ""

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        depth = self._depth
        if depth == 0:
            default_ns = self._pending_ns.pop("", None)
            self._content_ns = default_ns or ""
            if self._content_ns in _SHARED_NAME_NS:
                # Streams of one kind share one cache: idle sessions stay small.
                self._names = _SHARED_NAMES.setdefault(self._content_ns, {})
            tag = self._qname(name)
            ev = StreamOpened(tag, self._attrs(attrs), default_ns, dict(self._pending_ns))
            self._events.append(ev)
            self._depth = 1
            # Only the header's declarations matter; below it expat resolves them
            # itself, and a Python callback per declaration is not free.
            self._p.StartNamespaceDeclHandler = None
            return
        if depth > self.max_depth:
            raise StreamError("policy-violation", "element nesting too deep")
        el = ET.Element(self._qname(name), self._attrs(attrs))
        if depth == 1:
            if el.tag == _NESTED_HEADER:
                # A second header inside the stream would swallow what follows into
                # one unfinished element: refused at its start tag.
                raise StreamError("invalid-xml", "a stream header inside the stream")
            self._stanza_start = self._p.CurrentByteIndex
        else:
            self._stack[-1].append(el)
        self._stack.append(el)
        self._depth = depth + 1

    def _end(self, name: str) -> None:
        self._depth -= 1
        if self._depth == 0:
            self.closed = True
            self._events.append(StreamClosed())
            return
        el = self._stack.pop()
        if self._depth == 1:
            size = self._p.CurrentByteIndex - self._stanza_start
            if size > self.max_stanza_size:
                raise StreamError("policy-violation", "stanza too large")
            self._events.append(el)

    def _text(self, data: str) -> None:
        if self._depth <= 1:
            # Whitespace between stanzas is a keepalive (RFC 6120 §4.6.1);
            # other character data at stream level is not allowed.
            if data.strip(_XML_WHITESPACE):
                raise StreamError("bad-format", "text outside stanzas")
            return
        el = self._stack[-1]
        if len(el):
            last = el[-1]
            last.tail = (last.tail or "") + data
        else:
            el.text = (el.text or "") + data

    def _xml_decl(self, version: str | None, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.lower() not in ("utf-8", "utf8"):
            raise StreamError("unsupported-encoding", f"encoding {encoding!r}")

    def _forbidden_doctype(self, *args: object) -> None:
        raise StreamError("restricted-xml", "DTDs are not allowed")

    def _forbidden_entity(self, *args: object) -> None:
        raise StreamError("restricted-xml", "entity declarations are not allowed")

    def _forbidden_comment(self, *args: object) -> None:
        raise StreamError("restricted-xml", "comments are not allowed")

    def _forbidden_pi(self, *args: object) -> None:
        raise StreamError("restricted-xml", "processing instructions are not allowed")


def without_declaration(document: bytes) -> bytes:
    """A standalone document (a WebSocket message, a BOSH body) without the XML
    declaration it may open with: it is parsed inside a root of our own, where a
    declaration cannot stand. Raises StreamError('unsupported-encoding') when the
    declared encoding is not UTF-8, StreamError('not-well-formed') when the
    declaration is malformed."""
    m = _DECLARATION.match(document)
    if m is None:
        if document.lstrip(b" \t\r\n").startswith(b"<?xml"):
            raise StreamError("not-well-formed", "malformed XML declaration")
        return document
    enc = _DECLARED_ENCODING.search(m.group())
    if enc is not None and enc.group(1).lower() not in (b"utf-8", b"utf8"):
        raise StreamError("unsupported-encoding", f"encoding {enc.group(1).decode()!r}")
    return document[m.end() :]


def parse_element(text: str, content_ns: str = "jabber:client") -> ET.Element:
    """Parse one element serialized by Descant itself (e.g. a stored stanza).

    The same restricted parser is used, so stored text gets no more trust than
    the wire; it is parsed as if it arrived on a stream of ``content_ns``.
    """
    parser = StreamParser(max_stanza_size=1 << 26)
    parser.feed(f"<s xmlns='{content_ns}'>".encode())
    for ev in parser.feed(text.encode("utf-8")):
        if isinstance(ev, ET.Element):
            return ev
    raise ValueError("no complete element in the text")
