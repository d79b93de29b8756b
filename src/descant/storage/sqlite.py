"""SQLite ``Database``: the embedded default engine, on a thread of its own.

Settings, and why:

- WAL journal: readers never block the writer, so ``descant user add`` can write while the
  server runs in another process, and the server keeps reading meanwhile.
- ``busy_timeout`` 5 s: the other process's write lock is waited for instead of failing
  at once with "database is locked".
- ``synchronous=NORMAL``: with WAL, still consistent after a crash; only the last commits
  before a power loss may be lost, for far fewer fsyncs.
- ``foreign_keys=ON``: SQLite leaves constraints off unless asked, per connection.

One connection per process, in autocommit mode, owned by one thread (``sqlite3`` blocks;
the event loop must not). Each statement is one hand-off to that thread and back: the
statement, its rows and the cursor's close happen there together, since a hand-off
costs far more CPU than a small statement (about 100 µs against 10–80 µs here). For
the same reason a transaction's ``BEGIN IMMEDIATE`` goes with its first statement.
An asyncio lock keeps a transaction's statements from interleaving with other tasks'
statements; ``BEGIN IMMEDIATE`` takes the write lock up front (a deferred transaction
upgrading later could fail instead of waiting).

The account archive (XEP-0313) gets a connection and thread of its own: ``sibling()`` is a
second ``SqliteDatabase`` on the same file, which ``SqlStorage`` connects after migrating
and closes with the rest. Archive batch inserts and searches through many messages take
milliseconds, and on one thread every login and roster read would queue behind them (and
they behind those). With WAL the two connections read side by side; writes still take
turns on the file's one write lock, which ``busy_timeout`` waits for (a batch of a few
hundred messages holds it for a few milliseconds). ``:memory:`` is one database per
connection, so there the sibling is the database itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from descant.storage.sql import SQLITE, Dialect, Executor, Row, Statement

BUSY_TIMEOUT_MS = 5000

_PRAGMAS = (
    # busy_timeout first: switching to WAL itself may wait for another process.
    f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}",
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA foreign_keys = ON",
)

T = TypeVar("T")


class _Connection:
    """``Executor`` calls on the connection, each one hand-off to its thread, with no
    locking of their own. ``begin`` set: the next statement opens a transaction."""

    def __init__(self, pool: ThreadPoolExecutor, conn: sqlite3.Connection) -> None:
        self._pool = pool
        self._conn = conn
        self.begin = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def _cursor(self, begin: bool, sql: str, params: tuple[object, ...]) -> sqlite3.Cursor:
        if begin:
            self._conn.execute("BEGIN IMMEDIATE")
        return self._conn.execute(sql, params)

    def _execute(self, begin: bool, sql: str, params: tuple[object, ...]) -> int:
        cursor = self._cursor(begin, sql, params)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _fetchone(self, begin: bool, sql: str, params: tuple[object, ...]) -> Row | None:
        cursor = self._cursor(begin, sql, params)
        try:
            row = cursor.fetchone()
        finally:
            cursor.close()
        return None if row is None else tuple(row)

    def _fetchall(self, begin: bool, sql: str, params: tuple[object, ...]) -> list[Row]:
        cursor = self._cursor(begin, sql, params)
        try:
            return [tuple(row) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def _script(self, statements: Sequence[Statement]) -> list[list[Row]]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            out = [self._fetchall(False, sql, params) for sql, params in statements]
            self._conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.OperationalError):
                self._conn.execute("ROLLBACK")
            raise
        return out

    def _take_begin(self) -> bool:
        begin, self.begin = self.begin, False
        return begin

    async def execute(self, sql: str, *params: object) -> int:
        return await self.run(self._execute, self._take_begin(), sql, params)

    async def fetchone(self, sql: str, *params: object) -> Row | None:
        return await self.run(self._fetchone, self._take_begin(), sql, params)

    async def fetchall(self, sql: str, *params: object) -> list[Row]:
        return await self.run(self._fetchall, self._take_begin(), sql, params)


def _open(path: str) -> sqlite3.Connection:
    # isolation_level=None: autocommit; transactions are begun explicitly.
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in _PRAGMAS:
        conn.execute(pragma).close()
    return conn


class SqliteDatabase:
    """A SQLite file (parent directories are created) or ``:memory:``."""

    dialect: Dialect = SQLITE

    def __init__(self, path: str, thread_name: str = "descant-sqlite") -> None:
        self.path = path
        self.thread_name = thread_name
        self._lock = asyncio.Lock()
        self._conn: _Connection | None = None
        self._pool: ThreadPoolExecutor | None = None

    async def connect(self) -> None:
        if self.path != ":memory:":
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self.thread_name)
        try:
            raw = await asyncio.get_running_loop().run_in_executor(pool, _open, self.path)
        except BaseException:
            pool.shutdown(wait=False)
            raise
        self._pool = pool
        self._conn = _Connection(pool, raw)

    async def close(self) -> None:
        conn, pool = self._conn, self._pool
        if conn is None or pool is None:
            return
        async with self._lock:
            await conn.run(conn._conn.close)
            self._conn = self._pool = None
        pool.shutdown(wait=True)

    def sibling(self) -> SqliteDatabase:
        if self.path == ":memory:":
            return self
        return SqliteDatabase(self.path, thread_name=f"{self.thread_name}-archive")

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

    async def script(self, statements: Sequence[Statement]) -> list[list[Row]]:
        async with self._lock:
            conn = self._connection()
            return await conn.run(conn._script, statements)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        async with self._lock:
            conn = self._connection()
            conn.begin = True
            try:
                yield conn
                if not conn.begin:  # a statement ran, so the transaction is open
                    await conn.run(conn._execute, False, "COMMIT", ())
            except BaseException:
                if not conn.begin:
                    # A failed COMMIT (or BEGIN) may already have ended the transaction.
                    with contextlib.suppress(sqlite3.OperationalError):
                        await conn.run(conn._execute, False, "ROLLBACK", ())
                raise
            finally:
                conn.begin = False
