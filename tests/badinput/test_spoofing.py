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
