"""Bad stanzas from a bound client (RFC 6120 §8): answered with the right stanza
error, never twice, never to an error or result, and the stream stays open."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.badinput.raw import PING, close_quietly, login, next_stanza, ping, stanza_error
from tests.live import LiveServer, RawClient


async def replies_until_pong(c: RawClient, ident: str = "pong") -> list[ET.Element]:
    """Everything the server sends before the answer to a fresh ping."""
    await c.send(f"<iq type='get' id='{ident}' to='localhost'><ping xmlns='{PING}'/></iq>")
    seen: list[ET.Element] = []
    while True:
        el = await next_stanza(c)
        if el.get("id") == ident and el.tag == "{jabber:client}iq":
            assert el.get("type") == "result"
            return seen
        seen.append(el)


@pytest.mark.parametrize(
    "to", ["@localhost", "a@b@localhost", "foo@", "localhost/", "a b@localhost"]
)
@pytest.mark.parametrize("kind", ["message", "iq", "presence"])
async def test_malformed_to(server: LiveServer, to: str, kind: str) -> None:
    """§8.3.3.8: a `to` that is not a JID → <jid-malformed/>; the stream stays open."""
    c, jid = await login(server, "jm")
    extra = " type='get'" if kind == "iq" else ""
    payload = f"<ping xmlns='{PING}'/>" if kind == "iq" else ""
    await c.send(f"<{kind} to='{to}' id='bad'{extra}>{payload}</{kind}>")
    el = await next_stanza(c)
    assert el.tag == "{jabber:client}%s" % kind and el.get("id") == "bad"
    assert stanza_error(el) == "jid-malformed"
    assert el.get("to") == jid
    assert await replies_until_pong(c) == []
    await close_quietly(c)


async def test_malformed_to_on_an_error_is_not_answered(server: LiveServer) -> None:
    """§8.3.1: an error stanza is never answered with another error."""
    c, _ = await login(server, "jmerr")
    await c.send("<message to='@localhost' type='error' id='e'/>")
    assert await replies_until_pong(c) == []
    await close_quietly(c)


@pytest.mark.parametrize(
    "iq",
    [
        "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='get' id=''><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='bogus' id='q'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq id='q'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<iq type='get' id='q' to='localhost'/>",
        "<iq type='set' id='q' to='localhost'><a xmlns='urn:x'/><b xmlns='urn:x'/></iq>",
    ],
    ids=["no-id", "empty-id", "bad-type", "no-type", "get-no-payload", "set-two-payloads"],
)
async def test_invalid_iq(server: LiveServer, iq: str) -> None:
    """§8.2.3: an iq needs an id, a known type, and get/set exactly one child → <bad-request/>."""
    c, _ = await login(server, "iq")
    await c.send(iq)
    el = await next_stanza(c)
    assert el.tag == "{jabber:client}iq" and stanza_error(el) == "bad-request"
    if "id='q'" in iq:
        assert el.get("id") == "q"
    assert await replies_until_pong(c) == []
    await close_quietly(c)


@pytest.mark.parametrize("iq", ["<iq type='error'/>", "<iq type='result'/>"])
async def test_invalid_iq_error_or_result_is_not_answered(server: LiveServer, iq: str) -> None:
    c, _ = await login(server, "iqerr")
    await c.send(iq)
    assert await replies_until_pong(c) == []
    await close_quietly(c)


async def test_spoofed_from_is_replaced(server: LiveServer) -> None:
    """§8.1.2.1: the server stamps the sender's full JID over whatever `from` it gave."""
    alice, alice_jid = await login(server, "alice")
    bob, bob_jid = await login(server, "bob")
    for i, spoof in enumerate(["mallory@localhost/x", bob_jid, "localhost", "@@bad"]):
        body = "<body>hi</body>"
        await alice.send(
            f"<message from='{spoof}' to='{bob_jid}' id='s{i}' type='chat'>{body}</message>"
        )
        el = await next_stanza(bob)
        assert el.get("id") == f"s{i}"
        assert el.get("from") == alice_jid
        assert el.get("type") == "chat"
    await close_quietly(alice, bob)


async def test_unknown_iq_to_server_answered_once(server: LiveServer) -> None:
    """§8.4: an iq get/set nobody handles → exactly one <service-unavailable/>."""
    c, jid = await login(server, "unk")
    await c.send("<iq type='get' id='u1' to='localhost'><q xmlns='urn:example:unknown'/></iq>")
    await c.send("<iq type='set' id='u2'><q xmlns='urn:example:unknown'/></iq>")
    seen = await replies_until_pong(c)
    assert [el.get("id") for el in seen] == ["u1", "u2"]
    assert [stanza_error(el) for el in seen] == ["service-unavailable"] * 2
    assert seen[0].get("from") == "localhost" and seen[0].get("to") == jid
    assert seen[0].find("{urn:example:unknown}q") is not None
    await close_quietly(c)


async def test_result_and_error_to_server_not_answered(server: LiveServer) -> None:
    """§8.2.3: iq of type result/error are never answered."""
    c, _ = await login(server, "res")
    await c.send("<iq type='result' id='r1' to='localhost'/>")
    await c.send("<iq type='result' id='r2'/>")
    await c.send(
        "<iq type='error' id='r3' to='localhost'><error type='cancel'>"
        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )
    assert await replies_until_pong(c) == []
    await close_quietly(c)


async def test_message_to_nonexistent_user(server: LiveServer) -> None:
    """RFC 6121 §8.5.2.2.1 / RFC 6120 §8.4: no such account → <service-unavailable/>."""
    c, jid = await login(server, "lonely")
    await c.send(
        "<message to='nobody-here-at-all@localhost' id='m1' type='chat'><body>x</body></message>"
    )
    el = await next_stanza(c)
    assert el.get("id") == "m1" and stanza_error(el) == "service-unavailable"
    assert el.get("from") == "nobody-here-at-all@localhost" and el.get("to") == jid
    assert await replies_until_pong(c) == []
    await close_quietly(c)


async def test_iq_to_offline_full_jid(server: LiveServer) -> None:
    c, jid = await login(server, "offl")
    other = jid.partition("/")[0] + "/not-online"
    await c.send(f"<iq type='get' id='o1' to='{other}'><ping xmlns='{PING}'/></iq>")
    el = await next_stanza(c)
    assert el.get("id") == "o1" and stanza_error(el) == "service-unavailable"
    await ping(c)
    await close_quietly(c)
