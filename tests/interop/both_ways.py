"""Checks run the same way against every federation peer (Prosody, ejabberd): a user
on Descant and one on the peer exchange messages, subscribe to each other, and see each
other's PEP publications (each server learns the other side's client caps through a
disco#info query over s2s)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tests.client.pep_util import befriend, connect_with, events, from_node, next_event, note
from tests.live import Client, LiveServer, disconnect

NODE = "http://jabber.org/protocol/tune"


async def until(cond: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.1)


def subscription(client: Client, jid: str) -> str:
    roster = client.client_roster
    return roster[jid]["subscription"] if jid in roster else "absent"


async def chat_both_ways(alice: Client, carol: Client, peer: str) -> None:
    """RFC 6121 §5: alice (Descant) to carol's bare JID, carol to alice's full JID;
    each arrives from the sender's full JID."""
    alice.send_message(mto=carol.boundjid.bare, mbody=f"hello {peer}", mtype="chat")
    msg = await carol.next_message(timeout=20)
    assert msg["body"] == f"hello {peer}"
    assert msg["from"].full == alice.boundjid.full
    carol.send_message(mto=alice.boundjid.full, mbody="hello descant", mtype="chat")
    msg = await alice.next_message(timeout=20)
    assert msg["body"] == "hello descant"
    assert msg["from"].full == carol.boundjid.full


async def subscribe_both_ways(
    descant_user: Callable[[], Awaitable[Client]],
    peer_user: Callable[[], Awaitable[Client]],
    peer: str,
) -> None:
    """RFC 6121 §3.1: a subscription handshake started on each side reaches "both",
    and presence then flows both ways."""
    alice, carol = await descant_user(), await peer_user()
    a, c = alice.boundjid.bare, carol.boundjid.bare
    try:
        # slixmpp's default roster policy approves and subscribes back.
        alice.send_presence_subscription(pto=c)
        await until(lambda: subscription(alice, c) == "both" and subscription(carol, a) == "both")
        carol.send_presence(pstatus=f"from {peer}")
        p = await alice.next_presence(
            lambda p: p["from"].bare == c and p["status"] == f"from {peer}", timeout=15
        )
        assert p["from"].full == carol.boundjid.full
        alice.send_presence(pstatus="from descant")
        await carol.next_presence(
            lambda p: p["from"].bare == a and p["status"] == "from descant", timeout=15
        )
    finally:
        await disconnect(alice, carol)
    dave, erin = await peer_user(), await descant_user()
    try:
        dave.send_presence_subscription(pto=erin.boundjid.bare)
        d, e = dave.boundjid.bare, erin.boundjid.bare
        await until(lambda: subscription(dave, e) == "both" and subscription(erin, d) == "both")
    finally:
        await disconnect(dave, erin)


async def pep_both_ways(
    descant: LiveServer, a_jid: str, a_pw: str, peer_c2s_port: int, c_jid: str, c_pw: str
) -> None:
    """alice on Descant and carol on the peer (at ``peer_c2s_port``) befriend, then each
    publishes a tune the other must be notified of."""

    class PeerC2S:
        port = peer_c2s_port

    alice = await connect_with(descant, a_jid, a_pw, interests=[NODE])
    carol = await connect_with(PeerC2S(), c_jid, c_pw, interests=[NODE])  # type: ignore[arg-type]
    to_alice = events(alice, "pubsub_publish")
    to_carol = events(carol, "pubsub_publish")
    try:
        await befriend(alice, carol, timeout=20)
        await asyncio.sleep(1)  # both servers' caps queries over s2s
        await alice.plugin["xep_0060"].publish(a_jid, NODE, id="current", payload=note("a"))
        msg = await next_event(to_carol, from_node(NODE), timeout=20)
        assert msg["from"].bare == a_jid
        bare_c = carol.boundjid.bare
        await carol.plugin["xep_0060"].publish(bare_c, NODE, id="current", payload=note("c"))
        # (alice's own publication reached her too: skip it)
        msg = await next_event(to_alice, lambda m: m["from"].bare == bare_c, timeout=20)
        assert from_node(NODE)(msg)
    finally:
        await disconnect(alice, carol)
