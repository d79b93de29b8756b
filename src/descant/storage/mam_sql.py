"""The account message archive (XEP-0313) on SQLite and PostgreSQL: ``SqlMamStore``.

Built so that archiving, a row per message and per account (twice for a chat between
two local accounts), costs little (migration 0004):

- ``mam``: one row per message, keyed by the archive id as a number (``MamIds`` in
  api.py: microseconds since the epoch << 8 | 8 random bits). The key is the archive
  order, the message's time (``start``/``end`` are key ranges) and the way to a message
  by id (the primary key; SQLite's rowid); no stamp or id column. Only two indexes,
  both of integers: (owner, key) and (owner, with_key, key).
- ``mam_owners`` and ``mam_jids``: integer keys for archives (host, owner) and for
  contacts' bare JIDs. The store keeps them in bounded caches (``CACHE_SIZE`` each,
  the oldest forgotten first); their rows are never deleted, so a cached key never goes
  stale, in this process or another. ``add`` resolves keys it does not know inside the
  batch's one transaction (insert-or-ignore, then select): on SQLite the rows of an
  unknown archive or contact read the key with a subquery, and the select fills the
  cache afterwards, all in one hand-off to the archive's thread.
- ``find_origin`` (XEP-0424 retractions, rare) walks the conversation newest first,
  looking at most at the newest ``FIND_ORIGIN_WALK`` messages with that contact, and
  needs no index of its own.

Paging resolves ``after``/``before`` ids (which must be messages of the owner's) and
reads ``limit + 1`` rows in the paging direction, the extra row telling whether the page
reached the end. Full-text search is the one place the engines differ:

- SQLite: an FTS5 table over ``text`` (tokenizer ``unicode61 remove_diacritics 2``,
  ``columnsize=0``) with ``mam`` as its external content. ``add`` inserts the words of
  a batch's messages with text itself, in one multi-row statement per batch (FTS5
  writes its pending words out at the end of every statement that changes it, so a
  trigger per row costs several times more); triggers drop the words of updated
  (retracted) and deleted messages. Each search word is quoted as an FTS5 string, so
  nothing a user types (``*``, ``NEAR``, ``-``, ``:``, parentheses, quotes) is query
  syntax.
- PostgreSQL: a generated ``tsvector`` column (configuration ``simple``, ASCII
  punctuation turned into spaces first so that addresses and URLs split into words as
  on SQLite) with a GIN index, matched with ``plainto_tsquery``, which requires every
  word. A batch is one statement of one array per column.

Search words are those of memory.py (runs of letters and digits); with none, there is no
text filter. The engines then fold them their own way: SQLite also ignores accents
("cafe" finds "café"), PostgreSQL folds case beyond ASCII only under a locale that does
(see the migration files' comments).

On SQLite the store is given the storage's ``sibling()`` database: a connection of its
own, so archive traffic and the other stores never queue behind each other (sqlite.py).
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, TypeVar

from descant.storage.api import (
    MamEntry,
    MamQuery,
    UnknownArchiveId,
    mam_entry_key,
    mam_id,
    mam_key,
    mam_key_range,
    mam_micros,
    mam_stamp,
)

if TYPE_CHECKING:
    from datetime import datetime

    from descant.storage.sql import Database, Row, Statement

CACHE_SIZE = 100_000  # archives, and contacts, whose keys the store keeps in memory
FIND_ORIGIN_WALK = 10_000  # the most messages of a conversation find_origin looks at
SQLITE_MAX_PARAMS = 999  # per statement: SQLite builds before 3.32 allow no more

_COLUMNS = (
    "key, (SELECT jid FROM mam_jids WHERE mam_jids.key = mam.with_key), "
    "with_resource, outgoing, origin_id, text, stanza"
)

# SQLite: OR FAIL, because a plain INSERT (OR ABORT) of several rows keeps a statement
# journal to undo its own rows on an error: a copy of every index page it touches that
# the batch's earlier statements already changed, spilled to a temporary file. That was a
# fifth of an insert's cost. On an error the whole transaction is rolled back anyway.
_INSERT = (
    "INSERT OR FAIL INTO mam "
    "(key, owner, with_key, with_resource, outgoing, origin_id, text, stanza) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?)"
_OWNER_SUBQUERY = "(SELECT key FROM mam_owners WHERE host = ? AND owner = ?)"
_JID_SUBQUERY = "(SELECT key FROM mam_jids WHERE jid = ?)"

# PostgreSQL: a whole batch as one statement of one array per column, in one round trip
# (about twice as fast as a statement per row).
_INSERT_ARRAYS = (
    "INSERT INTO mam (key, owner, with_key, with_resource, outgoing, origin_id, text, stanza) "
    "SELECT * FROM unnest(?::bigint[], ?::bigint[], ?::bigint[], ?::text[], ?::boolean[], "
    "?::text[], ?::text[], ?::text[])"
)

K = TypeVar("K", bound=Hashable)
Owner = tuple[str, str]


def search_words(text: str) -> list[str]:
    """The words a search must all find, as memory.py's ``_words`` splits them, in order
    of first appearance and without repeats."""
    return list(dict.fromkeys(w.casefold() for w in re.findall(r"[^\W_]+", text)))


def fts5_query(words: Sequence[str]) -> str:
    """An FTS5 query requiring every word: each a quoted string (quotes doubled), so no
    word is ever read as an operator, prefix, column filter or group."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


def _remember(cache: dict[K, int], name: K, key: int) -> None:
    """Keep a key in a bounded cache, forgetting the oldest beyond ``CACHE_SIZE``."""
    cache[name] = key
    if len(cache) > CACHE_SIZE:
        del cache[next(iter(cache))]


def _chunks(n: int, per: int) -> list[range]:
    return [range(start, min(start + per, n)) for start in range(0, n, per)]


class SqlMamStore:
    def __init__(self, db: Database) -> None:
        self._db = db
        self._owners: dict[Owner, int] = {}
        self._jids: dict[str, int] = {}

    def _entry(self, row: Row) -> MamEntry:
        key, with_jid, with_resource, outgoing, origin_id, text, stanza = row
        assert isinstance(key, int)
        return MamEntry(
            id=mam_id(key),
            stamp=mam_stamp(key),
            with_jid=str(with_jid),
            with_resource=str(with_resource),
            outgoing=bool(outgoing),
            origin_id=str(origin_id),
            text=str(text),
            stanza=str(stanza),
        )

    # -- keys of archives and contacts -------------------------------------------------

    async def _owner(self, host: str, owner: str) -> int | None:
        """The archive's key, or None for an account that never archived anything."""
        key = self._owners.get((host, owner))
        if key is None:
            row = await self._db.fetchone(
                "SELECT key FROM mam_owners WHERE host = ? AND owner = ?", host, owner
            )
            if row is None:
                return None
            key = int(row[0])
            _remember(self._owners, (host, owner), key)
        return key

    async def _jid(self, jid: str) -> int | None:
        """A contact's key, or None for a JID no archive holds."""
        key = self._jids.get(jid)
        if key is None:
            row = await self._db.fetchone("SELECT key FROM mam_jids WHERE jid = ?", jid)
            if row is None:
                return None
            key = int(row[0])
            _remember(self._jids, jid, key)
        return key

    def _learn(self, owners: Sequence[Row], jids: Sequence[Row]) -> None:
        """Cache keys read back after the transaction that made them committed."""
        for key, host, owner in owners:
            _remember(self._owners, (str(host), str(owner)), int(key))
        for key, jid in jids:
            _remember(self._jids, str(jid), int(key))

    # -- writing -----------------------------------------------------------------------

    async def add(self, entries: Sequence[tuple[str, str, MamEntry]]) -> None:
        if not entries:
            return
        keyed = [(mam_entry_key(e), (host, owner), e) for host, owner, e in entries]
        new_owners = list(dict.fromkeys(o for _, o, _ in keyed if o not in self._owners))
        new_jids = list(
            dict.fromkeys(e.with_jid for _, _, e in keyed if e.with_jid not in self._jids)
        )
        if self._db.dialect.name == "postgres":
            await self._add_postgres(keyed, new_owners, new_jids)
        else:
            await self._add_sqlite(keyed, new_owners, new_jids)

    async def _add_sqlite(
        self, keyed: list[tuple[int, Owner, MamEntry]], new_owners: list[Owner], new_jids: list[str]
    ) -> None:
        statements: list[Statement] = []
        # Unknown archives and contacts first: created if missing, then read back (the
        # rows below read their keys by subquery; the cache learns them after COMMIT).
        owner_reads, jid_reads = [], []
        for part in _chunks(len(new_owners), SQLITE_MAX_PARAMS // 2):
            pairs = tuple(v for i in part for v in new_owners[i])
            values = ", ".join(["(?, ?)"] * len(part))
            statements.append(
                (f"INSERT OR IGNORE INTO mam_owners (host, owner) VALUES {values}", pairs)
            )
            owner_reads.append(len(statements))
            statements.append(
                (
                    "SELECT key, host, owner FROM mam_owners "
                    f"WHERE (host, owner) IN (VALUES {values})",
                    pairs,
                )
            )
        for part in _chunks(len(new_jids), SQLITE_MAX_PARAMS):
            names = tuple(new_jids[i] for i in part)
            values = ", ".join(["(?)"] * len(part))
            statements.append((f"INSERT OR IGNORE INTO mam_jids (jid) VALUES {values}", names))
            jid_reads.append(len(statements))
            statements.append((f"SELECT key, jid FROM mam_jids WHERE jid IN ({values})", names))
        if new_owners or new_jids:
            statements += self._rows_resolving(keyed)
        else:
            # Every key known (the usual case): rows of plain values, and the same few
            # statements batch after batch, which sqlite3 keeps prepared.
            owners, jids = self._owners, self._jids
            rows = [
                (
                    key,
                    owners[o],
                    jids[e.with_jid],
                    e.with_resource,
                    e.outgoing,
                    e.origin_id,
                    e.text,
                    e.stanza,
                )
                for key, o, e in keyed
            ]
            for part in _chunks(len(rows), SQLITE_MAX_PARAMS // 8):
                flat = tuple(v for i in part for v in rows[i])
                statements.append((_INSERT + ", ".join([_ROW] * len(part)), flat))
        # The words of the messages with text, one statement for the whole batch.
        texts = [(key, e.text) for key, _, e in keyed if e.text]
        for part in _chunks(len(texts), SQLITE_MAX_PARAMS // 2):
            values = ", ".join(["(?, ?)"] * len(part))
            statements.append(
                (
                    f"INSERT INTO mam_fts (rowid, text) VALUES {values}",
                    tuple(v for i in part for v in texts[i]),
                )
            )
        # One transaction, and one hand-off to the connection's thread.
        results = await self._db.script(statements)
        self._learn(
            [r for i in owner_reads for r in results[i]], [r for i in jid_reads for r in results[i]]
        )

    def _rows_resolving(self, keyed: list[tuple[int, Owner, MamEntry]]) -> list[Statement]:
        """INSERTs of the rows, reading the keys the cache lacks by subquery."""
        owners, jids = self._owners, self._jids
        statements: list[Statement] = []
        rows: list[str] = []
        params: list[object] = []
        for key, owner_name, e in keyed:
            owner = owners.get(owner_name)
            with_key = jids.get(e.with_jid)
            row = "(?, " + ("?" if owner is not None else _OWNER_SUBQUERY)
            row += ", " + ("?" if with_key is not None else _JID_SUBQUERY) + ", ?, ?, ?, ?, ?)"
            refs = ((owner,) if owner is not None else owner_name) + (
                (with_key,) if with_key is not None else (e.with_jid,)
            )
            if len(params) + len(refs) + 6 > SQLITE_MAX_PARAMS:
                statements.append((_INSERT + ", ".join(rows), tuple(params)))
                rows, params = [], []
            rows.append(row)
            params += (key, *refs, e.with_resource, e.outgoing, e.origin_id, e.text, e.stanza)
        statements.append((_INSERT + ", ".join(rows), tuple(params)))
        return statements

    async def _add_postgres(
        self, keyed: list[tuple[int, Owner, MamEntry]], new_owners: list[Owner], new_jids: list[str]
    ) -> None:
        if not new_owners and not new_jids:
            await self._db.execute(_INSERT_ARRAYS, *self._columns(keyed, self._owners, self._jids))
            return
        async with self._db.transaction() as tx:
            owner_rows: list[Row] = []
            jid_rows: list[Row] = []
            if new_owners:
                hosts, names = [o[0] for o in new_owners], [o[1] for o in new_owners]
                await tx.execute(
                    "INSERT INTO mam_owners (host, owner) "
                    "SELECT * FROM unnest(?::text[], ?::text[]) ON CONFLICT DO NOTHING",
                    hosts,
                    names,
                )
                owner_rows = await tx.fetchall(
                    "SELECT key, host, owner FROM mam_owners WHERE (host, owner) IN "
                    "(SELECT * FROM unnest(?::text[], ?::text[]))",
                    hosts,
                    names,
                )
            if new_jids:
                await tx.execute(
                    "INSERT INTO mam_jids (jid) SELECT * FROM unnest(?::text[]) "
                    "ON CONFLICT DO NOTHING",
                    new_jids,
                )
                jid_rows = await tx.fetchall(
                    "SELECT key, jid FROM mam_jids WHERE jid = ANY(?::text[])", new_jids
                )
            owners = self._owners | {(str(h), str(o)): int(k) for k, h, o in owner_rows}
            jids = self._jids | {str(j): int(k) for k, j in jid_rows}
            # One statement: the batch.
            await tx.execute(_INSERT_ARRAYS, *self._columns(keyed, owners, jids))
        self._learn(owner_rows, jid_rows)

    @staticmethod
    def _columns(
        keyed: list[tuple[int, Owner, MamEntry]], owners: dict[Owner, int], jids: dict[str, int]
    ) -> list[list[object]]:
        return [
            [key for key, _, _ in keyed],
            [owners[o] for _, o, _ in keyed],
            [jids[e.with_jid] for _, _, e in keyed],
            [e.with_resource for _, _, e in keyed],
            [e.outgoing for _, _, e in keyed],
            [e.origin_id for _, _, e in keyed],
            [e.text for _, _, e in keyed],
            [e.stanza for _, _, e in keyed],
        ]

    # -- reading -----------------------------------------------------------------------

    def _text_condition(self, words: Sequence[str]) -> tuple[str, str]:
        if self._db.dialect.name == "postgres":
            return "text_search @@ plainto_tsquery('simple', ?)", " ".join(words)
        return "key IN (SELECT rowid FROM mam_fts WHERE mam_fts MATCH ?)", fts5_query(words)

    async def _bound_keys(
        self, owner: int | None, query: MamQuery
    ) -> tuple[int | None, int | None]:
        """The keys of ``after`` and ``before``; UnknownArchiveId unless both (when
        given) are messages of this archive."""
        named = [i for i in (query.after, query.before or None) if i is not None]
        keys = [mam_key(i) for i in named]
        for id_, key in zip(named, keys, strict=True):
            if key is None or owner is None:
                raise UnknownArchiveId(id_)
        if named:
            marks = ", ".join(["?"] * len(keys))
            rows = await self._db.fetchall(
                f"SELECT key FROM mam WHERE key IN ({marks}) AND owner = ?", *keys, owner
            )
            found = {row[0] for row in rows}
            for id_, key in zip(named, keys, strict=True):
                if key not in found:
                    raise UnknownArchiveId(id_)
        after = mam_key(query.after) if query.after is not None else None
        before = mam_key(query.before) if query.before else None
        return after, before

    async def query(self, host: str, owner: str, query: MamQuery) -> tuple[list[MamEntry], bool]:
        owner_key = await self._owner(host, owner)
        # Both ids are looked up (and may be unknown) even for a page that would be empty.
        after, before = await self._bound_keys(owner_key, query)
        if owner_key is None:
            return [], True
        conds = ["owner = ?"]
        params: list[object] = [owner_key]
        if query.with_jid is not None:
            with_key = await self._jid(query.with_jid)
            if with_key is None:
                return [], True
            conds.append("with_key = ?")
            params.append(with_key)
        if query.with_resource is not None:
            conds.append("with_resource = ?")
            params.append(query.with_resource)
        low, high = mam_key_range(query)
        for cond, bound in (("key >= ?", low), ("key <= ?", high), ("key > ?", after)):
            if bound is not None:
                conds.append(cond)
                params.append(bound)
        if before is not None:
            conds.append("key < ?")
            params.append(before)
        if query.ids:
            keys = [k for k in map(mam_key, query.ids) if k is not None]
            if not keys:
                return [], True
            conds.append(f"key IN ({', '.join(['?'] * len(keys))})")
            params.extend(keys)
        words = search_words(query.text)
        if words:
            cond, param = self._text_condition(words)
            conds.append(cond)
            params.append(param)
        backwards = query.before is not None
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM mam WHERE "
            + " AND ".join(conds)
            + f" ORDER BY key {'DESC' if backwards else 'ASC'} LIMIT ?",
            *params,
            query.limit + 1,
        )
        complete = len(rows) <= query.limit
        rows = rows[: query.limit]
        if backwards:
            rows.reverse()
        return [self._entry(row) for row in rows], complete

    async def bounds(self, host: str, owner: str) -> tuple[MamEntry, MamEntry] | None:
        owner_key = await self._owner(host, owner)
        if owner_key is None:
            return None
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM mam WHERE key IN ("
            "(SELECT MIN(key) FROM mam WHERE owner = ?), "
            "(SELECT MAX(key) FROM mam WHERE owner = ?)) ORDER BY key",
            owner_key,
            owner_key,
        )
        if not rows:
            return None
        return self._entry(rows[0]), self._entry(rows[-1])

    async def find_origin(
        self, host: str, owner: str, with_jid: str, origin_id: str, outgoing: bool
    ) -> MamEntry | None:
        owner_key = await self._owner(host, owner)
        with_key = await self._jid(with_jid)
        if owner_key is None or with_key is None:
            return None
        # The newest FIND_ORIGIN_WALK messages of the conversation, newest first, through
        # mam_with; origin_id and outgoing are read from those rows alone.
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM mam WHERE key = (SELECT key FROM "
            "(SELECT key, origin_id, outgoing FROM mam WHERE owner = ? AND with_key = ? "
            "ORDER BY key DESC LIMIT ?) AS recent "
            "WHERE origin_id = ? AND outgoing = ? ORDER BY key DESC LIMIT 1)",
            owner_key,
            with_key,
            FIND_ORIGIN_WALK,
            origin_id,
            outgoing,
        )
        return None if row is None else self._entry(row)

    # -- changing and removing ---------------------------------------------------------

    async def replace(self, host: str, owner: str, id: str, stanza: str) -> bool:
        key = mam_key(id)
        owner_key = await self._owner(host, owner)
        if key is None or owner_key is None:
            return False
        # Clearing text makes the FTS5 trigger drop the message's words (PostgreSQL
        # recomputes the generated column).
        changed = await self._db.execute(
            "UPDATE mam SET stanza = ?, text = '' WHERE key = ? AND owner = ?",
            stanza,
            key,
            owner_key,
        )
        return changed > 0

    async def delete_owner(self, host: str, owner: str) -> int:
        owner_key = await self._owner(host, owner)
        if owner_key is None:
            return 0
        # The mam_owners row stays (see the module docstring); FTS5 words go by trigger.
        return await self._db.execute("DELETE FROM mam WHERE owner = ?", owner_key)

    async def expire(self, before: datetime, limit: int) -> int:
        # Key order is time order: the walk from the oldest stops at the cutoff.
        return await self._db.execute(
            "DELETE FROM mam WHERE key IN (SELECT key FROM mam WHERE key < ? ORDER BY key LIMIT ?)",
            mam_micros(before) << 8,
            limit,
        )
