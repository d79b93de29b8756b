"""Backends for the storage conformance suite: memory, SQLite and PostgreSQL.

PostgreSQL is taken from ``DESCANT_TEST_POSTGRES_URL``, default
``postgresql://postgres@127.0.0.1:5432/test``. Each test gets a freshly created schema with a
random name (``descant_test_<hex>``), reached through the backend's ``?schema=`` URL
parameter, and drops it afterwards, so runs never see each other's rows. When the server
cannot be reached the postgres cases are skipped, with the reason shown by ``-ra``.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import asyncpg
import pytest
from tests.live import POSTGRES_URL

from descant.storage import Storage, open_storage

# Set after the first failed connection so later tests skip at once, not after a timeout.
_postgres_unreachable: list[str] = []


async def _admin_connection() -> asyncpg.Connection:
    if _postgres_unreachable:
        pytest.skip(_postgres_unreachable[0])
    try:
        return await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        _postgres_unreachable.append(f"PostgreSQL unreachable at {POSTGRES_URL}: {exc!r}")
        pytest.skip(_postgres_unreachable[0])


async def _backend_url(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    if kind == "memory":
        yield "memory://"
    elif kind == "sqlite":
        # An absolute path (four slashes) in a directory that does not exist yet.
        yield f"sqlite:///{tmp_path}/data/descant.db"
    else:
        schema = f"descant_test_{uuid.uuid4().hex[:12]}"
        admin = await _admin_connection()
        try:
            yield f"{POSTGRES_URL}?schema={schema}"
        finally:
            await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await admin.close()


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL for a fresh, empty store of each backend."""
    async for url in _backend_url(request.param, tmp_path):
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
async def durable_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL for each backend whose data outlives one Storage object."""
    async for url in _backend_url(request.param, tmp_path):
        yield url


StorageFactory = Callable[[str], Awaitable[Storage]]


@pytest.fixture
async def make_storage(tmp_path: Path) -> AsyncIterator[StorageFactory]:
    """Opens Storage objects for a URL; closes whatever is still open at the end."""
    opened: list[Storage] = []

    async def make(url: str) -> Storage:
        storage = open_storage(url, str(tmp_path))
        await storage.open()
        opened.append(storage)
        return storage

    yield make
    for storage in opened:
        await storage.close()


@pytest.fixture
async def storage(storage_url: str, make_storage: StorageFactory) -> Storage:
    return await make_storage(storage_url)
