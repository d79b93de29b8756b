"""Serialization (descant.xml.serialize): escaping, namespaces per stream (RFC 6120 §4.8, §11)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import pytest

from descant.errors import StanzaError, StreamError
from descant.stanza import retarget, retarget_all
from descant.xml import ns
from descant.xml.parser import StreamParser
from descant.xml.serialize import SharedCopy, escape_attr, escape_text, serialize


def header(content_ns: str) -> bytes:
    return (
        f"<stream:stream xmlns='{content_ns}' xmlns:stream='{ns.STREAM}' version='1.0'>"
    ).encode()


def parse(xml: str, content_ns: str = ns.CLIENT) -> ET.Element:
    parser = StreamParser()
    parser.feed(header(content_ns))
    (el,) = parser.feed(xml.encode())
    assert isinstance(el, ET.Element)
    return el


def shape(el: ET.Element) -> tuple[Any, ...]:
    return (el.tag, dict(el.attrib), el.text, el.tail, [shape(c) for c in el])


def test_escape_text_xml_2_4() -> None:
    assert escape_text("a & b < c > d ' \"") == "a &amp; b &lt; c &gt; d ' \""
    assert escape_text("]]>") == "]]&gt;"
    assert escape_text("&amp;") == "&amp;amp;"
    assert escape_text("plain") == "plain"


def test_escape_attr_xml_3_3_3() -> None:
    assert escape_attr("&<>'\"") == "&amp;&lt;&gt;&apos;&quot;"
    # Literal tab, CR and LF would be normalized to spaces by the reader.
    assert escape_attr("a\tb\nc\rd") == "a&#9;b&#10;c&#13;d"


ROUND_TRIPS = [
    "<message/>",
    "<message to='romeo@example.net' type='chat' id='a&amp;b'><body>hi</body></message>",
    "<message><body>&amp;&lt;&gt;&apos;&quot; ]]&gt;</body></message>",
    "<message a='&amp;&lt;&gt;&apos;&quot;' b=\"'\"/>",
    "<message a='tab&#9;lf&#10;cr&#13;'/>",
    "<message><body>cr&#13;lf&#10;crlf&#13;&#10;</body></message>",
    "<message xml:lang='fr'><body xml:lang='en'>h\u00e9llo \u2603 \U0001f600</body></message>",
    "<message xml:space='preserve'><body>  x  </body></message>",
    "<iq type='get' id='1'><query xmlns='jabber:iq:roster' ver=''><item jid='a@b'/></query></iq>",
    "<message xmlns:e='urn:e' xmlns:f='urn:f' e:one='1' f:two='2'><e:x e:three='3'/></message>",
    "<message><body>text<b xmlns='urn:x'>bold</b>tail<i xmlns='urn:x'/>tail2</body></message>",
    "<presence><x xmlns='urn:a'><y xmlns='urn:b'><z/></y><z/></x></presence>",
    "<message><forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='s'/>"
    "<message xmlns='jabber:client' from='a@b/c'><body>x</body></message>"
    "</forwarded></message>",
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    "<mechanism>PLAIN</mechanism></mechanisms></stream:features>",
    "<message><body></body></message>",
]


@pytest.mark.parametrize("xml", ROUND_TRIPS)
@pytest.mark.parametrize("content_ns", [ns.CLIENT, ns.SERVER])
def test_parse_serialize_parse_round_trip_rfc6120_11(xml: str, content_ns: str) -> None:
    first = parse(xml, content_ns)
    again = parse(serialize(first, content_ns), content_ns)
    assert shape(again) == shape(first)


def test_serialize_is_stable_after_one_round_trip_rfc6120_11() -> None:
    for xml in ROUND_TRIPS:
        once = serialize(parse(xml))
        assert serialize(parse(once)) == once


def test_stanza_in_content_namespace_has_no_xmlns_rfc6120_4_8_3() -> None:
    el = parse("<message to='a@b'><body>hi</body></message>")
    assert serialize(el) == "<message to='a@b'><body>hi</body></message>"
    assert serialize(el, ns.SERVER) == "<message to='a@b'><body>hi</body></message>"


def test_text_and_attribute_escaping_on_the_wire_xml_2_4() -> None:
    el = ET.Element("message", {"to": "a'b\"c<d>&e"})
    ET.SubElement(el, "body").text = "1 < 2 & 3 > 2 'q' \"d\""
    out = serialize(el)
    assert out == (
        "<message to='a&apos;b&quot;c&lt;d&gt;&amp;e'>"
        "<body>1 &lt; 2 &amp; 3 &gt; 2 'q' \"d\"</body></message>"
    )
    assert shape(parse(out)) == shape(el)


def test_foreign_namespace_declared_once_per_subtree_rfc6120_4_8_4() -> None:
    el = parse("<iq type='result' id='1'><query xmlns='jabber:iq:roster'><item/></query></iq>")
    assert serialize(el) == (
        "<iq type='result' id='1'><query xmlns='jabber:iq:roster'><item/></query></iq>"
    )


def test_forwarded_message_is_requalified_with_content_namespace_xep0297() -> None:
    el = parse(
        "<message><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:client'><body>x</body></message></forwarded></message>"
    )
    assert serialize(el) == (
        "<message><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:client'><body>x</body></message></forwarded></message>"
    )


def test_serializing_for_jabber_server_stream_rfc6120_4_8_3() -> None:
    """A stanza received on a c2s stream, sent on to an s2s stream."""
    el = parse(
        "<message from='a@b'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:client'><body>x</body></message></forwarded></message>"
    )
    assert serialize(el, ns.SERVER) == (
        "<message from='a@b'><forwarded xmlns='urn:xmpp:forward:0'>"
        "<message xmlns='jabber:server'><body>x</body></message></forwarded></message>"
    )


def test_explicit_jabber_client_element_on_server_stream_keeps_its_namespace() -> None:
    el = parse(
        "<message><x xmlns='urn:x'><message xmlns='jabber:client'/></x></message>", ns.SERVER
    )
    assert el[0][0].tag == "{jabber:client}message"
    assert serialize(el, ns.SERVER) == (
        "<message><x xmlns='urn:x'><message xmlns='jabber:client'/></x></message>"
    )


def test_stream_namespace_elements_use_stream_prefix_rfc6120_4_8_5() -> None:
    err = StreamError("host-unknown", "no such host")
    assert serialize(err.to_element()) == (
        "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>no such host</text></stream:error>"
    )
    feats = ET.Element("{%s}features" % ns.STREAM)
    ET.SubElement(feats, "{%s}bind" % ns.BIND)
    assert serialize(feats, ns.SERVER) == (
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"
    )


def test_content_child_of_stream_element_is_qualified_rfc6120_4_8_5() -> None:
    feats = ET.Element("{%s}features" % ns.STREAM)
    ET.SubElement(feats, "register")
    assert (
        serialize(feats) == "<stream:features><register xmlns='jabber:client'/></stream:features>"
    )


def test_xml_lang_uses_xml_prefix_xml_names_3() -> None:
    el = ET.Element("message", {ns.XML_LANG: "de"})
    assert serialize(el) == "<message xml:lang='de'/>"


def test_other_xml_namespace_attributes_use_xml_prefix_xml_names_3() -> None:
    """Binding any prefix but xml to the XML namespace is forbidden; peers would reject it."""
    el = parse("<message xml:space='preserve' xml:lang='en'/>")
    out = serialize(el)
    assert out == "<message xml:space='preserve' xml:lang='en'/>"
    assert shape(parse(out)) == shape(el)


def test_foreign_attribute_namespaces_get_distinct_prefixes_xml_names_6() -> None:
    el = ET.Element("message", {"{urn:e}a": "1", "{urn:f}b": "2", "c": "3"})
    out = serialize(el)
    assert out == "<message xmlns:a0='urn:e' a0:a='1' xmlns:a1='urn:f' a1:b='2' c='3'/>"
    assert shape(parse(out)) == shape(el)


def test_tails_are_kept_and_top_level_tail_dropped() -> None:
    el = ET.Element("message")
    body = ET.SubElement(el, "body")
    body.text = "a"
    body.tail = " & tail"
    el.tail = "ignored"
    assert serialize(el) == "<message><body>a</body> &amp; tail</message>"


def test_empty_text_serializes_as_empty_element() -> None:
    el = ET.Element("message")
    ET.SubElement(el, "body").text = ""
    assert serialize(el) == "<message><body/></message>"


def test_stanza_error_element_on_the_wire_rfc6120_8_3_2() -> None:
    reply = ET.Element("iq", {"type": "error", "id": "1"})
    reply.append(StanzaError("item-not-found", "gone & away").to_element(by="example.com"))
    assert serialize(reply) == (
        "<iq type='error' id='1'><error type='cancel' by='example.com'>"
        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>gone &amp; away</text></error></iq>"
    )


def test_shared_copies_serialize_like_plain_copies_and_share_the_payload_text() -> None:
    msg = ET.fromstring(
        "<message from='r@muc/n' id='1' type='groupchat'>t<body>a &amp; b</body>tail"
        "<x xmlns='urn:x'><y/></x></message>"
    )
    copies = retarget_all(msg, ["a@x/1", "b@x/2"])
    assert all(type(c) is SharedCopy for c in copies)
    for content_ns in (ns.CLIENT, ns.SERVER):
        for c, to in zip(copies, ["a@x/1", "b@x/2"], strict=True):
            assert serialize(c, content_ns) == serialize(retarget(msg, to=to), content_ns)
    cache = copies[0].cache  # type: ignore[attr-defined]
    assert cache is copies[1].cache and set(cache) == {ns.CLIENT, ns.SERVER}  # type: ignore[attr-defined]
    empty = retarget_all(ET.Element("presence"), ["a@x"])[0]
    assert serialize(empty) == "<presence to='a@x'/>"
