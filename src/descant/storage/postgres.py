"""PostgreSQL ``Database`` over asyncpg: the engine for shared storage and clusters.

URL: ``postgresql://user:password@host:port/dbname`` (``postgres://`` too), plus any
libpq-style parameters asyncpg understands (``sslmode=...``). One parameter is Descant's
own: ``?schema=NAME`` puts every table in that schema (created if missing) by setting the
connections' ``search_path``, so several servers, or test runs, can share one database.
It is removed before the URL reaches asyncpg, which would otherwise send it to the server
as a setting.

A small pool: the event loop is single-threaded, so a handful of connections covers the
statements that overlap while others wait on the network. Every statement, and every
transaction, takes a pool connection for its own duration and no lock is held across
them, so the account archive's batch inserts and searches share the pool with the other
stores without waiting for them (``sibling()`` is the database itself).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg

from descant.storage.sql import POSTGRES, Dialect, Executor, Row, Statement

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 5

_SCHEMA_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def split_schema(url: str) -> tuple[str, str | None]:
    """The URL without Descant's ``schema`` parameter, and that schema (or None)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schemas = [value for key, value in query if key == "schema"]
    rest = [(key, value) for key, value in query if key != "schema"]
    schema = schemas[-1] if schemas else None
    if schema is not None and not _SCHEMA_NAME.match(schema):
        # Checked because the name is spliced into CREATE SCHEMA, which takes no parameters.
        raise ValueError(f"invalid PostgreSQL schema name {schema!r}: use letters, digits, _")
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


def _rowcount(status: str) -> int:
    # asyncpg returns the command tag ("INSERT 0 1", "DELETE 3", "CREATE TABLE").
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _Connection:
    """``Executor`` calls on one asyncpg connection (or the pool, which has the same API)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, *params: object) -> int:
        return _rowcount(await self._conn.execute(POSTGRES.sql(sql), *params))

    async def fetchone(self, sql: str, *params: object) -> Row | None:
        row = await self._conn.fetchrow(POSTGRES.sql(sql), *params)
        return None if row is None else tuple(row)

    async def fetchall(self, sql: str, *params: object) -> list[Row]:
        return [tuple(row) for row in await self._conn.fetch(POSTGRES.sql(sql), *params)]


class PostgresDatabase:
    dialect: Dialect = POSTGRES

    def __init__(self, url: str) -> None:
        self._dsn, self.schema = split_schema(url)
        self._pool: Any = None
        self._conn: _Connection | None = None

    async def connect(self) -> None:
        settings = {} if self.schema is None else {"search_path": self.schema}
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            server_settings=settings,
        )
        self._conn = _Connection(self._pool)
        # Looked up first: CREATE SCHEMA needs a privilege on the database even when the
        # schema exists, and an operator may have created it for a less privileged user.
        if self.schema is not None and not await self._conn.fetchone(
            "SELECT 1 FROM pg_namespace WHERE nspname = ?", self.schema
        ):
            await self._conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = self._conn = None

    def sibling(self) -> PostgresDatabase:
        # The pool hands each statement or transaction a connection of its own, and
        # nothing here takes a lock across them, so archive traffic needs no second pool.
        return self

    def _connection(self) -> _Connection:
        if self._conn is None:
            raise RuntimeError("PostgreSQL storage is not open")
        return self._conn

    async def execute(self, sql: str, *params: object) -> int:
        return await self._connection().execute(sql, *params)

    async def fetchone(self, sql: str, *params: object) -> Row | None:
        return await self._connection().fetchone(sql, *params)

    async def fetchall(self, sql: str, *params: object) -> list[Row]:
        return await self._connection().fetchall(sql, *params)

    async def script(self, statements: Sequence[Statement]) -> list[list[Row]]:
        async with self.transaction() as tx:
            return [await tx.fetchall(sql, *params) for sql, params in statements]

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        self._connection()
        async with self._pool.acquire() as conn, conn.transaction():
            yield _Connection(conn)
