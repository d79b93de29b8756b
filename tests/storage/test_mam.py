"""Conformance of every backend's account message archive (XEP-0313, ``MamStore``).

Runs against memory, SQLite and PostgreSQL through the ``storage`` fixture (conftest.py);
the tests using ``durable_url`` cover SQLite and PostgreSQL only: sharing the database
file or pool with the other stores, reopening, and paging through 100,000 messages.

Archive ids are keys (``MamIds``): an entry's id is made from its stamp with ``key_id``,
and ``mid(i)`` is the id of ``entry(i)``, stamped ``T0 + i`` seconds.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone

import asyncpg
import pytest

from descant.storage import Account, ScramCredentials, Storage, mam_sql
from descant.storage.api import (
    MamEntry,
    MamIds,
    MamQuery,
    UnknownArchiveId,
    mam_id,
    mam_key,
    mam_micros,
    mam_stamp,
)
from descant.storage.mam_sql import fts5_query, search_words
from descant.storage.sql import SqlStorage

H = "example.org"
OWNER = "alice"
BOB = "bob@example.com"
CAROL = "carol@example.net"
T0 = datetime(2030, 1, 1, tzinfo=UTC)

StorageFactory = Callable[[str], Awaitable[Storage]]


def key_id(stamp: datetime, low: int = 0) -> str:
    """The archive id whose key is ``stamp``'s time with ``low`` as its random bits."""
    return mam_id(mam_micros(stamp) << 8 | low)


def mid(i: int, low: int = 0) -> str:
    """The id of ``entry(i, low=low)``."""
    return key_id(T0 + timedelta(seconds=i), low)


def ms(*numbers: int) -> list[str]:
    return [mid(i) for i in numbers]


def entry(
    i: int,
    with_jid: str = BOB,
    resource: str = "phone",
    *,
    outgoing: bool = False,
    origin_id: str = "",
    text: str | None = None,
    stamp: datetime | None = None,
    low: int = 0,
) -> MamEntry:
    stamp = T0 + timedelta(seconds=i) if stamp is None else stamp
    return MamEntry(
        id=key_id(stamp, low),
        stamp=stamp,
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


# Archive ids (MamIds)


def test_mam_ids_are_16_hex_digits_increasing_under_a_frozen_clock() -> None:
    allocator = MamIds()
    now = datetime(2030, 6, 1, 12, 0, 0, 250_000, tzinfo=UTC)
    made = [allocator.next(now) for _ in range(2000)]
    assert all(re.fullmatch(r"[0-9a-f]{16}", i) for i in made)
    keys = [mam_key(i) for i in made]
    assert all(k is not None for k in keys)
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # type: ignore[type-var]
    # The first key is the clock's time; later ones move past it only as far as needed.
    assert mam_stamp(keys[0]) == now  # type: ignore[arg-type]
    assert mam_stamp(keys[-1]) - now < timedelta(microseconds=10)  # type: ignore[arg-type]
    # A clock stepping back does not take the keys back with it.
    earlier = allocator.next(now - timedelta(hours=1))
    assert mam_key(earlier) > keys[-1]  # type: ignore[operator]
    later = allocator.next(now + timedelta(seconds=1))
    assert mam_stamp(mam_key(later)) == now + timedelta(seconds=1)  # type: ignore[arg-type]


def test_mam_ids_refuse_naive_times() -> None:
    with pytest.raises(ValueError):
        MamIds().next(datetime(2030, 1, 1))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0123456789abcde",  # 15 digits
        "0123456789abcdef0",  # 17
        "0123456789ABCDEF",  # upper case: one spelling per key
        "0123456789abcdeg",
        " 0123456789abcde",
        "+123456789abcdef",
        "0x23456789abcdef",
        "０123456789abcdef",  # a fullwidth digit
        "8000000000000000",  # 2**63: beyond a signed 64-bit integer
        "m1",
        "ünïcode-id",
    ],
)
def test_mam_key_refuses_anything_but_16_lower_case_hex_digits(text: str) -> None:
    assert mam_key(text) is None


def test_mam_key_and_id_round_trip() -> None:
    assert mam_key("0123456789abcdef") == 0x0123456789ABCDEF
    assert mam_key("7fffffffffffffff") == 2**63 - 1
    assert mam_id(0x0123456789ABCDEF) == "0123456789abcdef"
    stamp = datetime(2030, 6, 1, 14, 0, 0, 123456, tzinfo=UTC)
    assert mam_stamp(mam_micros(stamp) << 8 | 0xFF) == stamp


# Adding and reading back


async def test_mam_query_returns_entries_in_key_order(storage: Storage) -> None:
    # Archive order is key order (the stamps' order), whatever order they were added in.
    early = entry(0, stamp=T0 - timedelta(days=1))
    await add(storage, [entry(2), entry(4, outgoing=True)])
    await add(storage, [entry(3, CAROL, ""), entry(1), early])
    page, complete = await storage.mam.query(H, OWNER, MamQuery())
    assert page == [early, entry(1), entry(2), entry(3, CAROL, ""), entry(4, outgoing=True)]
    assert complete


async def test_mam_round_trips_every_field_and_stamps_in_utc(storage: Storage) -> None:
    plus_two = timezone(timedelta(hours=2))
    stamp = datetime(2030, 6, 1, 14, 0, 0, 123456, tzinfo=plus_two)
    e = MamEntry(
        id=key_id(stamp, 0xA7),
        stamp=stamp,
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


async def test_mam_add_refuses_entries_whose_id_is_not_their_key(storage: Storage) -> None:
    naive = MamEntry(mid(1), datetime(2030, 1, 1, 0, 0, 1), BOB, "", False, "", "", "<m/>")
    not_a_key = MamEntry("m1", T0, BOB, "", False, "", "", "<m/>")
    other_time = MamEntry(mid(1), T0 + timedelta(seconds=2), BOB, "", False, "", "", "<m/>")
    for bad in (naive, not_a_key, other_time):
        with pytest.raises(ValueError):
            await add(storage, [entry(5), bad])
    # The whole batch was refused.
    assert await storage.mam.bounds(H, OWNER) is None


async def test_mam_add_refuses_an_id_used_before_in_any_archive(storage: Storage) -> None:
    await add(storage, [entry(1)])
    # A batch for an archive and a contact not seen before fails as a whole ...
    with pytest.raises((ValueError, sqlite3.IntegrityError, asyncpg.UniqueViolationError)):
        await add(storage, [entry(2, "dave@example.com"), entry(1)], owner="dave")
    assert await storage.mam.bounds(H, "dave") is None
    # ... and leaves nothing behind that a later batch for them trips over.
    await add(storage, [entry(2, "dave@example.com"), entry(3)], owner="dave")
    assert await ids(storage, MamQuery(with_jid="dave@example.com"), owner="dave") == ms(2)
    assert await ids(storage, MamQuery()) == ms(1)


async def test_mam_add_of_nothing_is_harmless(storage: Storage) -> None:
    await storage.mam.add([])
    assert await storage.mam.bounds(H, OWNER) is None


# Filters


# Five messages with Bob and Carol; FIXTURE[i - 1] is mid(i) (random bits 0).
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
    assert await ids(storage, MamQuery(with_jid=BOB)) == ms(1, 2, 4)
    assert await ids(storage, MamQuery(with_jid=CAROL)) == ms(3, 5)
    assert await ids(storage, MamQuery(with_jid="dave@example.com")) == []


async def test_mam_filter_with_full_jid(storage: Storage) -> None:
    await _filter_fixture(storage)
    assert await ids(storage, MamQuery(with_jid=BOB, with_resource="phone")) == ms(1, 4)
    assert await ids(storage, MamQuery(with_jid=BOB, with_resource="laptop")) == ms(2)
    assert await ids(storage, MamQuery(with_jid=CAROL, with_resource="")) == ms(3)
    assert await ids(storage, MamQuery(with_jid=CAROL, with_resource="phone")) == []


async def test_mam_filter_start_and_end_are_inclusive(storage: Storage) -> None:
    await _filter_fixture(storage)
    at = [T0 + timedelta(seconds=i) for i in range(6)]
    assert await ids(storage, MamQuery(start=at[4])) == ms(4, 5)
    assert await ids(storage, MamQuery(end=at[2])) == ms(1, 2)
    assert await ids(storage, MamQuery(start=at[2], end=at[4])) == ms(2, 3, 4)
    assert await ids(storage, MamQuery(start=at[3], end=at[3])) == ms(3)
    # Microseconds count: a microsecond past a stamp excludes it.
    assert await ids(storage, MamQuery(start=at[5] + timedelta(microseconds=1))) == []
    # Any zone names the same instant.
    local = at[4].astimezone(timezone(timedelta(hours=-5)))
    assert await ids(storage, MamQuery(start=local)) == ms(4, 5)
    # Whatever a key's random bits, its message is in its microsecond.
    await add(storage, [entry(6, low=0xFF), entry(7, low=1)], owner="bob")
    at6, at7 = T0 + timedelta(seconds=6), T0 + timedelta(seconds=7)
    assert await ids(storage, MamQuery(end=at6), owner="bob") == [mid(6, 0xFF)]
    assert await ids(storage, MamQuery(start=at6, end=at6), owner="bob") == [mid(6, 0xFF)]
    assert await ids(storage, MamQuery(start=at7), owner="bob") == [mid(7, 1)]


async def test_mam_filter_ids_keeps_archive_order_and_ignores_unknown(storage: Storage) -> None:
    await _filter_fixture(storage)
    wanted = (mid(5), mid(1), "nope", mid(99), mid(3))
    assert await ids(storage, MamQuery(ids=wanted)) == ms(1, 3, 5)
    assert await ids(storage, MamQuery(ids=("nope",))) == []
    assert await ids(storage, MamQuery(ids=(mid(99), mid(1, 1)))) == []


async def test_mam_filter_text_needs_every_word_in_any_case(storage: Storage) -> None:
    await _filter_fixture(storage)
    assert await ids(storage, MamQuery(text="lunch")) == ms(1, 2, 5)
    assert await ids(storage, MamQuery(text="noon lunch")) == ms(1, 5)
    assert await ids(storage, MamQuery(text="LUNCH Noon")) == ms(1, 5)
    assert await ids(storage, MamQuery(text="lunch noon dinner")) == []
    # Whole words: "noo" is no word of any message.
    assert await ids(storage, MamQuery(text="noo")) == []
    # Punctuation separates words in the query as in the text.
    assert await ids(storage, MamQuery(text="noon?")) == ms(1, 3, 5)


async def test_mam_filter_text_folds_case_of_accented_letters(storage: Storage) -> None:
    # PostgreSQL folds non-ASCII case by the database's LC_CTYPE; the test database uses
    # C.UTF-8, as a server should (see 0004_mam.postgres.sql).
    await _filter_fixture(storage)
    assert await ids(storage, MamQuery(text="café")) == ms(2, 3)
    assert await ids(storage, MamQuery(text="CAFÉ open")) == ms(3)


async def test_mam_filter_text_without_words_filters_nothing(storage: Storage) -> None:
    await _filter_fixture(storage)
    for text in ("", "   ", "?!", "* - ()"):
        assert await ids(storage, MamQuery(text=text)) == ms(1, 2, 3, 4, 5)


async def test_mam_filters_combine(storage: Storage) -> None:
    await _filter_fixture(storage)
    at = [T0 + timedelta(seconds=i) for i in range(6)]
    q = MamQuery(with_jid=BOB, text="lunch", start=at[2])
    assert await ids(storage, q) == ms(2)
    q = MamQuery(with_jid=CAROL, text="noon", ids=(mid(3), mid(5)), end=at[4])
    assert await ids(storage, q) == ms(3)
    q = MamQuery(with_jid=BOB, with_resource="phone", text="lunch", end=at[5])
    assert await ids(storage, q) == ms(1)
    # Filters and paging: a page of one, then the next after it.
    page, complete = await storage.mam.query(H, OWNER, MamQuery(text="lunch", limit=1))
    assert [e.id for e in page] == ms(1) and not complete
    q = MamQuery(text="lunch", after=mid(1), limit=2)
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
        expected = [mid(i) for i, t in enumerate(texts) if wanted <= words(t)]
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
    assert await ids(storage, MamQuery(limit=3)) == ms(0, 1, 2)
    assert (await query(H, OWNER, MamQuery(limit=3)))[1] is False
    # A page ending exactly on the last message is complete: nothing comes after it.
    assert (await query(H, OWNER, MamQuery(after=mid(2), limit=3)))[1] is True
    assert (await query(H, OWNER, MamQuery(after=mid(5), limit=3))) == ([], True)
    assert (await query(H, OWNER, MamQuery(before=mid(3), limit=3)))[1] is True
    assert (await query(H, OWNER, MamQuery(before=mid(4), limit=3)))[1] is False
    assert (await query(H, OWNER, MamQuery(before=mid(0), limit=3))) == ([], True)


async def test_mam_empty_before_asks_for_the_last_page(storage: Storage) -> None:
    await add(storage, [entry(i) for i in range(10)])
    page, complete = await storage.mam.query(H, OWNER, MamQuery(before="", limit=3))
    assert [e.id for e in page] == ms(7, 8, 9) and not complete
    page, complete = await storage.mam.query(H, OWNER, MamQuery(before="", limit=10))
    assert len(page) == 10 and complete
    page, complete = await storage.mam.query(H, OWNER, MamQuery(before="", limit=3, text=mid(9)))
    assert page == [] and complete  # an id, not a word of any text
    assert await storage.mam.query(H, "nobody", MamQuery(before="")) == ([], True)


async def test_mam_after_and_before_together(storage: Storage) -> None:
    await add(storage, [entry(i) for i in range(10)])
    assert await ids(storage, MamQuery(after=mid(2), before=mid(6))) == ms(3, 4, 5)
    # Paging backwards inside the window takes its newest end.
    page, complete = await storage.mam.query(
        H, OWNER, MamQuery(after=mid(2), before=mid(6), limit=2)
    )
    assert [e.id for e in page] == ms(4, 5) and not complete


async def test_mam_unknown_after_or_before_raises(storage: Storage) -> None:
    await add(storage, [entry(i) for i in range(3)])
    await add(storage, [entry(7)], owner="bob")
    for query in (
        MamQuery(after="nope"),
        MamQuery(before="nope"),
        MamQuery(after=mid(1), before="nope"),
        MamQuery(after=mid(99)),  # a key, of no message
        MamQuery(before=mid(1, 1)),  # the right microsecond, other random bits
        MamQuery(after=mid(1).upper()),  # not an id: ids are lower case
        MamQuery(after=mid(1) + "0"),
        MamQuery(after=mid(7)),  # bob's, not alice's: unknown here, not a leak
        MamQuery(before=mid(7), with_jid="nobody@example.com"),
        MamQuery(after=mid(7), text="message"),
        MamQuery(after=mid(0), before=mid(7)),
    ):
        with pytest.raises(UnknownArchiveId):
            await storage.mam.query(H, OWNER, query)
    with pytest.raises(UnknownArchiveId):
        await storage.mam.query(H, "nobody", MamQuery(after=mid(1)))
    # Bob's own query finds it.
    assert await storage.mam.query(H, "bob", MamQuery(after=mid(7))) == ([], True)


async def test_mam_limit_zero(storage: Storage) -> None:
    assert await storage.mam.query(H, OWNER, MamQuery(limit=0)) == ([], True)
    await add(storage, [entry(i) for i in range(3)])
    assert await storage.mam.query(H, OWNER, MamQuery(limit=0)) == ([], False)
    assert await storage.mam.query(H, OWNER, MamQuery(before="", limit=0)) == ([], False)
    assert await storage.mam.query(H, OWNER, MamQuery(after=mid(2), limit=0)) == ([], True)
    assert await storage.mam.query(H, OWNER, MamQuery(before=mid(0), limit=0)) == ([], True)


# Isolation and bounds


async def test_mam_owners_and_hosts_are_isolated(storage: Storage) -> None:
    # Three archives: alice@H, bob@H and alice@other.example, with messages of the same
    # second (ids differing in their random bits).
    await storage.mam.add(
        [
            (H, "alice", entry(1, text="hello alice")),
            (H, "bob", entry(1, text="hello bob", low=1)),
            ("other.example", "alice", entry(1, text="hello other", low=2)),
            (H, "alice", entry(2)),
            ("other.example", "alice", entry(3)),
        ]
    )
    assert await ids(storage, MamQuery()) == ms(1, 2)
    assert await ids(storage, MamQuery(), owner="bob") == [mid(1, 1)]
    assert await ids(storage, MamQuery(), host="other.example") == [mid(1, 2), mid(3)]
    assert await ids(storage, MamQuery(text="hello bob")) == []
    assert await ids(storage, MamQuery(text="hello"), owner="bob") == [mid(1, 1)]
    assert await ids(storage, MamQuery(ids=(mid(1, 1), mid(1, 2)))) == []
    # after resolves within the archive queried.
    assert await ids(storage, MamQuery(after=mid(1, 2)), host="other.example") == ms(3)
    assert await ids(storage, MamQuery(), owner="carol") == []
    bounds = await storage.mam.bounds("other.example", "alice")
    assert bounds is not None and [e.id for e in bounds] == [mid(1, 2), mid(3)]


async def test_mam_bounds(storage: Storage) -> None:
    assert await storage.mam.bounds(H, OWNER) is None
    await add(storage, [entry(5)])
    assert await storage.mam.bounds(H, OWNER) == (entry(5), entry(5))
    await add(storage, [entry(6), entry(2)])
    # Oldest and newest in key order, not by when they were added.
    assert await storage.mam.bounds(H, OWNER) == (entry(2), entry(6))
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


async def test_mam_find_origin_looks_at_the_newest_of_the_conversation(
    durable_url: str, make_storage: StorageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQL walks at most FIND_ORIGIN_WALK messages with that contact, newest first.
    monkeypatch.setattr(mam_sql, "FIND_ORIGIN_WALK", 3)
    storage = await make_storage(durable_url)
    await add(storage, [entry(i, BOB, origin_id=f"o{i}") for i in range(5)])
    await add(storage, [entry(i, CAROL) for i in range(5, 10)])
    find = storage.mam.find_origin
    assert await find(H, OWNER, BOB, "o2", False) == entry(2, BOB, origin_id="o2")
    assert await find(H, OWNER, BOB, "o1", False) is None  # the fourth newest with Bob


async def test_mam_replace_sets_stanza_and_clears_text(storage: Storage) -> None:
    await add(storage, [entry(1, text="secret plans"), entry(2, text="other plans")])
    await add(storage, [entry(2, text="bob's plans", low=1)], owner="bob")
    assert await ids(storage, MamQuery(text="plans")) == ms(1, 2)
    assert await storage.mam.replace(H, OWNER, mid(1), "<tombstone/>") is True
    page, _ = await storage.mam.query(H, OWNER, MamQuery(ids=(mid(1),)))
    assert page[0].stanza == "<tombstone/>" and page[0].text == ""
    assert page[0].stamp == entry(1).stamp and page[0].with_jid == BOB
    assert await ids(storage, MamQuery(text="plans")) == ms(2)
    assert await ids(storage, MamQuery(text="secret")) == []
    # Still in the archive, in its place.
    assert await ids(storage, MamQuery()) == ms(1, 2)
    # Replacing again (no text left) is fine; unknown ids and other owners' are not found.
    assert await storage.mam.replace(H, OWNER, mid(1), "<tombstone2/>") is True
    assert await storage.mam.replace(H, OWNER, "nope", "<x/>") is False
    assert await storage.mam.replace(H, OWNER, mid(99), "<x/>") is False
    assert await storage.mam.replace(H, "bob", mid(2), "<x/>") is False
    assert await storage.mam.replace(H, OWNER, mid(2, 1), "<x/>") is False
    assert await storage.mam.replace(H, "nobody", mid(2), "<x/>") is False
    assert await ids(storage, MamQuery(text="other plans")) == ms(2)
    assert await ids(storage, MamQuery(text="plans"), owner="bob") == [mid(2, 1)]


# Removal: an account's archive, account deletion, expiry


async def test_mam_delete_owner(storage: Storage) -> None:
    await add(storage, [entry(i, text="keep or not") for i in range(4)])
    await add(storage, [entry(i, text="keep or not", low=1) for i in range(2)], owner="bob")
    assert await storage.mam.delete_owner(H, OWNER) == 4
    assert await storage.mam.bounds(H, OWNER) is None
    assert await ids(storage, MamQuery(text="keep")) == []
    assert await ids(storage, MamQuery(text="keep"), owner="bob") == [mid(0, 1), mid(1, 1)]
    assert await storage.mam.delete_owner(H, OWNER) == 0
    assert await storage.mam.delete_owner(H, "nobody") == 0
    # The ids are free again, and the archive takes new messages.
    await add(storage, [entry(0, text="keep")])
    assert await ids(storage, MamQuery(text="keep")) == ms(0)


def _account(username: str) -> Account:
    creds = ScramCredentials(salt=b"s", iterations=4096, stored_key=b"k", server_key=b"v")
    return Account(H, username, sha1=creds, sha256=creds)


async def test_account_deletion_removes_its_archive(storage: Storage) -> None:
    for low, name in enumerate(("alice", "bob")):
        await storage.accounts.create(_account(name))
        await add(storage, [entry(1, text="hello", low=low), entry(2, low=low)], owner=name)
    assert await storage.accounts.delete(H, "alice") is True
    assert await storage.mam.bounds(H, "alice") is None
    assert await ids(storage, MamQuery(text="hello")) == []
    assert await ids(storage, MamQuery(), owner="bob") == [mid(1, 1), mid(2, 1)]
    assert await ids(storage, MamQuery(text="hello"), owner="bob") == [mid(1, 1)]
    # A new account of the same name starts with an empty archive, and archives again.
    await storage.accounts.create(_account("alice"))
    assert await storage.mam.query(H, "alice", MamQuery()) == ([], True)
    await add(storage, [entry(1, text="hello again")], owner="alice")
    assert await ids(storage, MamQuery(text="hello")) == ms(1)


async def test_mam_expire_removes_oldest_first_in_batches(storage: Storage) -> None:
    # Three owners, interleaved; entries i = 0..11 stamped T0 + i seconds. Expiry runs
    # in key order across owners.
    owners = ("alice", "bob", "carol")
    await storage.mam.add([(H, owners[i % 3], entry(i, text="old words")) for i in range(12)])
    cutoff = T0 + timedelta(seconds=8)  # m0..m7 are older; m8 (== cutoff) is not

    def remaining() -> Awaitable[list[list[str]]]:
        return asyncio.gather(*(ids(storage, MamQuery(), owner=o) for o in owners))

    assert await storage.mam.expire(cutoff, 3) == 3
    assert await remaining() == [ms(3, 6, 9), ms(4, 7, 10), ms(5, 8, 11)]
    assert await storage.mam.expire(cutoff, 0) == 0
    assert await storage.mam.expire(cutoff, 3) == 3
    assert await remaining() == [ms(6, 9), ms(7, 10), ms(8, 11)]
    assert await storage.mam.expire(cutoff, 3) == 2  # stops at the cutoff
    assert await storage.mam.expire(cutoff, 3) == 0
    assert await remaining() == [ms(9), ms(10), ms(8, 11)]
    # Expired messages leave the search index too.
    assert await ids(storage, MamQuery(text="old"), owner="carol") == ms(8, 11)
    assert await ids(storage, MamQuery(text="old"), owner="alice") == ms(9)
    assert await storage.mam.expire(T0 + timedelta(days=1), 100) == 4
    assert await remaining() == [[], [], []]


async def test_mam_expire_goes_by_key_not_by_when_added(storage: Storage) -> None:
    # A message added later with an older key goes first; the random bits count only
    # within a microsecond.
    await add(storage, [entry(1), entry(2, low=0xFF)])
    await add(storage, [entry(0, stamp=T0 - timedelta(hours=1))])
    assert await storage.mam.expire(T0 + timedelta(seconds=10), 2) == 2
    assert await ids(storage, MamQuery()) == [mid(2, 0xFF)]
    assert await storage.mam.expire(T0 + timedelta(seconds=2), 2) == 0
    assert await storage.mam.expire(T0 + timedelta(seconds=2, microseconds=1), 2) == 1


async def test_mam_expire_rejects_naive_times(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.mam.expire(datetime(2030, 1, 1), 10)


# Durable backends: the archive beside the other stores, reopening, volume


async def test_mam_persists_and_keeps_order_across_reopen(
    durable_url: str, make_storage: StorageFactory
) -> None:
    first = await make_storage(durable_url)
    await add(first, [entry(1, text="before"), entry(2)])
    await add(first, [entry(1, CAROL, text="before", low=1)], owner="bob")
    await first.close()
    # A new store knows no archive or contact keys yet: it finds the stored ones.
    second = await make_storage(durable_url)
    await add(second, [entry(3, text="after"), entry(0, CAROL)])
    assert await ids(second, MamQuery()) == ms(0, 1, 2, 3)
    assert await ids(second, MamQuery(text="before")) == ms(1)
    assert await ids(second, MamQuery(after=mid(2))) == ms(3)
    assert await ids(second, MamQuery(with_jid=BOB)) == ms(1, 2, 3)
    assert await ids(second, MamQuery(with_jid=CAROL)) == ms(0)
    assert await ids(second, MamQuery(with_jid=CAROL), owner="bob") == [mid(1, 1)]


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
    assert bounds is not None and (bounds[0].id, bounds[1].id) == (mid(0), mid(19999))

    # The other way round: while the other stores are inside a write transaction, the
    # archive still answers (on one SQLite connection this would wait for the end).
    assert isinstance(storage, SqlStorage)
    async with storage.db.transaction() as tx:
        await tx.execute("DELETE FROM keyval WHERE host = ?", "nowhere.example")
        page, _ = await asyncio.wait_for(storage.mam.query(H, OWNER, MamQuery(limit=2)), 5)
        assert [e.id for e in page] == ms(0, 1)


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
        # any, PostgreSQL may read a page through the primary key and filter by owner
        # rather than through mam_owner.
        await storage.db.execute("ANALYZE mam")
    expected = [mid(i) for i in range(total)]
    assert await _page_all(storage, limit, backwards=False) == expected
    assert await _page_all(storage, limit, backwards=True) == expected
