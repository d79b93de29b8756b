"""One conformance suite for every storage backend (memory, SQLite, PostgreSQL).

Each test runs once per backend through the ``storage`` fixture (conftest.py); what one
backend does, all must do. Tests using ``durable_url`` cover what only persistent engines
promise: data outliving a Storage object, and two processes (CLI and server) sharing one
database. The last section covers the URL factory and migrations.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from descant.storage import (
    Account,
    AccountExists,
    NoSuchAccount,
    RosterItem,
    ScramCredentials,
    Storage,
    open_storage,
    sqlite_path,
)
from descant.storage.api import ArchivedMessage, ArchiveQuery, PubsubItem, UnknownArchiveId
from descant.storage.memory import MemoryStorage
from descant.storage.migrations import current_version, load
from descant.storage.sql import SqlStorage


def creds(seed: int) -> ScramCredentials:
    # Bytes across the whole 0..255 range, NUL included, to catch text/blob confusion.
    return ScramCredentials(
        salt=bytes([seed, 0, 255, 10]),
        iterations=4096 + seed,
        stored_key=bytes(range(seed, seed + 20)),
        server_key=bytes(range(255 - seed, 235 - seed, -1)),
    )


def account(host: str, username: str, seed: int = 1) -> Account:
    return Account(host, username, sha1=creds(seed), sha256=creds(seed + 100))


H = "example.org"

# The type of conftest's make_storage fixture.
StorageFactory = Callable[[str], Awaitable[Storage]]


async def test_ping_answers(storage: Storage) -> None:
    """/health's trivial query: returns while the storage is open."""
    await storage.ping()


# Accounts


async def test_account_create_and_get(storage: Storage) -> None:
    alice = account(H, "alice")
    await storage.accounts.create(alice)
    assert await storage.accounts.get(H, "alice") == alice
    assert await storage.accounts.get(H, "bob") is None
    assert await storage.accounts.get("other.example", "alice") is None


async def test_account_create_duplicate_raises_account_exists(storage: Storage) -> None:
    await storage.accounts.create(account(H, "alice", seed=1))
    with pytest.raises(AccountExists):
        await storage.accounts.create(account(H, "alice", seed=2))
    # The original keys survive the failed attempt.
    assert await storage.accounts.get(H, "alice") == account(H, "alice", seed=1)
    # Same username on another host is a different account.
    await storage.accounts.create(account("other.example", "alice"))


async def test_account_set_credentials(storage: Storage) -> None:
    await storage.accounts.create(account(H, "alice", seed=1))
    await storage.accounts.set_credentials(account(H, "alice", seed=7))
    assert await storage.accounts.get(H, "alice") == account(H, "alice", seed=7)


async def test_account_set_credentials_missing_raises_no_such_account(storage: Storage) -> None:
    with pytest.raises(NoSuchAccount):
        await storage.accounts.set_credentials(account(H, "ghost"))
    assert await storage.accounts.get(H, "ghost") is None


async def test_account_list_sorted_and_per_host(storage: Storage) -> None:
    for host, user in [("b.example", "zed"), (H, "bob"), (H, "Alice"), (H, "alice"), (H, "éva")]:
        await storage.accounts.create(account(host, user))
    # Code point order, independent of the database's collation.
    assert await storage.accounts.list() == [
        ("b.example", "zed"),
        (H, "Alice"),
        (H, "alice"),
        (H, "bob"),
        (H, "éva"),
    ]
    assert await storage.accounts.list(H) == [(H, "Alice"), (H, "alice"), (H, "bob"), (H, "éva")]
    assert await storage.accounts.list("b.example") == [("b.example", "zed")]
    assert await storage.accounts.list("none.example") == []


async def test_account_delete_cascades_to_all_user_data(storage: Storage) -> None:
    stamp = datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    for user in ("alice", "bob"):
        await storage.accounts.create(account(H, user))
        await storage.roster.put_item(H, user, RosterItem("carol@example.com"))
        await storage.roster.add_pending_in(H, user, "dave@example.com", "<presence/>")
        await storage.offline.push(H, user, "<message/>", stamp)
        await storage.keyval.set(H, user, "private", "k", "v")

    assert await storage.accounts.delete(H, "alice") is True

    assert await storage.accounts.get(H, "alice") is None
    assert await storage.roster.get_roster(H, "alice") == ("0", {})
    assert await storage.roster.list_pending_in(H, "alice") == []
    assert await storage.offline.count(H, "alice") == 0
    assert await storage.keyval.get(H, "alice", "private", "k") is None
    # Bob's data is untouched.
    assert await storage.accounts.get(H, "bob") is not None
    assert (await storage.roster.get_roster(H, "bob"))[0] == "1"
    assert len(await storage.roster.list_pending_in(H, "bob")) == 1
    assert await storage.offline.count(H, "bob") == 1
    assert await storage.keyval.get(H, "bob", "private", "k") == "v"


async def test_account_delete_missing_returns_false(storage: Storage) -> None:
    assert await storage.accounts.delete(H, "ghost") is False
    await storage.accounts.create(account(H, "alice"))
    assert await storage.accounts.delete(H, "alice") is True
    assert await storage.accounts.delete(H, "alice") is False
    # The name can be registered again afterwards.
    await storage.accounts.create(account(H, "alice"))


# Roster (RFC 6121 §2) and roster versioning (XEP-0237)


async def test_roster_version_is_0_when_never_written(storage: Storage) -> None:
    assert await storage.roster.get_version(H, "alice") == "0"
    assert await storage.roster.get_roster(H, "alice") == ("0", {})
    assert await storage.roster.get_item(H, "alice", "bob@example.com") is None


async def test_roster_put_get_round_trip(storage: Storage) -> None:
    item = RosterItem(
        jid="bob@example.com",
        name="Bób 🎵 «Descant»",
        subscription="both",
        ask=True,
        approved=True,
        groups=("Friends", "Société", "日本語"),
    )
    version = await storage.roster.put_item(H, "alice", item)
    assert await storage.roster.get_item(H, "alice", "bob@example.com") == item
    assert await storage.roster.get_roster(H, "alice") == (version, {"bob@example.com": item})
    # Another user's roster is separate.
    assert await storage.roster.get_roster(H, "carol") == ("0", {})


async def test_roster_defaults_round_trip(storage: Storage) -> None:
    item = RosterItem("bob@example.com")
    await storage.roster.put_item(H, "alice", item)
    stored = await storage.roster.get_item(H, "alice", "bob@example.com")
    assert stored == item
    assert stored is not None
    assert stored.name is None and stored.groups == () and not stored.ask


async def test_roster_update_replaces_item(storage: Storage) -> None:
    await storage.roster.put_item(H, "alice", RosterItem("bob@example.com", "Bob", groups=("A",)))
    updated = RosterItem("bob@example.com", None, "to", ask=False, approved=False, groups=())
    await storage.roster.put_item(H, "alice", updated)
    assert await storage.roster.get_item(H, "alice", "bob@example.com") == updated
    assert len((await storage.roster.get_roster(H, "alice"))[1]) == 1


async def test_roster_remove(storage: Storage) -> None:
    await storage.roster.put_item(H, "alice", RosterItem("bob@example.com"))
    await storage.roster.put_item(H, "alice", RosterItem("carol@example.com"))
    await storage.roster.remove_item(H, "alice", "bob@example.com")
    assert await storage.roster.get_item(H, "alice", "bob@example.com") is None
    _, items = await storage.roster.get_roster(H, "alice")
    assert list(items) == ["carol@example.com"]


async def test_roster_versions_increase_strictly(storage: Storage) -> None:
    seen = [int(await storage.roster.get_version(H, "alice"))]
    seen.append(int(await storage.roster.put_item(H, "alice", RosterItem("bob@example.com"))))
    seen.append(int(await storage.roster.put_item(H, "alice", RosterItem("bob@example.com", "B"))))
    seen.append(int(await storage.roster.remove_item(H, "alice", "bob@example.com")))
    # Removing an absent item still yields a new version.
    seen.append(int(await storage.roster.remove_item(H, "alice", "nobody@example.com")))
    assert seen == sorted(set(seen)) and len(seen) == 5
    assert await storage.roster.get_version(H, "alice") == str(seen[-1])
    assert (await storage.roster.get_roster(H, "alice"))[0] == str(seen[-1])
    # Versions are per user.
    assert await storage.roster.get_version(H, "bob") == "0"


async def test_roster_concurrent_writes_get_distinct_versions(storage: Storage) -> None:
    jids = [f"c{i}@example.com" for i in range(20)]
    versions = await asyncio.gather(
        *(storage.roster.put_item(H, "alice", RosterItem(jid)) for jid in jids)
    )
    assert sorted(int(v) for v in versions) == list(range(1, 21))
    version, items = await storage.roster.get_roster(H, "alice")
    assert version == "20" and sorted(items) == sorted(jids)


async def test_pending_in_add_list_in_arrival_order(storage: Storage) -> None:
    for contact in ("zed@example.com", "amy@example.com", "mid@example.com"):
        await storage.roster.add_pending_in(H, "alice", contact, f"<presence from='{contact}'/>")
    assert await storage.roster.list_pending_in(H, "alice") == [
        ("zed@example.com", "<presence from='zed@example.com'/>"),
        ("amy@example.com", "<presence from='amy@example.com'/>"),
        ("mid@example.com", "<presence from='mid@example.com'/>"),
    ]
    assert await storage.roster.list_pending_in(H, "bob") == []


async def test_pending_in_replace_keeps_one_and_moves_to_end(storage: Storage) -> None:
    await storage.roster.add_pending_in(H, "alice", "bob@example.com", "<presence id='1'/>")
    await storage.roster.add_pending_in(H, "alice", "carol@example.com", "<presence id='2'/>")
    await storage.roster.add_pending_in(H, "alice", "bob@example.com", "<presence id='3'/>")
    assert await storage.roster.list_pending_in(H, "alice") == [
        ("carol@example.com", "<presence id='2'/>"),
        ("bob@example.com", "<presence id='3'/>"),
    ]


async def test_pending_in_remove(storage: Storage) -> None:
    await storage.roster.add_pending_in(H, "alice", "bob@example.com", "<presence/>")
    assert await storage.roster.remove_pending_in(H, "alice", "bob@example.com") is True
    assert await storage.roster.remove_pending_in(H, "alice", "bob@example.com") is False
    assert await storage.roster.list_pending_in(H, "alice") == []


# Offline messages (XEP-0160)


async def test_offline_push_pop_in_order_with_stamps(storage: Storage) -> None:
    base = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    # Stamps deliberately out of order: pop order is push order, not stamp order.
    pushed = [
        ("<message id='1'>ünïcode ✓</message>", base),
        ("<message id='2'/>", base - timedelta(days=1, microseconds=1)),
        ("<message id='3'/>", base + timedelta(microseconds=1)),
    ]
    for stanza, stamp in pushed:
        await storage.offline.push(H, "alice", stanza, stamp)
    assert await storage.offline.count(H, "alice") == 3
    assert await storage.offline.count(H, "bob") == 0

    popped = await storage.offline.pop_all(H, "alice")
    assert popped == pushed
    for _, stamp in popped:
        assert stamp.utcoffset() == timedelta(0)
    assert await storage.offline.count(H, "alice") == 0
    assert await storage.offline.pop_all(H, "alice") == []


async def test_offline_stamps_are_returned_in_utc(storage: Storage) -> None:
    plus_two = timezone(timedelta(hours=2))
    stamp = datetime(2024, 1, 1, 12, 0, 0, 999999, tzinfo=plus_two)
    await storage.offline.push(H, "alice", "<message/>", stamp)
    [(_, back)] = await storage.offline.pop_all(H, "alice")
    assert back == stamp
    assert back.tzinfo is not None and back.utcoffset() == timedelta(0)
    assert back.hour == 10 and back.microsecond == 999999


async def test_offline_rejects_naive_stamps(storage: Storage) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.offline.push(H, "alice", "<message/>", datetime(2024, 1, 1))
    assert await storage.offline.count(H, "alice") == 0


async def test_offline_pop_is_per_user(storage: Storage) -> None:
    stamp = datetime.now(UTC)
    await storage.offline.push(H, "alice", "<message to='alice'/>", stamp)
    await storage.offline.push(H, "bob", "<message to='bob'/>", stamp)
    assert await storage.offline.pop_all(H, "alice") == [("<message to='alice'/>", stamp)]
    assert await storage.offline.count(H, "bob") == 1


# Key/value documents


async def test_keyval_set_get_overwrite_delete(storage: Storage) -> None:
    kv = storage.keyval
    assert await kv.get(H, "alice", "vcard", "") is None
    await kv.set(H, "alice", "vcard", "", "<vCard>Ålice</vCard>")
    await kv.set(H, "alice", "private", "storage:bookmarks", "<storage/>")
    assert await kv.get(H, "alice", "vcard", "") == "<vCard>Ålice</vCard>"
    await kv.set(H, "alice", "vcard", "", "<vCard>v2</vCard>")
    assert await kv.get(H, "alice", "vcard", "") == "<vCard>v2</vCard>"
    await kv.set(H, "alice", "vcard", "", None)
    assert await kv.get(H, "alice", "vcard", "") is None
    # Deleting an absent key is not an error; other stores and users are untouched.
    await kv.set(H, "alice", "vcard", "", None)
    assert await kv.get(H, "alice", "private", "storage:bookmarks") == "<storage/>"
    assert await kv.get(H, "bob", "private", "storage:bookmarks") is None


async def test_keyval_count_per_user_and_store(storage: Storage) -> None:
    kv = storage.keyval
    assert await kv.count(H, "alice", "private") == 0
    for key in ("a", "b", "c"):
        await kv.set(H, "alice", "private", key, "<x/>")
    await kv.set(H, "alice", "private", "a", "<y/>")  # replaced, not added
    await kv.set(H, "alice", "vcard", "", "<vCard/>")
    await kv.set(H, "bob", "private", "a", "<x/>")
    assert await kv.count(H, "alice", "private") == 3
    await kv.set(H, "alice", "private", "b", None)
    assert await kv.count(H, "alice", "private") == 2
    assert await kv.count(H, "alice", "vcard") == 1
    assert await kv.count(H, "bob", "private") == 1


async def test_keyval_empty_string_is_a_value(storage: Storage) -> None:
    await storage.keyval.set(H, "alice", "prefs", "k", "")
    assert await storage.keyval.get(H, "alice", "prefs", "k") == ""


async def test_close_twice_is_harmless(storage: Storage) -> None:
    await storage.close()
    await storage.close()


# Multi-user chat rooms (XEP-0045)

SVC = "conference.example.org"


async def test_room_save_get_replace_list(storage: Storage) -> None:
    assert await storage.rooms.get_room(SVC, "lobby") is None
    await storage.rooms.save_room(SVC, "lobby", '{"name": "Lobby"}')
    await storage.rooms.save_room(SVC, "attic", "{}")
    await storage.rooms.save_room("conference.other.org", "lobby", "{}")
    assert await storage.rooms.get_room(SVC, "lobby") == '{"name": "Lobby"}'
    await storage.rooms.save_room(SVC, "lobby", '{"name": "Hall"}')
    assert await storage.rooms.get_room(SVC, "lobby") == '{"name": "Hall"}'
    assert await storage.rooms.list_rooms(SVC) == [(SVC, "attic"), (SVC, "lobby")]
    assert len(await storage.rooms.list_rooms()) == 3


async def test_room_affiliations_set_replace_remove(storage: Storage) -> None:
    await storage.rooms.save_room(SVC, "lobby", "{}")
    await storage.rooms.set_affiliation(SVC, "lobby", "alice@example.org", "owner")
    await storage.rooms.set_affiliation(SVC, "lobby", "bob@example.org", "member")
    await storage.rooms.set_affiliation(SVC, "lobby", "bob@example.org", "outcast")
    await storage.rooms.set_affiliation(SVC, "attic", "carol@example.org", "admin")
    assert await storage.rooms.get_affiliations(SVC, "lobby") == {
        "alice@example.org": "owner",
        "bob@example.org": "outcast",
    }
    await storage.rooms.set_affiliation(SVC, "lobby", "bob@example.org", "none")
    await storage.rooms.set_affiliation(SVC, "lobby", "nobody@example.org", "none")
    assert await storage.rooms.get_affiliations(SVC, "lobby") == {"alice@example.org": "owner"}


async def test_room_delete_removes_affiliations(storage: Storage) -> None:
    await storage.rooms.save_room(SVC, "lobby", "{}")
    await storage.rooms.set_affiliation(SVC, "lobby", "alice@example.org", "owner")
    assert await storage.rooms.delete_room(SVC, "lobby")
    assert not await storage.rooms.delete_room(SVC, "lobby")
    assert await storage.rooms.get_room(SVC, "lobby") is None
    assert await storage.rooms.get_affiliations(SVC, "lobby") == {}
    assert await storage.rooms.list_rooms() == []


def _archived(i: int, nick: str = "al") -> ArchivedMessage:
    stamp = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i)
    return ArchivedMessage(f"id{i}", stamp, nick, f"<message id='m{i}'><body>{i}</body></message>")


async def test_room_archive_pages_forward_and_backward(storage: Storage) -> None:
    for i in range(1, 6):
        await storage.rooms.archive_add(SVC, "lobby", _archived(i))
    await storage.rooms.archive_add(SVC, "attic", _archived(9))
    page, complete = await storage.rooms.archive_query(SVC, "lobby", ArchiveQuery(limit=2))
    assert [m.id for m in page] == ["id1", "id2"] and not complete
    assert page[0] == _archived(1)
    page, complete = await storage.rooms.archive_query(
        SVC, "lobby", ArchiveQuery(after="id4", limit=2)
    )
    assert [m.id for m in page] == ["id5"] and complete
    page, complete = await storage.rooms.archive_query(
        SVC, "lobby", ArchiveQuery(before="", limit=2)
    )
    assert [m.id for m in page] == ["id4", "id5"] and not complete
    page, complete = await storage.rooms.archive_query(
        SVC, "lobby", ArchiveQuery(before="id3", limit=5)
    )
    assert [m.id for m in page] == ["id1", "id2"] and complete
    with pytest.raises(UnknownArchiveId):
        await storage.rooms.archive_query(SVC, "lobby", ArchiveQuery(after="id9"))


async def test_room_archive_filters(storage: Storage) -> None:
    for i in range(1, 6):
        await storage.rooms.archive_add(SVC, "lobby", _archived(i, "al" if i % 2 else "bo"))
    start, end = _archived(2).stamp, _archived(4).stamp
    page, _ = await storage.rooms.archive_query(SVC, "lobby", ArchiveQuery(start=start, end=end))
    assert [m.id for m in page] == ["id2", "id3", "id4"]
    page, _ = await storage.rooms.archive_query(SVC, "lobby", ArchiveQuery(nick="bo"))
    assert [m.id for m in page] == ["id2", "id4"]
    assert await storage.rooms.delete_room(SVC, "lobby") is False  # never saved, but…
    page, _ = await storage.rooms.archive_query(SVC, "lobby", ArchiveQuery())
    assert page == []  # …its archive goes with it


async def test_room_archive_get_and_replace(storage: Storage) -> None:
    for i in range(1, 4):
        await storage.rooms.archive_add(SVC, "lobby", _archived(i))
    assert await storage.rooms.archive_get(SVC, "lobby", "id2") == _archived(2)
    assert await storage.rooms.archive_get(SVC, "lobby", "id9") is None
    assert await storage.rooms.archive_get(SVC, "attic", "id2") is None
    assert await storage.rooms.archive_replace(SVC, "lobby", "id2", "<message/>")
    assert not await storage.rooms.archive_replace(SVC, "lobby", "id9", "<message/>")
    got = await storage.rooms.archive_get(SVC, "lobby", "id2")
    assert got is not None and got.stanza == "<message/>" and got.stamp == _archived(2).stamp
    page, _ = await storage.rooms.archive_query(SVC, "lobby", ArchiveQuery())
    assert [m.id for m in page] == ["id1", "id2", "id3"]  # in place, order kept


# Publish-subscribe (XEP-0060) and PEP (XEP-0163)

PEP = "alice@example.org"  # alice's PEP service is her bare JID
PUBSUB = "pubsub.example.org"
NODE = "urn:xmpp:microblog:0"
T0 = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=UTC)


def _item(item_id: str, n: int = 0, publisher: str = PEP) -> PubsubItem:
    return PubsubItem(
        item_id, publisher, T0 + timedelta(minutes=n), f"<entry xmlns='urn:x'>{item_id}/{n}</entry>"
    )


async def _ids(
    storage: Storage,
    service: str,
    node: str,
    ids: tuple[str, ...] = (),
    limit: int | None = None,
) -> list[str]:
    return [item.id for item in await storage.pubsub.get_items(service, node, ids, limit)]


async def test_pubsub_create_get_node(storage: Storage) -> None:
    ps = storage.pubsub
    assert await ps.get_node(PEP, NODE) is None
    assert await ps.create_node(PEP, NODE, '{"access": "presence"}') is True
    assert await ps.get_node(PEP, NODE) == '{"access": "presence"}'
    # Creating it again changes nothing.
    assert await ps.create_node(PEP, NODE, '{"access": "open"}') is False
    assert await ps.get_node(PEP, NODE) == '{"access": "presence"}'
    # The same node name on another service is another node.
    assert await ps.get_node(PUBSUB, NODE) is None
    assert await ps.create_node(PUBSUB, NODE, "{}") is True
    assert await ps.get_node(PUBSUB, NODE) == "{}"


async def test_pubsub_set_node_config(storage: Storage) -> None:
    ps = storage.pubsub
    assert await ps.set_node_config(PEP, NODE, "{}") is False
    assert await ps.get_node(PEP, NODE) is None  # not created by the update
    assert await ps.list_nodes(PEP) == []
    await ps.create_node(PEP, NODE, '{"v": 1}')
    assert await ps.set_node_config(PEP, NODE, '{"v": 2, "title": "Çà 🎵"}') is True
    assert await ps.get_node(PEP, NODE) == '{"v": 2, "title": "Çà 🎵"}'


async def test_pubsub_list_nodes_sorted_and_per_service(storage: Storage) -> None:
    for node in ("urn:b", "Zed", "urn:a", "été", "Alpha"):
        await storage.pubsub.create_node(PEP, node, "{}")
    await storage.pubsub.create_node(PUBSUB, "news", "{}")
    # Code point order, independent of the database's collation.
    assert await storage.pubsub.list_nodes(PEP) == ["Alpha", "Zed", "urn:a", "urn:b", "été"]
    assert await storage.pubsub.list_nodes(PUBSUB) == ["news"]
    assert await storage.pubsub.list_nodes("bob@example.org") == []


async def test_pubsub_delete_node_removes_items_affiliations_subscriptions(
    storage: Storage,
) -> None:
    ps = storage.pubsub
    for node in (NODE, "kept"):
        await ps.create_node(PEP, node, "{}")
        await ps.publish(PEP, node, _item("i1"), 10)
        await ps.set_affiliation(PEP, node, "bob@example.org", "publisher")
        await ps.set_subscription(PEP, node, "bob@example.org/phone", "subscribed")

    assert await ps.delete_node(PEP, NODE) is True

    assert await ps.get_node(PEP, NODE) is None
    assert await ps.get_items(PEP, NODE) == []
    assert await ps.get_affiliations(PEP, NODE) == {}
    assert await ps.get_subscriptions(PEP, NODE) == {}
    assert await ps.list_nodes(PEP) == ["kept"]
    assert await _ids(storage, PEP, "kept") == ["i1"]
    assert await ps.affiliations_of(PEP, "bob@example.org") == {"kept": "publisher"}
    assert await ps.subscriptions_of(PEP, "bob@example.org/phone") == {"kept": "subscribed"}
    assert await ps.delete_node(PEP, NODE) is False
    assert await ps.delete_node(PUBSUB, "never") is False
    # The name is free again.
    assert await ps.create_node(PEP, NODE, "{}") is True
    assert await ps.get_items(PEP, NODE) == []


async def test_pubsub_delete_service(storage: Storage) -> None:
    ps = storage.pubsub
    for service in (PEP, PUBSUB):
        for node in ("a", "b"):
            await ps.create_node(service, node, "{}")
            await ps.publish(service, node, _item("i1"), 10)
            await ps.set_affiliation(service, node, PEP, "owner")
            await ps.set_subscription(service, node, PEP, "subscribed")

    await ps.delete_service(PEP)

    assert await ps.list_nodes(PEP) == []
    for node in ("a", "b"):
        assert await ps.get_node(PEP, node) is None
        assert await ps.get_items(PEP, node) == []
        assert await ps.get_affiliations(PEP, node) == {}
        assert await ps.get_subscriptions(PEP, node) == {}
    assert await ps.affiliations_of(PEP, PEP) == {}
    assert await ps.subscriptions_of(PEP, PEP) == {}
    # The other service is untouched.
    assert await ps.list_nodes(PUBSUB) == ["a", "b"]
    assert await _ids(storage, PUBSUB, "b") == ["i1"]
    assert await ps.affiliations_of(PUBSUB, PEP) == {"a": "owner", "b": "owner"}
    assert await ps.subscriptions_of(PUBSUB, PEP) == {"a": "subscribed", "b": "subscribed"}
    await ps.delete_service("empty.example.org")  # nothing there: no error


async def test_pubsub_publish_returns_items_newest_first(storage: Storage) -> None:
    await storage.pubsub.create_node(PEP, NODE, "{}")
    # Ids and stamps deliberately out of order: publish order decides.
    for item_id, n in (("m", 5), ("z", 1), ("a", 3)):
        assert await storage.pubsub.publish(PEP, NODE, _item(item_id, n), 10) == []
    items = await storage.pubsub.get_items(PEP, NODE)
    assert items == [_item("a", 3), _item("z", 1), _item("m", 5)]


async def test_pubsub_republish_moves_item_to_newest_and_replaces_it(storage: Storage) -> None:
    ps = storage.pubsub
    for i, item_id in enumerate(("i1", "i2", "i3")):
        await ps.publish(PEP, NODE, _item(item_id, i), 10)
    replacement = PubsubItem("i1", "alice@example.org/laptop", T0 + timedelta(hours=1), "<x/>")
    assert await ps.publish(PEP, NODE, replacement, 10) == []
    items = await ps.get_items(PEP, NODE)
    assert [item.id for item in items] == ["i1", "i3", "i2"]
    assert items[0] == replacement
    assert await ps.get_items(PEP, NODE, ["i1"]) == [replacement]


async def test_pubsub_publish_trims_to_max_items(storage: Storage) -> None:
    ps = storage.pubsub
    for i in range(1, 4):
        assert await ps.publish(PEP, NODE, _item(f"i{i}", i), 3) == []
    assert await ps.publish(PEP, NODE, _item("i4", 4), 3) == ["i1"]
    assert await _ids(storage, PEP, NODE) == ["i4", "i3", "i2"]
    # Republishing an item of a full node replaces it and drops nothing.
    assert await ps.publish(PEP, NODE, _item("i2", 5), 3) == []
    assert await _ids(storage, PEP, NODE) == ["i2", "i4", "i3"]
    # A smaller limit drops every item beyond it, oldest first in the returned list.
    assert await ps.publish(PEP, NODE, _item("i5", 6), 1) == ["i3", "i4", "i2"]
    assert await ps.get_items(PEP, NODE) == [_item("i5", 6)]
    assert await ps.publish(PEP, NODE, _item("i6", 7), 1) == ["i5"]
    assert await ps.publish(PEP, NODE, _item("i6", 8), 1) == []
    assert await ps.get_items(PEP, NODE) == [_item("i6", 8)]
    # Trimming is per node.
    await ps.publish(PEP, "other", _item("o1"), 1)
    assert await _ids(storage, PEP, NODE) == ["i6"]
    assert await _ids(storage, PEP, "other") == ["o1"]


async def test_pubsub_get_items_by_ids_and_limit(storage: Storage) -> None:
    for i in range(1, 6):
        await storage.pubsub.publish(PEP, NODE, _item(f"i{i}", i), 10)
    assert await _ids(storage, PEP, NODE, limit=2) == ["i5", "i4"]
    assert await _ids(storage, PEP, NODE, limit=10) == ["i5", "i4", "i3", "i2", "i1"]
    assert await _ids(storage, PEP, NODE, limit=0) == []
    # Newest first whatever order the ids are asked in; unknown ids are ignored.
    assert await _ids(storage, PEP, NODE, ("i2", "nope", "i4", "i1")) == ["i4", "i2", "i1"]
    assert await _ids(storage, PEP, NODE, ("i2", "i4", "i1"), limit=2) == ["i4", "i2"]
    assert await _ids(storage, PEP, NODE, ("nope",)) == []
    assert await storage.pubsub.get_items(PEP, NODE, ["i3"]) == [_item("i3", 3)]
    assert await storage.pubsub.get_items(PEP, "empty") == []


async def test_pubsub_retract(storage: Storage) -> None:
    ps = storage.pubsub
    for item_id in ("i1", "i2", "i3"):
        await ps.publish(PEP, NODE, _item(item_id), 10)
    await ps.publish(PUBSUB, NODE, _item("i2"), 10)
    assert await ps.retract(PEP, NODE, "i2") is True
    assert await ps.retract(PEP, NODE, "i2") is False
    assert await ps.retract(PEP, NODE, "nope") is False
    assert await ps.retract(PEP, "empty", "i1") is False
    assert await _ids(storage, PEP, NODE) == ["i3", "i1"]
    assert await _ids(storage, PUBSUB, NODE) == ["i2"]


async def test_pubsub_purge_returns_count_and_keeps_the_node(storage: Storage) -> None:
    ps = storage.pubsub
    await ps.create_node(PEP, NODE, '{"k": 1}')
    await ps.set_affiliation(PEP, NODE, PEP, "owner")
    await ps.set_subscription(PEP, NODE, "bob@example.org", "subscribed")
    for item_id in ("i1", "i2", "i3"):
        await ps.publish(PEP, NODE, _item(item_id), 10)
    await ps.publish(PEP, "other", _item("o1"), 10)
    assert await ps.purge(PEP, NODE) == 3
    assert await ps.purge(PEP, NODE) == 0
    assert await ps.get_items(PEP, NODE) == []
    assert await ps.get_node(PEP, NODE) == '{"k": 1}'
    assert await ps.get_affiliations(PEP, NODE) == {PEP: "owner"}
    assert await ps.get_subscriptions(PEP, NODE) == {"bob@example.org": "subscribed"}
    assert await _ids(storage, PEP, "other") == ["o1"]


async def test_pubsub_affiliations_set_replace_remove(storage: Storage) -> None:
    ps = storage.pubsub
    await ps.set_affiliation(PUBSUB, "news", "alice@example.org", "owner")
    await ps.set_affiliation(PUBSUB, "news", "bob@example.org", "member")
    await ps.set_affiliation(PUBSUB, "news", "bob@example.org", "publish-only")
    await ps.set_affiliation(PUBSUB, "news", "carol@example.org", "outcast")
    await ps.set_affiliation(PUBSUB, "blog", "bob@example.org", "publisher")
    await ps.set_affiliation(PUBSUB, "blog", "carol@example.org", "member")
    assert await ps.get_affiliations(PUBSUB, "news") == {
        "alice@example.org": "owner",
        "bob@example.org": "publish-only",
        "carol@example.org": "outcast",
    }
    assert await ps.affiliations_of(PUBSUB, "bob@example.org") == {
        "news": "publish-only",
        "blog": "publisher",
    }
    await ps.set_affiliation(PUBSUB, "news", "carol@example.org", "none")
    await ps.set_affiliation(PUBSUB, "news", "nobody@example.org", "none")
    assert await ps.get_affiliations(PUBSUB, "news") == {
        "alice@example.org": "owner",
        "bob@example.org": "publish-only",
    }
    assert await ps.affiliations_of(PUBSUB, "carol@example.org") == {"blog": "member"}
    assert await ps.affiliations_of(PUBSUB, "nobody@example.org") == {}
    assert await ps.get_affiliations(PUBSUB, "empty") == {}


async def test_pubsub_subscriptions_set_replace_remove(storage: Storage) -> None:
    ps = storage.pubsub
    # Bare and full JIDs subscribe separately.
    await ps.set_subscription(PUBSUB, "news", "bob@example.org", "pending")
    await ps.set_subscription(PUBSUB, "news", "bob@example.org/phone", "subscribed")
    await ps.set_subscription(PUBSUB, "news", "bob@example.org", "subscribed")
    await ps.set_subscription(PUBSUB, "news", "carol@example.org", "unconfigured")
    await ps.set_subscription(PUBSUB, "blog", "bob@example.org", "pending")
    assert await ps.get_subscriptions(PUBSUB, "news") == {
        "bob@example.org": "subscribed",
        "bob@example.org/phone": "subscribed",
        "carol@example.org": "unconfigured",
    }
    assert await ps.subscriptions_of(PUBSUB, "bob@example.org") == {
        "news": "subscribed",
        "blog": "pending",
    }
    assert await ps.subscriptions_of(PUBSUB, "bob@example.org/phone") == {"news": "subscribed"}
    await ps.set_subscription(PUBSUB, "news", "bob@example.org", None)
    await ps.set_subscription(PUBSUB, "news", "nobody@example.org", None)
    assert await ps.get_subscriptions(PUBSUB, "news") == {
        "bob@example.org/phone": "subscribed",
        "carol@example.org": "unconfigured",
    }
    assert await ps.subscriptions_of(PUBSUB, "bob@example.org") == {"blog": "pending"}
    assert await ps.get_subscriptions(PUBSUB, "empty") == {}


async def test_pubsub_stamps_round_trip_in_utc(storage: Storage) -> None:
    plus_two = timezone(timedelta(hours=2))
    stamp = datetime(2026, 1, 1, 12, 0, 0, 999999, tzinfo=plus_two)
    await storage.pubsub.publish(PEP, NODE, PubsubItem("i1", PEP, stamp, "<x/>"), 10)
    [back] = await storage.pubsub.get_items(PEP, NODE)
    assert back.stamp == stamp
    assert back.stamp.tzinfo is not None and back.stamp.utcoffset() == timedelta(0)
    assert back.stamp.hour == 10 and back.stamp.microsecond == 999999


async def test_pubsub_rejects_naive_stamps_and_keeps_the_old_item(storage: Storage) -> None:
    await storage.pubsub.publish(PEP, NODE, _item("i1"), 10)
    with pytest.raises(ValueError, match="timezone-aware"):
        await storage.pubsub.publish(PEP, NODE, PubsubItem("i1", PEP, datetime(2026, 1, 1), ""), 10)
    assert await storage.pubsub.get_items(PEP, NODE) == [_item("i1")]


async def test_pubsub_unicode_and_empty_payloads(storage: Storage) -> None:
    ps = storage.pubsub
    node = "urn:xmpp:ünïcode:0/日本語"
    payload = "<entry xmlns='urn:x'><title>Bób 🎵 «Descant» 日本語 \u200b ✓</title></entry>"
    items = [
        PubsubItem("id-é-🎵", "bób@example.org/résumé", T0, payload),
        PubsubItem("empty", PEP, T0, ""),
    ]
    await ps.create_node(PEP, node, '{"title": "Ünïcode 🎵"}')
    for item in items:
        await ps.publish(PEP, node, item, 10)
    assert await ps.get_items(PEP, node) == items[::-1]
    assert await ps.get_items(PEP, node, ["id-é-🎵"]) == items[:1]
    assert await ps.list_nodes(PEP) == [node]
    assert await ps.get_node(PEP, node) == '{"title": "Ünïcode 🎵"}'


async def test_pubsub_services_are_isolated(storage: Storage) -> None:
    ps = storage.pubsub
    services = (PEP, "bob@example.org", "alice@other.example", PUBSUB)
    for n, service in enumerate(services):
        await ps.create_node(service, NODE, f'{{"n": {n}}}')
        await ps.publish(service, NODE, _item("current", n), 1)
        await ps.set_affiliation(service, NODE, "carol@example.org", f"aff{n}")
        await ps.set_subscription(service, NODE, "carol@example.org", f"state{n}")
    for n, service in enumerate(services):
        assert await ps.get_node(service, NODE) == f'{{"n": {n}}}'
        assert await ps.get_items(service, NODE) == [_item("current", n)]
        assert await ps.affiliations_of(service, "carol@example.org") == {NODE: f"aff{n}"}
        assert await ps.subscriptions_of(service, "carol@example.org") == {NODE: f"state{n}"}
        assert await ps.list_nodes(service) == [NODE]
    assert await ps.retract(PEP, NODE, "current") is True
    assert await ps.purge("bob@example.org", NODE) == 1
    assert await _ids(storage, "alice@other.example", NODE) == ["current"]
    assert await _ids(storage, PUBSUB, NODE) == ["current"]


async def test_pubsub_concurrent_publishes_of_one_id_keep_one_item(storage: Storage) -> None:
    # As two clients of one account both publishing the "current" item of a PEP node.
    await storage.pubsub.publish(PEP, NODE, _item("other"), 5)
    await asyncio.gather(
        *(storage.pubsub.publish(PEP, NODE, _item("current", n), 5) for n in range(10))
    )
    items = await storage.pubsub.get_items(PEP, NODE)
    assert [item.id for item in items] == ["current", "other"]
    assert items[0] in [_item("current", n) for n in range(10)]


async def test_pubsub_concurrent_publishes_respect_max_items(storage: Storage) -> None:
    dropped = await asyncio.gather(
        *(storage.pubsub.publish(PEP, NODE, _item(f"i{n}", n), 3) for n in range(12))
    )
    kept = await _ids(storage, PEP, NODE)
    assert len(kept) == 3
    # Every item was either kept or reported dropped, exactly once.
    reported = [item_id for ids in dropped for item_id in ids]
    assert sorted(reported + kept) == sorted(f"i{n}" for n in range(12))


async def test_account_delete_removes_its_pep_service_only(storage: Storage) -> None:
    ps = storage.pubsub
    # alice@example.org's PEP service, bob's, alice's namesake on another host, and a
    # pubsub service where alice has data of her own.
    services = (PEP, "bob@example.org", "alice@other.example", PUBSUB)
    await storage.accounts.create(account(H, "alice"))
    await storage.accounts.create(account(H, "bob"))
    await storage.accounts.create(account("other.example", "alice"))
    for service in services:
        for node in (NODE, "urn:xmpp:avatar:data"):
            await ps.create_node(service, node, "{}")
            await ps.publish(service, node, _item("current"), 1)
            await ps.set_affiliation(service, node, PEP, "owner")
            await ps.set_subscription(service, node, f"{PEP}/laptop", "subscribed")
    await ps.set_subscription(PUBSUB, NODE, f"{PEP}.example/x", "subscribed")
    # Rows of a node never created go too.
    await ps.publish(PEP, "orphan", _item("i1"), 10)
    await ps.set_affiliation(PEP, "orphan", "bob@example.org", "member")
    await ps.set_subscription(PEP, "orphan", "bob@example.org", "subscribed")

    assert await storage.accounts.delete(H, "alice") is True

    assert await ps.list_nodes(PEP) == []
    for node in (NODE, "urn:xmpp:avatar:data", "orphan"):
        assert await ps.get_node(PEP, node) is None
        assert await ps.get_items(PEP, node) == []
        assert await ps.get_affiliations(PEP, node) == {}
        assert await ps.get_subscriptions(PEP, node) == {}
    assert await ps.affiliations_of(PEP, "bob@example.org") == {}
    assert await ps.subscriptions_of(PEP, "bob@example.org") == {}
    for service in services[1:]:
        # Other services keep their nodes and items, not what alice held there: a new
        # account of that name must not inherit them.
        assert await ps.list_nodes(service) == sorted([NODE, "urn:xmpp:avatar:data"])
        assert await _ids(storage, service, NODE) == ["current"]
        assert await ps.affiliations_of(service, PEP) == {}
        assert await ps.subscriptions_of(service, f"{PEP}/laptop") == {}
    # A JID that merely starts like hers keeps its subscription.
    assert await ps.subscriptions_of(PUBSUB, f"{PEP}.example/x") == {NODE: "subscribed"}


# Durable backends: persistence and sharing between processes


async def test_data_persists_across_close_and_reopen(
    durable_url: str, make_storage: StorageFactory
) -> None:
    first = await make_storage(durable_url)
    await first.accounts.create(account(H, "alice"))
    version = await first.roster.put_item(H, "alice", RosterItem("bob@example.com", "Bob"))
    stamp = datetime(2030, 12, 31, 23, 59, 59, 1, tzinfo=UTC)
    await first.offline.push(H, "alice", "<message/>", stamp)
    await first.pubsub.create_node(PEP, NODE, "{}")
    for item_id in ("i1", "i2"):
        await first.pubsub.publish(PEP, NODE, _item(item_id), 10)
    await first.close()

    second = await make_storage(durable_url)
    assert await second.accounts.get(H, "alice") == account(H, "alice")
    assert await second.roster.get_version(H, "alice") == version
    assert await second.offline.pop_all(H, "alice") == [("<message/>", stamp)]
    assert await second.pubsub.list_nodes(PEP) == [NODE]
    # Publishing after a reopen continues the order: "i1" republished becomes the newest.
    assert await second.pubsub.publish(PEP, NODE, _item("i1", 1), 2) == []
    assert await _ids(second, PEP, NODE) == ["i1", "i2"]


async def test_two_storage_objects_see_each_others_writes(
    durable_url: str, make_storage: StorageFactory
) -> None:
    # As `descant user add` does while the server runs in another process.
    server = await make_storage(durable_url)
    cli = await make_storage(durable_url)
    await cli.accounts.create(account(H, "alice"))
    assert await server.accounts.get(H, "alice") == account(H, "alice")
    await server.roster.put_item(H, "alice", RosterItem("bob@example.com"))
    assert await cli.roster.get_version(H, "alice") == "1"
    assert await cli.accounts.delete(H, "alice") is True
    assert await server.accounts.get(H, "alice") is None
    assert await server.roster.get_version(H, "alice") == "0"


async def test_reopen_does_not_reapply_migrations(
    durable_url: str, make_storage: StorageFactory
) -> None:
    first = await make_storage(durable_url)
    assert isinstance(first, SqlStorage)
    latest = len(load(first.db.dialect.name))
    assert await current_version(first.db) == latest
    await first.close()
    second = await make_storage(durable_url)
    assert isinstance(second, SqlStorage)
    assert await current_version(second.db) == latest


# The URL factory


def test_open_storage_selects_backend(tmp_path: Path) -> None:
    assert isinstance(open_storage("memory://", str(tmp_path)), MemoryStorage)
    for url in ("sqlite:///x.db", "postgresql://u@h/db", "postgres://u@h/db?schema=s"):
        assert isinstance(open_storage(url, str(tmp_path)), SqlStorage)


@pytest.mark.parametrize("url", ["mysql://u@h/db", "descant.db", "", "sqlite://host/x.db"])
def test_open_storage_rejects_unknown_urls(url: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="URL"):
        open_storage(url, str(tmp_path))


def test_postgres_rejects_unsafe_schema_names() -> None:
    with pytest.raises(ValueError, match="schema"):
        open_storage('postgresql://u@h/db?schema=x";drop', "/tmp")


def test_sqlite_paths(tmp_path: Path) -> None:
    assert sqlite_path("sqlite:///data/descant.db", "/d") == "data/descant.db"
    assert sqlite_path("sqlite:////var/lib/descant.db", "/d") == "/var/lib/descant.db"
    assert sqlite_path("sqlite://", "/d") == "/d/descant.db"


async def test_sqlite_relative_path_is_relative_to_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    storage = open_storage("sqlite:///data/descant.db", "/nonexistent")
    await storage.open()
    try:
        await storage.keyval.set(H, "alice", "s", "k", "v")
    finally:
        await storage.close()
    assert (tmp_path / "data" / "descant.db").is_file()
