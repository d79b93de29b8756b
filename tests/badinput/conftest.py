"""Fixtures for the bad-input suite: a witness session that must survive each test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.badinput.raw import close_quietly, login, ping
from tests.live import LiveServer, RawClient


@pytest.fixture
async def witness(server: LiveServer) -> AsyncIterator[RawClient]:
    """A logged-in session on the shared server; after the test it must still answer,
    and the server must have logged no traceback meanwhile."""
    start = len(server.log())
    c, _ = await login(server, "witness")
    yield c
    await ping(c, "witness-after")
    await close_quietly(c)
    assert "Traceback" not in server.log()[start:], server.log()[start:][-4000:]
