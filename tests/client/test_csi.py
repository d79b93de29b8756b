"""Client State Indication (XEP-0352) against a real server: raw XML on sockets for the
exact order of what arrives, and slixmpp's own xep_0352 plugin."""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable

import slixmpp

from tests.badinput.raw import (
    CLIENT,
    close_quietly,
    elements,
    login,
    next_stanza,
    plain,
    quiet,
    secure_stream,
)
from tests.live import Client, LiveServer, RawClient, disconnect

NS = "urn:xmpp:csi:0"
CHATSTATES = "http://jabber.org/protocol/chatstates"
PRESENCE = "{%s}presence" % CLIENT
MESSAGE = "{%s}message" % CLIENT


async def wait_for(
    c: RawClient, match: Callable[[ET.Element], bool], timeout: float = 5
) -> ET.Element:
    """The next element that matches; the ones before it are skipped."""
    deadline = time.monotonic() + timeout
    while True:
        el = await next_stanza(c, max(0.1, deadline - time.monotonic()))
        if match(el):
            return el


async def ping(c: RawClient, ident: str) -> None:
    """A request the server answers only after what came before it on this stream."""
    await c.send(f"<iq type='get' id='{ident}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    await wait_for(c, lambda el: el.get("id") == ident)


def status_from(frm: str) -> Callable[[ET.Element], bool]:
    return lambda el: el.tag == PRESENCE and el.get("from") == frm and el.get("type") is None


async def contacts(server: LiveServer) -> tuple[RawClient, str, RawClient, str]:
    """Alice and Bob logged in raw and available; Alice is subscribed to Bob's presence."""
    alice, a_full = await login(server, "csia")
    bob, b_full = await login(server, "csib")
    await alice.send("<presence/>")
    await bob.send("<presence/>")
    b_bare = b_full.partition("/")[0]
    await alice.send(f"<presence type='subscribe' to='{b_bare}'/>")
    await wait_for(bob, lambda el: el.get("type") == "subscribe")
    await bob.send(f"<presence type='subscribed' to='{a_full.partition('/')[0]}'/>")
    await wait_for(alice, status_from(b_full))  # Bob's current presence (RFC 6121 §3.1.6)
    await quiet(alice, 0.2)
    return alice, a_full, bob, b_full


async def test_csi_offered_after_authentication_xep0352_4_1(server: LiveServer) -> None:
    jid, password = await server.make_user("csif")
    c = await secure_stream(server)
    try:
        await c.send(plain(jid, password))
        await c.read_until("<success")
        c.buffer = ""
        features = elements(await c.open_stream())
        assert features[-1].find(f"{{{NS}}}csi") is not None, ET.tostring(features[-1])
    finally:
        await close_quietly(c)


async def test_inactive_holds_presence_drops_chat_states_body_flushes_xep0352_3_2(
    server: LiveServer,
) -> None:
    alice, a_full, bob, b_full = await contacts(server)
    try:
        await alice.send(f"<inactive xmlns='{NS}'/>")
        await ping(alice, "after-inactive")  # answered after the nonza took effect (§5.1)
        for status in ("one", "two", "three"):
            await bob.send(f"<presence><status>{status}</status></presence>")
        await bob.send(
            f"<message to='{a_full}' type='chat'><composing xmlns='{CHATSTATES}'/></message>"
        )
        await ping(bob, "bob-sent")
        assert await quiet(alice) == [], "nothing but urgent stanzas while inactive"

        await bob.send(f"<message to='{a_full}' type='chat'><body>wake up</body></message>")
        first = await next_stanza(alice)
        assert first.tag == PRESENCE and first.get("from") == b_full, ET.tostring(first)
        assert first.findtext(f"{{{CLIENT}}}status") == "three"  # only the latest
        second = await next_stanza(alice)
        assert second.tag == MESSAGE, ET.tostring(second)
        assert second.findtext(f"{{{CLIENT}}}body") == "wake up"
        assert second.find(f"{{{CHATSTATES}}}composing") is None
        assert await quiet(alice, 0.3) == [], "the chat state was dropped"

        # Still inactive; <active/> flushes what is held before the next request (§5.1).
        await bob.send("<presence><status>four</status></presence>")
        await bob.send("<presence><show>away</show><status>five</status></presence>")
        await ping(bob, "bob-sent-2")
        assert await quiet(alice, 0.3) == []
        await alice.send(f"<active xmlns='{NS}'/>")
        await alice.send(
            "<iq type='get' id='after-active' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        )
        got = [await next_stanza(alice), await next_stanza(alice)]
        assert got[0].tag == PRESENCE and got[0].findtext(f"{{{CLIENT}}}status") == "five"
        assert got[1].get("id") == "after-active" and got[1].get("type") == "result"
        # Active: presence arrives at once again.
        await bob.send("<presence><status>six</status></presence>")
        p = await next_stanza(alice)
        assert p.tag == PRESENCE and p.findtext(f"{{{CLIENT}}}status") == "six"
    finally:
        await close_quietly(alice, bob)


async def test_slixmpp_xep_0352_plugin_holds_presence_until_active_xep0352_4_2(
    server: LiveServer,
) -> None:
    a_jid, a_pw = await server.make_user("csisa")
    b_jid, b_pw = await server.make_user("csisb")
    alice = Client(a_jid, a_pw)
    alice.register_plugin("xep_0352")
    alice.connect("127.0.0.1", server.port)
    await asyncio.wait_for(alice.started.wait(), 15)
    bob = Client(b_jid, b_pw)
    bob.connect("127.0.0.1", server.port)
    await asyncio.wait_for(bob.started.wait(), 15)
    try:
        csi = alice.plugin["xep_0352"]
        assert csi.enabled, "the <csi/> stream feature was offered"
        await alice.get_roster()
        await bob.get_roster()
        alice.send_presence()
        bob.send_presence()
        # slixmpp's default roster policy authorises the request.
        alice.send_presence_subscription(pto=b_jid)

        def from_bob(status: str) -> Callable[[slixmpp.Presence], bool]:
            return lambda p: p["from"].bare == b_jid and p["status"] == status

        bob.send_presence(pstatus="before")
        await alice.next_presence(from_bob("before"))
        await asyncio.sleep(0.2)
        while not alice.presences.empty():
            alice.presences.get_nowait()

        csi.send_inactive()
        await alice.plugin["xep_0199"].ping(jid="localhost")  # after the nonza (§5.1)
        bob.send_presence(pstatus="first")
        bob.send_presence(pstatus="second", pshow="away")
        await bob.plugin["xep_0199"].ping(jid="localhost")
        await asyncio.sleep(0.5)
        assert alice.presences.empty(), "presence is held while inactive"

        csi.send_active()
        p = await alice.next_presence(lambda p: p["from"].bare == b_jid)
        assert p["status"] == "second" and p["show"] == "away"
        await asyncio.sleep(0.3)
        assert alice.presences.empty(), "only the latest presence was kept"
    finally:
        await disconnect(alice, bob)
