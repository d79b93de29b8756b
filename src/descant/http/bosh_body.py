"""The pure parts of BOSH (XEP-0124): request bodies, the request-id window,
terminate bodies. No I/O; used by http/bosh.py and tested on bytes alone."""

from __future__ import annotations

import collections
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Generic, TypeVar

from descant.errors import StreamError, condition_of
from descant.xml import ns
from descant.xml.parser import StreamParser, parse_element, without_declaration

NS = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
MAX_RID = 2**53 - 1  # §14.1

BODY = "{%s}body" % NS
_WHITESPACE = " \t\r\n"
_INTEGER = re.compile(r"[0-9]{1,16}")

T = TypeVar("T")


class BoshError(Exception):
    """A terminal binding condition (§17.2)."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition


@dataclass(slots=True)
class Body:
    """A parsed ``<body/>``: its attributes (Clark names) and its payloads."""

    attrs: dict[str, str]
    children: list[ET.Element]


def parse_body(data: bytes, max_size: int) -> Body:
    """Parse one request body; raises BoshError (bad-request, policy-violation)."""
    if len(data) > max_size:
        raise BoshError("policy-violation", "body too large")
    # The body is the one child of a root of our own in the content namespace, so
    # its stanzas lose that namespace as on TCP; one more level for the wrapper.
    parser = StreamParser(max_size, max_depth=65)
    parser.feed(b"<x xmlns='jabber:client'>")
    try:
        events = parser.feed(without_declaration(data))
    except StreamError as err:
        cond = "policy-violation" if err.condition == "policy-violation" else "bad-request"
        raise BoshError(cond, str(err)) from None
    if len(events) != 1 or not parser.between_elements:
        raise BoshError("bad-request", "expected one whole <body/>")
    body = events[0]
    if not isinstance(body, ET.Element) or body.tag != BODY:
        raise BoshError("bad-request", f"expected <body xmlns='{NS}'/>")
    if (body.text or "").strip(_WHITESPACE) or any((c.tail or "").strip(_WHITESPACE) for c in body):
        raise BoshError("bad-request", "character data in <body/>")
    return Body(dict(body.attrib), list(body))


def int_attr(attrs: dict[str, str], name: str, default: int | None = None) -> int | None:
    """A non-negative integer attribute; raises BoshError(bad-request) when malformed."""
    value = attrs.get(name)
    if value is None:
        return default
    if not _INTEGER.fullmatch(value.strip(_WHITESPACE)):
        raise BoshError("bad-request", f"'{name}' must be a non-negative integer")
    return int(value)


OLD, NEW, OUTSIDE = "old", "new", "outside"


class RidWindow(Generic[T]):
    """Request ids (§14): new requests in a window above the last one taken in
    order, those ahead of a gap kept until it fills, the last answers kept.

    ``last`` is the rid of the last request taken in order; new ones are
    ``last + 1 .. last + size`` (one more for a pause or terminate request, §11).
    """

    __slots__ = ("answers", "early", "last", "size")

    def __init__(self, last: int, size: int) -> None:
        self.last = last
        self.size = size
        self.early: dict[int, T] = {}
        self.answers: collections.OrderedDict[int, bytes] = collections.OrderedDict()

    def place(self, rid: int, extra: int = 0) -> str:
        if rid <= self.last:
            return OLD
        return NEW if rid <= self.last + self.size + extra else OUTSIDE

    def take(self, rid: int, item: T) -> list[T]:
        """A new request; returns the requests now in order (possibly none)."""
        self.early[rid] = item
        ready: list[T] = []
        while (nxt := self.early.pop(self.last + 1, None)) is not None:
            ready.append(nxt)
            self.last += 1
        return ready

    def remember(self, rid: int, response: bytes) -> None:
        self.answers[rid] = response
        while len(self.answers) > self.size:
            self.answers.popitem(last=False)


def terminate_xml(condition: str | None = None, inner: str = "") -> str:
    """A terminate body (§13, §17.2); ``inner`` is payloads and a stream error."""
    cond = f" condition='{condition}'" if condition else ""
    if not inner:
        return f"<body xmlns='{NS}' type='terminate'{cond}/>"
    return f"<body xmlns='{NS}' xmlns:stream='{ns.STREAM}' type='terminate'{cond}>{inner}</body>"


def stream_condition(error: str) -> str:
    """The condition of a serialized ``<stream:error/>``."""
    return condition_of(parse_element(error), ns.STREAMS_ERR) or "undefined-condition"
