"""XEP-0045 §7.4 (groupchat), §8.1 (subject), §7.5 (private messages), §7.8
(invitations), §8.6 (voice requests), XEP-0421 (occupant-id), XEP-0249."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

from descant.storage.api import ArchiveQuery
from tests.features.muc_util import (
    DATA,
    OCC_ID,
    ROOM,
    USER,
    enter,
    new_room,
)
from tests.harness import FakeSession, Harness, error_condition, find, one


async def _room_with_bob(h: Harness, **fields: str) -> tuple[FakeSession, FakeSession]:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al", **fields)
    bob = await h.online("bob@localhost/b")
    await enter(h, bob, "bob")
    alice.take()
    return alice, bob


async def test_7_4_groupchat_reflected_to_all_with_same_id_and_occupant_id(h: Harness) -> None:
    alice, bob = await _room_with_bob(h)
    await h.send(
        bob,
        f"<message to='{ROOM}' type='groupchat' id='g1'><body>hello</body>"
        "<occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/></message>",
    )
    ids = set()
    for s, me in ((alice, "alice@localhost/a"), (bob, "bob@localhost/b")):
        m = one(s.take(), "message", id="g1")
        assert m.get("from") == f"{ROOM}/bob" and m.get("to") == me
        assert m.findtext("body") == "hello"
        occ = m.findall(OCC_ID)
        assert len(occ) == 1 and occ[0].get("id") != "forged"
        ids.add(occ[0].get("id"))
    assert len(ids) == 1
    # XEP-0421: the same id in bob's presence, and stable when he comes back.
    await h.send(bob, f"<presence to='{ROOM}/bob' type='unavailable'/>")
    await enter(h, bob, "bobby")
    p = one(alice.take(), "presence", from_=f"{ROOM}/bobby")
    assert p.find(OCC_ID).get("id") in ids  # type: ignore[union-attr]


async def test_7_4_message_from_non_occupant_is_not_acceptable(h: Harness) -> None:
    alice, _ = await _room_with_bob(h)
    carol = await h.online("carol@localhost/c")
    await h.send(carol, f"<message to='{ROOM}' type='groupchat' id='x'><body>hi</body></message>")
    assert error_condition(one(carol.take(), "message", type="error")) == "not-acceptable"
    assert not alice.take()


async def test_7_4_message_to_unknown_room_is_item_not_found(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.send(
        alice, "<message to='nope@conference.localhost' type='groupchat'><body>x</body></message>"
    )
    assert error_condition(one(alice.take(), "message", type="error")) == "item-not-found"


async def test_8_1_subject_change_rules(h: Harness) -> None:
    alice, bob = await _room_with_bob(h)
    await h.send(bob, f"<message to='{ROOM}' type='groupchat'><subject>mine</subject></message>")
    assert error_condition(one(bob.take(), "message", type="error")) == "forbidden"
    await h.send(
        alice, f"<message to='{ROOM}' type='groupchat' id='s'><subject>Topic</subject></message>"
    )
    got = one(bob.take(), "message", id="s")
    assert got.findtext("subject") == "Topic" and got.get("from") == f"{ROOM}/al"
    carol = await h.online("carol@localhost/c")
    got = await enter(h, carol, "carol")
    assert got[-1].findtext("subject") == "Topic" and got[-1].get("from") == f"{ROOM}/al"
    # Subjects are not history.
    assert len(find(got, "message")) == 1


async def test_8_1_participants_may_change_subject_when_configured(h: Harness) -> None:
    alice, bob = await _room_with_bob(h, changesubject="1")
    await h.send(
        bob, f"<message to='{ROOM}' type='groupchat' id='s'><subject>ours</subject></message>"
    )
    one(alice.take(), "message", id="s")


async def test_7_5_private_messages(h: Harness) -> None:
    alice, bob = await _room_with_bob(h)
    await h.send(bob, f"<message to='{ROOM}/al' type='chat' id='p1'><body>psst</body></message>")
    m = one(alice.take(), "message", id="p1")
    assert m.get("from") == f"{ROOM}/bob" and m.find(f"{USER}x") is not None
    await h.send(bob, f"<message to='{ROOM}/nobody' type='chat'><body>?</body></message>")
    assert error_condition(one(bob.take(), "message", type="error")) == "item-not-found"
    await h.send(bob, f"<message to='{ROOM}/al' type='groupchat'><body>?</body></message>")
    assert error_condition(one(bob.take(), "message", type="error")) == "bad-request"
    carol = await h.online("carol@localhost/c")
    await h.send(carol, f"<message to='{ROOM}/al' type='chat'><body>?</body></message>")
    assert error_condition(one(carol.take(), "message", type="error")) == "not-acceptable"


async def test_7_5_private_messages_can_be_disabled(h: Harness) -> None:
    alice, bob = await _room_with_bob(h, allowpm="moderators")
    await h.send(bob, f"<message to='{ROOM}/al' type='chat'><body>psst</body></message>")
    assert error_condition(one(bob.take(), "message", type="error")) == "forbidden"
    await h.send(alice, f"<message to='{ROOM}/bob' type='chat' id='ok'><body>hi</body></message>")
    one(bob.take(), "message", id="ok")


async def test_7_8_2_mediated_invitation_and_7_8_3_decline(h: Harness) -> None:
    _alice, bob = await _room_with_bob(h)
    carol = await h.online("carol@localhost/c")
    await h.send(
        bob,
        f"<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'>"
        "<invite to='carol@localhost'><reason>join us</reason></invite></x></message>",
    )
    inv = one(carol.take(), "message", from_=ROOM)
    i = inv.find(f"{USER}x/{USER}invite")
    assert i is not None and i.get("from") == "bob@localhost"
    assert i.findtext(f"{USER}reason") == "join us"
    await h.send(
        carol,
        f"<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'>"
        "<decline to='bob@localhost'><reason>busy</reason></decline></x></message>",
    )
    dec = one(bob.take(), "message", from_=ROOM)
    d = dec.find(f"{USER}x/{USER}decline")
    assert d is not None and d.get("from") == "carol@localhost"


async def test_7_8_2_invitation_to_members_only_room_makes_a_member(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al", membersonly="1")
    await h.send(
        alice,
        f"<message to='{ROOM}'><x xmlns='http://jabber.org/protocol/muc#user'>"
        "<invite to='bob@localhost'/></x></message>",
    )
    bob = await h.online("bob@localhost/b")
    got = await enter(h, bob, "bob")
    assert one(got, "presence", from_=f"{ROOM}/bob").get("type") is None


async def test_xep_0249_direct_invitation_passes_through(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    await h.send(
        alice,
        f"<message to='bob@localhost/b' id='d'>"
        f"<x xmlns='jabber:x:conference' jid='{ROOM}'/></message>",
    )
    m = one(bob.take(), "message", id="d")
    assert m.find("{jabber:x:conference}x").get("jid") == ROOM  # type: ignore[union-attr]


async def test_8_6_voice_request_and_approval(h: Harness) -> None:
    alice, bob = await _room_with_bob(h, moderatedroom="1")
    await h.send(bob, f"<message to='{ROOM}' type='groupchat'><body>x</body></message>")
    assert error_condition(one(bob.take(), "message", type="error")) == "forbidden"
    await h.send(
        bob,
        f"<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
        "<field var='muc#role'><value>participant</value></field></x></message>",
    )
    req = one(alice.take(), "message", from_=ROOM)
    fields = {f.get("var"): f.findtext(f"{DATA}value") for f in req.iter(f"{DATA}field")}
    assert fields["muc#roomnick"] == "bob" and fields["muc#role"] == "participant"
    await h.send(
        alice,
        f"<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>"
        "<field var='muc#roomnick'><value>bob</value></field>"
        "<field var='muc#request_allow'><value>true</value></field></x></message>",
    )
    p = one(bob.take(), "presence", from_=f"{ROOM}/bob")
    assert p.find(f"{USER}x/{USER}item").get("role") == "participant"  # type: ignore[union-attr]
    await h.send(bob, f"<message to='{ROOM}' type='groupchat' id='v'><body>x</body></message>")
    one(alice.take(), "message", id="v")


async def test_iq_to_an_occupant_is_forwarded_and_answered(h: Harness) -> None:
    alice, bob = await _room_with_bob(h)
    await h.send(
        bob, f"<iq type='get' to='{ROOM}/al' id='v1'><query xmlns='jabber:iq:version'/></iq>"
    )
    fwd = one(alice.take(), "iq", type="get")
    assert fwd.get("from") == f"{ROOM}/bob" and fwd.get("to") == "alice@localhost/a"
    await h.send(alice, f"<iq type='result' to='{ROOM}/bob' id='{fwd.get('id')}'/>")
    res = one(bob.take(), "iq", type="result")
    assert res.get("id") == "v1" and res.get("from") == f"{ROOM}/al"


async def test_fanout_serializes_the_payload_once(h: Harness) -> None:
    """Issue 4 performance rule: one serialization per distinct rewrite, not per recipient."""
    from descant.xml.serialize import SharedCopy, serialize

    alice, bob = await _room_with_bob(h)
    carol = await h.online("carol@localhost/c")
    await enter(h, carol, "carol")
    alice.take()
    bob.take()
    await h.send(alice, f"<message to='{ROOM}' type='groupchat' id='f'><body>x</body></message>")
    copies = [one(s.take(), "message", id="f") for s in (alice, bob, carol)]
    assert all(type(c) is SharedCopy for c in copies)
    assert copies[0].cache is copies[1].cache is copies[2].cache  # type: ignore[attr-defined]
    texts = [serialize(c) for c in copies]
    assert len(copies[0].cache) == 1  # type: ignore[attr-defined]
    assert texts[1] == texts[0].replace("alice@localhost/a", "bob@localhost/b")


async def test_only_the_addressed_occupant_answers_a_forwarded_iq(h: Harness) -> None:
    """An occupant who learns a forwarded iq's id cannot answer it in place of the one
    it went to; the real answer still gets through."""
    alice, bob = await _room_with_bob(h)
    eve = await h.online("eve@localhost/e")
    await enter(h, eve, "eve")
    for s in (alice, bob, eve):
        s.take()
    await h.send(
        bob, f"<iq type='get' to='{ROOM}/al' id='v1'><query xmlns='jabber:iq:version'/></iq>"
    )
    fwd = one(alice.take(), "iq", type="get")
    spoof = (
        f"<iq type='result' to='{ROOM}/bob' id='{fwd.get('id')}'>"
        "<query xmlns='jabber:iq:version'><name>eve</name></query></iq>"
    )
    await h.send(eve, spoof)
    assert not [s for s in bob.take() if s.tag == "iq"]
    await h.send(alice, f"<iq type='result' to='{ROOM}/bob' id='{fwd.get('id')}'/>")
    res = one(bob.take(), "iq", type="result")
    assert res.get("id") == "v1" and res.get("from") == f"{ROOM}/al"


def test_server_ids_are_unguessable() -> None:
    from descant.stanza import new_id

    ids = {new_id("x") for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) >= 12 for i in ids)


async def test_every_occupant_history_and_archive_see_one_order(h: Harness) -> None:
    """Two occupants talk at once; one recipient's delivery waits (storage, federation)
    the first time. Without one order per room, the second message overtakes the
    first for that recipient only."""
    alice, bob = await _room_with_bob(h, enablelogging="1")
    carol = await h.online("carol@localhost/c")
    await enter(h, carol, "carol")
    for s in (alice, bob, carol):
        s.take()
    router = h.server.router
    real_route = router.route
    slow_once = [True]

    async def route(stanza: ET.Element, origin: object = None) -> None:
        if stanza.tag == "message" and stanza.get("to") == "carol@localhost/c" and slow_once[0]:
            slow_once[0] = False
            for _ in range(5):
                await asyncio.sleep(0)
        await real_route(stanza, origin)  # type: ignore[arg-type]

    router.route = route  # type: ignore[method-assign]
    await asyncio.gather(
        h.send(alice, f"<message to='{ROOM}' type='groupchat' id='m1'><body>1</body></message>"),
        h.send(bob, f"<message to='{ROOM}' type='groupchat' id='m2'><body>2</body></message>"),
    )
    for _ in range(20):
        await asyncio.sleep(0)
    orders = [[m.get("id") for m in s.take() if m.tag == "message"] for s in (alice, bob, carol)]
    assert orders[0] == orders[1] == orders[2], orders
    room = h.module("muc", "conference.localhost").rooms["room"]  # type: ignore[attr-defined]
    assert [e.stanza.get("id") for e in room.history] == orders[0]
    stored, _ = await h.server.storage.rooms.archive_query(
        "conference.localhost", "room", ArchiveQuery()
    )
    assert [ET.fromstring(m.stanza).get("id") for m in stored] == orders[0]
