"""The pure parts of BOSH (descant.http.bosh_body): bodies (XEP-0124 §6) and request ids (§14)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from descant.http.bosh_body import (
    NEW,
    OLD,
    OUTSIDE,
    BoshError,
    RidWindow,
    int_attr,
    parse_body,
    stream_condition,
    terminate_xml,
)
from descant.xml import ns

BODY = "http://jabber.org/protocol/httpbind"
LIMIT = 65536


def refused(data: bytes, limit: int = LIMIT) -> str:
    with pytest.raises(BoshError) as info:
        parse_body(data, limit)
    return info.value.condition


# -- bodies (§6, XEP-0206 §2) ----------------------------------------------------------------


def test_body_payloads_lose_the_content_namespace_as_on_tcp() -> None:
    body = parse_body(
        f"<body xmlns='{BODY}' rid='7' sid='s' xmlns:xmpp='urn:xmpp:xbosh' xmpp:restart='true'"
        " xml:lang='de'>"
        "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>"
        "<r xmlns='urn:xmpp:sm:3'/></body>".encode(),
        LIMIT,
    )
    assert body.attrs == {
        "rid": "7",
        "sid": "s",
        "{urn:xmpp:xbosh}restart": "true",
        ns.XML_LANG: "de",
    }
    message, r = body.children
    assert message.tag == "message" and message.get("to") == "a@b"
    assert message.findtext("body") == "hi"
    assert r.tag == "{urn:xmpp:sm:3}r"


def test_empty_body_and_xml_declaration() -> None:
    body = parse_body(
        f"<?xml version='1.0' encoding='utf-8'?>\n<body xmlns='{BODY}'/>".encode(), 99
    )
    assert body.children == [] and body.attrs == {}
    decl = f"<?xml version='1.0' encoding='iso-8859-1'?><body xmlns='{BODY}'/>"
    assert refused(decl.encode()) == "bad-request"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<body xmlns='http://jabber.org/protocol/httpbind'>",  # partial (§6)
        b"<body xmlns='http://jabber.org/protocol/httpbind'><message></body>",
        b"<body/>",  # wrong namespace
        b"<message xmlns='jabber:client'/>",
        b"<body xmlns='http://jabber.org/protocol/httpbind'/><body"
        b" xmlns='http://jabber.org/protocol/httpbind'/>",
        b"<body xmlns='http://jabber.org/protocol/httpbind'>text</body>",  # §6: no character data
        b"<body xmlns='http://jabber.org/protocol/httpbind'><presence/>tail</body>",
        b"<body xmlns='http://jabber.org/protocol/httpbind'><!-- c --></body>",
        b"<body xmlns='http://jabber.org/protocol/httpbind'><?pi x?></body>",
        b"<!DOCTYPE body [<!ENTITY x 'y'>]><body xmlns='http://jabber.org/protocol/httpbind'/>",
        b"<body xmlns='http://jabber.org/protocol/httpbind'>&x;</body>",
        b"<body xmlns='http://jabber.org/protocol/httpbind'/></x><y/>",
    ],
)
def test_malformed_or_forbidden_xml_is_bad_request_xep0124_6(data: bytes) -> None:
    assert refused(data) == "bad-request"


def test_whitespace_between_payloads_is_allowed() -> None:
    body = parse_body(
        f"<body xmlns='{BODY}'>\n  <presence xmlns='jabber:client'/>\n</body>".encode(), 99
    )
    assert [c.tag for c in body.children] == ["presence"]


def test_body_over_the_limit_is_refused_before_parsing() -> None:
    # Not even well-formed: the size alone decides.
    assert refused(b"<" * 101, limit=100) == "policy-violation"
    ok = f"<body xmlns='{BODY}'/>".encode()
    assert parse_body(ok, len(ok)).children == []


def test_int_attr() -> None:
    assert int_attr({"rid": "42"}, "rid") == 42
    assert int_attr({}, "wait", 60) == 60
    for bad in ("-1", "x", "1.5", "12345678901234567"):
        with pytest.raises(BoshError):
            int_attr({"rid": bad}, "rid")


# -- request ids (§14) -------------------------------------------------------------------------


def test_requests_are_taken_in_rid_order_xep0124_14_2() -> None:
    w: RidWindow[str] = RidWindow(100, 2)
    assert w.place(102) is NEW
    assert w.take(102, "b") == []  # ahead of a gap: kept
    assert w.early == {102: "b"}
    assert w.take(101, "a") == ["a", "b"]
    assert w.last == 102 and not w.early


def test_rid_beyond_the_window_is_outside_xep0124_14_2() -> None:
    w: RidWindow[str] = RidWindow(100, 2)
    assert w.place(101) is NEW and w.place(102) is NEW
    assert w.place(103) is OUTSIDE
    assert w.place(103, extra=1) is NEW  # one more for a pause or terminate (§11)
    assert w.place(100) is OLD and w.place(5) is OLD


def test_the_last_answers_are_kept_xep0124_14_3() -> None:
    w: RidWindow[str] = RidWindow(0, 2)
    for rid in (1, 2, 3):
        w.take(rid, str(rid))
        w.remember(rid, b"answer %d" % rid)
    assert w.answers == {2: b"answer 2", 3: b"answer 3"}


# -- terminate bodies (§17.2) ----------------------------------------------------------------


def test_terminate_bodies_xep0124_17_2() -> None:
    el = ET.fromstring(terminate_xml("item-not-found"))
    assert el.tag == f"{{{BODY}}}body" and el.attrib == {
        "type": "terminate",
        "condition": "item-not-found",
    }
    assert ET.fromstring(terminate_xml()).attrib == {"type": "terminate"}
    err = (
        "<stream:error xmlns:stream='http://etherx.jabber.org/streams'>"
        "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>replaced</text></stream:error>"
    )
    assert stream_condition(err) == "conflict"
    el = ET.fromstring(
        terminate_xml("remote-stream-error", "<presence xmlns='jabber:client'/>" + err)
    )
    assert [c.tag for c in el] == ["{jabber:client}presence", f"{{{ns.STREAM}}}error"]
