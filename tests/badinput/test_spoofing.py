"""No client can send with a ``from`` it does not own (RFC 6120 §8.1.2.1): whatever
the attribute's namespace, on a second header, or with characters XML forbids."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.badinput.raw import (
    close_quietly,
    expect_stream_error,
    login,
    messages,
    next_stanza,
    stream_errors,
)
from tests.live import LiveServer, RawClient

CLIENT = "jabber:client"


async def _pair(server: LiveServer) -> tuple[RawClient, str, RawClient, str]:
    a, a_jid = await login(server, "spoofer")
    b, b_jid = await login(server, "victim")
    return a, a_jid, b, b_jid


@pytest.mark.parametrize(
    "attrs",
    [
        "from='boss@localhost/desk'",
        "xmlns:x='jabber:client' x:from='boss@localhost/desk'",
        "xmlns:x='http://etherx.jabber.org/streams' x:from='boss@localhost/desk'",
        "xmlns:x='urn:evil' x:from='boss@localhost/desk'",
    ],
)
async def test_forged_from_never_reaches_the_recipient(server: LiveServer, attrs: str) -> None:
    a, a_jid, b, b_jid = await _pair(server)
    try:
        await a.send(f"<message to='{b_jid}' {attrs} type='chat'><body>hi</body></message>")
        (got,) = await messages(b, 1)
        assert got.get("from") == a_jid
        text = ET.tostring(got).decode()
        assert "boss@localhost" not in text, text
    finally:
        await close_quietly(a, b)


async def test_a_second_stream_header_inside_the_stream_ends_it(server: LiveServer) -> None:
    a, a_jid, b, b_jid = await _pair(server)
    try:
        await a.send(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
            "from='boss@localhost' to='localhost' version='1.0'>"
            f"<message to='{b_jid}' type='chat'><body>as boss</body></message>"
        )
        errors = stream_errors(await a.read_to_eof(5))
        assert len(errors) == 1, errors  # the stream ends with an error, whichever
        assert not [
            el
            for el in await _quiet_messages(b)
            if (el.findtext(f"{{{CLIENT}}}body") or "") == "as boss" and el.get("from") != a_jid
        ]
    finally:
        await close_quietly(a, b)


async def _quiet_messages(c: RawClient) -> list[ET.Element]:
    out = []
    try:
        while True:
            out.append(await next_stanza(c, timeout=0.5))
    except (AssertionError, TimeoutError):
        return out


@pytest.mark.parametrize("junk", ["\x00", "\x01", "\ufffe"])
async def test_characters_xml_forbids_end_the_stream(server: LiveServer, junk: str) -> None:
    a, _, b, b_jid = await _pair(server)
    try:
        await a.send(f"<message to='{b_jid}' from='boss@localhost{junk}'><body>x</body></message>")
        await expect_stream_error(a, "not-well-formed")
        assert await _quiet_messages(b) == []
    finally:
        await close_quietly(a, b)


@pytest.mark.parametrize(
    "stanza",
    [
        # The xml prefix may not be bound to another namespace (Namespaces in XML §3).
        "<message to='{to}' xmlns:xml='urn:evil' xml:lang='en'><body>x</body></message>",
        # Nor may another prefix take the xml namespace.
        "<message to='{to}' xmlns:l='http://www.w3.org/XML/1998/namespace'><body>x</body></message>",
        # A second XML declaration, e.g. to switch the encoding mid-stream.
        "<?xml version='1.0' encoding='ISO-8859-1'?><message to='{to}'><body>x</body></message>",
    ],
)
async def test_namespace_and_declaration_tricks_end_the_stream(
    server: LiveServer, stanza: str
) -> None:
    a, _, b, b_jid = await _pair(server)
    try:
        await a.send(stanza.format(to=b_jid))
        errors = stream_errors(await a.read_to_eof(5))
        assert errors and errors[0] in ("not-well-formed", "invalid-xml", "invalid-namespace")
        assert await _quiet_messages(b) == []
    finally:
        await close_quietly(a, b)


@pytest.mark.parametrize(
    "raw",
    [
        b"\xc0\xbc",  # an overlong '<'
        b"\xff\xfe",  # a UTF-16 byte-order mark
        b"\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8
        b"\xe2\x80",  # a truncated sequence
    ],
)
async def test_bytes_that_are_not_utf8_end_the_stream(server: LiveServer, raw: bytes) -> None:
    """RFC 6120 §11.6: streams are UTF-8; an invalid sequence inside a stanza is not
    read as some other encoding, and nothing of that stanza is delivered."""
    a, _, b, b_jid = await _pair(server)
    try:
        await a.send(
            f"<message to='{b_jid}' type='chat'><body>".encode() + raw + b"</body></message>"
        )
        await expect_stream_error(a, "not-well-formed")
        assert await _quiet_messages(b) == []
    finally:
        await close_quietly(a, b)


async def test_xml_lang_is_kept_and_no_other_lang_attribute_passes(server: LiveServer) -> None:
    """xml:lang is the one qualified attribute a stanza may carry (RFC 6120 §8.1.5);
    a look-alike in another namespace is dropped with the other qualified ones."""
    a, a_jid, b, b_jid = await _pair(server)
    try:
        await a.send(
            f"<message to='{b_jid}' type='chat' xml:lang='de' xmlns:e='urn:evil' e:lang='en'"
            " e:to='boss@localhost'><body>hallo</body></message>"
        )
        (got,) = await messages(b, 1)
        assert got.get("from") == a_jid
        assert got.get("{http://www.w3.org/XML/1998/namespace}lang") == "de"
        assert [k for k in got.attrib if k.startswith("{urn:evil}")] == []
    finally:
        await close_quietly(a, b)


async def test_nested_from_does_not_change_who_sent(server: LiveServer) -> None:
    """A ``from`` inside the payload (a forwarded copy, a delay) is content: the
    stanza's own ``from`` is still the sender's, stamped by the server."""
    a, a_jid, b, b_jid = await _pair(server)
    try:
        await a.send(
            f"<message to='{b_jid}' from='{b_jid}' type='chat'><body>x</body>"
            "<forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client' from='boss@localhost/desk' to='{b_jid}'/>"
            "</forwarded></message>"
        )
        (got,) = await messages(b, 1)
        assert got.get("from") == a_jid
    finally:
        await close_quietly(a, b)
