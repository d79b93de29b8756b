"""Roster management (RFC 6121 §2) and roster versioning (XEP-0237)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from descant.features.roster import RosterModule
from descant.storage.api import RosterItem
from tests.features.conftest import set_roster
from tests.harness import Harness, error_condition, find, one

R = "{jabber:iq:roster}"
GET = "<iq type='get'><query xmlns='jabber:iq:roster'{}/></iq>"


def roster_set(item: str) -> str:
    return f"<iq type='set'><query xmlns='jabber:iq:roster'>{item}</query></iq>"


def items_of(iq: ET.Element) -> dict[str, ET.Element]:
    query = iq.find(R + "query")
    assert query is not None
    return {el.get("jid", ""): el for el in query.iter(R + "item")}


def groups_of(item: ET.Element) -> list[str]:
    return [g.text or "" for g in item.iter(R + "group")]


def roster_module(h: Harness, domain: str = "localhost") -> RosterModule:
    mod = h.module("roster", domain)
    assert isinstance(mod, RosterModule)
    return mod


async def test_get_returns_items_and_version_and_marks_interested(h: Harness) -> None:
    """RFC 6121 §2.1.3 (roster get), §2.1.6 (interested resource), XEP-0237 'ver'."""
    await set_roster(h, "alice", "bob@localhost", "both", name="Bob", groups=("Friends",))
    alice = await h.bind("alice@localhost/phone")
    assert not alice.interested
    result = await h.iq(alice, GET.format(""))
    assert result.get("type") == "result"
    assert result.get("to") == "alice@localhost/phone"
    assert alice.interested
    query = result.find(R + "query")
    assert query is not None and query.get("ver")
    bob = items_of(result)["bob@localhost"]
    assert bob.get("subscription") == "both"
    assert bob.get("name") == "Bob"
    assert groups_of(bob) == ["Friends"]


async def test_get_with_current_ver_is_empty_result(h: Harness) -> None:
    """RFC 6121 §2.6.3: a request carrying the current version gets an empty result."""
    await set_roster(h, "alice", "bob@localhost", "both")
    alice = await h.bind("alice@localhost/phone")
    full = await h.iq(alice, GET.format(""))
    ver = full.find(R + "query").get("ver")  # type: ignore[union-attr]
    same = await h.iq(alice, GET.format(f" ver='{ver}'"))
    assert same.get("type") == "result" and len(same) == 0
    assert alice.interested


async def test_get_with_old_ver_returns_full_roster(h: Harness) -> None:
    """RFC 6121 §2.6.3: a stale (or empty, first-time) 'ver' gets the whole roster."""
    await set_roster(h, "alice", "bob@localhost", "both")
    alice = await h.bind("alice@localhost/phone")
    for ver in ("", "stale"):
        result = await h.iq(alice, GET.format(f" ver='{ver}'"))
        assert "bob@localhost" in items_of(result)


async def test_set_adds_item_and_pushes_to_interested_sessions_only(h: Harness) -> None:
    """RFC 6121 §2.3.2 (add), §2.1.6 (pushes go to interested resources only, with
    no 'from'), XEP-0237 (pushes carry the new version)."""
    phone = await h.bind("alice@localhost/phone")
    laptop = await h.bind("alice@localhost/laptop")
    before = (await h.iq(phone, GET.format(""))).find(R + "query").get("ver")  # type: ignore[union-attr]
    result = await h.iq(
        phone,
        roster_set("<item jid='Bob@LocalHost' name='Bob'><group>Friends</group></item>"),
    )
    assert result.get("type") == "result"
    push = one(phone.take(), "iq", type="set", to="alice@localhost/phone")
    assert push.get("from") is None
    query = push.find(R + "query")
    assert query is not None and query.get("ver") not in (None, before)
    item = items_of(push)["bob@localhost"]  # the JID is stored prepared
    assert item.get("name") == "Bob"
    assert item.get("subscription") == "none"
    assert item.get("ask") is None
    assert groups_of(item) == ["Friends"]
    assert laptop.take() == []
    stored = await h.server.storage.roster.get_item("localhost", "alice", "bob@localhost")
    assert stored == RosterItem("bob@localhost", "Bob", "none", groups=("Friends",))


async def test_set_updates_name_and_groups_never_subscription(h: Harness) -> None:
    """RFC 6121 §2.4 (update), §2.1.2.5: subscription values other than "remove" are
    ignored in a roster set; ask and approval are the server's too."""
    await set_roster(h, "alice", "bob@localhost", "from", ask=True, name="Old", groups=("A",))
    alice = await h.bind("alice@localhost/phone")
    await h.iq(alice, GET.format(""))
    result = await h.iq(
        alice,
        roster_set(
            "<item jid='bob@localhost' name='New' subscription='both'>"
            "<group>B</group><group>C</group></item>"
        ),
    )
    assert result.get("type") == "result"
    item = items_of(one(alice.take(), "iq", type="set"))["bob@localhost"]
    assert item.get("name") == "New"
    assert item.get("subscription") == "from"
    assert item.get("ask") == "subscribe"
    assert groups_of(item) == ["B", "C"]
    roster = await roster_module(h).get_roster("alice")
    assert roster["bob@localhost"].groups == ("B", "C")


async def test_set_without_name_clears_it(h: Harness) -> None:
    """RFC 6121 §2.4.1: the set item replaces the stored one (name and groups)."""
    await set_roster(h, "alice", "bob@localhost", "both", name="Bob", groups=("A",))
    alice = await h.bind("alice@localhost/phone")
    await h.iq(alice, roster_set("<item jid='bob@localhost'/>"))
    item = await roster_module(h).get_item("alice", "bob@localhost")
    assert item == RosterItem("bob@localhost", None, "both")


async def test_set_own_bare_jid_is_allowed(h: Harness) -> None:
    """RFC 6121 §2 does not forbid an item for the user's own JID; it never gains a
    subscription (the user is implicitly subscribed to itself)."""
    alice = await h.bind("alice@localhost/phone")
    result = await h.iq(alice, roster_set("<item jid='alice@localhost' name='me'/>"))
    assert result.get("type") == "result"


@pytest.mark.parametrize(
    ("query", "condition"),
    [
        # §2.3.3: exactly one item.
        ("<item jid='a@localhost'/><item jid='b@localhost'/>", "bad-request"),
        ("", "bad-request"),
        # §2.1.2.5: a subscription value that is no state at all.
        ("<item jid='a@localhost' subscription='bogus'/>", "bad-request"),
        # §2.3.3: duplicate groups; empty group.
        ("<item jid='a@localhost'><group>X</group><group>X</group></item>", "bad-request"),
        ("<item jid='a@localhost'><group></group></item>", "not-acceptable"),
        ("<item jid='a@localhost'><group>" + "x" * 2000 + "</group></item>", "not-acceptable"),
        ("<item jid='a@localhost' name='" + "x" * 2000 + "'/>", "not-acceptable"),
        # §2.3.3: a JID that cannot be prepared; missing; not bare.
        ("<item jid='a@@localhost'/>", "jid-malformed"),
        ("<item jid='a@bad domain'/>", "jid-malformed"),
        ("<item name='x'/>", "bad-request"),
        ("<item jid='a@localhost/res'/>", "bad-request"),
        # §2.5.3: removing an item that is not there.
        ("<item jid='nobody@localhost' subscription='remove'/>", "item-not-found"),
    ],
)
async def test_set_errors(h: Harness, query: str, condition: str) -> None:
    """RFC 6121 §2.3.3 and §2.5.3 error cases; nothing is stored or pushed."""
    alice = await h.bind("alice@localhost/phone")
    await h.iq(alice, GET.format(""))
    result = await h.iq(alice, roster_set(query))
    assert result.get("type") == "error"
    assert error_condition(result) == condition
    assert alice.take() == []
    _, items = await h.server.storage.roster.get_roster("localhost", "alice")
    assert items == {}


@pytest.mark.parametrize("type_", ["get", "set"])
async def test_roster_of_another_user_is_forbidden(h: Harness, type_: str) -> None:
    """RFC 6121 §2.1.5 / §2.3.3: only the user reads or changes its roster."""
    await h.account("bob")
    alice = await h.bind("alice@localhost/phone")
    item = "<item jid='x@localhost'/>" if type_ == "set" else ""
    result = await h.iq(
        alice,
        f"<iq type='{type_}' to='bob@localhost'>"
        f"<query xmlns='jabber:iq:roster'>{item}</query></iq>",
    )
    assert result.get("type") == "error"
    assert error_condition(result) == "forbidden"
    _, items = await h.server.storage.roster.get_roster("localhost", "bob")
    assert items == {}


async def test_roster_to_own_bare_jid_is_the_users_roster(h: Harness) -> None:
    """RFC 6121 §2.1.3: a roster get may carry to=<the user's bare JID>."""
    await set_roster(h, "alice", "bob@localhost", "both")
    alice = await h.bind("alice@localhost/phone")
    result = await h.iq(
        alice, "<iq type='get' to='alice@localhost'><query xmlns='jabber:iq:roster'/></iq>"
    )
    assert "bob@localhost" in items_of(result)


async def test_remove_cancels_both_subscriptions_of_local_contact(h: Harness) -> None:
    """RFC 6121 §2.5.2: removing a "both" item sends unsubscribe and unsubscribed to
    the contact and pushes subscription='remove'; the contact's roster follows."""
    await set_roster(h, "alice", "bob@localhost", "both")
    await set_roster(h, "bob", "alice@localhost", "both")
    alice = await h.online("alice@localhost/phone")
    bob = await h.online("bob@localhost/desk")
    await h.iq(alice, GET.format(""))
    await h.iq(bob, GET.format(""))
    result = await h.iq(alice, roster_set("<item jid='bob@localhost' subscription='remove'/>"))
    assert result.get("type") == "result"
    to_alice = alice.take()
    push = one(to_alice, "iq", type="set")
    assert items_of(push)["bob@localhost"].get("subscription") == "remove"
    got = bob.take()
    one(got, "presence", type="unsubscribe", from_="alice@localhost")
    one(got, "presence", type="unsubscribed", from_="alice@localhost")
    # §3.2.2: the contact no longer sees alice's resources.
    one(got, "presence", type="unavailable", from_="alice@localhost/phone")
    # Bob's item for alice went both → to (unsubscribe) → none (unsubscribed).
    pushes = find(got, "iq", type="set")
    assert [items_of(p)["alice@localhost"].get("subscription") for p in pushes] == [
        "to",
        "none",
    ]
    # §3.3.3: bob's server withdrew bob's presence from alice.
    one(to_alice, "presence", type="unavailable", from_="bob@localhost/desk")
    assert await h.server.storage.roster.get_item("localhost", "alice", "bob@localhost") is None


async def test_remove_remote_contact_routes_cancellations(h: Harness) -> None:
    """RFC 6121 §2.5.2 for a contact on another server: pending out gets unsubscribe,
    "from" gets unsubscribed, both from the user's bare JID."""
    await set_roster(h, "alice", "carol@remote.example", "from", ask=True)
    alice = await h.bind("alice@localhost/phone")
    await h.iq(alice, roster_set("<item jid='carol@remote.example' subscription='remove'/>"))
    sent = h.take_remote()
    one(sent, "presence", type="unsubscribe", from_="alice@localhost", to="carol@remote.example")
    one(sent, "presence", type="unsubscribed", from_="alice@localhost", to="carol@remote.example")


async def test_remove_item_of_none_sends_nothing(h: Harness) -> None:
    """RFC 6121 §2.5.2: with no subscription either way, only the item goes."""
    await set_roster(h, "alice", "carol@remote.example", "none")
    alice = await h.bind("alice@localhost/phone")
    result = await h.iq(
        alice, roster_set("<item jid='carol@remote.example' subscription='remove'/>")
    )
    assert result.get("type") == "result"
    assert h.take_remote() == []


async def test_remove_declines_pending_request(h: Harness) -> None:
    """RFC 6121 §2.5.2 / §3.2: removing a contact whose request is pending declines it."""
    alice = await h.online("alice@localhost/phone")
    await h.inject("<presence from='carol@remote.example' to='alice@localhost' type='subscribe'/>")
    one(alice.take(), "presence", type="subscribe")
    result = await h.iq(
        alice, roster_set("<item jid='carol@remote.example' subscription='remove'/>")
    )
    assert result.get("type") == "result"
    one(h.take_remote(), "presence", type="unsubscribed", to="carol@remote.example")
    assert await h.server.storage.roster.list_pending_in("localhost", "alice") == []


async def test_versions_change_with_every_write(h: Harness) -> None:
    """XEP-0237 §4: every change gets a new version, which pushes and gets report."""
    alice = await h.bind("alice@localhost/phone")
    await h.iq(alice, GET.format(""))
    versions = set()
    for name in ("A", "B", "C"):
        await h.iq(alice, roster_set(f"<item jid='bob@localhost' name='{name}'/>"))
        push = one(alice.take(), "iq", type="set")
        versions.add(push.find(R + "query").get("ver"))  # type: ignore[union-attr]
    assert len(versions) == 3
    current = (await h.iq(alice, GET.format(""))).find(R + "query").get("ver")  # type: ignore[union-attr]
    assert current in versions


async def test_cache_is_dropped_with_the_last_session(h: Harness) -> None:
    """The in-memory roster lives while the user has sessions, and writes go through."""
    roster = roster_module(h)
    phone = await h.bind("alice@localhost/phone")
    laptop = await h.bind("alice@localhost/laptop")
    await h.iq(phone, roster_set("<item jid='bob@localhost' name='Bob'/>"))
    assert "alice" in roster._cache
    await phone.close()
    assert "alice" in roster._cache
    await laptop.close()
    assert "alice" not in roster._cache
    # Written through: the store has it, and a roster read without sessions is not cached.
    assert (await roster.get_roster("alice"))["bob@localhost"].name == "Bob"
    assert "alice" not in roster._cache


async def test_stream_features_advertise_rosterver_and_preapproval(h: Harness) -> None:
    """XEP-0237 §2 and RFC 6121 §3.4.1: <ver/> and <sub/> stream features."""
    tags = {el.tag for el in h.host().stream_features}
    assert "{urn:xmpp:features:rosterver}ver" in tags
    assert "{urn:xmpp:features:pre-approval}sub" in tags


async def test_roster_size_is_bounded(tmp_path: Path) -> None:
    """limits.max_roster_items: a new contact beyond it, by roster set or by a
    subscription request, is <policy-violation/>; existing items still change; a
    flood of strangers' subscription requests is not stored beyond it."""
    from descant.config import LimitsConfig

    h = await Harness.create(tmp_path, limits=LimitsConfig(max_roster_items=2))
    try:
        alice = await h.online("alice@localhost/a")
        for n in (1, 2):
            ok = await h.iq(
                alice,
                f"<iq type='set'><query xmlns='jabber:iq:roster'><item jid='c{n}@remote.test'/>"
                "</query></iq>",
            )
            assert ok.get("type") == "result"
        full = await h.iq(
            alice,
            "<iq type='set'><query xmlns='jabber:iq:roster'><item jid='c3@remote.test'/>"
            "</query></iq>",
        )
        assert error_condition(full) == "policy-violation"
        rename = await h.iq(
            alice,
            "<iq type='set'><query xmlns='jabber:iq:roster'>"
            "<item jid='c1@remote.test' name='One'/></query></iq>",
        )
        assert rename.get("type") == "result"
        alice.take()
        await h.send(alice, "<presence to='c4@remote.test' type='subscribe'/>")
        err = one(alice.take(), "presence", type="error")
        assert error_condition(err) == "policy-violation"
        for n in range(5):
            await h.inject(
                f"<presence from='s{n}@remote.test' to='alice@localhost' type='subscribe'/>"
            )
        pending = await h.server.storage.roster.list_pending_in("localhost", "alice")
        assert len(pending) == 2
    finally:
        await h.stop()
