"""XEP-0045 §8 (moderators: kick, voice), §9 (admins: ban, members), §10 (owners:
configuration, admins/owners, destruction) and the privilege rules of §5."""

from __future__ import annotations

from tests.features.muc_util import (
    ADMIN,
    DATA,
    OWNER,
    ROOM,
    SERVICE,
    USER,
    admin_get,
    admin_set,
    codes,
    enter,
    item,
    new_room,
    submit,
)
from tests.harness import FakeSession, Harness, error_condition, one


async def _room(h: Harness, **fields: str) -> tuple[FakeSession, FakeSession, FakeSession]:
    """alice owns the room; bob and carol are in it."""
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al", **fields)
    bob = await h.online("bob@localhost/b")
    await enter(h, bob, "bob")
    carol = await h.online("carol@localhost/c")
    await enter(h, carol, "carol")
    for s in (alice, bob, carol):
        s.take()
    return alice, bob, carol


async def test_8_2_kick_with_reason_and_actor_307(h: Harness) -> None:
    alice, bob, carol = await _room(h)
    answer = await admin_set(h, alice, "<item nick='bob' role='none'><reason>spam</reason></item>")
    assert answer.get("type") == "result"
    own = one(bob.take(), "presence", type="unavailable")
    assert codes(own) == {"307", "110"}
    it = item(own)
    assert it.get("role") == "none"
    assert it.find(f"{USER}actor").get("nick") == "al"  # type: ignore[union-attr]
    assert it.findtext(f"{USER}reason") == "spam"
    assert codes(one(carol.take(), "presence", from_=f"{ROOM}/bob")) == {"307"}
    await h.send(bob, f"<message to='{ROOM}' type='groupchat'><body>x</body></message>")
    assert error_condition(one(bob.take(), "message", type="error")) == "not-acceptable"


async def test_8_2_participant_cannot_kick_forbidden(h: Harness) -> None:
    _, bob, _ = await _room(h)
    answer = await admin_set(h, bob, "<item nick='carol' role='none'/>")
    assert error_condition(answer) == "forbidden"


async def test_8_2_moderator_cannot_kick_an_admin_not_allowed(h: Harness) -> None:
    alice, bob, _carol = await _room(h)
    await admin_set(h, alice, "<item jid='bob@localhost' affiliation='admin'/>")
    await admin_set(h, alice, "<item jid='carol@localhost' affiliation='admin'/>")
    answer = await admin_set(h, bob, "<item nick='al' role='none'/>")
    assert error_condition(answer) == "not-allowed"
    answer = await admin_set(h, bob, "<item nick='carol' role='visitor'/>")
    assert error_condition(answer) == "not-allowed"


async def test_8_3_8_4_voice_in_moderated_room(h: Harness) -> None:
    alice, bob, _ = await _room(h, moderatedroom="1")
    await h.send(bob, f"<message to='{ROOM}' type='groupchat'><body>x</body></message>")
    assert error_condition(one(bob.take(), "message", type="error")) == "forbidden"
    assert (await admin_set(h, alice, "<item nick='bob' role='participant'/>")).get(
        "type"
    ) == "result"
    assert item(one(bob.take(), "presence", from_=f"{ROOM}/bob")).get("role") == "participant"
    await h.send(bob, f"<message to='{ROOM}' type='groupchat' id='ok'><body>x</body></message>")
    one(alice.take(), "message", id="ok")
    # §8.5: the voice list.
    voice = await admin_get(h, alice, "role='participant'")
    assert [i.get("nick") for i in voice.iter(f"{{{ADMIN}}}item")] == ["bob"]
    await admin_set(h, alice, "<item nick='bob' role='visitor'/>")
    await h.send(bob, f"<message to='{ROOM}' type='groupchat'><body>x</body></message>")
    assert any(s.get("type") == "error" for s in bob.take())


async def test_9_1_ban_301_and_refused_on_return(h: Harness) -> None:
    alice, bob, carol = await _room(h)
    answer = await admin_set(
        h, alice, "<item jid='bob@localhost' affiliation='outcast'><reason>rude</reason></item>"
    )
    assert answer.get("type") == "result"
    own = one(bob.take(), "presence", type="unavailable")
    assert codes(own) == {"301", "110"} and item(own).get("affiliation") == "outcast"
    assert codes(one(carol.take(), "presence", from_=f"{ROOM}/bob")) == {"301"}
    err = one(await enter(h, bob, "bob"), "presence", type="error")
    assert error_condition(err) == "forbidden"
    # §9.2: the ban list.
    bans = await admin_get(h, alice, "affiliation='outcast'")
    assert [i.get("jid") for i in bans.iter(f"{{{ADMIN}}}item")] == ["bob@localhost"]


async def test_9_1_ban_a_user_not_in_the_room(h: Harness) -> None:
    alice, _, _ = await _room(h)
    await admin_set(h, alice, "<item jid='dave@localhost' affiliation='outcast'/>")
    dave = await h.online("dave@localhost/d")
    assert error_condition(one(await enter(h, dave, "dave"), "presence")) == "forbidden"


async def test_9_3_members_and_members_only(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al", membersonly="1")
    await admin_set(h, alice, "<item jid='bob@localhost' affiliation='member'/>")
    members = await admin_get(h, alice, "affiliation='member'")
    assert [i.get("jid") for i in members.iter(f"{{{ADMIN}}}item")] == ["bob@localhost"]
    bob = await h.online("bob@localhost/b")
    own = one(await enter(h, bob, "bob"), "presence", from_=f"{ROOM}/bob")
    assert item(own).get("affiliation") == "member"
    # §9.4: losing membership of a members-only room removes the occupant (321).
    await admin_set(h, alice, "<item jid='bob@localhost' affiliation='none'/>")
    assert codes(one(bob.take(), "presence", type="unavailable")) == {"321", "110"}


async def test_5_2_privileges_of_admins(h: Harness) -> None:
    alice, bob, _carol = await _room(h)
    await admin_set(h, alice, "<item jid='bob@localhost' affiliation='admin'/>")
    # An admin may not ban an owner, nor make admins or owners.
    answer = await admin_set(h, bob, "<item jid='alice@localhost' affiliation='outcast'/>")
    assert error_condition(answer) == "not-allowed"
    answer = await admin_set(h, bob, "<item jid='carol@localhost' affiliation='owner'/>")
    assert error_condition(answer) == "not-allowed"
    # An admin may ban a participant and see the owner list only as owner… here allowed.
    answer = await admin_set(h, bob, "<item jid='carol@localhost' affiliation='outcast'/>")
    assert answer.get("type") == "result"
    # A participant may not see affiliation lists.
    dave = await h.online("dave@localhost/d")
    await enter(h, dave, "dave")
    assert error_condition(await admin_get(h, dave, "affiliation='member'")) == "forbidden"
    assert error_condition(await admin_get(h, dave, "role='participant'")) == "forbidden"


async def test_10_3_10_6_owners_grant_admin_and_transfer_ownership(h: Harness) -> None:
    alice, bob, _ = await _room(h)
    assert (await admin_set(h, alice, "<item jid='bob@localhost' affiliation='owner'/>")).get(
        "type"
    ) == "result"
    p = one(bob.take(), "presence", from_=f"{ROOM}/bob")
    assert item(p).get("affiliation") == "owner" and item(p).get("role") == "moderator"
    assert (await admin_set(h, alice, "<item jid='alice@localhost' affiliation='none'/>")).get(
        "type"
    ) == "result"
    owners = await admin_get(h, bob, "affiliation='owner'")
    assert [i.get("jid") for i in owners.iter(f"{{{ADMIN}}}item")] == ["bob@localhost"]
    # §10.9: the last owner cannot step down.
    answer = await admin_set(h, bob, "<item jid='bob@localhost' affiliation='member'/>")
    assert error_condition(answer) == "conflict"


async def test_10_2_configuration_form_get_and_permissions(h: Harness) -> None:
    alice, bob, _ = await _room(h)
    form = await h.iq(alice, f"<iq type='get' to='{ROOM}'><query xmlns='{OWNER}'/></iq>")
    x = form.find(f"{{{OWNER}}}query/{DATA}x")
    assert x is not None and x.get("type") == "form"
    fields = {f.get("var") for f in x.iter(f"{DATA}field")}
    for name in (
        "roomname",
        "roomdesc",
        "persistentroom",
        "publicroom",
        "membersonly",
        "moderatedroom",
        "passwordprotectedroom",
        "roomsecret",
        "maxusers",
        "whois",
        "changesubject",
        "allowinvites",
        "allowpm",
        "enablelogging",
        "roomowners",
        "roomadmins",
    ):
        assert f"muc#roomconfig_{name}" in fields
    answer = await h.iq(bob, f"<iq type='get' to='{ROOM}'><query xmlns='{OWNER}'/></iq>")
    assert error_condition(answer) == "forbidden"
    assert error_condition(await submit(h, alice, persistentroom="maybe")) == "bad-request"
    assert error_condition(await submit(h, alice, whois="everyone")) == "not-acceptable"
    assert error_condition(await submit(h, alice, passwordprotectedroom="1")) == "not-acceptable"


async def test_10_2_1_config_change_notifies_104_and_members_only_removes_322(h: Harness) -> None:
    alice, bob, _ = await _room(h)
    await admin_set(h, alice, "<item jid='carol@localhost' affiliation='member'/>")
    assert (await submit(h, alice, membersonly="1")).get("type") == "result"
    got = bob.take()
    assert "104" in codes(one(got, "message", from_=ROOM))
    assert codes(one(got, "presence", type="unavailable")) == {"322", "110"}


async def test_10_9_destroy_with_reason_and_alternate_venue(h: Harness) -> None:
    alice, bob, _ = await _room(h)
    answer = await h.iq(
        alice,
        f"<iq type='set' to='{ROOM}'><query xmlns='{OWNER}'><destroy jid='new@{SERVICE}'>"
        "<reason>moved</reason></destroy></query></iq>",
    )
    assert answer.get("type") == "result"
    p = one(bob.take(), "presence", type="unavailable")
    d = p.find(f"{USER}x/{USER}destroy")
    assert d is not None and d.get("jid") == f"new@{SERVICE}"
    assert d.findtext(f"{USER}reason") == "moved"
    assert item(p).get("role") == "none"
    answer = await h.iq(bob, f"<iq type='get' to='{ROOM}'><query xmlns='{OWNER}'/></iq>")
    assert error_condition(answer) == "item-not-found"
    answer = await h.iq(
        bob, f"<iq type='set' to='{ROOM}'><query xmlns='{OWNER}'><destroy/></query></iq>"
    )
    assert error_condition(answer) == "item-not-found"


async def test_10_9_only_owners_destroy(h: Harness) -> None:
    _, bob, _ = await _room(h)
    answer = await h.iq(
        bob, f"<iq type='set' to='{ROOM}'><query xmlns='{OWNER}'><destroy/></query></iq>"
    )
    assert error_condition(answer) == "forbidden"


async def test_admin_query_errors(h: Harness) -> None:
    alice, _, _ = await _room(h)
    assert error_condition(await admin_set(h, alice, "<item nick='nobody' role='none'/>")) == (
        "item-not-found"
    )
    assert error_condition(
        await admin_set(h, alice, "<item jid='x@localhost' affiliation='boss'/>")
    ) == ("bad-request")
    assert error_condition(await admin_set(h, alice, "")) == "bad-request"
    answer = await admin_set(
        h, alice, "<item jid='x@localhost' affiliation='member'/>", room=f"none@{SERVICE}"
    )
    assert error_condition(answer) == "item-not-found"
