"""Fixtures for feature tests: ``h``, an in-process server (tests/harness.py).

Storage is in memory; ``DESCANT_FEATURE_STORAGE=sqlite`` runs the same tests on a
SQLite file instead (real awaits inside storage calls).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from descant.storage.api import RosterItem
from tests.harness import Harness


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    url = "memory://"
    if os.environ.get("DESCANT_FEATURE_STORAGE") == "sqlite":
        url = f"sqlite:///{tmp_path}/descant.db"
    harness = await Harness.create(tmp_path, storage_url=url)
    yield harness
    await harness.stop()


async def set_roster(
    h: Harness,
    user: str,
    contact: str,
    subscription: str = "none",
    ask: bool = False,
    approved: bool = False,
    name: str | None = None,
    groups: tuple[str, ...] = (),
) -> None:
    """Put a roster item straight into storage (through the roster module, so its
    cache stays right), without pushes or presence: the starting state of a test."""
    owner = await h.account(user)
    roster = h.server.hosts[owner.domain].modules["roster"]
    item = RosterItem(contact, name, subscription, ask, approved, groups)
    await roster.set_item(owner.local, item, push=False)  # type: ignore[attr-defined]
