"""PEP across servers (XEP-0163), shared by the federation tests against each peer:
each server learns the other side's client caps through a disco#info query over s2s
and notifies it of its user's publications."""

from __future__ import annotations

import asyncio

from tests.client.pep_util import befriend, connect_with, events, from_node, next_event, note
from tests.live import LiveServer, disconnect

NODE = "http://jabber.org/protocol/tune"


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
