"""SQLite ``Database`` over aiosqlite: the embedded default engine.

Settings, and why:

- WAL journal: readers never block the writer, so ``descant user add`` can write while the
  server runs in another process, and the server keeps reading meanwhile.
- ``busy_timeout`` 5 s: the other process's write lock is waited for instead of failing
  at once with "database is locked".
- ``synchronous=NORMAL``: with WAL, still consistent after a crash; only the last commits
  before a power loss may be lost, for far fewer fsyncs.
- ``foreign_keys=ON``: SQLite leaves constraints off unless asked, per connection.

One connection per process, in autocommit mode. An asyncio lock keeps a transaction's
statements from interleaving with other tasks' statements on that connection, and
transactions start with ``BEGIN IMMEDIATE`` so they take the write lock up front (a
deferred transaction upgrading later could fail instead of waiting).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from descant.storage.sql import SQLITE, Dialect, Executor, Row

BUSY_TIMEOUT_MS = 5000

_PRAGMAS = (
    # busy_timeout first: switching to WAL itself may wait for another process.
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)


class _Connection:
    """``Executor`` calls on the aiosqlite connection, with no locking of their own."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, *params: object) -> int:
        cursor = await self._conn.execute(sql, params)
        try:
            return int(cursor.rowcount)
        finally:
            await cursor.close()

    async def fetchone(self, sql: str, *params: object) -> Row | None:
        cursor = await self._conn.execute(sql, params)
        try:
            row: Any = await cursor.fetchone()
        finally:
            await cursor.close()
        return None if row is None else tuple(row)

    async def fetchall(self, sql: str, *params: object) -> list[Row]:
        rows: Any = await self._conn.execute_fetchall(sql, params)
        return [tuple(row) for row in rows]


class SqliteDatabase:
    """A SQLite file (parent directories are created) or ``:memory:``."""

    dialect: Dialect = SQLITE

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self._conn: _Connection | None = None
        self._raw: aiosqlite.Connection | None = None

    async def connect(self) -> None:
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
        # isolation_level=None: autocommit; transactions are begun explicitly below.
        self._raw = await aiosqlite.connect(self.path, isolation_level=None)
        self._conn = _Connection(self._raw)
        for pragma in _PRAGMAS:
            await self._conn.execute(pragma)

    async def close(self) -> None:
        if self._raw is not None:
            async with self._lock:
                await self._raw.close()
            self._raw = self._conn = None

    def _connection(self) -> _Connection:
        if self._conn is None:
            raise RuntimeError("SQLite storage is not open")
        return self._conn

    async def execute(self, sql: str, *params: object) -> int:
        async with self._lock:
            return await self._connection().execute(sql, *params)

    async def fetchone(self, sql: str, *params: object) -> Row | None:
        async with self._lock:
            return await self._connection().fetchone(sql, *params)

    async def fetchall(self, sql: str, *params: object) -> list[Row]:
        async with self._lock:
            return await self._connection().fetchall(sql, *params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            conn = self._connection()
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                await conn.execute("COMMIT")
            except BaseException:
                # A failed COMMIT may already have ended the transaction.
                with contextlib.suppress(sqlite3.OperationalError):
                    await conn.execute("ROLLBACK")
                raise
