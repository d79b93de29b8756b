"""Property tests of the XML parser and serializer against lxml, and of JID preparation.

On generated documents the restricted parser must agree with lxml (libxml2): the
same elements, attributes and text, or both refuse; our serializer's output must
read back as the tree it was made from; on arbitrary bytes the parser may only
produce events or a stream error. JID preparation is idempotent and round-trips.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import lxml.etree
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from descant.errors import StreamError
from descant.jid import InvalidJID, parse
from descant.xml.parser import StreamParser, parse_element
from descant.xml.serialize import serialize

# XML 1.0 characters (§2.2), without the surrogates Python strings cannot encode.
XML_CHAR = st.characters(
    blacklist_categories=("Cs",),
    blacklist_characters="".join(chr(c) for c in range(0x20) if c not in (9, 10, 13))
    + "\ufffe\uffff",
)
TEXT = st.text(XML_CHAR, max_size=20)
NAME = st.from_regex(r"[a-z][a-z0-9_.-]{0,8}", fullmatch=True)
NAMESPACES = st.sampled_from(["urn:a", "urn:b:c", "http://example.org/ns", "jabber:x:data"])

# Few examples in `make test` (it must stay fast); HYPOTHESIS_PROFILE=long for more.
settings.register_profile(
    "descant", max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "descant"))


@st.composite
def trees(draw: st.DrawFn) -> ET.Element:
    return _element(draw, 0)


def _element(draw: st.DrawFn, depth: int) -> ET.Element:
    """One element drawn with its subtree (all draws in one composite: replayable)."""
    ns = draw(NAMESPACES)
    el = ET.Element(f"{{{ns}}}{draw(NAME)}", draw(st.dictionaries(NAME, TEXT, max_size=3)))
    el.text = draw(TEXT) or None
    if depth < 3:
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            child = _element(draw, depth + 1)
            child.tail = draw(TEXT) or None
            el.append(child)
    return el


def shape(el: ET.Element | lxml.etree._Element) -> tuple[object, ...]:
    """What both parsers must agree on: names, attributes, text, tails, children."""
    return (
        el.tag,
        dict(el.attrib),
        el.text or "",
        el.tail or "",
        [shape(c) for c in el],
    )


def ours(text: str) -> ET.Element:
    return parse_element(text, content_ns="jabber:client")


@given(trees())
def test_serialized_trees_read_back_the_same_by_us_and_by_lxml(tree: ET.Element) -> None:
    text = serialize(tree)
    expected = shape(tree)
    assert shape(ours(text)) == expected
    assert shape(lxml.etree.fromstring(text.encode())) == expected


@given(
    trees(),
    st.integers(min_value=0, max_value=400),
    st.sampled_from(["<", ">", "&", "'", '"', "/", "=", " ", "x"]),
)
def test_a_damaged_document_is_refused_by_both_or_read_alike(
    tree: ET.Element, at: int, junk: str
) -> None:
    text = serialize(tree)
    at = min(at, len(text))
    damaged = text[:at] + junk + text[at:]
    try:
        theirs = lxml.etree.fromstring(damaged.encode())
    except lxml.etree.XMLSyntaxError as exc:
        # libxml2 also refuses namespace names that are not URIs; XML Namespaces does
        # not ask a processor to check, and neither does RFC 6120: not a difference.
        assume("URI" not in str(exc))
        theirs = None
    try:
        mine = _parse_whole(damaged)
    except (StreamError, ValueError):
        mine = None
    if theirs is None or mine is None:
        assert theirs is None and mine is None, damaged
    else:
        assert shape(mine) == shape(theirs), damaged


def _parse_whole(text: str) -> ET.Element:
    """Our parser on a document that must be exactly one element."""
    parser = StreamParser(max_stanza_size=1 << 20)
    parser.feed(b"<s xmlns='jabber:client'>")
    got = [ev for ev in parser.feed(text.encode()) if isinstance(ev, ET.Element)]
    # Whatever follows the element must still parse as stream content (whitespace
    # and text between stanzas would be refused by lxml as a document).
    parser.feed(b"</s>")
    if len(got) != 1 or not text.rstrip().endswith(">"):
        raise ValueError("not exactly one element")
    return got[0]


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_events_or_a_stream_error(data: bytes) -> None:
    parser = StreamParser(max_stanza_size=4096)
    try:
        parser.feed(
            b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
        )
        parser.feed(data)
    except StreamError:
        pass


LOCAL = st.text(XML_CHAR, min_size=1, max_size=12)


@given(LOCAL, st.sampled_from(["example.org", "EXAMPLE.org", "xn--bcher-kva.example"]), LOCAL)
def test_jid_preparation_is_idempotent_and_round_trips(local: str, domain: str, res: str) -> None:
    try:
        jid = parse(f"{local}@{domain}/{res}")
    except InvalidJID:
        return
    again = parse(str(jid))
    assert again == jid
    assert str(again) == str(jid)
    assert parse(str(jid.bare)) == jid.bare


@pytest.mark.parametrize(
    "text", ["<a xmlns='urn:a'><!-- c --></a>", "<a xmlns='urn:a'><?pi x?></a>"]
)
def test_what_lxml_accepts_and_we_refuse_by_design(text: str) -> None:
    """Comments and processing instructions are restricted XML (RFC 6120 §11.1)."""
    lxml.etree.fromstring(text.encode())
    with pytest.raises((StreamError, ValueError)):
        _parse_whole(text)
