"""StreamParser (descant.xml.parser): incremental, restricted XML (RFC 6120 §4, §11)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from descant.errors import StreamError
from descant.xml import ns
from descant.xml.parser import Event, StreamClosed, StreamOpened, StreamParser

HEADER = (
    b"<?xml version='1.0'?>"
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" to='example.com' from='juliet@example.com' version='1.0' xml:lang='en'>"
)
SERVER_HEADER = (
    b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
    b" to='example.com' version='1.0'>"
)


def feed_chunks(data: bytes, size: int | None = None, **limits: Any) -> list[Event]:
    """Feed data in chunks of `size` bytes (all at once for None); collect every event."""
    parser = StreamParser(**limits)
    if size is None:
        return parser.feed(data)
    events: list[Event] = []
    for i in range(0, len(data), size):
        events += parser.feed(data[i : i + size])
    return events


def stanzas(events: list[Event]) -> list[ET.Element]:
    return [ev for ev in events if isinstance(ev, ET.Element)]


def one_stanza(xml: bytes, header: bytes = HEADER) -> ET.Element:
    (el,) = stanzas(feed_chunks(header + xml))
    return el


def error_of(*chunks: bytes, **limits: Any) -> StreamError:
    """The StreamError raised while feeding the chunks in order."""
    parser = StreamParser(**limits)
    with pytest.raises(StreamError) as info:
        for chunk in chunks:
            parser.feed(chunk)
    return info.value


def shape(el: ET.Element) -> tuple[Any, ...]:
    """Everything that distinguishes two element trees, as comparable tuples."""
    return (el.tag, dict(el.attrib), el.text, el.tail, [shape(c) for c in el])


# -- stream header (RFC 6120 §4.7) -----------------------------------------------------


def test_header_event_carries_tag_attributes_and_namespaces_rfc6120_4_7() -> None:
    (ev,) = feed_chunks(HEADER)
    assert isinstance(ev, StreamOpened)
    assert ev.tag == "{%s}stream" % ns.STREAM
    assert ev.attrs == {
        "to": "example.com",
        "from": "juliet@example.com",
        "version": "1.0",
        ns.XML_LANG: "en",
    }
    assert ev.default_ns == ns.CLIENT
    assert ev.prefix_ns == {"stream": ns.STREAM}


def test_header_without_xml_declaration_rfc6120_4_7() -> None:
    (ev,) = feed_chunks(SERVER_HEADER)
    assert isinstance(ev, StreamOpened)
    assert ev.default_ns == ns.SERVER


def test_header_without_default_namespace_reports_none_rfc6120_4_8_2() -> None:
    (ev,) = feed_chunks(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>")
    assert isinstance(ev, StreamOpened)
    assert ev.default_ns is None


def test_header_split_byte_by_byte_rfc6120_4_7() -> None:
    (ev,) = feed_chunks(HEADER, 1)
    assert isinstance(ev, StreamOpened)
    assert ev.attrs["to"] == "example.com"


# -- chunking: TCP delivers arbitrary pieces (RFC 6120 §4.2) -------------------------------

STANZA = (
    "<message to='romeo@example.net' id='m1' type='chat' xml:lang='fr'>"
    "<body>h\u00e9llo \u2603 \U0001f600 &amp; &lt;tag&gt;</body>"
    "<thread parent='p\u00e9re'>t1</thread>"
    "<x xmlns='jabber:x:oob'><url>http://example.com/?a=1&amp;b=2</url>tail</x>"
    "</message>"
).encode()


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 13, 64, None])
def test_stanza_split_at_any_chunk_boundary_rfc6120_4_2(size: int | None) -> None:
    """Every split, including inside multi-byte UTF-8 characters, gives the same tree."""
    whole = one_stanza(STANZA)
    events = feed_chunks(HEADER + STANZA + STANZA, size)
    assert isinstance(events[0], StreamOpened)
    got = stanzas(events)
    assert [shape(el) for el in got] == [shape(whole)] * 2


def test_multibyte_utf8_split_inside_characters_rfc6120_11_6() -> None:
    text = "\u00e9\u2603\U0001f600\u4e2d"
    parser = StreamParser()
    parser.feed(HEADER)
    data = f"<message><body>{text}</body></message>".encode()
    events: list[Event] = []
    for i in range(len(data)):
        events += parser.feed(data[i : i + 1])
    (el,) = stanzas(events)
    assert el.findtext("body") == text


def test_stanza_event_only_when_complete_rfc6120_4_1() -> None:
    parser = StreamParser()
    parser.feed(HEADER)
    assert parser.feed(b"<message><body>hi</body>") == []
    assert parser.feed(b"</mess") == []
    (el,) = parser.feed(b"age>")
    assert isinstance(el, ET.Element)
    assert el.tag == "message"


# -- namespaces (RFC 6120 §4.8) ---------------------------------------------------------------


def test_content_namespace_is_stripped_rfc6120_4_8_3() -> None:
    el = one_stanza(b"<message><body>x</body></message>")
    assert el.tag == "message"
    assert el[0].tag == "body"


def test_foreign_namespaces_are_kept_in_clark_notation_rfc6120_4_8_4() -> None:
    el = one_stanza(
        b"<iq type='get' id='1'><query xmlns='jabber:iq:roster'><item jid='a@b'/></query>"
        b"<p:x xmlns:p='urn:example:p'><p:y/></p:x></iq>"
    )
    assert [c.tag for c in el] == ["{jabber:iq:roster}query", "{urn:example:p}x"]
    assert el[0][0].tag == "{jabber:iq:roster}item"
    assert el[1][0].tag == "{urn:example:p}y"


def test_content_namespace_redeclared_under_foreign_one_is_stripped_xep0297() -> None:
    el = one_stanza(
        b"<message><forwarded xmlns='urn:xmpp:forward:0'>"
        b"<message xmlns='jabber:client' from='a@b/c'><body>x</body></message>"
        b"</forwarded></message>"
    )
    inner = el[0][0]
    assert inner.tag == "message"
    assert inner[0].tag == "body"


def test_jabber_server_stream_strips_its_own_namespace_only_rfc6120_4_8_3() -> None:
    el = one_stanza(
        b"<message><forwarded xmlns='urn:xmpp:forward:0'>"
        b"<message xmlns='jabber:client'/></forwarded></message>",
        header=SERVER_HEADER,
    )
    assert el.tag == "message"
    assert el[0][0].tag == "{jabber:client}message"


def test_non_stanza_top_level_element_keeps_namespace_rfc6120_5_4() -> None:
    el = one_stanza(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    assert el.tag == "{%s}starttls" % ns.TLS


def test_stream_prefixed_element_is_in_stream_namespace_rfc6120_4_9() -> None:
    el = one_stanza(
        b"<stream:error><host-gone xmlns='%s'/></stream:error>" % ns.STREAMS_ERR.encode()
    )
    assert el.tag == "{%s}error" % ns.STREAM


def test_xml_lang_attribute_rfc6120_8_1_5() -> None:
    el = one_stanza(b"<message xml:lang='de'><body xml:lang='en'>x</body></message>")
    assert el.get(ns.XML_LANG) == "de"
    assert el[0].get(ns.XML_LANG) == "en"


def test_namespaced_attribute_in_clark_notation_xml_names() -> None:
    el = one_stanza(b"<message xmlns:e='urn:example:e' e:flag='1' plain='2'/>")
    assert el.attrib == {"{urn:example:e}flag": "1", "plain": "2"}


# -- whitespace, text and close (RFC 6120 §4.4, §4.6.1) -----------------------------------------


def test_whitespace_keepalives_between_stanzas_rfc6120_4_6_1() -> None:
    parser = StreamParser()
    parser.feed(HEADER)
    assert parser.feed(b" ") == []
    assert parser.feed(b"\n\t\r\n ") == []
    assert len(parser.feed(b"<presence/>  \n<presence/>\t")) == 2
    assert parser.feed(b" " * 10000) == []


def test_text_outside_stanzas_is_bad_format_rfc6120_4_9_3_1() -> None:
    assert error_of(HEADER, b"<presence/>hello<presence/>").condition == "bad-format"


@pytest.mark.parametrize("char", ["\u00a0", "\u2003", "\u3000", "\x85"])
def test_non_xml_whitespace_outside_stanzas_is_bad_format_xml_s_production(char: str) -> None:
    """Only space, tab, CR and LF are XML whitespace (XML 1.0 §2.3, production S)."""
    assert error_of(HEADER, char.encode()).condition == "bad-format"


def test_stream_close_event_rfc6120_4_4() -> None:
    parser = StreamParser()
    parser.feed(HEADER)
    events = parser.feed(b"<presence/></stream:str")
    assert len(events) == 1
    assert not parser.closed
    events = parser.feed(b"eam>")
    assert len(events) == 1
    assert isinstance(events[0], StreamClosed)
    assert parser.closed
    assert parser.feed(b"<presence/>") == []


def test_stanza_and_close_in_one_chunk_rfc6120_4_4() -> None:
    events = feed_chunks(HEADER + b"<message/></stream:stream>")
    assert [type(ev) for ev in events] == [StreamOpened, ET.Element, StreamClosed]


# -- restricted XML (RFC 6120 §11.1) ------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>
<message><body>&lol9;</body></message>"""


@pytest.mark.parametrize(
    "prolog",
    [
        b"<!DOCTYPE stream>",
        b"<!DOCTYPE stream SYSTEM 'http://example.com/x.dtd'>",
        b"<!DOCTYPE stream [<!ENTITY x 'y'>]>",
        b"<!DOCTYPE stream [<!ENTITY % p 'y'>]>",
        b"<!DOCTYPE stream [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>",
    ],
)
def test_doctype_and_entity_declarations_are_restricted_rfc6120_11_1(prolog: bytes) -> None:
    assert error_of(b"<?xml version='1.0'?>" + prolog + HEADER[21:]).condition == "restricted-xml"


@pytest.mark.parametrize("size", [1, 50, len(BILLION_LAUGHS)])
def test_billion_laughs_is_restricted_xml_rfc6120_11_1(size: int) -> None:
    chunks = [BILLION_LAUGHS[i : i + size] for i in range(0, len(BILLION_LAUGHS), size)]
    assert error_of(*chunks).condition == "restricted-xml"


@pytest.mark.parametrize(
    "chunks",
    [
        [b"<!-- before the header -->" + HEADER],
        [HEADER, b"<!-- between stanzas -->"],
        [HEADER, b"<message><!-- inside a stanza --></message>"],
        [HEADER, b"<message><bo", b"dy/><!-", b"- split -", b"-></message>"],
    ],
)
def test_comments_are_restricted_rfc6120_11_1(chunks: list[bytes]) -> None:
    assert error_of(*chunks).condition == "restricted-xml"


@pytest.mark.parametrize(
    "chunks",
    [
        [b"<?xml-stylesheet href='x'?>" + HEADER],
        [HEADER, b"<?php echo 1; ?>"],
        [HEADER, b"<message><?target data?></message>"],
    ],
)
def test_processing_instructions_are_restricted_rfc6120_11_1(chunks: list[bytes]) -> None:
    assert error_of(*chunks).condition == "restricted-xml"


def test_xml_declaration_is_not_a_processing_instruction_rfc6120_11_5() -> None:
    (ev,) = feed_chunks(b"<?xml version='1.0' encoding='UTF-8'?>" + HEADER[21:])
    assert isinstance(ev, StreamOpened)


# -- entities and character references (XML 1.0 §4.6, §4.1) ---------------------------------


def test_predefined_entities_are_decoded_xml_4_6() -> None:
    el = one_stanza(
        b"<message to='a&amp;b&lt;&gt;&apos;&quot;'>"
        b"<body>&amp;&lt;&gt;&apos;&quot;</body></message>"
    )
    assert el.get("to") == "a&b<>'\""
    assert el.findtext("body") == "&<>'\""


def test_character_references_are_decoded_xml_4_1() -> None:
    el = one_stanza(b"<message a='&#65;&#x263A;'><body>&#233;&#x1F600;&#x41;&#10;</body></message>")
    assert el.get("a") == "A\u263a"
    assert el.findtext("body") == "\u00e9\U0001f600A\n"


def test_undefined_entity_reference_is_not_well_formed_rfc6120_11_1() -> None:
    assert error_of(HEADER, b"<message><body>&foo;</body></message>").condition == (
        "not-well-formed"
    )
    assert error_of(HEADER, b"<message a='&nbsp;'/>").condition == "not-well-formed"


@pytest.mark.parametrize(
    "xml",
    [
        b"<message><body>x</message>",
        b"<message></body>",
        b"<message a='1' a='2'/>",
        b"<1message/>",
        b"<p:message/>",
        b"<message a=1/>",
        b"<message><body>&#0;</body></message>",
        b"<message><body>&#x1;</body></message>",
        b"<message><body>\x01</body></message>",
        b"<message><body>\xff\xfe</body></message>",
        b"<message><body>\xc3</body></message>",
        b"</stream:stream>trailing",
    ],
)
def test_malformed_xml_is_not_well_formed_rfc6120_4_9_3_13(xml: bytes) -> None:
    assert error_of(HEADER, xml).condition == "not-well-formed"


def test_cdata_section_is_accepted_as_text_xml_2_7() -> None:
    el = one_stanza(b"<message><body><![CDATA[<b>&x]]></body></message>")
    assert el.findtext("body") == "<b>&x"


# -- encoding (RFC 6120 §11.6) ------------------------------------------------------------------


@pytest.mark.parametrize("encoding", [b"ISO-8859-1", b"UTF-16", b"us-ascii", b"Windows-1252"])
def test_non_utf8_encoding_declaration_is_unsupported_rfc6120_11_6(encoding: bytes) -> None:
    data = b"<?xml version='1.0' encoding='" + encoding + b"'?>" + HEADER[21:]
    assert error_of(data).condition == "unsupported-encoding"


@pytest.mark.parametrize("encoding", [b"UTF-8", b"utf-8", b"utf8"])
def test_utf8_encoding_declaration_is_accepted_rfc6120_11_6(encoding: bytes) -> None:
    (ev,) = feed_chunks(b"<?xml version='1.0' encoding='" + encoding + b"'?>" + HEADER[21:])
    assert isinstance(ev, StreamOpened)


# -- limits (RFC 6120 §13.12: policy-violation) ------------------------------------------------

LIMIT = 4096


def test_stanza_over_limit_in_one_chunk_is_policy_violation_rfc6120_13_12() -> None:
    big = b"<message><body>" + b"x" * LIMIT + b"</body></message>"
    err = error_of(HEADER + big, max_stanza_size=LIMIT)
    assert err.condition == "policy-violation"


def test_stanza_over_limit_over_many_chunks_is_policy_violation_rfc6120_13_12() -> None:
    parser = StreamParser(max_stanza_size=LIMIT)
    parser.feed(HEADER + b"<message><body>")
    with pytest.raises(StreamError) as info:
        for _ in range(LIMIT):
            parser.feed(b"x" * 16)
    assert info.value.condition == "policy-violation"


def test_unfinished_start_tag_over_limit_is_policy_violation_rfc6120_13_12() -> None:
    """A start tag that never ends is buffered by expat: it must count against the limit."""
    parser = StreamParser(max_stanza_size=LIMIT)
    parser.feed(HEADER + b"<message to='")
    with pytest.raises(StreamError) as info:
        for _ in range(LIMIT):
            parser.feed(b"x" * 16)
    assert info.value.condition == "policy-violation"


def test_unfinished_stream_header_over_limit_is_policy_violation_rfc6120_13_12() -> None:
    parser = StreamParser(max_stanza_size=LIMIT)
    parser.feed(b"<stream:stream xmlns='jabber:client' to='")
    with pytest.raises(StreamError) as info:
        for _ in range(LIMIT):
            parser.feed(b"x" * 16)
    assert info.value.condition == "policy-violation"


def test_limit_is_per_stanza_not_per_stream_rfc6120_13_12() -> None:
    parser = StreamParser(max_stanza_size=LIMIT)
    parser.feed(HEADER)
    stanza = b"<message><body>" + b"x" * (LIMIT // 2) + b"</body></message>"
    total = 0
    for _ in range(20):
        total += len(parser.feed(b"  " + stanza))
        total += len(parser.feed(b" " * LIMIT))
    assert total == 20


def test_stanza_under_limit_split_in_chunks_is_accepted_rfc6120_13_12() -> None:
    stanza = b"<message><body>" + b"x" * (LIMIT - 100) + b"</body></message>"
    events = feed_chunks(HEADER + stanza, 10, max_stanza_size=LIMIT)
    assert len(stanzas(events)) == 1


def _nested(levels: int) -> bytes:
    """A stanza of `levels` element levels, the stanza itself being level 1."""
    return b"<message>" + b"<a>" * (levels - 1) + b"</a>" * (levels - 1) + b"</message>"


def test_nesting_up_to_max_depth_is_accepted_rfc6120_13_12() -> None:
    (el,) = stanzas(feed_chunks(HEADER + _nested(8), max_depth=8))
    depth = 0
    while len(el):
        el, depth = el[0], depth + 1
    assert depth == 7


def test_nesting_deeper_than_max_depth_is_policy_violation_rfc6120_13_12() -> None:
    assert error_of(HEADER, _nested(9), max_depth=8).condition == "policy-violation"
    assert error_of(HEADER, b"<a>" * 10000, max_depth=64).condition == "policy-violation"


def test_error_carries_the_elements_completed_before_it_rfc6120_4_9() -> None:
    """Stanzas whole before a fault in the same chunk are handed over with the error."""
    p = StreamParser()
    p.feed(HEADER)
    with pytest.raises(StreamError) as info:
        p.feed(b"<message id='a'/><presence/><!-- bad -->")
    assert info.value.condition == "restricted-xml"
    assert [el.tag for el in info.value.completed] == ["message", "presence"]  # type: ignore[attr-defined]
    assert p.feed(b"<message/>") == []  # the stream is over


def test_a_stream_header_inside_the_stream_is_refused_at_its_start_tag() -> None:
    import pytest

    from descant.errors import StreamError
    from descant.xml.parser import StreamParser

    p = StreamParser()
    p.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
    with pytest.raises(StreamError) as err:
        p.feed(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' from='x'>")
    assert err.value.condition == "invalid-xml"
