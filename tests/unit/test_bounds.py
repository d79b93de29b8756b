"""Tables that grow with what peers do are bounded: login-failure records per
address, and dialback verifications waiting for an answer."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest

import descant.server
from descant.config import Config
from descant.s2s.outgoing import OutgoingSession, OutState
from descant.server import Server
from descant.storage.memory import MemoryStorage


def test_auth_failure_records_stay_bounded_whoever_comes_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(descant.server, "AUTH_FAILURE_ADDRESSES", 50)
    server = Server(Config(), MemoryStorage())
    for n in range(1000):  # a scan from many addresses, none of which returns
        server.auth_failed(f"198.51.{n // 256}.{n % 256}")
    assert len(server._auth_failures) <= 50
    # The most recent stay: the limit still applies to an address that keeps failing.
    for _ in range(5):
        server.auth_failed("203.0.113.9")
    assert server.auth_throttled("203.0.113.9")


def test_expired_records_go_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(descant.server, "AUTH_FAILURE_ADDRESSES", 10)
    clock = [1000.0]
    monkeypatch.setattr(descant.server.time, "monotonic", lambda: clock[0])
    server = Server(Config(), MemoryStorage())
    server.auth_failed("203.0.113.1")
    server.auth_failed("203.0.113.1")
    clock[0] += 3600  # long past the window
    for n in range(10):
        server.auth_failed(f"198.51.100.{n}")
    assert "203.0.113.1" not in server._auth_failures


class _Conn:
    closing = False

    def __init__(self) -> None:
        self.sent: list[ET.Element] = []

    def send(self, el: ET.Element) -> None:
        self.sent.append(el)


async def test_dialback_verifications_that_time_out_leave_nothing() -> None:
    class Manager:
        server: Any = None

    out = OutgoingSession(Manager(), "a.test", "b.test")  # type: ignore[arg-type]
    out.conn = _Conn()  # type: ignore[assignment]
    out.state = OutState.READY
    out.stream_open.set()
    results = await asyncio.gather(
        *(out.verify(f"stream-{n}", "key", timeout=0.01) for n in range(50))
    )
    assert results == [False] * 50
    assert out._verify_waiters == {}


async def test_bounce_tasks_are_owned_and_bounded() -> None:
    """Bounces of undeliverable stanzas run in a bounded task group, not in tasks
    created and forgotten."""
    from descant.errors import StanzaError
    from descant.s2s.manager import S2SManager

    release = asyncio.Event()

    class Router:
        async def bounce(self, stanza: ET.Element, err: StanzaError) -> None:
            await release.wait()

    server = Server(Config(), MemoryStorage())
    server.router = Router()  # type: ignore[assignment]
    manager = S2SManager(server)
    for _ in range(1500):
        manager.bounce([ET.Element("message")], StanzaError("remote-server-not-found"))
    assert len(manager._bounces) == 1000
    release.set()
    await manager._bounces.wait(5)
    assert len(manager._bounces) == 0
