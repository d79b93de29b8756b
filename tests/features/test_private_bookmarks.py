"""Private XML Storage (XEP-0049) and bookmarks conversion (XEP-0411, XEP-0402)."""

from __future__ import annotations

from pathlib import Path

from tests.features.test_pep import EVENT, PUBSUB, events, with_caps
from tests.harness import Harness, dump, error_condition

PRIVATE = "jabber:iq:private"
LEGACY = "storage:bookmarks"
NODE = "urn:xmpp:bookmarks:1"


def private(type_: str, inner: str, to: str = "") -> str:
    to_attr = f" to='{to}'" if to else ""
    return f"<iq type='{type_}'{to_attr}><query xmlns='{PRIVATE}'>{inner}</query></iq>"


async def test_store_and_retrieve_by_namespace_xep0049_3(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    doc = "<prefs xmlns='urn:example:prefs'><colour>blue</colour></prefs>"
    assert (await h.iq(alice, private("set", doc))).get("type") == "result"
    got = await h.iq(alice, private("get", "<prefs xmlns='urn:example:prefs'/>"))
    assert (
        got.findtext(f"{{{PRIVATE}}}query/{{urn:example:prefs}}prefs/{{urn:example:prefs}}colour")
        == "blue"
    )
    empty = await h.iq(alice, private("get", "<other xmlns='urn:example:none'/>"))
    el = empty.find(f"{{{PRIVATE}}}query/{{urn:example:none}}other")
    assert el is not None and len(el) == 0


async def test_private_data_of_others_and_bad_requests_xep0049_3(h: Harness) -> None:
    await h.account("bob")
    alice = await h.online("alice@localhost/a")
    other = await h.iq(alice, private("get", "<p xmlns='urn:x'/>", to="bob@localhost"))
    assert error_condition(other) == "forbidden"
    reserved = await h.iq(alice, private("set", "<q xmlns='jabber:iq:private'/>"))
    assert error_condition(reserved) == "not-acceptable"
    none = await h.iq(alice, private("get", ""))
    assert error_condition(none) == "not-acceptable"
    two = await h.iq(alice, private("get", "<a xmlns='urn:a'/><b xmlns='urn:b'/>"))
    assert error_condition(two) == "not-acceptable"


async def test_legacy_bookmarks_become_pep_bookmarks_xep0411(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    phone = await with_caps(h, "alice@localhost/phone", [NODE])
    phone.take()
    storage = (
        f"<storage xmlns='{LEGACY}'>"
        "<conference jid='room@conference.localhost' name='Room' autojoin='true'>"
        "<nick>al</nick></conference>"
        "<conference jid='other@conference.localhost'/></storage>"
    )
    assert (await h.iq(alice, private("set", storage))).get("type") == "result"
    got = events(phone)
    ids = sorted(m.find(f".//{{{EVENT}}}item").get("id") for m in got)  # type: ignore[union-attr]
    assert ids == ["other@conference.localhost", "room@conference.localhost"], dump(got)
    items = await h.iq(
        alice, f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='{NODE}'/></pubsub></iq>"
    )
    conf = next(
        i for i in items.iter(f"{{{PUBSUB}}}item") if i.get("id") == "room@conference.localhost"
    )
    native = conf.find(f"{{{NODE}}}conference")
    assert native is not None and native.get("autojoin") == "true" and native.get("name") == "Room"
    assert native.findtext(f"{{{NODE}}}nick") == "al"
    # Removing one in private storage retracts it from the PEP node.
    storage2 = (
        f"<storage xmlns='{LEGACY}'><conference jid='room@conference.localhost' name='Room'/>"
        "</storage>"
    )
    await h.iq(alice, private("set", storage2))
    items = await h.iq(
        alice, f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='{NODE}'/></pubsub></iq>"
    )
    assert [i.get("id") for i in items.iter(f"{{{PUBSUB}}}item")] == ["room@conference.localhost"]


async def test_pep_bookmarks_read_through_private_storage_xep0411(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    publish = (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{NODE}'>"
        "<item id='r@conference.localhost'>"
        f"<conference xmlns='{NODE}' name='R' autojoin='true'><nick>n</nick></conference>"
        "</item></publish></pubsub></iq>"
    )
    assert (await h.iq(alice, publish)).get("type") == "result"
    got = await h.iq(alice, private("get", f"<storage xmlns='{LEGACY}'/>"))
    conf = got.find(f"{{{PRIVATE}}}query/{{{LEGACY}}}storage/{{{LEGACY}}}conference")
    assert conf is not None, dump([got])
    assert (conf.get("jid"), conf.get("name"), conf.get("autojoin")) == (
        "r@conference.localhost",
        "R",
        "true",
    )
    assert conf.findtext(f"{{{LEGACY}}}nick") == "n"


async def test_legacy_save_republishes_only_changes_and_keeps_extensions_xep0402(
    h: Harness,
) -> None:
    alice = await h.online("alice@localhost/a")
    # A XEP-0402 client stored a bookmark with extensions, on a node it made itself
    # with the PEP defaults (presence access).
    native = (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{NODE}'>"
        "<item id='r@conference.localhost'>"
        f"<conference xmlns='{NODE}' name='R' autojoin='true'><nick>n</nick>"
        "<extensions><state xmlns='urn:example:client'>pinned</state></extensions>"
        "</conference></item></publish></pubsub></iq>"
    )
    assert (await h.iq(alice, native)).get("type") == "result"
    phone = await with_caps(h, "alice@localhost/phone", [NODE])
    phone.take()
    legacy = (
        f"<storage xmlns='{LEGACY}'>"
        "<conference jid='r@conference.localhost' name='R' autojoin='true'><nick>n</nick>"
        "</conference><conference jid='new@conference.localhost' name='New'/></storage>"
    )
    assert (await h.iq(alice, private("set", legacy))).get("type") == "result"
    published = [m.find(f".//{{{EVENT}}}item") for m in events(phone)]
    assert [i.get("id") for i in published if i is not None] == ["new@conference.localhost"]
    # The private node is no longer readable by contacts, and r keeps its extensions.
    config = await h.iq(
        alice,
        "<iq type='get'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>"
        f"<configure node='{NODE}'/></pubsub></iq>",
    )
    values = {
        f.get("var"): f.findtext("{jabber:x:data}value")
        for f in config.iter("{jabber:x:data}field")
    }
    assert values["pubsub#access_model"] == "whitelist"
    legacy2 = legacy.replace("name='R' autojoin='true'", "name='Renamed' autojoin='true'")
    await h.iq(alice, private("set", legacy2))
    items = await h.iq(
        alice,
        f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='{NODE}'>"
        "<item id='r@conference.localhost'/></items></pubsub></iq>",
    )
    conf = items.find(f".//{{{NODE}}}conference")
    assert conf is not None and conf.get("name") == "Renamed"
    assert conf.findtext(f"{{{NODE}}}extensions/{{urn:example:client}}state") == "pinned"


async def test_private_documents_per_account_are_bounded(tmp_path: Path) -> None:
    from descant.config import LimitsConfig

    h = await Harness.create(tmp_path, limits=LimitsConfig(max_private_documents=2))
    try:
        alice = await h.online("alice@localhost/a")
        for n in (1, 2):
            r = await h.iq(alice, private("set", f"<d xmlns='urn:doc:{n}'>{n}</d>"))
            assert r.get("type") == "result"
        full = await h.iq(alice, private("set", "<d xmlns='urn:doc:3'>3</d>"))
        assert error_condition(full) == "resource-constraint"
        again = await h.iq(alice, private("set", "<d xmlns='urn:doc:1'>new</d>"))
        assert again.get("type") == "result"  # replacing one is not one more
        legacy = f"<storage xmlns='{LEGACY}'><conference jid='r@conference.localhost'/></storage>"
        assert (await h.iq(alice, private("set", legacy))).get("type") == "result"  # in PEP
    finally:
        await h.stop()
