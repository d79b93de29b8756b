"""Multi-user chat (XEP-0045) end to end: slixmpp's xep_0045 plugin and a raw
socket client against a real server process; persistence across a restart; the
``descant room`` command."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Callable

import pytest
import slixmpp
from slixmpp import JID
from slixmpp.exceptions import IqError, PresenceError

from tests.live import Client, LiveServer, RawClient, connect_slixmpp, disconnect

_rooms = itertools.count(1)
OCC_ID = "{urn:xmpp:occupant-id:0}occupant-id"
USER = "{http://jabber.org/protocol/muc#user}"


def _room(prefix: str = "room") -> JID:
    return JID(f"{prefix}{os.getpid()}x{next(_rooms)}@conference.localhost")


async def _client(server: LiveServer, prefix: str) -> Client:
    jid, pw = await server.make_user(prefix)
    client = await connect_slixmpp(server, jid, pw)
    client.register_plugin("xep_0045")
    return client


def _codes(stanza: slixmpp.ElementBase) -> set[str]:
    return {s.get("code", "") for s in stanza.xml.iter(f"{USER}status")}


async def _message(
    client: Client, match: Callable[[slixmpp.Message], bool], timeout: float = 5
) -> slixmpp.Message:
    async def wait() -> slixmpp.Message:
        while True:
            m = await client.next_message(timeout)
            if match(m):
                return m

    return await asyncio.wait_for(wait(), timeout)


async def _create(client: Client, room: JID, nick: str, **values: object) -> None:
    """§10.1.3: create a reserved room and submit the configuration form."""
    muc = client.plugin["xep_0045"]
    pres, _, _, _ = await muc.join_muc_wait(room, nick, timeout=5)
    assert {"110", "201"} <= _codes(pres)
    form = await muc.get_room_config(room)
    for var, value in values.items():
        form.field[f"muc#roomconfig_{var}"]["value"] = value
    await muc.set_room_config(room, form)


async def test_room_end_to_end_slixmpp_and_raw_socket(server: LiveServer) -> None:
    room = _room()
    alice = await _client(server, "alice")
    bob = await _client(server, "bob")
    r_jid, r_pw = await server.make_user("raw")
    raw = await RawClient.open(server.port)
    try:
        await _create(alice, room, "alice", roomname="E2E")
        muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]
        muc_a.set_subject(room, "E2E topic")
        pres, subject, occupants, _ = await muc_b.join_muc_wait(room, "bob", timeout=5)
        assert "110" in _codes(pres)
        assert subject["subject"] == "E2E topic"
        assert "alice" in [p["from"].resource for p in occupants]

        # §7.4: reflected to everyone with the sender's id and an occupant-id.
        msg = alice.make_message(room, "hello all", mtype="groupchat")
        msg["id"] = "e2e-1"
        msg.send()
        for c in (alice, bob):
            got = await _message(c, lambda m: m["id"] == "e2e-1")
            assert got["from"] == JID(f"{room}/alice")
            assert got.xml.find(OCC_ID) is not None

        # A raw client enters and gets the history (with delay) and the subject.
        await raw.login(r_jid, r_pw)
        await raw.send(
            f"<presence to='{room}/raw'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        )
        entered = await raw.read_until("E2E topic</subject></message>")
        assert "status code='110'" in entered
        assert "hello all" in entered and "urn:xmpp:delay" in entered

        # §7.5: a private message.
        bob.send_message(mto=JID(f"{room}/alice"), mbody="psst", mtype="chat")
        got = await _message(alice, lambda m: m["body"] == "psst")
        assert got["from"] == JID(f"{room}/bob")

        # §7.6: nick change.
        await raw.send(f"<presence to='{room}/rawer'/>")
        assert "code='303'" in await raw.read_until("code='303'/>")

        # §8.2: kick.
        await muc_a.set_role(room, "rawer", "none", reason="bye")
        assert "bye" in await raw.read_until("code='307'")

        # An occupant whose connection drops leaves the room.
        gone: asyncio.Future[slixmpp.Presence] = asyncio.get_running_loop().create_future()
        alice.add_event_handler(f"muc::{room}::got_offline", gone.set_result)
        await disconnect(bob)
        p = await asyncio.wait_for(gone, 5)
        assert p["from"] == JID(f"{room}/bob")
        assert p["muc"]["role"] == "none"
    finally:
        raw.close()
        await disconnect(alice, bob)


async def test_7_2_errors_through_slixmpp(server: LiveServer) -> None:
    room = _room()
    alice = await _client(server, "alice")
    bob = await _client(server, "bob")
    try:
        await _create(alice, room, "alice", membersonly=True)
        muc_b = bob.plugin["xep_0045"]
        with pytest.raises(PresenceError) as exc:
            await muc_b.join_muc_wait(room, "bob", timeout=5)
        assert exc.value.condition == "registration-required"
        await alice.plugin["xep_0045"].set_affiliation(room, "member", jid=bob.boundjid.bare)
        with pytest.raises(PresenceError) as exc:
            await muc_b.join_muc_wait(room, "alice", timeout=5)
        assert exc.value.condition == "conflict"
        pres, _, _, _ = await muc_b.join_muc_wait(room, "bob", timeout=5)
        assert pres["muc"]["affiliation"] == "member"
        # §9.1: a ban removes and keeps out.
        banned: asyncio.Future[slixmpp.Presence] = asyncio.get_running_loop().create_future()
        bob.add_event_handler(f"muc::{room}::got_offline", banned.set_result)
        await alice.plugin["xep_0045"].set_affiliation(room, "outcast", jid=bob.boundjid.bare)
        p = await asyncio.wait_for(banned, 5)
        assert "301" in _codes(p)
        assert p["from"] == JID(f"{room}/bob")
        with pytest.raises(PresenceError) as exc:
            await muc_b.join_muc_wait(room, "bob", timeout=5)
        assert exc.value.condition == "forbidden"
        # §5.2: a banned user has no say.
        with pytest.raises(IqError) as iq_exc:
            await muc_b.set_affiliation(room, "outcast", jid=alice.boundjid.bare)
        assert iq_exc.value.condition == "forbidden"
    finally:
        await disconnect(alice, bob)


async def test_persistent_room_survives_restart_and_room_cli(make_server: object) -> None:
    server: LiveServer = make_server()  # type: ignore[operator]
    room = JID("kept@conference.localhost")
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    alice.register_plugin("xep_0045")
    try:
        await _create(alice, room, "alice", persistentroom=True, enablelogging=True)
        await alice.plugin["xep_0045"].set_affiliation(room, "member", jid="bob@localhost")
        for i in range(3):
            alice.send_message(mto=room, mbody=f"logged {i}", mtype="groupchat")
        await _message(alice, lambda m: m["body"] == "logged 2")
    finally:
        await disconnect(alice)
    assert server.stop() == 0
    server.start()
    alice = await connect_slixmpp(server, a_jid, a_pw)
    alice.register_plugin("xep_0045")
    try:
        info = await alice.plugin["xep_0030"].get_info(jid=room, timeout=5)
        assert "muc_persistent" in info["disco_info"]["features"]
        members = await alice.plugin["xep_0045"].get_affiliation_list(room, "member", timeout=5)
        assert [str(j) for j in members] == ["bob@localhost"]
        # XEP-0313 on the room, paged two at a time by slixmpp's RSM iteration.
        alice.register_plugin("xep_0313")
        bodies = [
            m["mam_result"]["forwarded"]["stanza"]["body"]
            async for m in alice.plugin["xep_0313"].iterate(jid=room, rsm={"max": 2})
        ]
        assert bodies == ["logged 0", "logged 1", "logged 2"]
    finally:
        await disconnect(alice)
    listed = server.cli("room", "list")
    assert listed.returncode == 0, listed.stderr
    assert "kept@conference.localhost" in listed.stdout.split()
    assert server.stop() == 0
    r = server.cli("room", "destroy", "kept@conference.localhost")
    assert r.returncode == 0, r.stderr
    r = server.cli("room", "destroy", "kept@conference.localhost")
    assert r.returncode == 1 and "no stored room" in r.stderr
    assert server.cli("room", "list").stdout.strip() == ""
    server.start()
    alice = await connect_slixmpp(server, a_jid, a_pw)
    try:
        with pytest.raises(IqError) as exc:
            await alice.plugin["xep_0030"].get_info(jid=room, timeout=5)
        assert exc.value.condition == "item-not-found"
    finally:
        await disconnect(alice)


async def test_single_domain_server_keeps_its_default_host(make_server: object) -> None:
    """RFC 6120 §4.7.2: with one served domain a stream header without 'to' gets it;
    the MUC service's host (conference.localhost) does not make that ambiguous."""
    server: LiveServer = make_server(server={"domains": ["localhost"]})  # type: ignore[operator]
    raw = await RawClient.open(server.port)
    try:
        await raw.send(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
        )
        header = await raw.read_until("</stream:features>")
        assert "from='localhost'" in header or 'from="localhost"' in header, header
    finally:
        raw.close()
