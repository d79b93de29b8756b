"""Inputs the fuzz targets (tests/fuzz) found crashing, kept as regression tests.

Each test names the target that found the input; the input itself is also in that
target's seed corpus (tests/fuzz/corpus/<target>/crash-*), replayed by
tests/fuzz/test_fuzz.py.
"""

from __future__ import annotations

import pyexpat

from descant.stream.protocol import StreamFault, XMLStream
from descant.xml.parser import parse_element
from descant.xml.serialize import serialize
from tests.fuzz import c2s, targets

# A namespace name is any string (Namespaces in XML §2.2), "}" and markup included
# once the attribute is unescaped; a local name never holds "}".
SPOOF = (
    "a}z/></message><message\tfrom='admin@localhost'\tto='alice@localhost/fuzz'>"
    "<body>spoofed</body></message><message><y"
)
SPOOF_ATTR = (
    SPOOF.replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;").replace("\t", "&#9;")
)


def _read_back(text: str) -> list[tuple[str, dict[str, str]]]:
    """The top-level elements of serialized text, read by expat without namespace
    processing (ElementTree refuses namespace names holding "}")."""
    found: list[tuple[str, dict[str, str]]] = []
    depth = 0

    def start(name: str, attrs: dict[str, str]) -> None:
        nonlocal depth
        depth += 1
        if depth == 2:
            found.append((name, attrs))

    def end(name: str) -> None:
        nonlocal depth
        depth -= 1

    p = pyexpat.ParserCreate()
    p.StartElementHandler, p.EndElementHandler = start, end
    p.Parse(f"<r>{text}</r>", True)
    return found


def test_parser_target_namespace_with_a_brace_round_trips_rfc6120_11() -> None:
    """Found by the ``parser`` target: ``{urn:…xmpp-f}aming}open`` was written as
    ``<aming}open xmlns='urn:…xmpp-f'…>``, XML that is not well-formed."""
    el = parse_element("<open xmlns='urn:x-f}aming' to='localhost'/>")
    assert el.tag == "{urn:x-f}aming}open"
    text = serialize(el)
    assert text == "<open xmlns='urn:x-f}aming' to='localhost'/>"
    assert serialize(parse_element(text)) == text


def test_a_namespace_cannot_inject_a_stanza_rfc6120_8_1_2_1() -> None:
    """The same flaw let a client write markup into the stream of whoever received
    its stanza: here a whole message with a forged 'from'."""
    stanza = parse_element(f"<message to='bob@localhost'><x xmlns='{SPOOF_ATTR}'>t</x></message>")
    text = serialize(stanza)
    assert _read_back(text) == [("message", {"to": "bob@localhost"})]
    assert serialize(parse_element(text)) == text
    assert parse_element(text)[0].tag == "{%s}x" % SPOOF


def test_an_attribute_namespace_with_a_brace_round_trips() -> None:
    el = parse_element(f"<message xmlns:p='{SPOOF_ATTR}' p:a='v'/>")
    text = serialize(el)
    assert _read_back(text) == [("message", {"xmlns:a0": SPOOF, "a0:a": "v"})]
    assert parse_element(text).attrib == {"{%s}a" % SPOOF: "v"}


async def test_c2s_no_spoofed_stanza_reaches_a_client_rfc6120_8_1_2_1() -> None:
    """End to end over a client stream: the message comes back to its sender once,
    well-formed (tests/fuzz/c2s.py checks that), and nothing else arrives."""
    message = f"<message to='alice@localhost/fuzz' id='s1'><x xmlns='{SPOOF_ATTR}'/></message>"
    out = await c2s.drive([message.encode()], require_tls=False, prelude=targets.SESSION_PRELUDE)
    received = [el for el in c2s.elements(out) if el.tag == "message"]
    assert [m.get("id") for m in received] == ["s1"]
    assert "spoofed" not in "".join(received[0].itertext())


def test_parser_target_what_precedes_an_oversized_stanza_is_handed_out_rfc6120_13_12() -> None:
    """Found by the ``parser`` target: when one chunk completed the header (or a
    stanza) and then went past the size limit, the completed events were lost with
    the fault, so the outcome depended on how the bytes were split in transit."""
    header = (
        b"<stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    )
    data = header + b"<message id='1'><body>hi</body></message><message><body>" + b"x" * 300

    def events(pieces: list[bytes]) -> list[str]:
        stream = XMLStream("jabber:client", 256)
        out = []
        for piece in pieces:
            stream.receive_data(piece)
            while (ev := stream.next_event()) is not None:
                out.append(ev.error.condition if isinstance(ev, StreamFault) else type(ev).__name__)
        return out

    expected = ["StreamOpened", "Element", "policy-violation"]
    assert events([data]) == expected
    assert events([data[:100], data[100:]]) == expected
