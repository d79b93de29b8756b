"""EventBus (descant.events): Prosody-style chains — priority order, first non-None wins."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from descant.events import EventBus

Log = list[str]


def recorder(log: Log, name: str, result: Any = None) -> Callable[[Any], Awaitable[Any]]:
    async def handler(event: Any) -> Any:
        log.append(f"{name}:{event}")
        return result

    return handler


async def test_fire_without_handlers_returns_none() -> None:
    bus = EventBus()
    assert await bus.fire("message/bare", 1) is None
    assert not bus.has("message/bare")


async def test_handlers_run_highest_priority_first() -> None:
    bus = EventBus()
    log: Log = []
    bus.hook("e", recorder(log, "low"), priority=-10)
    bus.hook("e", recorder(log, "high"), priority=10)
    bus.hook("e", recorder(log, "mid"))
    assert await bus.fire("e", "x") is None
    assert log == ["high:x", "mid:x", "low:x"]


async def test_equal_priorities_run_in_hook_order() -> None:
    bus = EventBus()
    log: Log = []
    for name in "abc":
        bus.hook("e", recorder(log, name), priority=5)
    await bus.fire("e", 1)
    assert log == ["a:1", "b:1", "c:1"]


async def test_first_non_none_result_stops_the_chain() -> None:
    bus = EventBus()
    log: Log = []
    bus.hook("e", recorder(log, "first"), priority=3)
    bus.hook("e", recorder(log, "handler", result=True), priority=2)
    bus.hook("e", recorder(log, "never"), priority=1)
    assert await bus.fire("e", 0) is True
    assert log == ["first:0", "handler:0"]


@pytest.mark.parametrize("result", [False, 0, "", []])
async def test_falsy_results_other_than_none_also_stop(result: Any) -> None:
    bus = EventBus()
    log: Log = []
    bus.hook("e", recorder(log, "a", result=result), priority=1)
    bus.hook("e", recorder(log, "b"))
    assert await bus.fire("e", 0) == result
    assert log == ["a:0"]


async def test_events_are_separate_by_name() -> None:
    bus = EventBus()
    log: Log = []
    bus.hook("iq-get/host/urn:xmpp:ping:ping", recorder(log, "ping"))
    bus.hook("iq-set/host/urn:xmpp:ping:ping", recorder(log, "other"))
    await bus.fire("iq-get/host/urn:xmpp:ping:ping", 1)
    assert log == ["ping:1"]
    assert bus.has("iq-set/host/urn:xmpp:ping:ping")


async def test_unhook_removes_the_handler() -> None:
    bus = EventBus()
    log: Log = []
    a, b = recorder(log, "a"), recorder(log, "b")
    bus.hook("e", a)
    bus.hook("e", b)
    bus.unhook("e", a)
    await bus.fire("e", 1)
    assert log == ["b:1"]
    bus.unhook("e", b)
    assert not bus.has("e")
    assert await bus.fire("e", 2) is None


async def test_unhook_unknown_is_harmless() -> None:
    bus = EventBus()
    bus.unhook("nothing", recorder([], "x"))
    assert not bus.has("nothing")


async def test_hooking_during_fire_affects_later_fires_only() -> None:
    bus = EventBus()
    log: Log = []

    async def adder(event: Any) -> None:
        log.append("adder")
        bus.hook("e", recorder(log, "late"), priority=-1)

    bus.hook("e", adder)
    await bus.fire("e", 1)
    assert log == ["adder"]
    bus.unhook("e", adder)
    await bus.fire("e", 2)
    assert log == ["adder", "late:2"]


async def test_handler_exceptions_propagate_to_the_caller() -> None:
    bus = EventBus()
    log: Log = []

    async def boom(event: Any) -> None:
        raise RuntimeError("boom")

    bus.hook("e", boom, priority=1)
    bus.hook("e", recorder(log, "after"))
    with pytest.raises(RuntimeError):
        await bus.fire("e", 1)
    assert log == []
