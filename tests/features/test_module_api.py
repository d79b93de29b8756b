"""The module API other features build on (docs/modules.md): the server's own iq
requests (``Module.send_iq``), the per-stanza fault boundary, owned background
task groups, and nonza events."""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from typing import Any, cast

import pytest

from descant.c2s.stream import NonzaEvent, nonza_key
from descant.routing.requests import TooManyRequests
from descant.routing.router import StanzaEvent
from descant.tasks import TaskGroup
from tests.harness import Harness, error_condition, one

PING = "urn:xmpp:ping"


def ping_to(to: str, frm: str = "") -> ET.Element:
    iq = ET.Element("iq", {"type": "get", "to": to})
    if frm:
        iq.set("from", frm)
    ET.SubElement(iq, f"{{{PING}}}ping")
    return iq


async def _sent_remote(h: Harness) -> ET.Element:
    for _ in range(100):  # bounded: the request is routed within a few loop turns
        if h.remote:
            return h.take_remote()[-1]
        await asyncio.sleep(0)
    raise AssertionError("the request was not routed")


# -- send_iq (RFC 6120 §8.2.3) --------------------------------------------------------------


async def test_send_iq_returns_the_answer_from_the_address_asked(h: Harness) -> None:
    mod = h.module("ping")
    task = asyncio.ensure_future(mod.send_iq(ping_to("remote.example"), timeout=5))
    sent = await _sent_remote(h)
    assert sent.get("from") == "localhost"
    ident = sent.get("id", "")
    assert len(ident) >= 16  # unguessable, not a counter
    await h.inject(f"<iq type='result' id='{ident}' from='remote.example' to='localhost'/>")
    answer = await task
    assert answer.get("type") == "result" and answer.get("id") == ident


async def test_send_iq_ignores_an_answer_from_anyone_else(h: Harness) -> None:
    mod = h.module("ping")
    task = asyncio.ensure_future(mod.send_iq(ping_to("remote.example"), timeout=0.5))
    ident = (await _sent_remote(h)).get("id")
    # A third party that learnt (or guessed) the id cannot answer in its place.
    await h.inject(f"<iq type='result' id='{ident}' from='evil.example' to='localhost'/>")
    with pytest.raises(TimeoutError):
        await task


async def test_send_iq_error_answers_are_returned(h: Harness) -> None:
    mod = h.module("ping")
    task = asyncio.ensure_future(mod.send_iq(ping_to("remote.example"), timeout=5))
    ident = (await _sent_remote(h)).get("id")
    await h.inject(
        f"<iq type='error' id='{ident}' from='remote.example' to='localhost'>"
        "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "</error></iq>"
    )
    answer = await task
    assert error_condition(answer) == "item-not-found"


async def test_send_iq_on_behalf_of_an_account_is_answered_to_its_bare_jid(h: Harness) -> None:
    await h.account("alice")
    mod = h.module("ping")
    task = asyncio.ensure_future(
        mod.send_iq(ping_to("push.example", frm="alice@localhost"), timeout=5)
    )
    ident = (await _sent_remote(h)).get("id")
    await h.inject(f"<iq type='result' id='{ident}' from='push.example' to='alice@localhost'/>")
    assert (await task).get("type") == "result"


async def test_send_iq_ids_differ_and_the_table_is_bounded(h: Harness) -> None:
    requests = h.host().requests
    requests.limit = 2
    mod = h.module("ping")
    tasks = [asyncio.ensure_future(mod.send_iq(ping_to("remote.example"), 5)) for _ in range(2)]
    await asyncio.sleep(0)
    ids = {el.get("id") for el in h.take_remote()}
    assert len(ids) == 2
    with pytest.raises(TooManyRequests):
        await mod.send_iq(ping_to("remote.example"), 5)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert len(requests) == 0  # cancelled requests leave the table


# -- the fault boundary ------------------------------------------------------------------------


async def test_a_failing_handler_costs_one_stanza_not_the_stream(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(ev: StanzaEvent) -> bool:
        raise RuntimeError("a bug in a module")

    h.host().events.hook("iq-get/host/urn:example:broken:query", broken)
    alice = await h.online("alice@localhost/a")
    bad = ET.fromstring(
        "<iq type='get' id='b1' to='localhost'><query xmlns='urn:example:broken'/></iq>"
    )
    bad.set("from", "alice@localhost/a")
    with caplog.at_level(logging.ERROR):
        await h.server.router.process(bad, cast(Any, alice))
    assert "a bug in a module" in caplog.text
    answer = one(alice.take(), "iq", id="b1")
    assert error_condition(answer) == "internal-server-error"
    # The next stanza is handled normally.
    assert (await h.iq(alice, f"<iq type='get' to='localhost'><ping xmlns='{PING}'/></iq>")).get(
        "type"
    ) == "result"


# -- task groups --------------------------------------------------------------------------------


async def test_task_group_is_bounded_owned_and_logs_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    group = TaskGroup("test", limit=2)
    gate = asyncio.Event()

    async def wait() -> None:
        await gate.wait()

    async def fail() -> None:
        raise ValueError("background failure")

    assert group.spawn(wait()) and group.spawn(wait())
    assert not group.spawn(wait())  # the bound: refused, not queued
    assert group.refused == 1 and len(group) == 2
    gate.set()
    await group.wait(1)
    assert len(group) == 0
    with caplog.at_level(logging.ERROR):
        group.spawn(fail())
        await group.wait(1)
    assert "background failure" in caplog.text
    gate.clear()
    group.spawn(wait())
    await group.close(0.05)  # what is left when the owner stops is cancelled
    assert len(group) == 0 and not group.spawn(wait())


async def test_module_task_groups_close_with_the_host(h: Harness) -> None:
    mod = h.module("ping")
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.sleep(3600)

    assert mod.tasks.spawn(forever())
    await started.wait()
    await h.host().stop()
    assert len(mod.tasks) == 0


# -- nonza events ------------------------------------------------------------------------------


async def test_nonza_events_are_named_by_namespace_and_tag(h: Harness) -> None:
    seen: list[NonzaEvent] = []

    async def take(ev: NonzaEvent) -> bool:
        seen.append(ev)
        return True

    el = ET.Element("{urn:example:nonza}poke")
    name = nonza_key(el)
    assert name == "nonza/urn:example:nonza:poke"
    h.host().events.hook(name, take)
    ev = NonzaEvent(el, cast(Any, None), None)
    assert await h.host().events.fire(name, ev) is True
    assert seen == [ev]
