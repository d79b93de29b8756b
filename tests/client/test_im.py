"""End-to-end instant messaging through slixmpp (RFC 6121, XEP-0160, XEP-0030/0199/0092)."""

from __future__ import annotations

import asyncio
import datetime

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from tests.live import Client, LiveServer, connect_slixmpp, disconnect


async def _until(cond: object, timeout: float = 5) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.05)


def _sub(client: Client, jid: str) -> str:
    roster = client.client_roster
    return roster[jid]["subscription"] if jid in roster else "absent"


async def _contacts(server: LiveServer) -> tuple[Client, Client, str, str]:
    """Alice and Bob online with a mutual ('both') subscription made through their clients."""
    a_jid, a_pw = await server.make_user("alice")
    b_jid, b_pw = await server.make_user("bob")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    bob = await connect_slixmpp(server, b_jid, b_pw)
    # slixmpp's default roster policy authorises and subscribes back.
    alice.send_presence_subscription(pto=b_jid)
    await _until(lambda: _sub(alice, b_jid) == "both" and _sub(bob, a_jid) == "both")
    return alice, bob, a_jid, b_jid


async def test_mutual_subscription_presence_online_offline(server: LiveServer) -> None:
    """RFC 6121 §3.1 (handshake both ways) and §4 (broadcast, unavailable on logout)."""
    alice, bob, _, b_jid = await _contacts(server)
    try:
        bob.send_presence(pshow="away", pstatus="lunch")
        p = await alice.next_presence(lambda p: p["from"].bare == b_jid and p["show"] == "away")
        assert p["status"] == "lunch"
        assert p["from"].full == bob.boundjid.full
    finally:
        await disconnect(bob)
    try:
        p = await alice.next_presence(
            lambda p: p["from"].bare == b_jid and p["type"] == "unavailable"
        )
        assert p["from"].full == bob.boundjid.full
    finally:
        await disconnect(alice)


async def test_presence_probe_on_login(server: LiveServer) -> None:
    """RFC 6121 §4.2: a new session learns the presence of its subscribed contacts."""
    alice, bob, a_jid, b_jid = await _contacts(server)
    await disconnect(alice)
    alice = await connect_slixmpp(server, a_jid, alice.password)
    try:
        p = await alice.next_presence(lambda p: p["from"].bare == b_jid and p["type"] != "error")
        assert p["type"] in ("available", "")
    finally:
        await disconnect(alice, bob)


async def test_pending_subscription_redelivered_at_login(server: LiveServer) -> None:
    """RFC 6121 §3.1.3: a request to an offline user waits and is delivered at login."""
    a_jid, a_pw = await server.make_user("alice")
    b_jid, b_pw = await server.make_user("bob")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    try:
        alice.send_presence_subscription(pto=b_jid)
        await _until(lambda: alice.client_roster[b_jid]["pending_out"])
        bob = Client(b_jid, b_pw)
        bob.roster.auto_authorize = None  # type: ignore[attr-defined]
        got: asyncio.Queue[slixmpp.Presence] = asyncio.Queue()
        bob.add_event_handler("presence_subscribe", got.put_nowait)
        bob.add_event_handler("session_start", lambda _: bob.send_presence())
        bob.connect("127.0.0.1", server.port)
        p = await asyncio.wait_for(got.get(), 10)
        assert p["from"].bare == a_jid
        assert not p["from"].resource  # stamped with the bare JID (§3.1.2)
        await disconnect(bob)
    finally:
        await disconnect(alice)


async def test_offline_message_delivered_with_delay(server: LiveServer) -> None:
    """XEP-0160 with XEP-0203 stamps; headlines are not stored."""
    a_jid, a_pw = await server.make_user("alice")
    b_jid, b_pw = await server.make_user("bob")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    try:
        alice.send_message(mto=b_jid, mbody="while you were out", mtype="chat")
        alice.send_message(mto=b_jid, mbody="news flash", mtype="headline")
        await asyncio.sleep(0.3)
    finally:
        await disconnect(alice)
    bob = await connect_slixmpp(server, b_jid, b_pw)
    try:
        msg = await bob.next_message()
        assert msg["body"] == "while you were out"
        stamp = msg["delay"]["stamp"]
        assert isinstance(stamp, datetime.datetime)
        age = datetime.datetime.now(datetime.UTC) - stamp
        assert datetime.timedelta(0) <= age < datetime.timedelta(minutes=1)
        with pytest.raises(asyncio.TimeoutError):
            await bob.next_message(timeout=0.5)
    finally:
        await disconnect(bob)


async def test_bare_jid_routing_by_priority(server: LiveServer) -> None:
    """RFC 6121 §8.5.2.1.1: highest non-negative priority; negative never gets bare-JID messages."""
    a_jid, a_pw = await server.make_user("alice")
    b_jid, b_pw = await server.make_user("bob")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    high = await connect_slixmpp(server, b_jid + "/high", b_pw, presence=False)
    low = await connect_slixmpp(server, b_jid + "/low", b_pw, presence=False)
    neg = await connect_slixmpp(server, b_jid + "/neg", b_pw, presence=False)
    try:
        high.send_presence(ppriority=5)
        low.send_presence(ppriority=1)
        neg.send_presence(ppriority=-1)
        await asyncio.sleep(0.3)
        alice.send_message(mto=b_jid, mbody="to the bare JID", mtype="chat")
        assert (await high.next_message())["body"] == "to the bare JID"
        for other in (low, neg):
            with pytest.raises(asyncio.TimeoutError):
                await other.next_message(timeout=0.4)
        alice.send_message(mto=b_jid + "/neg", mbody="direct", mtype="chat")
        assert (await neg.next_message())["body"] == "direct"
        # A full JID that is offline falls back to the bare JID for chat (§8.5.3.2.1).
        alice.send_message(mto=b_jid + "/gone", mbody="fallback", mtype="chat")
        assert (await high.next_message())["body"] == "fallback"
    finally:
        await disconnect(alice, high, low, neg)


async def test_message_to_unknown_user_bounces(server: LiveServer) -> None:
    """RFC 6121 §8.5.2.2.1 / §8.5.3.2.1: no such user → <service-unavailable/>."""
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    try:
        alice.send_message(mto="nobody-here@localhost", mbody="hello?", mtype="chat")
        msg = await alice.next_message()
        assert msg["type"] == "error"
        assert msg["error"]["condition"] == "service-unavailable"
        assert msg["from"] == "nobody-here@localhost"
    finally:
        await disconnect(alice)


async def _full_roster(client: Client) -> slixmpp.Iq:
    """A roster get without ``ver``, so the server sends every item."""
    iq = client.Iq()
    iq["type"] = "get"
    iq.enable("roster")
    result: slixmpp.Iq = await iq.send(timeout=5)
    return result


async def test_roster_items_groups_and_removal(server: LiveServer) -> None:
    """RFC 6121 §2: set with name and groups, get, remove; pushes; XEP-0237 versions."""
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    try:
        await alice.update_roster("carol@example.org", name="Carol", groups=["Friends", "Work"])
        # The push reached the client's roster (§2.1.6).
        await _until(lambda: "carol@example.org" in alice.client_roster)
        assert alice.client_roster["carol@example.org"]["name"] == "Carol"

        roster = await _full_roster(alice)
        item = roster["roster"]["items"]["carol@example.org"]
        assert item["name"] == "Carol"
        assert sorted(item["groups"]) == ["Friends", "Work"]
        assert item["subscription"] == "none"
        ver1 = roster["roster"]["ver"]
        assert ver1

        # Same version: an empty result (XEP-0237 §4 / RFC 6121 §2.6.3).
        iq = alice.Iq()
        iq["type"] = "get"
        iq["roster"]["ver"] = ver1
        same = await iq.send(timeout=5)
        assert not same["roster"]["items"]

        await alice.del_roster_item("carol@example.org")
        roster = await _full_roster(alice)
        assert "carol@example.org" not in roster["roster"]["items"]
        assert roster["roster"]["ver"] != ver1
    finally:
        await disconnect(alice)


async def test_roster_of_another_user_is_forbidden(server: LiveServer) -> None:
    """RFC 6121 §2.1.5: only the user's own roster may be read."""
    a_jid, a_pw = await server.make_user("alice")
    b_jid, _ = await server.make_user("bob")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    try:
        iq = alice.Iq()
        iq["type"] = "get"
        iq["to"] = b_jid
        iq.enable("roster")
        with pytest.raises(IqError) as err:
            await iq.send(timeout=5)
        assert err.value.iq["error"]["condition"] == "forbidden"
    finally:
        await disconnect(alice)


async def test_disco_ping_version(server: LiveServer) -> None:
    """XEP-0030 identity and features, XEP-0199 ping, XEP-0092 version of the server."""
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    try:
        info = await alice.plugin["xep_0030"].get_info(jid="localhost")
        identities = info["disco_info"]["identities"]
        assert ("server", "im", None, "Descant") in identities
        features = info["disco_info"]["features"]
        for feature in ("urn:xmpp:ping", "jabber:iq:version", "msgoffline"):
            assert feature in features
        rtt = await alice.plugin["xep_0199"].ping(jid="localhost", timeout=5)
        assert rtt >= 0
        version = await alice.plugin["xep_0092"].get_version("localhost")
        assert version["software_version"]["name"] == "Descant"
    finally:
        await disconnect(alice)


async def test_unknown_iq_gets_service_unavailable(server: LiveServer) -> None:
    """RFC 6120 §8.4: an iq nobody handles is answered with <service-unavailable/>."""
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    try:
        iq = alice.Iq()
        iq["type"] = "get"
        iq["to"] = "localhost"
        iq.append(slixmpp.xmlstream.ET.Element("{urn:example:nothing}query"))
        with pytest.raises(IqError) as err:
            await iq.send(timeout=5)
        assert err.value.iq["error"]["condition"] == "service-unavailable"
        assert err.value.iq["error"]["type"] == "cancel"
    finally:
        await disconnect(alice)


async def test_connection_loss_broadcasts_unavailable(server: LiveServer) -> None:
    """RFC 6121 §4.5.2 / RFC 6120 §4.4: a dropped TCP connection counts as logout."""
    alice, bob, _, b_jid = await _contacts(server)
    b_pw = bob.password
    try:
        bob_full = bob.boundjid.full
        bob.abort()  # no </stream:stream>, the socket just goes away
        p = await alice.next_presence(
            lambda p: p["from"].full == bob_full and p["type"] == "unavailable"
        )
        assert p["from"].full == bob_full
        # Bob's account is offline now: a chat message waits in offline storage.
        alice.send_message(mto=b_jid, mbody="are you there?", mtype="chat")
        await asyncio.sleep(0.2)
    finally:
        await disconnect(alice)
    bob = await connect_slixmpp(server, b_jid, b_pw)
    try:
        assert (await bob.next_message())["body"] == "are you there?"
    finally:
        await disconnect(bob)
