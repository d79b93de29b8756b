"""A ``Database`` that reports how long each call took (``descant_storage_seconds``).

Wrapped around the engine by ``open_storage`` when metrics are on, so SQLite and
PostgreSQL are timed alike and the engines know nothing of metrics. A call's time is
what its caller waits: on SQLite that includes queueing for the connection's lock
and thread, which is the latency a login or a roster read sees. A transaction is
timed as a whole, from waiting for it to its commit. Every call is timed: one costs
100 µs and more, the timing about 1 µs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from time import perf_counter
from typing import Any

from descant.storage.sql import Database, Dialect, Executor, Row, Statement

Observe = Callable[[str, float], None]


class TimedDatabase:
    """``inner`` with each call's duration passed to ``observe(operation, seconds)``;
    its ``sibling()`` (the account archive's handle) reports to ``sibling_observe``."""

    def __init__(self, inner: Database, observe: Observe, sibling_observe: Observe) -> None:
        self.inner = inner
        self.dialect: Dialect = inner.dialect
        self._observe = observe
        self._sibling_observe = sibling_observe

    def __getattr__(self, name: str) -> Any:
        # Engine-specific attributes (a SQLite path, a PostgreSQL schema) read through.
        return getattr(self.inner, name)

    async def connect(self) -> None:
        await self.inner.connect()

    async def close(self) -> None:
        await self.inner.close()

    def sibling(self) -> Database:
        inner = self.inner.sibling()
        if inner is self.inner:
            return self
        return TimedDatabase(inner, self._sibling_observe, self._sibling_observe)

    async def execute(self, sql: str, *params: object) -> int:
        t0 = perf_counter()
        try:
            return await self.inner.execute(sql, *params)
        finally:
            self._observe("execute", perf_counter() - t0)

    async def fetchone(self, sql: str, *params: object) -> Row | None:
        t0 = perf_counter()
        try:
            return await self.inner.fetchone(sql, *params)
        finally:
            self._observe("fetchone", perf_counter() - t0)

    async def fetchall(self, sql: str, *params: object) -> list[Row]:
        t0 = perf_counter()
        try:
            return await self.inner.fetchall(sql, *params)
        finally:
            self._observe("fetchall", perf_counter() - t0)

    async def script(self, statements: Sequence[Statement]) -> list[list[Row]]:
        t0 = perf_counter()
        try:
            return await self.inner.script(statements)
        finally:
            self._observe("script", perf_counter() - t0)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Executor]:
        t0 = perf_counter()
        try:
            async with self.inner.transaction() as tx:
                yield tx
        finally:
            self._observe("transaction", perf_counter() - t0)
