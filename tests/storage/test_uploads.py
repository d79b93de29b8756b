"""Conformance of the upload store (XEP-0363 slots and files) on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.storage.test_conformance import account

from descant.storage import Storage
from descant.storage.api import Upload

H = "example.org"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def slot(id: str, user: str = "alice", size: int = 100, at: datetime = T0) -> Upload:
    return Upload(id, f"tok-{id}", H, user, "cat.png", size, "image/png", at)


async def test_upload_add_get_round_trip(storage: Storage) -> None:
    up = slot("a1")
    await storage.uploads.add(up)
    assert await storage.uploads.get("a1") == up
    assert await storage.uploads.get("nope") is None


async def test_upload_rejects_naive_created(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.uploads.add(slot("a1", at=datetime(2024, 5, 1)))


async def test_upload_mark_stored_once(storage: Storage) -> None:
    await storage.uploads.add(slot("a1"))
    assert await storage.uploads.mark_stored("a1", "image/png; x=1")
    assert not await storage.uploads.mark_stored("a1", "image/png")
    assert not await storage.uploads.mark_stored("missing", "image/png")
    got = await storage.uploads.get("a1")
    assert got is not None and got.stored and got.content_type == "image/png; x=1"


async def test_upload_usage_counts_stored_and_live_pending(storage: Storage) -> None:
    await storage.uploads.add(slot("s1", size=1000))
    await storage.uploads.mark_stored("s1", "image/png")
    await storage.uploads.add(slot("p-old", size=50, at=T0 - timedelta(hours=1)))
    await storage.uploads.add(slot("p-new", size=7, at=T0))
    await storage.uploads.add(slot("other", user="bob", size=99999))
    assert await storage.uploads.usage(H, "alice", T0 - timedelta(minutes=5)) == (1007, 1)
    assert await storage.uploads.usage(H, "carol", T0) == (0, 0)


async def test_upload_expired_oldest_first_with_limit(storage: Storage) -> None:
    for i in range(4):
        await storage.uploads.add(slot(f"s{i}", at=T0 + timedelta(days=i)))
        await storage.uploads.mark_stored(f"s{i}", "image/png")
    await storage.uploads.add(slot("pend", at=T0 + timedelta(hours=1)))
    await storage.uploads.add(slot("fresh", at=T0 + timedelta(days=9)))
    stored_before = T0 + timedelta(days=2, hours=1)
    pending_before = T0 + timedelta(days=8)
    assert await storage.uploads.expired(stored_before, pending_before, 10) == [
        "s0",
        "pend",
        "s1",
        "s2",
    ]
    assert await storage.uploads.expired(stored_before, pending_before, 2) == ["s0", "pend"]


async def test_upload_delete_and_existing(storage: Storage) -> None:
    for i in range(3):
        await storage.uploads.add(slot(f"u{i}"))
    assert await storage.uploads.existing(["u0", "u2", "zz"]) == {"u0", "u2"}
    assert await storage.uploads.delete(["u0", "u2", "zz"]) == 2
    assert await storage.uploads.delete([]) == 0
    assert await storage.uploads.existing(["u0", "u1", "u2"]) == {"u1"}
    assert await storage.uploads.existing([]) == set()


async def test_account_delete_removes_its_uploads(storage: Storage) -> None:
    await storage.accounts.create(account(H, "alice"))
    await storage.uploads.add(slot("mine"))
    await storage.uploads.add(slot("bobs", user="bob"))
    assert await storage.accounts.delete(H, "alice")
    assert await storage.uploads.get("mine") is None
    assert await storage.uploads.get("bobs") is not None
