"""Conformance of every backend's account message archive (XEP-0313, ``MamStore``).

Runs against memory, SQLite and PostgreSQL through the ``storage`` fixture (conftest.py);
the tests using ``durable_url`` cover SQLite and PostgreSQL only: sharing the database
file or pool with the other stores, reopening, and paging through 100,000 messages.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import pytest

from descant.storage import Account, ScramCredentials, Storage
from descant.storage.api import MamEntry, MamQuery, UnknownArchiveId
from descant.storage.mam_sql import fts5_query, search_words
from descant.storage.sql import SqlStorage

H = "example.org"
OWNER = "alice"
BOB = "bob@example.com"
CAROL = "carol@example.net"
T0 = datetime(2030, 1, 1, tzinfo=UTC)

StorageFactory = Callable[[str], Awaitable[Storage]]


def entry(
    i: int,
    with_jid: str = BOB,
    resource: str = "phone",
    *,
    outgoing: bool = False,
    origin_id: str = "",
    text: str | None = None,
    stamp: datetime | None = None,
) -> MamEntry:
    return MamEntry(
        id=f"m{i}",
        stamp=T0 + timedelta(seconds=i) if stamp is None else stamp,
        with_jid=with_jid,
        with_resource=resource,
        outgoing=outgoing,
        origin_id=origin_id,
        text=f"message number {i}" if text is None else text,
        stanza=f"<message id='x{i}'><body>message number {i}</body></message>",
    )


async def add(storage: Storage, entries: Sequence[MamEntry], owner: str = OWNER) -> None:
    await storage.mam.add([(H, owner, e) for e in entries])


async def ids(storage: Storage, query: MamQuery, owner: str = OWNER, host: str = H) -> list[str]:
    page, _ = await storage.mam.query(host, owner, query)
    return [e.id for e in page]


def words(text: str) -> set[str]:
    return {w.casefold() for w in re.findall(r"[^\W_]+", text)}


# Adding and reading back


async def test_mam_query_returns_entries_in_archive_order(storage: Storage) -> None:
    # Archive order is the order of add, even when a later message carries an older stamp.
    late = entry(3, stamp=T0 - timedelta(days=1))
    await add(storage, [entry(1), entry(2, outgoing=True)])
    await add(storage, [late, entry(4, CAROL, "")])
    page, complete = await storage.mam.query(H, OWNER, MamQuery())
    assert page == [entry(1), entry(2, outgoing=True), late, entry(4, CAROL, "")]
    assert complete


async def test_mam_round_trips_every_field_and_stamps_in_utc(storage: Storage) -> None:
    plus_two = timezone(timedelta(hours=2))
    e = MamEntry(
        id="ünïcode-id",
        stamp=datetime(2030, 6, 1, 14, 0, 0, 123456, tzinfo=plus_two),
        with_jid="жанна@пример.рф",
        with_resource="Gajim ☕",
        outgoing=True,
        origin_id="origin-1",
        text="Grüße — 你好",
        stanza="<message><body>Grüße — 你好</body></message>",
    )
    await add(storage, [e])
    (got,), _ = await storage.mam.query(H, OWNER, MamQuery())
    assert got == e
    assert got.stamp.tzinfo == UTC and got.stamp == e.stamp


async def test_mam_add_rejects_naive_stamps(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await add(storage, [entry(1, stamp=datetime(2030, 1, 1))])


async def test_mam_add_of_nothing_is_harmless(storage: Storage) -> None:
    await storage.mam.add([])
    assert await storage.mam.bounds(H, OWNER) is None


# Filters


# Five messages with Bob and Carol; FIXTURE[i - 1] is "m<i>".
FIXTURE = (
    entry(1, BOB, "phone", text="Lunch at noon?"),
    entry(2, BOB, "laptop", outgoing=True, text="Yes, lunch at the CAFÉ"),
    entry(3, CAROL, "", text="Is the café open at noon"),
    entry(4, BOB, "phone", text=""),
    entry(5, CAROL, "home", outgoing=True, text="noon lunch works"),
)


async def _filter_fixture(storage: Storage) -> None:
    await add(storage, FIXTURE)


async def test_mam_filter_with_bare_jid(storage: Storage) -> None:
    await _filter_fixture(storage)
    assert await ids(storage, MamQuery(with_jid=BOB)) == ["m1", "m2", "m4"]
    assert await ids(storage, MamQuery(with_jid=CAROL)) == ["m3", "m5"]
    assert await ids(storage, MamQuery(with_jid="dave@example.com")) == []


async def test_mam_filter_with_full_jid(storage: Storage) -> None:
    await _filter_fixture(storage)
    assert await ids(storage, MamQuery(with_jid=BOB, with_resource="phone")) == ["m1", "m4"]
    assert await ids(storage, MamQuery(with_jid=BOB, with_resource="laptop")) == ["m2"]
    assert await ids(storage, MamQuery(with_jid=CAROL, with_resource="")) == ["m3"]
    assert await ids(storage, MamQuery(with_jid=CAROL, with_resource="phone")) == []


async def test_mam_filter_start_and_end_are_inclusive(storage: Storage) -> None:
    await _filter_fixture(storage)
    at = [T0 + timedelta(seconds=i) for i in range(6)]
    assert await ids(storage, MamQuery(start=at[4])) == ["m4", "m5"]
    assert await ids(storage, MamQuery(end=at[2])) == ["m1", "m2"]
    assert await ids(storage, MamQuery(start=at[2], end=at[4])) == ["m2", "m3", "m4"]
    assert await ids(storage, MamQuery(start=at[3], end=at[3])) == ["m3"]
    # Microseconds count: a microsecond past a stamp excludes it.
    assert await ids(storage, MamQuery(start=at[5] + timedelta(microseconds=1))) == []
    # Any zone names the same instant.
    local = at[4].astimezone(timezone(timedelta(hours=-5)))
    assert await ids(storage, MamQuery(start=local)) == ["m4", "m5"]


async def test_mam_filter_ids_keeps_archive_order_and_ignores_unknown(storage: Storage) -> None:
    await _filter_fixture(storage)
    assert await ids(storage, MamQuery(ids=("m5", "m1", "nope", "m3"))) == ["m1", "m3", "m5"]
    assert await ids(storage, MamQuery(ids=("nope",))) == []


async def test_mam_filter_text_needs_every_word_in_any_case(storage: Storage) -> None:
    await _filter_fixture(storage)
    assert await ids(storage, MamQuery(text="lunch")) == ["m1", "m2", "m5"]
    assert await ids(storage, MamQuery(text="noon lunch")) == ["m1", "m5"]
    assert await ids(storage, MamQuery(text="LUNCH Noon")) == ["m1", "m5"]
    assert await ids(storage, MamQuery(text="lunch noon dinner")) == []
    # Whole words: "noo" is no word of any message.
    assert await ids(storage, MamQuery(text="noo")) == []
    # Punctuation separates words in the query as in the text.
    assert await ids(storage, MamQuery(text="noon?")) == ["m1", "m3", "m5"]


async def test_mam_filter_text_folds_case_of_accented_letters(storage: Storage) -> None:
    # PostgreSQL folds non-ASCII case by the database's LC_CTYPE; the test database uses
    # C.UTF-8, as a server should (see 0004_mam.postgres.sql).
    await _filter_fixture(storage)
    assert await ids(storage, MamQuery(text="café")) == ["m2", "m3"]
    assert await ids(storage, MamQuery(text="CAFÉ open")) == ["m3"]


async def test_mam_filter_text_without_words_filters_nothing(storage: Storage) -> None:
    await _filter_fixture(storage)
    for text in ("", "   ", "?!", "* - ()"):
        assert await ids(storage, MamQuery(text=text)) == ["m1", "m2", "m3", "m4", "m5"]


async def test_mam_filters_combine(storage: Storage) -> None:
    await _filter_fixture(storage)
    at = [T0 + timedelta(seconds=i) for i in range(6)]
    q = MamQuery(with_jid=BOB, text="lunch", start=at[2])
    assert await ids(storage, q) == ["m2"]
    q = MamQuery(with_jid=CAROL, text="noon", ids=("m3", "m5"), end=at[4])
    assert await ids(storage, q) == ["m3"]
    q = MamQuery(with_jid=BOB, with_resource="phone", text="lunch", end=at[5])
    assert await ids(storage, q) == ["m1"]
    # Filters and paging: a page of one, then the next after it.
    page, complete = await storage.mam.query(H, OWNER, MamQuery(text="lunch", limit=1))
    assert [e.id for e in page] == ["m1"] and not complete
    q = MamQuery(text="lunch", after="m1", limit=2)
    assert await storage.mam.query(H, OWNER, q) == ([FIXTURE[1], FIXTURE[4]], True)


_HOSTILE = (
    '"',
    '""',
    'say "hi',
    'a"b',
    "*",
    "lunch*",
    "NEAR(lunch noon)",
    "NEAR",
    "lunch NEAR noon",
    "-lunch",
    "lunch -noon",
    "text:lunch",
    "{text}: noon",
    "(lunch",
    "noon)",
    "(lunch OR noon)",
    "lunch AND noon",
    "NOT lunch",
    "^noon",
    "lunch + noon",
    "'",
    "; DROP TABLE mam; --",
    "\\",
    "%_",
    "$1",
    "?",
    "_",
    "snake_case",
    "case snake",
    "snake_",
)


async def test_mam_text_search_reads_any_input_as_plain_words(storage: Storage) -> None:
    # FTS5 query syntax (quotes, *, NEAR, -, :, column filters, parentheses, AND/OR/NOT)
    # and SQL-ish text are only words: a message matches when it has all of them.
    texts = [
        "near lunch noon",
        "text lunch",
        "say hi",
        "a b",
        "lunch and noon or not",
        "drop table mam",
        "plain snake_case",
    ]
    await add(storage, [entry(i, text=t) for i, t in enumerate(texts)])
    for text in _HOSTILE:
        wanted = words(text)
        expected = [f"m{i}" for i, t in enumerate(texts) if wanted <= words(t)]
        assert await ids(storage, MamQuery(text=text)) == expected, text


def test_fts5_query_quotes_every_word() -> None:
    assert search_words('Say "NEAR" (café)* x_y') == ["say", "near", "café", "x", "y"]
    assert fts5_query(["near", 'a"b']) == '"near" "a""b"'
    assert fts5_query([]) == ""


# Paging (XEP-0059)


async def _page_all(
    storage: Storage, limit: int, *, backwards: bool, **filters: object
) -> list[str]:
    """Every id through pages of ``limit``, checking ``complete`` on each page."""
    seen: list[str] = []
    cursor: str | None = "" if backwards else None
    while True:
        if backwards:
            query = MamQuery(before=cursor, limit=limit, **filters)  # type: ignore[arg-type]
        else:
            query = MamQuery(after=cursor, limit=limit, **filters)  # type: ignore[arg-type]
        page, complete = await storage.mam.query(H, OWNER, query)
        got = [e.id for e in page]
        seen = got + seen if backwards else seen + got
        if complete:
            return seen
        assert len(got) == limit, "only the last page may be short"
        cursor = got[0] if backwards else got[-1]


@pytest.mark.parametrize("limit", [1, 7, 50])
async def test_mam_pages_forwards_and_backwards_through_1000(storage: Storage, limit: int) -> None:
    everything = [entry(i, BOB if i % 3 else CAROL) for i in range(1000)]
    for start in range(0, 1000, 100):
        await add(storage, everything[start : start + 100])
    all_ids = [e.id for e in everything]
    assert await _page_all(storage, limit, backwards=False) == all_ids
    assert await _page_all(storage, limit, backwards=True) == all_ids
    # With a filter too: complete is about the matching messages, not the archive.
    carol = [e.id for e in everything if e.with_jid == CAROL]
    assert await _page_all(storage, limit, backwards=False, with_jid=CAROL) == carol
    assert await _page_all(storage, limit, backwards=True, with_jid=CAROL) == carol


async def test_mam_complete_is_true_exactly_at_the_ends(storage: Storage) -> None:
    await add(storage, [entry(i) for i in range(6)])
    query = storage.mam.query
    assert await ids(storage, MamQuery(limit=3)) == ["m0", "m1", "m2"]
    assert (await query(H, OWNER, MamQuery(limit=3)))[1] is False
    # A page ending exactly on the last message is complete: nothing comes after it.
    assert (await query(H, OWNER, MamQuery(after="m2", limit=3)))[1] is True
    assert (await query(H, OWNER, MamQuery(after="m5", limit=3))) == ([], True)
    assert (await query(H, OWNER, MamQuery(before="m3", limit=3)))[1] is True
    assert (await query(H, OWNER, MamQuery(before="m4", limit=3)))[1] is False
    assert (await query(H, OWNER, MamQuery(before="m0", limit=3))) == ([], True)


async def test_mam_empty_before_asks_for_the_last_page(storage: Storage) -> None:
    await add(storage, [entry(i) for i in range(10)])
    page, complete = await storage.mam.query(H, OWNER, MamQuery(before="", limit=3))
    assert [e.id for e in page] == ["m7", "m8", "m9"] and not complete
    page, complete = await storage.mam.query(H, OWNER, MamQuery(before="", limit=10))
    assert len(page) == 10 and complete
    page, complete = await storage.mam.query(H, OWNER, MamQuery(before="", limit=3, text="m9"))
    assert page == [] and complete  # "m9" is an id, not a word of any text
    assert await storage.mam.query(H, "nobody", MamQuery(before="")) == ([], True)


async def test_mam_after_and_before_together(storage: Storage) -> None:
    await add(storage, [entry(i) for i in range(10)])
    assert await ids(storage, MamQuery(after="m2", before="m6")) == ["m3", "m4", "m5"]
    # Paging backwards inside the window takes its newest end.
    page, complete = await storage.mam.query(H, OWNER, MamQuery(after="m2", before="m6", limit=2))
    assert [e.id for e in page] == ["m4", "m5"] and not complete


async def test_mam_unknown_after_or_before_raises(storage: Storage) -> None:
    await add(storage, [entry(i) for i in range(3)])
    await add(storage, [entry(7)], owner="bob")
    for query in (
        MamQuery(after="nope"),
        MamQuery(before="nope"),
        MamQuery(after="m1", before="nope"),
        MamQuery(after="m7"),  # bob's, not alice's
        MamQuery(before="m7", with_jid="nobody@example.com"),
    ):
        with pytest.raises(UnknownArchiveId):
            await storage.mam.query(H, OWNER, query)
    with pytest.raises(UnknownArchiveId):
        await storage.mam.query(H, "nobody", MamQuery(after="m1"))


async def test_mam_limit_zero(storage: Storage) -> None:
    assert await storage.mam.query(H, OWNER, MamQuery(limit=0)) == ([], True)
    await add(storage, [entry(i) for i in range(3)])
    assert await storage.mam.query(H, OWNER, MamQuery(limit=0)) == ([], False)
    assert await storage.mam.query(H, OWNER, MamQuery(before="", limit=0)) == ([], False)
    assert await storage.mam.query(H, OWNER, MamQuery(after="m2", limit=0)) == ([], True)
    assert await storage.mam.query(H, OWNER, MamQuery(before="m0", limit=0)) == ([], True)


# Isolation and bounds


async def test_mam_owners_and_hosts_are_isolated(storage: Storage) -> None:
    # The same ids in three archives: alice@H, bob@H and alice@other.example.
    await storage.mam.add(
        [
            (H, "alice", entry(1, text="hello alice")),
            (H, "bob", entry(1, text="hello bob")),
            ("other.example", "alice", entry(1, text="hello other")),
            (H, "alice", entry(2)),
            ("other.example", "alice", entry(3)),
        ]
    )
    assert await ids(storage, MamQuery()) == ["m1", "m2"]
    assert await ids(storage, MamQuery(), owner="bob") == ["m1"]
    assert await ids(storage, MamQuery(), host="other.example") == ["m1", "m3"]
    assert await ids(storage, MamQuery(text="hello bob")) == []
    assert await ids(storage, MamQuery(text="hello"), owner="bob") == ["m1"]
    # after resolves within the archive queried.
    assert await ids(storage, MamQuery(after="m1"), host="other.example") == ["m3"]
    assert await ids(storage, MamQuery(), owner="carol") == []
    bounds = await storage.mam.bounds("other.example", "alice")
    assert bounds is not None and [e.id for e in bounds] == ["m1", "m3"]


async def test_mam_bounds(storage: Storage) -> None:
    assert await storage.mam.bounds(H, OWNER) is None
    await add(storage, [entry(5)])
    assert await storage.mam.bounds(H, OWNER) == (entry(5), entry(5))
    late = entry(2, stamp=T0 - timedelta(days=1))
    await add(storage, [entry(6), late])
    # Oldest and newest in archive order, not by stamp.
    assert await storage.mam.bounds(H, OWNER) == (entry(5), late)
    await add(storage, [entry(9)], owner="bob")
    assert await storage.mam.bounds(H, "bob") == (entry(9), entry(9))
    assert await storage.mam.bounds("other.example", OWNER) is None


# Retractions (XEP-0424): finding by origin-id, replacing


async def test_mam_find_origin(storage: Storage) -> None:
    await add(
        storage,
        [
            entry(1, BOB, outgoing=False, origin_id="o1"),
            entry(2, BOB, outgoing=True, origin_id="o1"),
            entry(3, CAROL, outgoing=False, origin_id="o1"),
            entry(4, BOB, outgoing=False, origin_id="o1"),  # newest wins
            entry(5, BOB, outgoing=False, origin_id="o2"),
        ],
    )
    await add(storage, [entry(9, BOB, outgoing=False, origin_id="o1")], owner="bob")
    find = storage.mam.find_origin
    assert await find(H, OWNER, BOB, "o1", False) == entry(4, BOB, origin_id="o1")
    assert await find(H, OWNER, BOB, "o1", True) == entry(2, BOB, outgoing=True, origin_id="o1")
    assert await find(H, OWNER, CAROL, "o1", False) == entry(3, CAROL, origin_id="o1")
    assert await find(H, OWNER, CAROL, "o1", True) is None
    assert await find(H, OWNER, BOB, "o2", True) is None
    assert await find(H, OWNER, BOB, "o3", False) is None
    assert await find(H, "carol", BOB, "o1", False) is None


async def test_mam_replace_sets_stanza_and_clears_text(storage: Storage) -> None:
    await add(storage, [entry(1, text="secret plans"), entry(2, text="other plans")])
    assert await ids(storage, MamQuery(text="plans")) == ["m1", "m2"]
    assert await storage.mam.replace(H, OWNER, "m1", "<tombstone/>") is True
    page, _ = await storage.mam.query(H, OWNER, MamQuery(ids=("m1",)))
    assert page[0].stanza == "<tombstone/>" and page[0].text == ""
    assert page[0].stamp == entry(1).stamp and page[0].with_jid == BOB
    assert await ids(storage, MamQuery(text="plans")) == ["m2"]
    assert await ids(storage, MamQuery(text="secret")) == []
    # Still in the archive, in its place.
    assert await ids(storage, MamQuery()) == ["m1", "m2"]
    # Replacing again (no text left) is fine; unknown ids and other owners are not found.
    assert await storage.mam.replace(H, OWNER, "m1", "<tombstone2/>") is True
    assert await storage.mam.replace(H, OWNER, "nope", "<x/>") is False
    assert await storage.mam.replace(H, "bob", "m2", "<x/>") is False
    assert await ids(storage, MamQuery(text="other plans")) == ["m2"]


# Removal: an account's archive, account deletion, expiry


async def test_mam_delete_owner(storage: Storage) -> None:
    await add(storage, [entry(i, text="keep or not") for i in range(4)])
    await add(storage, [entry(i, text="keep or not") for i in range(2)], owner="bob")
    assert await storage.mam.delete_owner(H, OWNER) == 4
    assert await storage.mam.bounds(H, OWNER) is None
    assert await ids(storage, MamQuery(text="keep")) == []
    assert await ids(storage, MamQuery(text="keep"), owner="bob") == ["m0", "m1"]
    assert await storage.mam.delete_owner(H, OWNER) == 0
    # The ids are free again.
    await add(storage, [entry(0)])
    assert await ids(storage, MamQuery()) == ["m0"]


def _account(username: str) -> Account:
    creds = ScramCredentials(salt=b"s", iterations=4096, stored_key=b"k", server_key=b"v")
    return Account(H, username, sha1=creds, sha256=creds)


async def test_account_deletion_removes_its_archive(storage: Storage) -> None:
    for name in ("alice", "bob"):
        await storage.accounts.create(_account(name))
        await add(storage, [entry(1, text="hello"), entry(2)], owner=name)
    assert await storage.accounts.delete(H, "alice") is True
    assert await storage.mam.bounds(H, "alice") is None
    assert await ids(storage, MamQuery(text="hello")) == []
    assert await ids(storage, MamQuery(), owner="bob") == ["m1", "m2"]
    # A new account of the same name starts with an empty archive.
    await storage.accounts.create(_account("alice"))
    assert await storage.mam.query(H, "alice", MamQuery()) == ([], True)


async def test_mam_expire_removes_oldest_first_in_batches(storage: Storage) -> None:
    # Three owners, interleaved; entries i = 0..11 stamped T0 + i seconds. Expiry runs
    # in archive order across owners.
    owners = ("alice", "bob", "carol")
    await storage.mam.add([(H, owners[i % 3], entry(i, text="old words")) for i in range(12)])
    cutoff = T0 + timedelta(seconds=8)  # m0..m7 are older; m8 (== cutoff) is not

    def remaining() -> Awaitable[list[list[str]]]:
        return asyncio.gather(*(ids(storage, MamQuery(), owner=o) for o in owners))

    assert await storage.mam.expire(cutoff, 3) == 3
    assert await remaining() == [["m3", "m6", "m9"], ["m4", "m7", "m10"], ["m5", "m8", "m11"]]
    assert await storage.mam.expire(cutoff, 0) == 0
    assert await storage.mam.expire(cutoff, 3) == 3
    assert await remaining() == [["m6", "m9"], ["m7", "m10"], ["m8", "m11"]]
    assert await storage.mam.expire(cutoff, 3) == 2  # stops at the cutoff
    assert await storage.mam.expire(cutoff, 3) == 0
    assert await remaining() == [["m9"], ["m10"], ["m8", "m11"]]
    # Expired messages leave the search index too.
    assert await ids(storage, MamQuery(text="old"), owner="carol") == ["m8", "m11"]
    assert await ids(storage, MamQuery(text="old"), owner="alice") == ["m9"]
    assert await storage.mam.expire(T0 + timedelta(days=1), 100) == 4
    assert await remaining() == [[], [], []]


async def test_mam_expire_goes_by_archive_order_not_stamp(storage: Storage) -> None:
    # A message archived later but stamped earlier goes after the ones archived before it.
    await add(storage, [entry(1), entry(2), entry(0, stamp=T0 - timedelta(hours=1))])
    assert await storage.mam.expire(T0 + timedelta(seconds=10), 2) == 2
    assert await ids(storage, MamQuery()) == ["m0"]


async def test_mam_expire_rejects_naive_times(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.mam.expire(datetime(2030, 1, 1), 10)


# Durable backends: the archive beside the other stores, reopening, volume


async def test_mam_persists_and_keeps_order_across_reopen(
    durable_url: str, make_storage: StorageFactory
) -> None:
    first = await make_storage(durable_url)
    await add(first, [entry(1, text="before"), entry(2)])
    await first.close()
    second = await make_storage(durable_url)
    await add(second, [entry(0, text="after")])
    assert await ids(second, MamQuery()) == ["m1", "m2", "m0"]
    assert await ids(second, MamQuery(text="before")) == ["m1"]
    assert await ids(second, MamQuery(after="m2")) == ["m0"]


async def test_mam_traffic_does_not_hold_up_the_other_stores(
    durable_url: str, make_storage: StorageFactory
) -> None:
    # A large archive insert is under way while a login-like read runs: the read must
    # not queue behind it (SQLite: the archive has its own connection and thread;
    # PostgreSQL: the pool).
    storage = await make_storage(durable_url)
    await storage.keyval.set(H, OWNER, "s", "k", "v")
    big = [(H, OWNER, entry(i, text=f"word{i % 97} filler text")) for i in range(20_000)]
    adding = asyncio.create_task(storage.mam.add(big))
    await asyncio.sleep(0.01)  # let the insert start
    assert not adding.done()
    assert await storage.keyval.get(H, OWNER, "s", "k") == "v"
    assert await storage.accounts.get(H, OWNER) is None
    assert not adding.done(), "the reads waited for the archive insert"
    await adding
    bounds = await storage.mam.bounds(H, OWNER)
    assert bounds is not None and (bounds[0].id, bounds[1].id) == ("m0", "m19999")

    # The other way round: while the other stores are inside a write transaction, the
    # archive still answers (on one SQLite connection this would wait for the end).
    assert isinstance(storage, SqlStorage)
    async with storage.db.transaction() as tx:
        await tx.execute("DELETE FROM keyval WHERE host = ?", "nowhere.example")
        page, _ = await asyncio.wait_for(storage.mam.query(H, OWNER, MamQuery(limit=2)), 5)
        assert [e.id for e in page] == ["m0", "m1"]


@pytest.mark.timeout(20)
async def test_mam_pages_through_100000_messages(
    durable_url: str, make_storage: StorageFactory
) -> None:
    storage = await make_storage(durable_url)
    total, batch, limit = 100_000, 500, 250
    for start in range(0, total, batch):
        await storage.mam.add(
            [(H, OWNER, entry(i, text=f"w{i % 10}")) for i in range(start, start + batch)]
        )
    if isinstance(storage, SqlStorage) and storage.db.dialect.name == "postgres":
        # Statistics, as autovacuum gathers them within a minute of a bulk load. Without
        # any, PostgreSQL may look ids up through another (host, owner, ...) index and
        # filter, scanning the whole archive for each page.
        await storage.db.execute("ANALYZE mam")
    expected = [f"m{i}" for i in range(total)]
    assert await _page_all(storage, limit, backwards=False) == expected
    assert await _page_all(storage, limit, backwards=True) == expected
