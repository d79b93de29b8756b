"""Offline messages and live ones at login (XEP-0160, RFC 6120 §10.1): what was stored
comes first, in order, and nothing stored is left behind, however the storage
read and write interleave with live traffic."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.harness import Harness


def bodies(stanzas: list[Any]) -> list[str]:
    return [m.findtext("body") for m in stanzas if m.tag == "message"]


def chat(to: str, body: str) -> str:
    return f"<message to='{to}' type='chat'><body>{body}</body></message>"


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_stored_messages_come_before_a_live_one_racing_the_read(h: Harness) -> None:
    await h.account("alice")
    bob = await h.online("bob@localhost/b")
    await h.send(bob, chat("alice@localhost", "stored 1"))
    await h.send(bob, chat("alice@localhost", "stored 2"))
    offline = h.server.storage.offline
    real_pop = offline.pop_all
    reading = asyncio.Event()

    async def slow_pop(host: str, user: str) -> Any:
        await reading.wait()  # a slow storage read (PostgreSQL under load)
        return await real_pop(host, user)

    offline.pop_all = slow_pop  # type: ignore[method-assign]
    alice = await h.bind("alice@localhost/a")
    login = asyncio.create_task(h.send(alice, "<presence/>"))
    await settle()
    assert alice.presence is not None  # available, its stored messages not yet read
    await h.send(bob, chat("alice@localhost", "live 3"))  # answers her presence at once
    reading.set()
    await login
    assert bodies(alice.take()) == ["stored 1", "stored 2", "live 3"]


async def test_a_message_being_stored_at_login_is_delivered_then(h: Harness) -> None:
    await h.account("alice")
    bob = await h.online("bob@localhost/b")
    offline = h.server.storage.offline
    real_push = offline.push
    writing = asyncio.Event()

    async def slow_push(*args: Any) -> None:
        await writing.wait()  # a slow storage write
        await real_push(*args)

    offline.push = slow_push  # type: ignore[method-assign]
    sending = asyncio.create_task(h.send(bob, chat("alice@localhost", "while offline")))
    await settle()
    alice = await h.bind("alice@localhost/a")
    login = asyncio.create_task(h.send(alice, "<presence/>"))
    await settle()
    writing.set()
    await asyncio.gather(sending, login)
    assert bodies(alice.take()) == ["while offline"]
    assert await offline.count("localhost", "alice") == 0
