"""Conformance of the invitation store (XEP-0401, XEP-0445) on every backend."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from tests.storage.test_conformance import account

from descant.storage import Storage
from descant.storage.api import Invite

H = "example.org"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def invite(token: str, creator: str = "alice", days: int | None = 7, at: datetime = T0) -> Invite:
    expires = None if days is None else at + timedelta(days=days)
    return Invite(token, H, creator, at, expires)


async def test_invite_add_get_round_trip(storage: Storage) -> None:
    await storage.invites.add(invite("t1"))
    await storage.invites.add(invite("t2", creator="", days=None))
    assert await storage.invites.get("t1") == invite("t1")
    assert await storage.invites.get("t2") == invite("t2", creator="", days=None)
    assert await storage.invites.get("nope") is None


async def test_invite_rejects_naive_times(storage: Storage) -> None:
    with pytest.raises(ValueError):
        await storage.invites.add(invite("t1", at=datetime(2024, 5, 1)))


async def test_invite_list_oldest_first_per_host(storage: Storage) -> None:
    await storage.invites.add(invite("b", at=T0 + timedelta(hours=1)))
    await storage.invites.add(invite("a", at=T0))
    await storage.invites.add(Invite("c", "other.org", "", T0 + timedelta(hours=2)))
    assert [i.token for i in await storage.invites.list()] == ["a", "b", "c"]
    assert [i.token for i in await storage.invites.list(H)] == ["a", "b"]


async def test_invite_claim_once_release_complete(storage: Storage) -> None:
    await storage.invites.add(invite("t1"))
    assert await storage.invites.claim("t1")
    assert not await storage.invites.claim("t1")  # usable once
    assert not await storage.invites.claim("missing")
    # A failed registration gives the token back.
    assert await storage.invites.release("t1")
    assert await storage.invites.claim("t1")
    await storage.invites.complete("t1", "juliet")
    got = await storage.invites.get("t1")
    assert got is not None and got.used and got.used_by == "juliet"
    # Once an account was made with it, it cannot be released.
    assert not await storage.invites.release("t1")


async def test_invite_pending_counts_unused_unexpired(storage: Storage) -> None:
    await storage.invites.add(invite("live"))
    await storage.invites.add(invite("forever", days=None))
    await storage.invites.add(invite("old", at=T0 - timedelta(days=30)))
    await storage.invites.add(invite("used"))
    await storage.invites.claim("used")
    await storage.invites.add(invite("bob's", creator="bob"))
    assert await storage.invites.pending(H, "alice", T0) == 2
    assert await storage.invites.pending(H, "carol", T0) == 0


async def test_invite_delete_and_expire(storage: Storage) -> None:
    await storage.invites.add(invite("t1"))
    assert await storage.invites.delete("t1")
    assert not await storage.invites.delete("t1")
    for i in range(3):
        await storage.invites.add(invite(f"old{i}", days=1, at=T0 + timedelta(hours=i)))
    await storage.invites.add(invite("forever", days=None))
    await storage.invites.add(invite("live", days=30))
    assert await storage.invites.expire(T0 + timedelta(days=5), 2) == 2
    assert await storage.invites.expire(T0 + timedelta(days=5), 10) == 1
    assert {i.token for i in await storage.invites.list()} == {"forever", "live"}


async def test_invite_deleted_with_its_creator(storage: Storage) -> None:
    await storage.accounts.create(account(H, "alice"))
    await storage.invites.add(invite("mine"))
    await storage.invites.add(invite("operator's", creator=""))
    assert await storage.accounts.delete(H, "alice")
    assert [i.token for i in await storage.invites.list()] == ["operator's"]
