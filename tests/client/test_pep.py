"""PubSub (XEP-0060), PEP (XEP-0163) and the specifications built on them, end to end
through slixmpp's own plugins: publish options (XEP-0223), User Avatar (XEP-0084),
vCard avatars (XEP-0153, XEP-0398), User Nickname (XEP-0172), private and public PEP
data (XEP-0222/0223), PEP native bookmarks (XEP-0402), Private XML Storage (XEP-0049),
bookmarks (XEP-0048) and their bridge (XEP-0411), the pubsub service at pubsub.<domain>.

Each test drives one behaviour and fails if the server lacks it. PEP notifications go
to contacts whose XEP-0115 caps carry ``<node>+notify``; see tests/client/pep_util.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence

import pytest
from slixmpp.exceptions import IqError
from slixmpp.xmlstream import ElementBase

from tests.client.pep_util import (
    befriend,
    condition,
    config_values,
    connect_with,
    drained,
    event_items,
    events,
    from_node,
    item_ids,
    next_event,
    node_config,
    note,
    payload_texts,
    phone_and_laptop,
    publish_options,
    published_ids,
    pubsub_condition,
    unique_node,
)
from tests.live import Client, LiveServer, disconnect

PUBSUB = "http://jabber.org/protocol/pubsub"
AVATAR_METADATA = "urn:xmpp:avatar:metadata"
NICK = "http://jabber.org/protocol/nick"
BOOKMARKS2 = "urn:xmpp:bookmarks:1"
VCARD_UPDATE = "vcard-temp:x:update"

# "You may not read this" as the specifications spell it for the access models
# (XEP-0060 §6.5.9 / §7.2.3.3): the exact condition varies with the model and server.
DENIED = {"forbidden", "not-authorized", "not-allowed", "item-not-found"}


def png(tag: str) -> bytes:
    """Some bytes that look like a PNG and differ from run to run (distinct hashes)."""
    return b"\x89PNG\r\n\x1a\n" + tag.encode() + os.urandom(24)


class Secret(ElementBase):  # type: ignore[misc]
    namespace = "urn:descant:test:secret"
    name = "secret"
    plugin_attrib = "descant_secret"
    interfaces = {"value"}
    sub_interfaces = {"value"}


class Prefs(ElementBase):  # type: ignore[misc]
    """Arbitrary private XML (XEP-0049)."""

    namespace = "urn:descant:test:prefs"
    name = "prefs"
    plugin_attrib = "descant_prefs"
    interfaces = {"colour"}
    sub_interfaces = {"colour"}


async def _pair(
    server: LiveServer, *, bob_interests: Sequence[str] = (), bob_plugins: Sequence[str] = ()
) -> tuple[Client, Client]:
    """Alice and Bob online with a mutual subscription; Bob asks for +notify of bob_interests."""
    a_jid, a_pw = await server.make_user("alice")
    b_jid, b_pw = await server.make_user("bob")
    alice = await connect_with(server, a_jid, a_pw)
    bob = await connect_with(server, b_jid, b_pw, interests=bob_interests, plugins=bob_plugins)
    await befriend(alice, bob)
    return alice, bob


# ---------------------------------------------------------------- XEP-0060 on the PEP service


async def test_publish_with_and_without_item_id(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw)
    node = unique_node("publish")
    try:
        ps = alice.plugin["xep_0060"]
        await ps.publish(a_jid, node, id="mine", payload=note("with id"))
        result = await ps.publish(a_jid, node, payload=note("without id"))
        generated = str(result["pubsub"]["publish"]["item"]["id"])
        assert generated, f"no server-generated item id in the result: {result}"
        assert generated != "mine"
        got = await ps.get_items(a_jid, node, item_ids=[generated])
        assert payload_texts(got) == {generated: "without id"}
    finally:
        await disconnect(alice)


async def test_get_items_all_by_id_and_max_items(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw)
    node = unique_node("items")
    try:
        ps = alice.plugin["xep_0060"]
        await ps.create_node(a_jid, node, config=node_config(max_items="10"))
        for n in (1, 2, 3):
            await ps.publish(a_jid, node, id=f"i{n}", payload=note(f"text {n}"))
        everything = payload_texts(await ps.get_items(a_jid, node))
        assert everything == {"i1": "text 1", "i2": "text 2", "i3": "text 3"}
        by_id = payload_texts(await ps.get_items(a_jid, node, item_ids=["i2"]))
        assert by_id == {"i2": "text 2"}
        newest = item_ids(await ps.get_items(a_jid, node, max_items=2))
        assert sorted(newest) == ["i2", "i3"]
    finally:
        await disconnect(alice)


async def test_retract_with_notify(server: LiveServer) -> None:
    async with phone_and_laptop(server, "retract") as d:
        a_jid, node, phone, laptop = d.jid, d.node, d.phone, d.laptop
        published = events(laptop, "pubsub_publish")
        retracted = events(laptop, "pubsub_retract")
        ps = phone.plugin["xep_0060"]
        await ps.publish(a_jid, node, id="gone-soon", payload=note("x"))
        await next_event(published, from_node(node))
        await ps.retract(a_jid, node, "gone-soon", notify=True)
        msg = await next_event(retracted, from_node(node))
        assert [(i.name, str(i["id"])) for i in event_items(msg)] == [("retract", "gone-soon")]
        assert "gone-soon" not in item_ids(await ps.get_items(a_jid, node))


async def test_purge_node(server: LiveServer) -> None:
    async with phone_and_laptop(server, "purge") as d:
        a_jid, node, phone, laptop = d.jid, d.node, d.phone, d.laptop
        purged = events(laptop, "pubsub_purge")
        ps = phone.plugin["xep_0060"]
        await ps.create_node(a_jid, node, config=node_config(max_items="10"))
        await ps.publish(a_jid, node, id="a", payload=note("a"))
        await ps.publish(a_jid, node, id="b", payload=note("b"))
        await ps.purge(a_jid, node)
        assert item_ids(await ps.get_items(a_jid, node)) == []
        msg = await next_event(purged)
        assert msg["pubsub_event"]["purge"]["node"] == node


async def test_delete_node(server: LiveServer) -> None:
    async with phone_and_laptop(server, "delete") as d:
        a_jid, node, phone, laptop = d.jid, d.node, d.phone, d.laptop
        deleted = events(laptop, "pubsub_delete")
        ps = phone.plugin["xep_0060"]
        await ps.publish(a_jid, node, id="a", payload=note("a"))
        await ps.delete_node(a_jid, node)
        msg = await next_event(deleted)
        assert msg["pubsub_event"]["delete"]["node"] == node
        with pytest.raises(IqError) as err:
            await ps.get_items(a_jid, node)
        assert condition(err.value) == "item-not-found"


async def test_node_configuration_form_get_and_set(server: LiveServer) -> None:
    """pubsub#access_model, pubsub#max_items (with "max") and pubsub#persist_items; the
    access model set through the form is enforced for a stranger."""
    a_jid, a_pw = await server.make_user("alice")
    d_jid, d_pw = await server.make_user("dave")
    alice = await connect_with(server, a_jid, a_pw)
    dave = await connect_with(server, d_jid, d_pw)
    node = unique_node("configure")
    try:
        ps = alice.plugin["xep_0060"]
        await ps.publish(a_jid, node, id="current", payload=note("hello"))
        before = config_values(await ps.get_node_config(a_jid, node))
        for var in ("pubsub#access_model", "pubsub#max_items", "pubsub#persist_items"):
            assert var in before, f"{var} missing from the configuration form: {before}"
        assert before["pubsub#access_model"] == "presence"  # the PEP default (XEP-0163 §4.1)
        with pytest.raises(IqError) as err:
            await dave.plugin["xep_0060"].get_items(a_jid, node)
        assert condition(err.value) in DENIED

        await ps.set_node_config(
            a_jid, node, node_config(access_model="open", max_items="max", persist_items=True)
        )
        after = config_values(await ps.get_node_config(a_jid, node))
        assert after["pubsub#access_model"] == "open"
        assert after["pubsub#persist_items"] in (True, "1", "true")
        max_items = str(after["pubsub#max_items"])
        assert max_items == "max" or int(max_items) > 1, max_items
        got = await dave.plugin["xep_0060"].get_items(a_jid, node)
        assert payload_texts(got) == {"current": "hello"}
    finally:
        await disconnect(alice, dave)


async def test_items_of_missing_node_is_item_not_found(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw)
    try:
        with pytest.raises(IqError) as err:
            await alice.plugin["xep_0060"].get_items(a_jid, unique_node("never-created"))
        assert condition(err.value) == "item-not-found"
    finally:
        await disconnect(alice)


async def test_publish_to_another_users_pep_is_forbidden(server: LiveServer) -> None:
    alice, bob = await _pair(server)
    node = unique_node("not-yours")
    try:
        with pytest.raises(IqError) as err:
            await alice.plugin["xep_0060"].publish(
                bob.boundjid.bare, node, id="x", payload=note("x")
            )
        assert condition(err.value) == "forbidden"
        with pytest.raises(IqError):
            await bob.plugin["xep_0060"].get_items(bob.boundjid.bare, node)
    finally:
        await disconnect(alice, bob)


async def test_configure_invalid_access_model_is_rejected(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw)
    node = unique_node("bad-config")
    try:
        ps = alice.plugin["xep_0060"]
        await ps.publish(a_jid, node, id="current", payload=note("x"))
        with pytest.raises(IqError) as err:
            await ps.set_node_config(a_jid, node, node_config(access_model="everyone-ish"))
        assert condition(err.value) in ("not-acceptable", "bad-request")
        kept = config_values(await ps.get_node_config(a_jid, node))
        assert kept["pubsub#access_model"] == "presence"
    finally:
        await disconnect(alice)


# ---------------------------------------------------------------- XEP-0163 notifications


async def test_contact_with_notify_gets_publication(server: LiveServer) -> None:
    node = unique_node("notify")
    alice, bob = await _pair(server, bob_interests=[node])
    published = events(bob, "pubsub_publish")
    try:
        await alice.plugin["xep_0060"].publish(None, node, id="first", payload=note("hi bob"))
        msg = await next_event(published, from_node(node))
        assert msg["from"].bare == alice.boundjid.bare
        assert published_ids(msg) == ["first"]
        assert event_items(msg)[0]["payload"].text == "hi bob"
    finally:
        await disconnect(alice, bob)


async def test_no_notification_without_notify_or_subscription(server: LiveServer) -> None:
    """Carol is a contact whose caps lack the node's +notify; Dave has +notify but no
    subscription (he sends Alice directed presence with his caps). Bob, a contact with
    +notify, is the control: once he has the event, the others must not get it."""
    node = unique_node("filtered")
    alice, bob = await _pair(server, bob_interests=[node])
    c_jid, c_pw = await server.make_user("carol")
    d_jid, d_pw = await server.make_user("dave")
    carol = await connect_with(server, c_jid, c_pw, interests=[unique_node("other")])
    dave = await connect_with(server, d_jid, d_pw, interests=[node])
    got = {c: events(c, "pubsub_publish") for c in (bob, carol, dave)}
    try:
        await befriend(alice, carol)
        dave.send_presence(pto=alice.boundjid.bare)
        await asyncio.sleep(0.5)
        await alice.plugin["xep_0060"].publish(None, node, id="only-bob", payload=note("psst"))
        await next_event(got[bob], from_node(node))
        await asyncio.sleep(1.0)
        assert drained(got[carol], from_node(node)) == [], "sent without +notify"
        assert drained(got[dave], from_node(node)) == [], "sent to a non-contact"
    finally:
        await disconnect(alice, bob, carol, dave)


async def test_contact_coming_online_gets_last_item(server: LiveServer) -> None:
    node = unique_node("last-item")
    alice, bob = await _pair(server, bob_interests=[node])
    b_jid, b_pw = bob.boundjid.bare, bob.password
    await disconnect(bob)
    try:
        await alice.plugin["xep_0060"].publish(None, node, id="older", payload=note("old news"))
        await alice.plugin["xep_0060"].publish(None, node, id="newest", payload=note("latest"))
        published: asyncio.Queue[object] = asyncio.Queue()
        bob = await connect_with(
            server,
            b_jid,
            b_pw,
            interests=[node],
            setup=lambda c: c.add_event_handler("pubsub_publish", published.put_nowait),
        )
        msg = await next_event(published, from_node(node))
        assert msg["from"].bare == alice.boundjid.bare
        assert published_ids(msg) == ["newest"]
        assert event_items(msg)[0]["payload"].text == "latest"
    finally:
        await disconnect(alice, bob)


async def test_own_other_resource_gets_publication(server: LiveServer) -> None:
    async with phone_and_laptop(server, "self") as d:
        a_jid, node, phone, laptop = d.jid, d.node, d.phone, d.laptop
        published = events(laptop, "pubsub_publish")
        await phone.plugin["xep_0060"].publish(None, node, id="sync", payload=note("from my phone"))
        msg = await next_event(published, from_node(node))
        assert msg["from"].bare == a_jid
        assert published_ids(msg) == ["sync"]


# ---------------------------------------------------------------- XEP-0223 publish options


async def test_publish_options_create_node_with_that_config(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw)
    node = unique_node("publish-options")
    try:
        ps = alice.plugin["xep_0060"]
        await ps.publish(
            a_jid,
            node,
            id="current",
            payload=note("private"),
            options=publish_options(access_model="whitelist", persist_items="true"),
        )
        cfg = config_values(await ps.get_node_config(a_jid, node))
        assert cfg["pubsub#access_model"] == "whitelist"
        assert cfg["pubsub#persist_items"] in (True, "1", "true")
        # Same options again: the precondition holds, the publish succeeds.
        await ps.publish(
            a_jid,
            node,
            id="current",
            payload=note("private, again"),
            options=publish_options(access_model="whitelist", persist_items="true"),
        )
        assert payload_texts(await ps.get_items(a_jid, node)) == {"current": "private, again"}
    finally:
        await disconnect(alice)


async def test_conflicting_publish_options_are_precondition_not_met(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw)
    node = unique_node("precondition")
    try:
        ps = alice.plugin["xep_0060"]
        await ps.publish(a_jid, node, id="current", payload=note("presence-model node"))
        with pytest.raises(IqError) as err:
            await ps.publish(
                a_jid,
                node,
                id="current",
                payload=note("should not land"),
                options=publish_options(access_model="whitelist"),
            )
        assert pubsub_condition(err.value) == "precondition-not-met", err.value.iq
        assert payload_texts(await ps.get_items(a_jid, node)) == {"current": "presence-model node"}
    finally:
        await disconnect(alice)


# ---------------------------------------------------------------- XEP-0084 / 0153 / 0398 / 0172


async def test_user_avatar(server: LiveServer) -> None:
    """XEP-0084: data then metadata; Bob (+notify for metadata via slixmpp's plugin)
    gets the metadata event and fetches the data by its id."""
    alice, bob = await _pair(server, bob_plugins=["xep_0084"])
    alice.register_plugin("xep_0084")
    meta = events(bob, "avatar_metadata_publish")
    data = png("avatar")
    avatar_id = hashlib.sha1(data).hexdigest()
    try:
        av = alice.plugin["xep_0084"]
        await av.publish_avatar(data)
        await av.publish_avatar_metadata({"id": avatar_id, "type": "image/png", "bytes": len(data)})
        msg = await next_event(meta)
        assert msg["from"].bare == alice.boundjid.bare
        assert published_ids(msg) == [avatar_id]
        info = msg.xml.find(f".//{{{AVATAR_METADATA}}}info")
        assert info is not None and info.get("id") == avatar_id
        assert info.get("bytes") == str(len(data)) and info.get("type") == "image/png"
        got = await bob.plugin["xep_0084"].retrieve_avatar(alice.boundjid.bare, avatar_id)
        assert got["pubsub"]["items"]["item"]["avatar_data"]["value"] == data
    finally:
        await disconnect(alice, bob)


def _photo_hash(presence: object) -> str | None:
    el = presence.xml.find(f"{{{VCARD_UPDATE}}}x/{{{VCARD_UPDATE}}}photo")  # type: ignore[attr-defined]
    return None if el is None else (el.text or "")


async def test_vcard_photo_hash_in_presence(server: LiveServer) -> None:
    """XEP-0153: Alice's client (no vCard-avatar logic of its own) stores a vCard with a
    PHOTO; her next presence reaches Bob with the photo's SHA-1 in vcard-temp:x:update."""
    alice, bob = await _pair(server)
    alice.register_plugin("xep_0054")
    data = png("vcard")
    try:
        vcard = alice.plugin["xep_0054"].make_vcard()
        vcard["FN"] = "Alice"
        vcard["PHOTO"]["TYPE"] = "image/png"
        vcard["PHOTO"]["BINVAL"] = data
        await alice.plugin["xep_0054"].publish_vcard(vcard)
        alice.send_presence(pstatus="new photo")
        p = await bob.next_presence(
            lambda p: p["from"].bare == alice.boundjid.bare and p["status"] == "new photo"
        )
        assert _photo_hash(p) == hashlib.sha1(data).hexdigest()
    finally:
        await disconnect(alice, bob)


async def test_vcard_avatar_through_slixmpp_plugin(server: LiveServer) -> None:
    """XEP-0153 as slixmpp does it: set_avatar stores the vCard, re-reads it from the
    server to hash it, and re-sends presence; Bob's plugin raises vcard_avatar_update."""
    alice, bob = await _pair(server, bob_plugins=["xep_0153"])
    alice.register_plugin("xep_0153")
    updates = events(bob, "vcard_avatar_update")
    data = png("plugin")
    expected = hashlib.sha1(data).hexdigest()
    try:
        await asyncio.wait_for(
            alice.plugin["xep_0153"].set_avatar(avatar=data, mtype="image/png"), 10
        )
        p = await next_event(updates, lambda p: p["vcard_temp_update"]["photo"] == expected)
        assert p["from"].bare == alice.boundjid.bare
        card = await bob.plugin["xep_0054"].get_vcard(alice.boundjid.bare, local=False)
        assert card["vcard_temp"]["PHOTO"]["BINVAL"] == data
    finally:
        await disconnect(alice, bob)


async def test_pep_avatar_reflected_in_vcard_and_presence(server: LiveServer) -> None:
    """XEP-0398: after Alice publishes a PEP avatar, her vCard's PHOTO is that avatar and
    her presence carries its hash."""
    alice, bob = await _pair(server)
    alice.register_plugin("xep_0084")
    bob.register_plugin("xep_0054")
    data = png("pep")
    avatar_id = hashlib.sha1(data).hexdigest()
    # Public, as clients publish avatars: only a public avatar goes in the vCard.
    public = alice.plugin["xep_0004"].make_form("submit")
    public.add_field("FORM_TYPE", ftype="hidden", value=f"{PUBSUB}#publish-options")
    public.add_field("pubsub#access_model", value="open")
    try:
        await alice.plugin["xep_0084"].publish_avatar(data, options=public)
        await alice.plugin["xep_0084"].publish_avatar_metadata(
            {"id": avatar_id, "type": "image/png", "bytes": len(data)}, options=public
        )
        card = await bob.plugin["xep_0054"].get_vcard(alice.boundjid.bare, local=False)
        photo = card["vcard_temp"]["PHOTO"]
        assert photo["BINVAL"] == data
        assert photo["TYPE"] == "image/png"
        alice.send_presence(pstatus="avatar set")
        p = await bob.next_presence(
            lambda p: p["from"].bare == alice.boundjid.bare and p["status"] == "avatar set"
        )
        assert _photo_hash(p) == avatar_id
    finally:
        await disconnect(alice, bob)


async def test_user_nickname(server: LiveServer) -> None:
    alice, bob = await _pair(server, bob_plugins=["xep_0172"])
    alice.register_plugin("xep_0172")
    nicks = events(bob, "user_nick_publish")
    try:
        await alice.plugin["xep_0172"].publish_nick("Ally")
        msg = await next_event(nicks)
        assert msg["from"].bare == alice.boundjid.bare
        assert event_items(msg)[0]["nick"]["nick"] == "Ally"
        got = await bob.plugin["xep_0060"].get_items(alice.boundjid.bare, NICK)
        nick = got.xml.find(f".//{{{NICK}}}nick")
        assert nick is not None and nick.text == "Ally"
    finally:
        await disconnect(alice, bob)


# ---------------------------------------------------------------- XEP-0222 / XEP-0223 data


async def test_private_pep_data(server: LiveServer) -> None:
    """XEP-0223 through slixmpp's plugin (whitelist + persist_items publish options): Alice
    reads it back, and even her contact Bob cannot read it."""
    alice, bob = await _pair(server)
    alice.register_plugin("xep_0223")
    node = unique_node("private-data")
    try:
        secret = Secret()
        secret["value"] = "s3cr3t"
        await alice.plugin["xep_0223"].store(secret, node=node, id="current")
        got = await alice.plugin["xep_0223"].retrieve(node, id="current")
        el = got.xml.find(f".//{{{Secret.namespace}}}value")
        assert el is not None and el.text == "s3cr3t"
        with pytest.raises(IqError) as err:
            await bob.plugin["xep_0060"].get_items(alice.boundjid.bare, node)
        assert condition(err.value) in DENIED
    finally:
        await disconnect(alice, bob)


async def test_public_pep_data(server: LiveServer) -> None:
    """XEP-0222 through slixmpp's plugin (persist_items, send_last_published_item=never):
    stored, and readable by a contact."""
    alice, bob = await _pair(server)
    alice.register_plugin("xep_0222")
    node = unique_node("public-data")
    try:
        secret = Secret()
        secret["value"] = "not a secret"
        await alice.plugin["xep_0222"].store(secret, node=node, id="current")
        got = await bob.plugin["xep_0060"].get_items(alice.boundjid.bare, node)
        el = got.xml.find(f".//{{{Secret.namespace}}}value")
        assert el is not None and el.text == "not a secret"
    finally:
        await disconnect(alice, bob)


# ---------------------------------------------------------------- bookmarks and private XML


def _bookmarks2_options() -> object:
    """The publish options XEP-0402 §3.1 requires."""
    return publish_options(
        persist_items="true",
        max_items="max",
        send_last_published_item="never",
        access_model="whitelist",
    )


def _conference2(name: str, nick: str) -> ET.Element:
    el = ET.Element(f"{{{BOOKMARKS2}}}conference", {"name": name, "autojoin": "true"})
    ET.SubElement(el, f"{{{BOOKMARKS2}}}nick").text = nick
    return el


async def test_pep_native_bookmarks(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    room = f"room{os.getpid()}-{os.urandom(3).hex()}@conference.localhost"
    phone = await connect_with(server, a_jid + "/phone", a_pw, plugins=["xep_0402"])
    laptop = await connect_with(
        server, a_jid + "/laptop", a_pw, plugins=["xep_0402"], interests=[BOOKMARKS2]
    )
    published = events(laptop, "pubsub_publish")
    try:
        await phone.plugin["xep_0060"].publish(
            a_jid,
            BOOKMARKS2,
            id=room,
            payload=_conference2("The Room", "ally"),
            options=_bookmarks2_options(),
        )
        msg = await next_event(published, from_node(BOOKMARKS2))
        assert published_ids(msg) == [room]
        conf = event_items(msg)[0]["payload"]
        assert conf.get("name") == "The Room"

        got = await phone.plugin["xep_0060"].get_items(a_jid, BOOKMARKS2)
        items = {str(i["id"]): i for i in got["pubsub"]["items"]}
        assert room in items
        assert items[room]["conference"]["name"] == "The Room"
        assert items[room]["conference"]["nick"] == "ally"
        assert items[room]["conference"]["autojoin"] is True
    finally:
        await disconnect(phone, laptop)


async def test_private_xml_storage(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw, plugins=["xep_0049"])
    alice.plugin["xep_0049"].register(Prefs)
    try:
        prefs = Prefs()
        prefs["colour"] = "teal"
        await alice.plugin["xep_0049"].store(prefs)
        got = await alice.plugin["xep_0049"].retrieve("descant_prefs")
        assert got["private"]["descant_prefs"]["colour"] == "teal"
        # A second session of the same account reads the same storage.
        other = await connect_with(server, a_jid, a_pw, plugins=["xep_0049"])
        try:
            other.plugin["xep_0049"].register(Prefs)
            got = await other.plugin["xep_0049"].retrieve("descant_prefs")
            assert got["private"]["descant_prefs"]["colour"] == "teal"
        finally:
            await disconnect(other)
    finally:
        await disconnect(alice)


async def test_private_xml_storage_is_per_account(server: LiveServer) -> None:
    """XEP-0049 §3: an empty result for a namespace never stored; jabber:iq:private sent to
    another user is forbidden."""
    alice, bob = await _pair(server)
    for c in (alice, bob):
        c.register_plugin("xep_0049")
        c.plugin["xep_0049"].register(Prefs)
    try:
        prefs = Prefs()
        prefs["colour"] = "red"
        await alice.plugin["xep_0049"].store(prefs)
        got = await bob.plugin["xep_0049"].retrieve("descant_prefs")
        assert got["private"]["descant_prefs"]["colour"] == ""
        iq = bob.make_iq_get(ito=alice.boundjid.bare)
        iq["private"].enable("descant_prefs")
        with pytest.raises(IqError) as err:
            await iq.send()
        assert condition(err.value) in ("forbidden", "not-allowed", "service-unavailable")
    finally:
        await disconnect(alice, bob)


async def test_bookmarks_in_private_storage(server: LiveServer) -> None:
    """XEP-0048 through slixmpp's plugin, stored with XEP-0049."""
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw, plugins=["xep_0048"])
    room = f"legacy{os.getpid()}-{os.urandom(3).hex()}@conference.localhost"
    try:
        bm = alice.plugin["xep_0048"].stanza.Bookmarks()
        bm.add_conference(room, "ally", name="Old Room", autojoin=True)
        await alice.plugin["xep_0048"].set_bookmarks(bm, method="xep_0049")
        got = await alice.plugin["xep_0048"].get_bookmarks(method="xep_0049")
        confs = {str(c["jid"]): c for c in got["private"]["bookmarks"]["conferences"]}
        assert room in confs
        assert confs[room]["nick"] == "ally"
        assert confs[room]["name"] == "Old Room"
    finally:
        await disconnect(alice)


async def test_bookmarks_bridge_private_to_pep(server: LiveServer) -> None:
    """XEP-0411: a conference stored through XEP-0048 in private storage shows up as an
    item of the XEP-0402 node (item id = room JID)."""
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw, plugins=["xep_0048", "xep_0402"])
    room = f"bridge{os.getpid()}-{os.urandom(3).hex()}@conference.localhost"
    try:
        bm = alice.plugin["xep_0048"].stanza.Bookmarks()
        bm.add_conference(room, "ally", name="Bridged", autojoin=True)
        await alice.plugin["xep_0048"].set_bookmarks(bm, method="xep_0049")
        got = await alice.plugin["xep_0060"].get_items(a_jid, BOOKMARKS2)
        items = {str(i["id"]): i for i in got["pubsub"]["items"]}
        assert room in items, f"{room} not in {sorted(items)}"
        assert items[room]["conference"]["name"] == "Bridged"
        assert items[room]["conference"]["nick"] == "ally"
        assert items[room]["conference"]["autojoin"] is True
    finally:
        await disconnect(alice)


async def test_bookmarks_bridge_pep_to_private(server: LiveServer) -> None:
    """XEP-0411 the other way: a XEP-0402 item reads back through XEP-0048 private storage."""
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw, plugins=["xep_0048", "xep_0402"])
    room = f"native{os.getpid()}-{os.urandom(3).hex()}@conference.localhost"
    try:
        await alice.plugin["xep_0060"].publish(
            a_jid,
            BOOKMARKS2,
            id=room,
            payload=_conference2("Native", "ally"),
            options=_bookmarks2_options(),
        )
        got = await alice.plugin["xep_0048"].get_bookmarks(method="xep_0049")
        confs = {str(c["jid"]): c for c in got["private"]["bookmarks"]["conferences"]}
        assert room in confs, f"{room} not in {sorted(confs)}"
        assert confs[room]["name"] == "Native"
        assert confs[room]["nick"] == "ally"
        assert confs[room]["autojoin"] is True
    finally:
        await disconnect(alice)


# ---------------------------------------------------------------- service discovery


async def test_account_disco_info_lists_pep(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw)
    try:
        info = await alice.plugin["xep_0030"].get_info(a_jid, local=False)
        identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
        assert ("pubsub", "pep") in identities, identities
        features = set(info["disco_info"]["features"])
        for feature in (
            f"{PUBSUB}#publish",
            f"{PUBSUB}#retrieve-items",
            f"{PUBSUB}#publish-options",
            f"{PUBSUB}#auto-create",
            f"{PUBSUB}#last-published",
        ):
            assert feature in features, f"{feature} not advertised: {sorted(features)}"
    finally:
        await disconnect(alice)


async def test_pubsub_service_in_server_disco_items(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw)
    try:
        items = await alice.plugin["xep_0030"].get_items("localhost", local=False)
        jids = {str(i[0]) for i in items["disco_items"]["items"]}
        assert "pubsub.localhost" in jids, jids
        info = await alice.plugin["xep_0030"].get_info("pubsub.localhost", local=False)
        identities = {(i[0], i[1]) for i in info["disco_info"]["identities"]}
        assert ("pubsub", "service") in identities, identities
    finally:
        await disconnect(alice)


async def test_pubsub_service_node_is_listed(server: LiveServer) -> None:
    a_jid, a_pw = await server.make_user("alice")
    alice = await connect_with(server, a_jid, a_pw)
    node = f"descant-test-{os.getpid()}-{os.urandom(4).hex()}"
    try:
        ps = alice.plugin["xep_0060"]
        await ps.create_node("pubsub.localhost", node)
        await ps.publish("pubsub.localhost", node, id="one", payload=note("on the service"))
        items = await alice.plugin["xep_0030"].get_items("pubsub.localhost", local=False)
        nodes = {str(i[1]) for i in items["disco_items"]["items"]}
        assert node in nodes, nodes
        got = await ps.get_items("pubsub.localhost", node)
        assert payload_texts(got) == {"one": "on the service"}
        await ps.delete_node("pubsub.localhost", node)
    finally:
        await disconnect(alice)
