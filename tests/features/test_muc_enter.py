"""XEP-0045 §7.2 (entering a room), §10.1 (creating one), §7.6, §7.7, §7.14 (nick
change, presence update, leaving), through the in-process harness."""

from __future__ import annotations

import pytest

from tests.features.muc_util import (
    MUC_NS,
    OCC_ID,
    ROOM,
    SERVICE,
    USER,
    X,
    codes,
    enter,
    item,
    new_room,
    presences,
    submit,
)
from tests.harness import Harness, dump, error_condition, one


async def test_10_1_2_creating_a_room_locks_it_until_configured(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    got = await enter(h, alice, "al")
    me = one(got, "presence", from_=f"{ROOM}/al")
    assert {"110", "201"} <= codes(me)
    assert item(me).get("affiliation") == "owner" and item(me).get("role") == "moderator"
    subject = one(got, "message", child="subject", from_=ROOM)
    assert subject.get("type") == "groupchat"
    # §7.2.11: others cannot enter a locked room.
    bob = await h.online("bob@localhost/b")
    err = one(await enter(h, bob, "bob"), "presence", type="error")
    assert error_condition(err) == "item-not-found"
    # §10.1.2: an empty submitted form accepts the defaults (instant room).
    assert (await submit(h, alice)).get("type") == "result"
    got = await enter(h, bob, "bob")
    assert "110" in codes(one(got, "presence", from_=f"{ROOM}/bob"))


async def test_10_1_3_cancelling_the_initial_configuration_destroys_the_room(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await enter(h, alice, "al")
    answer = await h.iq(
        alice,
        f"<iq type='set' to='{ROOM}'><query xmlns='http://jabber.org/protocol/muc#owner'>"
        "<x xmlns='jabber:x:data' type='cancel'/></query></iq>",
    )
    assert answer.get("type") == "result"
    info = await h.iq(
        alice,
        f"<iq type='get' to='{ROOM}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    assert error_condition(info) == "item-not-found"


async def test_7_1_groupchat_1_0_enter_without_x_makes_an_instant_room(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    got = await enter(h, alice, "al", x="")
    assert "201" in codes(one(got, "presence", from_=f"{ROOM}/al"))
    bob = await h.online("bob@localhost/b")
    got = await enter(h, bob, "bob", x="")
    assert one(got, "presence", from_=f"{ROOM}/bob").get("type") is None


async def test_7_2_3_occupants_presence_roles_and_real_jids(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    bob = await h.online("bob@localhost/b")
    got = await enter(h, bob, "bob")
    # Existing occupants first, then bob's own presence with 110, then the subject.
    assert [s.tag for s in got] == ["presence", "presence", "message"], dump(got)
    al = got[0]
    assert al.get("from") == f"{ROOM}/al"
    assert item(al).get("role") == "moderator" and item(al).get("jid") is None
    assert al.find(OCC_ID) is not None
    own = got[1]
    assert codes(own) == {"110"}
    assert item(own).get("jid") == "bob@localhost/b"
    assert item(own).get("role") == "participant" and item(own).get("affiliation") == "none"
    # The moderator sees bob's real JID (semi-anonymous room, §7.2.3).
    seen = one(alice.take(), "presence", from_=f"{ROOM}/bob")
    assert item(seen).get("jid") == "bob@localhost/b" and "110" not in codes(seen)
    carol = await h.online("carol@localhost/c")
    await enter(h, carol, "carol")
    seen = one(bob.take(), "presence", from_=f"{ROOM}/carol")
    assert item(seen).get("jid") is None  # a participant does not


async def test_7_2_4_non_anonymous_room_shows_jids_to_all_with_status_100(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al", whois="anyone")
    bob = await h.online("bob@localhost/b")
    got = await enter(h, bob, "bob")
    assert item(one(got, "presence", from_=f"{ROOM}/al")).get("jid") == "alice@localhost/a"
    assert "100" in codes(one(got, "presence", from_=f"{ROOM}/bob"))


async def test_7_2_1_enter_without_nick_is_jid_malformed(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.send(alice, f"<presence to='{ROOM}'>{X}</presence>")
    assert error_condition(one(alice.take(), "presence", type="error")) == "jid-malformed"


async def test_presence_to_the_service_with_a_resource_is_jid_malformed(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.send(alice, f"<presence to='{SERVICE}/al'>{X}</presence>")
    assert error_condition(one(alice.take(), "presence", type="error")) == "jid-malformed"
    assert not h.module("muc", SERVICE).rooms  # type: ignore[attr-defined]


async def test_7_2_9_nick_conflict(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    bob = await h.online("bob@localhost/b")
    err = one(await enter(h, bob, "al"), "presence", type="error")
    assert err.get("from") == f"{ROOM}/al"
    assert error_condition(err) == "conflict"


async def test_7_2_5_password_protected_room(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al", passwordprotectedroom="1", roomsecret="sesame")
    bob = await h.online("bob@localhost/b")
    err = one(await enter(h, bob, "bob"), "presence", type="error")
    assert error_condition(err) == "not-authorized"
    x = f"<x xmlns='{MUC_NS}'><password>wrong</password></x>"
    assert error_condition(one(await enter(h, bob, "bob", x=x), "presence")) == "not-authorized"
    x = f"<x xmlns='{MUC_NS}'><password>sesame</password></x>"
    assert "110" in codes(one(await enter(h, bob, "bob", x=x), "presence", from_=f"{ROOM}/bob"))


async def test_7_2_6_members_only_room(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al", membersonly="1")
    bob = await h.online("bob@localhost/b")
    err = one(await enter(h, bob, "bob"), "presence", type="error")
    assert error_condition(err) == "registration-required"


async def test_7_2_10_max_occupants(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al", maxusers="2")
    bob = await h.online("bob@localhost/b")
    await enter(h, bob, "bob")
    carol = await h.online("carol@localhost/c")
    err = one(await enter(h, carol, "carol"), "presence", type="error")
    assert error_condition(err) == "service-unavailable"


async def test_10_1_1_room_creation_limited_to_local_users(h: Harness) -> None:
    await h.inject(f"<presence from='eve@remote.example/x' to='{ROOM}/eve'>{X}</presence>")
    err = one(h.take_remote(), "presence", type="error")
    assert error_condition(err) == "not-allowed"


async def test_7_6_nick_change_303(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    bob = await h.online("bob@localhost/b")
    await enter(h, bob, "bob")
    alice.take()
    await h.send(bob, f"<presence to='{ROOM}/robert'/>")
    got = bob.take()
    gone = one(got, "presence", from_=f"{ROOM}/bob", type="unavailable")
    assert codes(gone) == {"303", "110"} and item(gone).get("nick") == "robert"
    assert one(got, "presence", from_=f"{ROOM}/robert").get("type") is None
    seen = alice.take()
    assert codes(one(seen, "presence", from_=f"{ROOM}/bob")) == {"303"}
    assert one(seen, "presence", from_=f"{ROOM}/robert") is not None
    # §7.6.3: taking someone else's nick is a conflict.
    await h.send(bob, f"<presence to='{ROOM}/al'/>")
    assert error_condition(one(bob.take(), "presence", type="error")) == "conflict"


async def test_7_7_presence_update_is_broadcast(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    bob = await h.online("bob@localhost/b")
    await enter(h, bob, "bob")
    alice.take()
    await h.send(bob, f"<presence to='{ROOM}/bob'><show>away</show></presence>")
    p = one(alice.take(), "presence", from_=f"{ROOM}/bob")
    assert p.findtext("show") == "away"


async def test_7_14_leaving_and_temporary_room_vanishes(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    bob = await h.online("bob@localhost/b")
    await enter(h, bob, "bob")
    alice.take()
    await h.send(
        bob, f"<presence to='{ROOM}/bob' type='unavailable'><status>bye</status></presence>"
    )
    own = one(bob.take(), "presence", from_=f"{ROOM}/bob", type="unavailable")
    assert "110" in codes(own) and item(own).get("role") == "none"
    seen = one(alice.take(), "presence", from_=f"{ROOM}/bob", type="unavailable")
    assert seen.findtext("status") == "bye"
    await h.send(alice, f"<presence to='{ROOM}/al' type='unavailable'/>")
    muc = h.module("muc", SERVICE)
    assert "room" not in muc.rooms  # type: ignore[attr-defined]


async def test_occupant_leaves_when_its_connection_drops(h: Harness) -> None:
    """The user's server sends unavailable to directed-presence targets (RFC 6121 §4.6.3)."""
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    bob = await h.online("bob@localhost/b")
    await enter(h, bob, "bob")
    alice.take()
    await bob.close()
    seen = one(alice.take(), "presence", from_=f"{ROOM}/bob", type="unavailable")
    assert item(seen).get("role") == "none"


async def test_multiple_sessions_share_one_nick(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    bob1 = await h.online("bob@localhost/one")
    bob2 = await h.online("bob@localhost/two")
    await enter(h, bob1, "bob")
    alice.take()
    got = await enter(h, bob2, "bob")
    assert "110" in codes(one(got, "presence", from_=f"{ROOM}/bob"))
    assert not presences(alice.take(), f"{ROOM}/bob")  # no second occupant appears
    await h.send(alice, f"<message to='{ROOM}' type='groupchat' id='m1'><body>hi</body></message>")
    for s in (bob1, bob2):
        one(s.take(), "message", id="m1")
    await h.send(bob1, f"<presence to='{ROOM}/bob' type='unavailable'/>")
    assert "110" in codes(one(bob1.take(), "presence", type="unavailable"))
    assert not presences(alice.take(), f"{ROOM}/bob")  # bob is still there, from two
    await h.send(alice, f"<message to='{ROOM}/bob' type='chat' id='pm'><body>psst</body></message>")
    one(bob2.take(), "message", id="pm")
    assert not bob1.take()


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ("maxstanzas='2'", ["m3", "m4"]),
        ("maxstanzas='0'", []),
        ("maxchars='0'", []),
        ("seconds='3600'", ["m1", "m2", "m3", "m4"]),
        ("since='2000-01-01T00:00:00Z'", ["m1", "m2", "m3", "m4"]),
        ("since='2999-01-01T00:00:00Z'", []),
        ("", ["m1", "m2", "m3", "m4"]),
    ],
)
async def test_7_2_14_discussion_history(h: Harness, attrs: str, expected: list[str]) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    for i in range(1, 5):
        await h.send(
            alice, f"<message to='{ROOM}' type='groupchat' id='m{i}'><body>{i}</body></message>"
        )
    bob = await h.online("bob@localhost/b")
    x = f"<x xmlns='{MUC_NS}'><history {attrs}/></x>"
    got = await enter(h, bob, "bob", x=x)
    history = [s for s in got if s.tag == "message" and s.find("body") is not None]
    assert [m.get("id") for m in history] == expected
    for m in history:
        delay = m.find("{urn:xmpp:delay}delay")
        assert delay is not None and delay.get("from") == ROOM and delay.get("stamp")
        assert m.get("from") == f"{ROOM}/al"
    # The subject comes after the history (§7.2.15).
    assert got[-1].find("subject") is not None


async def test_7_2_14_maxchars_counts_whole_stanzas(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    for i in range(1, 4):
        await h.send(
            alice, f"<message to='{ROOM}' type='groupchat' id='m{i}'><body>x</body></message>"
        )
    muc = h.module("muc", SERVICE)
    size = muc.rooms["room"].history[-1].chars  # type: ignore[attr-defined]
    bob = await h.online("bob@localhost/b")
    got = await enter(h, bob, "bob", x=f"<x xmlns='{MUC_NS}'><history maxchars='{size * 2}'/></x>")
    assert [m.get("id") for m in got if m.find("body") is not None] == ["m2", "m3"]


async def test_user_item_not_sent_status_ignores_unknown_presence_types(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    await h.send(alice, f"<presence to='{ROOM}/al' type='subscribe'/>")
    assert not alice.take()


async def test_user_x_in_join_presence_is_not_rebroadcast(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    bob = await h.online("bob@localhost/b")
    x = f"<x xmlns='{MUC_NS}'><password>leak</password></x>"
    await enter(h, bob, "bob", x=x)
    seen = one(alice.take(), "presence", from_=f"{ROOM}/bob")
    assert seen.find(f"{{{MUC_NS}}}x") is None
    assert len(seen.findall(f"{USER}x")) == 1


async def test_entering_again_while_in_resends_the_room_state(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    bob = await h.online("bob@localhost/b")
    await enter(h, bob, "bob")
    alice.take()
    got = await enter(h, bob, "bob")
    assert "110" in codes(one(got, "presence", from_=f"{ROOM}/bob"))
    one(got, "presence", from_=f"{ROOM}/al")
    assert got[-1].find("subject") is not None
    assert not alice.take()  # nobody else sees a second entrance


async def test_xep0410_self_ping(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    ping = f"<iq type='get' to='{ROOM}/al'><ping xmlns='urn:xmpp:ping'/></iq>"
    assert (await h.iq(alice, ping)).get("type") == "result"
    bob = await h.online("bob@localhost/b")
    assert error_condition(await h.iq(bob, ping)) == "not-acceptable"


async def test_7_2_nick_not_precis_valid_is_jid_malformed(h: Harness) -> None:
    """An unassigned code point fails the OpaqueString profile (RFC 8265 §4.2): the
    address is refused before it reaches the room."""
    alice = await h.online("alice@localhost/a")
    await h.send(alice, f"<presence to='{ROOM}/bad\u0378nick'>{X}</presence>")
    assert error_condition(one(alice.take(), "presence", type="error")) == "jid-malformed"
    assert not h.module("muc", SERVICE).rooms  # type: ignore[attr-defined]
