"""Message Carbons (XEP-0280) end to end through slixmpp's xep_0280 plugin."""

from __future__ import annotations

import asyncio

import slixmpp

from tests.live import LiveServer, connect_slixmpp, disconnect


async def test_carbons_between_two_clients_of_one_user(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    b_jid, b_pw = await server.make_user("bob")
    phone = await connect_slixmpp(server, a_jid + "/phone", a_pw)
    laptop = await connect_slixmpp(server, a_jid + "/laptop", a_pw)
    bob = await connect_slixmpp(server, b_jid, b_pw)
    received: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
    sent: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
    try:
        for client in (phone, laptop):
            client.register_plugin("xep_0280")
            await client.plugin["xep_0280"].enable()
        laptop.add_event_handler("carbon_received", received.put_nowait)
        laptop.add_event_handler("carbon_sent", sent.put_nowait)

        phone.send_message(mto=b_jid, mbody="from my phone", mtype="chat")
        assert (await bob.next_message())["body"] == "from my phone"
        carbon = await asyncio.wait_for(sent.get(), 5)
        assert carbon["carbon_sent"]["body"] == "from my phone"
        assert carbon["carbon_sent"]["from"] == phone.boundjid

        bob.send_message(mto=phone.boundjid, mbody="to your phone", mtype="chat")
        assert (await phone.next_message())["body"] == "to your phone"
        carbon = await asyncio.wait_for(received.get(), 5)
        assert carbon["carbon_received"]["body"] == "to your phone"
    finally:
        await disconnect(phone, laptop, bob)
