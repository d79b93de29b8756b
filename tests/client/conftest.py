"""Fixtures shared by the client tests: a PostgreSQL schema of one's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.live import POSTGRES_URL


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    """A fresh schema name on the test PostgreSQL, dropped afterwards; the test is
    skipped, with the reason, when no PostgreSQL answers."""
    try:
        conn = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        pytest.skip(f"PostgreSQL unreachable at {POSTGRES_URL}: {exc!r}")
    schema = f"descant_e2e_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
