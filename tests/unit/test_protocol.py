"""XMLStream (descant.stream.protocol): headers, restarts, errors, on bytes alone (RFC 6120 §4)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from descant.errors import StreamError
from descant.stream.protocol import CLOSE, StreamClosed, StreamOpened, XMLStream
from descant.xml import ns
from descant.xml.parser import StreamParser

CLIENT_HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client'"
    b" xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>"
)


def opened(data: bytes, content_ns: str = ns.CLIENT) -> tuple[XMLStream, StreamOpened]:
    stream = XMLStream(content_ns, 65536)
    (ev,) = stream.feed(data)
    assert isinstance(ev, StreamOpened)
    return stream, ev


def header_error(data: bytes, content_ns: str = ns.CLIENT) -> str:
    stream, ev = opened(data, content_ns)
    with pytest.raises(StreamError) as info:
        stream.check_header(ev)
    return info.value.condition


def parse_own_header(text: str) -> StreamOpened:
    (ev,) = StreamParser().feed(text.encode())
    assert isinstance(ev, StreamOpened)
    return ev


# -- our header (RFC 6120 §4.7) -------------------------------------------------------------


def test_header_attributes_rfc6120_4_7() -> None:
    stream = XMLStream(ns.CLIENT, 65536)
    text = stream.header("example.com", "juliet@example.com", "de")
    assert text.startswith("<?xml version='1.0'?><stream:stream ")
    assert stream.header_sent
    ev = parse_own_header(text)
    assert ev.tag == "{%s}stream" % ns.STREAM
    assert ev.default_ns == ns.CLIENT
    assert ev.prefix_ns == {"stream": ns.STREAM}
    assert ev.attrs == {
        "id": stream.id,
        "from": "example.com",
        "to": "juliet@example.com",
        "version": "1.0",
        ns.XML_LANG: "de",
    }


def test_header_omits_to_when_unknown_rfc6120_4_7_2() -> None:
    stream = XMLStream(ns.CLIENT, 65536)
    ev = parse_own_header(stream.header("example.com"))
    assert "to" not in ev.attrs
    assert ev.attrs[ns.XML_LANG] == "en"


def test_header_for_server_streams_rfc6120_4_8_3() -> None:
    stream = XMLStream(ns.SERVER, 65536)
    assert parse_own_header(stream.header("example.com")).default_ns == ns.SERVER


def test_header_escapes_attribute_values_rfc6120_11() -> None:
    stream = XMLStream(ns.CLIENT, 65536)
    ev = parse_own_header(stream.header("a'b", 'c"d<e>&', "x'y"))
    assert ev.attrs["from"] == "a'b"
    assert ev.attrs["to"] == 'c"d<e>&'
    assert ev.attrs[ns.XML_LANG] == "x'y"


def test_stream_ids_are_unique_and_unguessable_rfc6120_4_7_3() -> None:
    stream = XMLStream(ns.CLIENT, 65536)
    ids = set()
    for _ in range(200):
        ev = parse_own_header(stream.header("example.com"))
        assert ev.attrs["id"] == stream.id
        ids.add(stream.id)
    assert len(ids) == 200
    # "Unpredictable": at least 12 random bytes, i.e. 16 url-safe characters.
    assert all(len(i) >= 16 for i in ids)


# -- checking the peer's header (RFC 6120 §4.7, §4.8, §4.9.3) ------------------------------------


def test_valid_header_passes_rfc6120_4_7() -> None:
    stream, ev = opened(CLIENT_HEADER)
    stream.check_header(ev)


def test_valid_server_header_passes_rfc6120_4_8_3() -> None:
    data = CLIENT_HEADER.replace(b"jabber:client", b"jabber:server")
    stream, ev = opened(data, ns.SERVER)
    stream.check_header(ev)


def test_wrong_stream_namespace_is_invalid_namespace_rfc6120_4_9_3_10() -> None:
    data = CLIENT_HEADER.replace(b"http://etherx.jabber.org/streams", b"urn:wrong")
    assert header_error(data) == "invalid-namespace"


def test_unprefixed_stream_in_content_namespace_is_invalid_namespace_rfc6120_4_8_1() -> None:
    data = b"<stream xmlns='jabber:client' version='1.0'>"
    assert header_error(data) == "invalid-namespace"


def test_wrong_content_namespace_is_invalid_namespace_rfc6120_4_9_3_10() -> None:
    data = CLIENT_HEADER.replace(b"jabber:client", b"jabber:server")
    assert header_error(data) == "invalid-namespace"
    data = CLIENT_HEADER.replace(b"jabber:client", b"urn:example:other")
    assert header_error(data) == "invalid-namespace"


def test_missing_content_namespace_is_invalid_namespace_rfc6120_4_8_2() -> None:
    data = CLIENT_HEADER.replace(b"xmlns='jabber:client'", b"")
    assert header_error(data) == "invalid-namespace"


def test_root_that_is_not_a_stream_is_bad_format_rfc6120_4_9_3_1() -> None:
    data = b"<stream:features xmlns='jabber:client' xmlns:stream='%s'>" % ns.STREAM.encode()
    assert header_error(data) == "bad-format"


def test_stream_prefix_bound_elsewhere_is_bad_namespace_prefix_rfc6120_4_9_3_2() -> None:
    data = (
        b"<s:stream xmlns='jabber:client' xmlns:s='http://etherx.jabber.org/streams'"
        b" xmlns:stream='urn:not-streams' version='1.0'>"
    )
    assert header_error(data) == "bad-namespace-prefix"


def test_other_prefix_for_stream_namespace_is_tolerated_rfc6120_4_8_5() -> None:
    """Only the namespace name matters; RFC 6120 lets (not makes) servers insist on 'stream:'."""
    data = (
        b"<foobar:stream xmlns='jabber:client' xmlns:foobar='http://etherx.jabber.org/streams'"
        b" version='1.0'>"
    )
    stream, ev = opened(data)
    stream.check_header(ev)


@pytest.mark.parametrize("version", [b"0.9", b"2.0", b"0.0", b"10.0", b"abc", b"", b".1"])
def test_unsupported_version_rfc6120_4_7_5(version: bytes) -> None:
    data = CLIENT_HEADER.replace(b"version='1.0'", b"version='" + version + b"'")
    assert header_error(data) == "unsupported-version"


def test_missing_version_means_0_9_and_is_unsupported_rfc6120_4_7_5() -> None:
    data = CLIENT_HEADER.replace(b" version='1.0'>", b">")
    assert header_error(data) == "unsupported-version"


@pytest.mark.parametrize("version", [b"1.0", b"1.1", b"1.99"])
def test_higher_minor_version_is_accepted_rfc6120_4_7_5(version: bytes) -> None:
    data = CLIENT_HEADER.replace(b"version='1.0'", b"version='" + version + b"'")
    stream, ev = opened(data)
    stream.check_header(ev)


# -- restarts (RFC 6120 §4.3.3) -----------------------------------------------------------------


def test_restart_discards_parser_state_rfc6120_4_3_3() -> None:
    stream = XMLStream(ns.CLIENT, 65536)
    stream.header("example.com")
    stream.feed(CLIENT_HEADER)
    # Half a stanza before the restart must not leak into the new stream.
    assert stream.feed(b"<message><body>half") == []
    stream.restart()
    assert not stream.header_sent
    events = stream.feed(CLIENT_HEADER + b"<presence/>")
    assert isinstance(events[0], StreamOpened)
    assert isinstance(events[1], ET.Element)
    assert events[1].tag == "presence"


def test_restart_requires_a_new_header_rfc6120_4_3_3() -> None:
    stream = XMLStream(ns.CLIENT, 65536)
    stream.feed(CLIENT_HEADER)
    stream.restart()
    with pytest.raises(StreamError) as info:
        stream.feed(b"</stream:stream>")
    assert info.value.condition == "not-well-formed"


def test_restart_keeps_the_stanza_limit_rfc6120_13_12() -> None:
    stream = XMLStream(ns.CLIENT, 2048)
    stream.restart()
    stream.feed(CLIENT_HEADER)
    with pytest.raises(StreamError) as info:
        stream.feed(b"<message><body>" + b"x" * 4096 + b"</body></message>")
    assert info.value.condition == "policy-violation"


def test_close_event_rfc6120_4_4() -> None:
    stream = XMLStream(ns.CLIENT, 65536)
    events = stream.feed(CLIENT_HEADER + b"</stream:stream>")
    assert isinstance(events[-1], StreamClosed)


# -- output (RFC 6120 §4.9) ------------------------------------------------------------------------


def test_error_output_is_stream_error_then_close_rfc6120_4_9_1() -> None:
    stream = XMLStream(ns.CLIENT, 65536)
    out = stream.error(StreamError("not-well-formed", "bad <xml> & more")) + stream.close()
    assert out == (
        "<stream:error><not-well-formed xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>bad &lt;xml&gt; &amp; more</text>"
        "</stream:error></stream:stream>"
    )
    assert out.endswith(CLOSE)


def test_error_output_parses_on_the_peer_side_rfc6120_4_9_2() -> None:
    stream = XMLStream(ns.CLIENT, 65536)
    wire = stream.header("example.com") + stream.error(StreamError("host-unknown")) + stream.close()
    events = StreamParser().feed(wire.encode())
    assert [type(ev) for ev in events] == [StreamOpened, ET.Element, StreamClosed]
    err = events[1]
    assert isinstance(err, ET.Element)
    assert err.tag == "{%s}error" % ns.STREAM
    assert [c.tag for c in err] == ["{%s}host-unknown" % ns.STREAMS_ERR]


def test_element_output_uses_the_stream_content_namespace_rfc6120_4_8_3() -> None:
    el = ET.Element("message")
    ET.SubElement(ET.SubElement(el, "{urn:x}x"), "message")
    assert XMLStream(ns.CLIENT, 65536).element(el) == (
        "<message><x xmlns='urn:x'><message xmlns='jabber:client'/></x></message>"
    )
    assert XMLStream(ns.SERVER, 65536).element(el) == (
        "<message><x xmlns='urn:x'><message xmlns='jabber:server'/></x></message>"
    )


# -- input held back at layer switches (RFC 6120 §5.4.3.3, §6.4.6) --------------------------------


def test_restart_drops_what_arrived_before_the_switch() -> None:
    """Events already parsed and bytes not yet parsed are both dropped: what was
    pipelined after <starttls/> never reaches the next layer (CVE-2011-0411)."""
    stream = XMLStream(ns.CLIENT, 65536)
    stream.receive_data(CLIENT_HEADER + b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    stream.receive_data(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==")
    stream.receive_data(b"</auth><iq type='set' id='x'/>")
    assert isinstance(stream.next_event(), StreamOpened)
    starttls = stream.next_event()
    assert isinstance(starttls, ET.Element) and starttls.tag.endswith("}starttls")
    assert stream.buffered > 0
    stream.restart()
    assert stream.buffered == 0
    assert stream.next_event() is None
    stream.receive_data(CLIENT_HEADER + b"<presence/>")
    assert isinstance(stream.next_event(), StreamOpened)
    presence = stream.next_event()
    assert isinstance(presence, ET.Element) and presence.tag == "presence"


def test_input_is_parsed_one_chunk_at_a_time_as_events_are_taken() -> None:
    stream = XMLStream(ns.CLIENT, 65536)
    stream.receive_data(CLIENT_HEADER)
    stream.receive_data(b"<presence/>")
    assert stream.buffered == len(CLIENT_HEADER) + len(b"<presence/>")
    assert isinstance(stream.next_event(), StreamOpened)
    assert stream.buffered == len(b"<presence/>")  # not parsed until asked for


def test_a_fault_comes_after_the_events_completed_before_it() -> None:
    from descant.stream.protocol import StreamFault

    stream = XMLStream(ns.CLIENT, 65536)
    stream.receive_data(CLIENT_HEADER + b"<presence/><message><body>x</bo></message>")
    stream.receive_data(b"<presence/>")
    events = []
    while (ev := stream.next_event()) is not None:
        events.append(ev)
    assert [type(e).__name__ for e in events] == ["StreamOpened", "Element", "StreamFault"]
    fault = events[-1]
    assert isinstance(fault, StreamFault) and fault.error.condition == "not-well-formed"
    assert stream.buffered == 0  # nothing after a fault is kept


# -- RFC 7395 framing ---------------------------------------------------------------------------

OPEN = b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>"


def ws_stream() -> XMLStream:
    from descant.stream.protocol import WEBSOCKET

    return XMLStream(ns.CLIENT, 4096, WEBSOCKET)


def ws_events(*messages: bytes | str) -> list[object]:
    stream = ws_stream()
    for m in messages:
        stream.receive_data(m)
    out = []
    while (ev := stream.next_event()) is not None:
        out.append(ev)
    return out


def test_websocket_open_and_close_are_the_header_and_close_rfc7395_3_4() -> None:
    events = ws_events(
        OPEN,
        "<presence xmlns='jabber:client'/>",
        b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
    )
    opened, presence, closed = events
    assert isinstance(opened, StreamOpened) and opened.attrs["to"] == "example.com"
    ws_stream().check_header(opened)
    assert isinstance(presence, ET.Element) and presence.tag == "presence"
    assert isinstance(closed, StreamClosed)


@pytest.mark.parametrize(
    ("message", "condition"),
    [
        (b"<presence xmlns='jabber:client'/><presence xmlns='jabber:client'/>", "bad-format"),
        (b"<message xmlns='jabber:client'><body>half", "bad-format"),
        (b"<presence xmlns='jabber:client'", "bad-format"),
        (b"hello", "bad-format"),
        (b"<presence xmlns='jabber:client'></message>", "not-well-formed"),
        # A DTD cannot appear inside the framing's document at all.
        (b"<!DOCTYPE x><presence/>", "not-well-formed"),
        (b"<?pi x?>", "restricted-xml"),
        (
            b"<message xmlns='jabber:client'><body>" + b"x" * 5000 + b"</body></message>",
            "policy-violation",
        ),
    ],
)
def test_websocket_message_must_hold_one_whole_element_rfc7395_3_3_3(
    message: bytes, condition: str
) -> None:
    from descant.stream.protocol import StreamFault

    events = ws_events(OPEN, b"<presence xmlns='jabber:client'/>", message, b"<presence/>")
    assert isinstance(events[0], StreamOpened)
    assert isinstance(events[1], ET.Element)
    assert len(events) == 3
    assert isinstance(events[2], StreamFault) and events[2].error.condition == condition


def test_websocket_header_checks_rfc7395_3_4() -> None:
    stream = ws_stream()
    (ev,) = ws_events(b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='x' version='2.0'/>")
    assert isinstance(ev, StreamOpened)
    with pytest.raises(StreamError) as info:
        stream.check_header(ev)
    assert info.value.condition == "unsupported-version"


def test_websocket_output_pieces_stand_alone_rfc7395_3_3_3() -> None:
    stream = ws_stream()
    header = stream.header("example.com", "juliet@example.com")
    assert header.startswith("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id=")
    assert "from='example.com'" in header and "version='1.0'" in header
    features = ET.Element("{%s}features" % ns.STREAM)
    text = stream.element(features)
    assert text == "<stream:features xmlns:stream='%s'/>" % ns.STREAM
    ET.fromstring(text)  # a frame parses on its own
    msg = ET.Element("message", {"to": "a@b"})
    ET.SubElement(msg, "body").text = "hi"
    assert (
        stream.element(msg) == "<message xmlns='jabber:client' to='a@b'><body>hi</body></message>"
    )
    err = stream.error(StreamError("bad-format"))
    assert ET.fromstring(err).tag == "{%s}error" % ns.STREAM
    assert stream.close() == "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"


def test_bosh_output_has_no_header_and_standalone_elements() -> None:
    from descant.stream.protocol import BOSH

    stream = XMLStream(ns.CLIENT, 4096, BOSH)
    assert stream.header("example.com") == "" and stream.header_sent and stream.id
    assert stream.close() == ""
    assert stream.element(ET.Element("presence")) == "<presence xmlns='jabber:client'/>"
    stream.receive_events([ET.Element("message")])
    ev = stream.next_event()
    assert isinstance(ev, ET.Element) and ev.tag == "message"
