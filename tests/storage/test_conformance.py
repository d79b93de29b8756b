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
from descant.storage.api import ArchivedMessage, ArchiveQuery, UnknownArchiveId
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


# Durable backends: persistence and sharing between processes


async def test_data_persists_across_close_and_reopen(
    durable_url: str, make_storage: StorageFactory
) -> None:
    first = await make_storage(durable_url)
    await first.accounts.create(account(H, "alice"))
    version = await first.roster.put_item(H, "alice", RosterItem("bob@example.com", "Bob"))
    stamp = datetime(2030, 12, 31, 23, 59, 59, 1, tzinfo=UTC)
    await first.offline.push(H, "alice", "<message/>", stamp)
    await first.close()

    second = await make_storage(durable_url)
    assert await second.accounts.get(H, "alice") == account(H, "alice")
    assert await second.roster.get_version(H, "alice") == version
    assert await second.offline.pop_all(H, "alice") == [("<message/>", stamp)]


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
