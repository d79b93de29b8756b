"""Blocking Command (XEP-0191) end to end through slixmpp's xep_0191 plugin."""

from __future__ import annotations

import asyncio

import pytest

from tests.live import LiveServer, connect_slixmpp, disconnect


async def test_block_and_unblock_through_slixmpp(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    b_jid, b_pw = await server.make_user("bob")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    bob = await connect_slixmpp(server, b_jid, b_pw)
    try:
        alice.register_plugin("xep_0191")
        await alice.plugin["xep_0191"].block(b_jid)
        blocked = await alice.plugin["xep_0191"].get_blocked_jids()
        assert b_jid in {str(j) for j in blocked}

        bob.send_message(mto=a_jid, mbody="let me in", mtype="chat")
        err = await bob.next_message()
        assert err["type"] == "error"
        assert err["error"]["condition"] == "service-unavailable"
        with pytest.raises(asyncio.TimeoutError):
            await alice.next_message(timeout=0.5)

        await alice.plugin["xep_0191"].unblock(b_jid)
        bob.send_message(mto=a_jid, mbody="now?", mtype="chat")
        assert (await alice.next_message())["body"] == "now?"
    finally:
        await disconnect(alice, bob)
