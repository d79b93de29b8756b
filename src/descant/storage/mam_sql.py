"""The account message archive (XEP-0313) on SQLite and PostgreSQL: ``SqlMamStore``.

One table, ``mam`` (migration 0004), whose ``seq`` gives archive order; paging resolves
``after``/``before`` ids to their ``seq`` and reads ``limit + 1`` rows in the paging
direction, the extra row telling whether the page reached the end. Full-text search is
the one place the engines differ:

- SQLite: an FTS5 table over ``text`` (tokenizer ``unicode61 remove_diacritics 2``),
  kept in step by triggers. Each search word is quoted as an FTS5 string, so nothing a
  user types (``*``, ``NEAR``, ``-``, ``:``, parentheses, quotes) is query syntax.
- PostgreSQL: a generated ``tsvector`` column (configuration ``simple``, ASCII
  punctuation turned into spaces first so that addresses and URLs split into words as
  on SQLite) with a GIN index, matched with ``plainto_tsquery``, which requires every
  word.

Search words are those of memory.py (runs of letters and digits); with none, there is no
text filter. The engines then fold them their own way: SQLite also ignores accents
("cafe" finds "café"), PostgreSQL folds case beyond ASCII only under a locale that does
(see the migration files' comments).

On SQLite the store is given the storage's ``sibling()`` database: a connection of its
own, so archive traffic and the other stores never queue behind each other (sqlite.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from descant.storage.api import MamEntry, MamQuery, UnknownArchiveId

if TYPE_CHECKING:
    from datetime import datetime

    from descant.storage.sql import Database, Row, Statement

_COLUMNS = "id, stamp, with_jid, with_resource, outgoing, origin_id, text, stanza"

_INSERT = (
    "INSERT INTO mam (host, owner, id, stamp, with_jid, with_resource, outgoing, "
    "origin_id, text, stanza) VALUES "
)
_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

# SQLite: rows per INSERT, 990 parameters, under the 999 that SQLite builds before 3.32
# allowed. Few rows per statement matter: FTS5 writes its pending words to disk at every
# statement that fires its trigger, which statement by statement (executemany) makes
# batches several times slower.
SQLITE_ROWS_PER_INSERT = 99

# PostgreSQL: a whole batch as one statement of one array per column, in one round trip
# (about twice as fast as a statement per row). ORDER BY n keeps the batch's order for
# the identity column.
_INSERT_ARRAYS = (
    "INSERT INTO mam (host, owner, id, stamp, with_jid, with_resource, outgoing, "
    "origin_id, text, stanza) "
    "SELECT host, owner, id, stamp, with_jid, with_resource, outgoing, origin_id, text, stanza "
    "FROM unnest(?::text[], ?::text[], ?::text[], ?::timestamptz[], ?::text[], ?::text[], "
    "?::boolean[], ?::text[], ?::text[], ?::text[]) WITH ORDINALITY "
    "AS batch (host, owner, id, stamp, with_jid, with_resource, outgoing, origin_id, text, "
    "stanza, n) ORDER BY n"
)


def search_words(text: str) -> list[str]:
    """The words a search must all find, as memory.py's ``_words`` splits them, in order
    of first appearance and without repeats."""
    return list(dict.fromkeys(w.casefold() for w in re.findall(r"[^\W_]+", text)))


def fts5_query(words: Sequence[str]) -> str:
    """An FTS5 query requiring every word: each a quoted string (quotes doubled), so no
    word is ever read as an operator, prefix, column filter or group."""
    return " ".join('"' + word.replace('"', '""') + '"' for word in words)


class SqlMamStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _entry(self, row: Row) -> MamEntry:
        id_, stamp, with_jid, with_resource, outgoing, origin_id, text, stanza = row
        return MamEntry(
            id=str(id_),
            stamp=self._db.dialect.decode_time(stamp),
            with_jid=str(with_jid),
            with_resource=str(with_resource),
            outgoing=bool(outgoing),
            origin_id=str(origin_id),
            text=str(text),
            stanza=str(stanza),
        )

    async def add(self, entries: Sequence[tuple[str, str, MamEntry]]) -> None:
        if not entries:
            return
        encode = self._db.dialect.encode_time
        rows = [
            (
                host,
                owner,
                e.id,
                encode(e.stamp),
                e.with_jid,
                e.with_resource,
                e.outgoing,
                e.origin_id,
                e.text,
                e.stanza,
            )
            for host, owner, e in entries
        ]
        if self._db.dialect.name == "postgres":
            # One statement: atomic on its own.
            columns = (list(column) for column in zip(*rows, strict=True))
            await self._db.execute(_INSERT_ARRAYS, *columns)
            return
        statements: list[Statement] = []
        for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
            chunk = rows[start : start + SQLITE_ROWS_PER_INSERT]
            params = tuple(value for row in chunk for value in row)
            statements.append((_INSERT + ", ".join([_ROW] * len(chunk)), params))
        # One transaction, and one hand-off to the connection's thread.
        await self._db.script(statements)

    async def _seq(self, host: str, owner: str, id_: str) -> int:
        row = await self._db.fetchone(
            "SELECT seq FROM mam WHERE host = ? AND owner = ? AND id = ?", host, owner, id_
        )
        if row is None:
            raise UnknownArchiveId(id_)
        return int(row[0])

    def _text_condition(self, words: Sequence[str]) -> tuple[str, str]:
        if self._db.dialect.name == "postgres":
            return "text_search @@ plainto_tsquery('simple', ?)", " ".join(words)
        return "seq IN (SELECT rowid FROM mam_fts WHERE mam_fts MATCH ?)", fts5_query(words)

    async def query(self, host: str, owner: str, query: MamQuery) -> tuple[list[MamEntry], bool]:
        conds = ["host = ?", "owner = ?"]
        params: list[object] = [host, owner]
        encode = self._db.dialect.encode_time
        if query.with_jid is not None:
            conds.append("with_jid = ?")
            params.append(query.with_jid)
        if query.with_resource is not None:
            conds.append("with_resource = ?")
            params.append(query.with_resource)
        if query.start is not None:
            conds.append("stamp >= ?")
            params.append(encode(query.start))
        if query.end is not None:
            conds.append("stamp <= ?")
            params.append(encode(query.end))
        if query.ids:
            conds.append(f"id IN ({', '.join('?' * len(query.ids))})")
            params.extend(query.ids)
        words = search_words(query.text)
        if words:
            cond, param = self._text_condition(words)
            conds.append(cond)
            params.append(param)
        # Both ids are looked up (and may be unknown) even for a page that would be empty.
        if query.after is not None:
            conds.append("seq > ?")
            params.append(await self._seq(host, owner, query.after))
        if query.before:
            conds.append("seq < ?")
            params.append(await self._seq(host, owner, query.before))
        backwards = query.before is not None
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM mam WHERE "
            + " AND ".join(conds)
            + f" ORDER BY seq {'DESC' if backwards else 'ASC'} LIMIT ?",
            *params,
            query.limit + 1,
        )
        complete = len(rows) <= query.limit
        rows = rows[: query.limit]
        if backwards:
            rows.reverse()
        return [self._entry(row) for row in rows], complete

    async def bounds(self, host: str, owner: str) -> tuple[MamEntry, MamEntry] | None:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM mam WHERE seq IN ("
            "(SELECT MIN(seq) FROM mam WHERE host = ? AND owner = ?), "
            "(SELECT MAX(seq) FROM mam WHERE host = ? AND owner = ?)) ORDER BY seq",
            host,
            owner,
            host,
            owner,
        )
        if not rows:
            return None
        return self._entry(rows[0]), self._entry(rows[-1])

    async def find_origin(
        self, host: str, owner: str, with_jid: str, origin_id: str, outgoing: bool
    ) -> MamEntry | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM mam WHERE host = ? AND owner = ? AND with_jid = ? "
            "AND origin_id = ? AND outgoing = ? ORDER BY seq DESC LIMIT 1",
            host,
            owner,
            with_jid,
            origin_id,
            outgoing,
        )
        return None if row is None else self._entry(row)

    async def replace(self, host: str, owner: str, id: str, stanza: str) -> bool:
        # Clearing text makes the FTS5 triggers drop the message's words (PostgreSQL
        # recomputes the generated column).
        changed = await self._db.execute(
            "UPDATE mam SET stanza = ?, text = '' WHERE host = ? AND owner = ? AND id = ?",
            stanza,
            host,
            owner,
            id,
        )
        return changed > 0

    async def delete_owner(self, host: str, owner: str) -> int:
        return await self._db.execute("DELETE FROM mam WHERE host = ? AND owner = ?", host, owner)

    async def expire(self, before: datetime, limit: int) -> int:
        # Walks seq from the oldest; arrival order and stamps agree closely, so the walk
        # stops soon after the last expired message.
        return await self._db.execute(
            "DELETE FROM mam WHERE seq IN "
            "(SELECT seq FROM mam WHERE stamp < ? ORDER BY seq LIMIT ?)",
            self._db.dialect.encode_time(before),
            limit,
        )
