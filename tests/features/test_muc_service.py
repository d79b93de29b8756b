"""XEP-0045 §6 (discovery, with XEP-0059 paging), persistence of rooms across a
restart (§10.1, muc#roomconfig_persistentroom) and the service's host wiring."""

from __future__ import annotations

from pathlib import Path

from tests.features.muc_util import DATA, ROOM, SERVICE, admin_get, admin_set, enter, new_room
from tests.harness import Harness, error_condition, one

INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"


async def test_6_1_service_listed_by_the_server(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    answer = await h.iq(alice, f"<iq type='get' to='localhost'><query xmlns='{ITEMS}'/></iq>")
    jids = [i.get("jid") for i in answer.iter(f"{{{ITEMS}}}item")]
    assert SERVICE in jids


async def test_6_2_service_info(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    answer = await h.iq(alice, f"<iq type='get' to='{SERVICE}'><query xmlns='{INFO}'/></iq>")
    ident = answer.find(f"{{{INFO}}}query/{{{INFO}}}identity")
    assert ident is not None and (ident.get("category"), ident.get("type")) == (
        "conference",
        "text",
    )
    features = {f.get("var") for f in answer.iter(f"{{{INFO}}}feature")}
    assert "http://jabber.org/protocol/muc" in features


async def test_6_3_public_rooms_with_rsm_paging(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    for i in range(5):
        await new_room(h, alice, "al", room=f"r{i}@{SERVICE}", roomname=f"Room {i}")
    await new_room(h, alice, "al", room=f"hidden@{SERVICE}", publicroom="0")
    answer = await h.iq(alice, f"<iq type='get' to='{SERVICE}'><query xmlns='{ITEMS}'/></iq>")
    items = [(i.get("jid"), i.get("name")) for i in answer.iter(f"{{{ITEMS}}}item")]
    assert items == [(f"r{i}@{SERVICE}", f"Room {i}") for i in range(5)]
    rsm = "http://jabber.org/protocol/rsm"
    answer = await h.iq(
        alice,
        f"<iq type='get' to='{SERVICE}'><query xmlns='{ITEMS}'>"
        f"<set xmlns='{rsm}'><max>2</max></set></query></iq>",
    )
    assert [i.get("jid") for i in answer.iter(f"{{{ITEMS}}}item")] == [
        f"r0@{SERVICE}",
        f"r1@{SERVICE}",
    ]
    assert answer.findtext(f".//{{{rsm}}}count") == "5"
    last = answer.findtext(f".//{{{rsm}}}last")
    answer = await h.iq(
        alice,
        f"<iq type='get' to='{SERVICE}'><query xmlns='{ITEMS}'>"
        f"<set xmlns='{rsm}'><max>2</max><after>{last}</after></set></query></iq>",
    )
    assert [i.get("jid") for i in answer.iter(f"{{{ITEMS}}}item")] == [
        f"r2@{SERVICE}",
        f"r3@{SERVICE}",
    ]


async def test_6_4_room_info_features_and_roominfo_form(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(
        h,
        alice,
        "al",
        roomname="Lobby",
        roomdesc="Hello",
        persistentroom="1",
        membersonly="1",
        moderatedroom="1",
        passwordprotectedroom="1",
        roomsecret="pw",
        whois="anyone",
        publicroom="0",
    )
    await h.send(alice, f"<message to='{ROOM}' type='groupchat'><subject>Topic</subject></message>")
    answer = await h.iq(alice, f"<iq type='get' to='{ROOM}'><query xmlns='{INFO}'/></iq>")
    ident = answer.find(f"{{{INFO}}}query/{{{INFO}}}identity")
    assert ident is not None and ident.get("name") == "Lobby"
    features = {f.get("var") for f in answer.iter(f"{{{INFO}}}feature")}
    assert {
        "http://jabber.org/protocol/muc",
        "muc_hidden",
        "muc_persistent",
        "muc_membersonly",
        "muc_moderated",
        "muc_passwordprotected",
        "muc_nonanonymous",
    } <= features
    fields = {f.get("var"): f.findtext(f"{DATA}value") for f in answer.iter(f"{DATA}field")}
    assert fields["FORM_TYPE"] == "http://jabber.org/protocol/muc#roominfo"
    assert fields["muc#roominfo_occupants"] == "1"
    assert fields["muc#roominfo_subject"] == "Topic"
    assert fields["muc#roominfo_description"] == "Hello"
    # Defaults: the opposite features.
    await new_room(h, alice, "al", room=f"plain@{SERVICE}")
    answer = await h.iq(alice, f"<iq type='get' to='plain@{SERVICE}'><query xmlns='{INFO}'/></iq>")
    features = {f.get("var") for f in answer.iter(f"{{{INFO}}}feature")}
    assert {
        "muc_public",
        "muc_temporary",
        "muc_open",
        "muc_unmoderated",
        "muc_unsecured",
        "muc_semianonymous",
    } <= features


async def test_6_4_unknown_room_is_item_not_found(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    answer = await h.iq(alice, f"<iq type='get' to='nope@{SERVICE}'><query xmlns='{INFO}'/></iq>")
    assert error_condition(answer) == "item-not-found"
    answer = await h.iq(alice, f"<iq type='get' to='nope@{SERVICE}'><query xmlns='{ITEMS}'/></iq>")
    assert error_condition(answer) == "item-not-found"


async def test_unsupported_iq_to_room_is_service_unavailable(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    answer = await h.iq(
        alice, f"<iq type='get' to='{SERVICE}'><query xmlns='jabber:iq:nope'/></iq>"
    )
    assert error_condition(answer) == "service-unavailable"


async def test_persistent_room_survives_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/muc.db"
    h = await Harness.create(tmp_path, storage_url=url)
    try:
        alice = await h.online("alice@localhost/a")
        await new_room(h, alice, "al", persistentroom="1", roomname="Kept", membersonly="1")
        await admin_set(h, alice, "<item jid='bob@localhost' affiliation='member'/>")
        await admin_set(h, alice, "<item jid='eve@localhost' affiliation='outcast'/>")
        await h.send(
            alice, f"<message to='{ROOM}' type='groupchat'><subject>Kept topic</subject></message>"
        )
        await new_room(h, alice, "al", room=f"temp@{SERVICE}")
    finally:
        await h.stop()
    h = await Harness.create(tmp_path, storage_url=url)
    try:
        alice = await h.online("alice@localhost/a")
        info = await h.iq(alice, f"<iq type='get' to='{ROOM}'><query xmlns='{INFO}'/></iq>")
        assert one([info], "iq", type="result") is not None
        assert "muc_membersonly" in {f.get("var") for f in info.iter(f"{{{INFO}}}feature")}
        got = await enter(h, alice, "al")
        assert got[-1].findtext("subject") == "Kept topic"
        members = await admin_get(h, alice, "affiliation='member'")
        assert [
            i.get("jid") for i in members.iter("{http://jabber.org/protocol/muc#admin}item")
        ] == ["bob@localhost"]
        eve = await h.online("eve@localhost/e")
        assert error_condition(one(await enter(h, eve, "eve"), "presence")) == "forbidden"
        answer = await h.iq(
            alice, f"<iq type='get' to='temp@{SERVICE}'><query xmlns='{INFO}'/></iq>"
        )
        assert error_condition(answer) == "item-not-found"
    finally:
        await h.stop()


async def test_persistent_room_made_temporary_is_forgotten(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/muc.db"
    h = await Harness.create(tmp_path, storage_url=url)
    try:
        alice = await h.online("alice@localhost/a")
        await new_room(h, alice, "al", persistentroom="1")
        assert await h.server.storage.rooms.list_rooms() == [(SERVICE, "room")]
        from tests.features.muc_util import submit

        await submit(h, alice, persistentroom="0")
        assert await h.server.storage.rooms.list_rooms() == []
    finally:
        await h.stop()


async def test_muc_disabled_serves_no_service(tmp_path: Path) -> None:
    from descant.config import MUCConfig

    h = await Harness.create(tmp_path, muc=MUCConfig(enabled=False))
    try:
        assert SERVICE not in h.server.hosts
        alice = await h.online("alice@localhost/a")
        answer = await h.iq(alice, f"<iq type='get' to='localhost'><query xmlns='{ITEMS}'/></iq>")
        assert SERVICE not in [i.get("jid") for i in answer.iter(f"{{{ITEMS}}}item")]
    finally:
        await h.stop()


async def test_custom_domain_prefix(tmp_path: Path) -> None:
    from descant.config import MUCConfig

    h = await Harness.create(tmp_path, muc=MUCConfig(domain_prefix="rooms"))
    try:
        assert "rooms.localhost" in h.server.hosts and "rooms.example.org" in h.server.hosts
    finally:
        await h.stop()


async def test_7_12_reserved_nick_discovery_is_empty(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await new_room(h, alice, "al")
    answer = await h.iq(
        alice, f"<iq type='get' to='{ROOM}'><query xmlns='{INFO}' node='x-roomuser-item'/></iq>"
    )
    assert answer.get("type") == "result"
    query = answer.find(f"{{{INFO}}}query")
    assert query is not None and query.get("node") == "x-roomuser-item" and not len(query)


async def test_rooms_one_account_may_own_are_bounded(tmp_path: Path) -> None:
    """limits.max_rooms_per_account: creating one more room is <not-allowed/>; joining
    rooms others own is not limited by it."""
    from descant.config import LimitsConfig

    h = await Harness.create(tmp_path, limits=LimitsConfig(max_rooms_per_account=2))
    try:
        alice = await h.online("alice@localhost/a")
        for n in (1, 2):
            await h.send(alice, f"<presence to='r{n}@{SERVICE}/al'/>")
        alice.take()
        await h.send(alice, f"<presence to='r3@{SERVICE}/al'/>")
        err = one(alice.take(), "presence", type="error")
        assert error_condition(err) == "not-allowed"
        bob = await h.online("bob@localhost/b")
        await h.send(bob, f"<presence to='r4@{SERVICE}/bob'/>")
        bob.take()
        await h.send(alice, f"<presence to='r4@{SERVICE}/al'/>")
        assert not [p for p in alice.take() if p.get("type") == "error"]
    finally:
        await h.stop()
