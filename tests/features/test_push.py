"""Push Notifications (XEP-0357) on the in-process harness.

The app server lives at a domain the harness does not serve: publishes land in
``h.remote`` and are answered with ``h.inject`` as if it had replied.
"""

from __future__ import annotations

import asyncio
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from descant.config import PushConfig
from tests.harness import FakeSession, Harness, error_condition, find

NS = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = "jabber:x:data"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
PUSH = "push.example.net"
ALICE = "alice@localhost"
OTHER = "other.example.net"

# The make fixture: a harness with its own [push] section.
Make = Callable[..., Awaitable[Harness]]


def storage_url(tmp_path: Path) -> str:
    if os.environ.get("DESCANT_FEATURE_STORAGE") == "sqlite":
        return f"sqlite:///{tmp_path}/descant.db"
    return "memory://"


@pytest.fixture
async def make(tmp_path: Path) -> AsyncIterator[Make]:
    """Harnesses with a [push] section of their own: ``await make(include_body=True)``."""
    made: list[Harness] = []

    async def create(**push: object) -> Harness:
        harness = await Harness.create(
            tmp_path,
            storage_url=storage_url(tmp_path),
            push=PushConfig(**push),  # type: ignore[arg-type]
        )
        made.append(harness)
        return harness

    yield create
    for harness in made:
        await harness.stop()


# -- helpers ------------------------------------------------------------------------------


def enable_xml(jid: str = PUSH, node: str | None = "node1", secret: str | None = None) -> str:
    attrs = f" jid='{jid}'" if jid is not None else ""
    if node is not None:
        attrs += f" node='{node}'"
    form = ""
    if secret is not None:
        form = (
            f"<x xmlns='{DATA}' type='submit'>"
            f"<field var='FORM_TYPE'><value>{PUBLISH_OPTIONS}</value></field>"
            f"<field var='secret'><value>{secret}</value></field></x>"
        )
    return f"<iq type='set'><enable xmlns='{NS}'{attrs}>{form}</enable></iq>"


async def enable(
    h: Harness, session: FakeSession, jid: str = PUSH, node: str | None = "node1", **kw: str
) -> None:
    reply = await h.iq(session, enable_xml(jid, node, **kw))
    assert reply.get("type") == "result", ET.tostring(reply)


async def disable(h: Harness, session: FakeSession, jid: str, node: str | None = None) -> None:
    attr = f" node='{node}'" if node is not None else ""
    reply = await h.iq(session, f"<iq type='set'><disable xmlns='{NS}' jid='{jid}'{attr}/></iq>")
    assert reply.get("type") == "result", ET.tostring(reply)


async def until(cond: Callable[[], bool], wait: float = 2.0) -> bool:
    deadline = asyncio.get_running_loop().time() + wait
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.005)
    return True


async def eventually(get: Callable[[], Awaitable[object]], want: object, wait: float = 2.0) -> None:
    """Poll ``get`` until it returns ``want`` (publish outcomes are counted in the background)."""
    deadline = asyncio.get_running_loop().time() + wait
    while (got := await get()) != want:
        assert asyncio.get_running_loop().time() < deadline, f"{got!r} != {want!r}"
        await asyncio.sleep(0.005)


def _is_publish(el: ET.Element) -> bool:
    return el.tag == "iq" and el.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish") is not None


async def publishes(h: Harness, n: int = 1, wait: float = 2.0) -> list[ET.Element]:
    """The next ``n`` publishes the app servers received (taken from ``h.remote``)."""
    await until(lambda: sum(map(_is_publish, h.remote)) >= n, wait)
    got = [el for el in h.take_remote() if _is_publish(el)]
    assert len(got) == n, f"expected {n} publishes, got {len(got)}"
    return got


async def no_publish(h: Harness) -> None:
    await asyncio.sleep(0.05)
    assert not [el for el in h.take_remote() if _is_publish(el)]


async def answer(h: Harness, iq: ET.Element, error: str | None = None) -> None:
    """The app server's reply to a publish: a result, or an error with ``error``."""
    attrs = f"from='{iq.get('to')}' to='{iq.get('from')}' id='{iq.get('id')}'"
    if error is None:
        await h.inject(f"<iq type='result' {attrs}/>")
    else:
        cond = f"<{error} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        await h.inject(f"<iq type='error' {attrs}><error type='cancel'>{cond}</error></iq>")


async def publish_answered(h: Harness, n: int = 1) -> list[ET.Element]:
    got = await publishes(h, n)
    for iq in got:
        await answer(h, iq)
    return got


def summary(iq: ET.Element) -> dict[str, str]:
    x = iq.find(f".//{{{PUBSUB}}}item/{{{NS}}}notification/{{{DATA}}}x")
    assert x is not None, ET.tostring(iq)
    assert x.get("type") == "submit"
    return {f.get("var", ""): f.findtext(f"{{{DATA}}}value", "") for f in x}


def options(iq: ET.Element) -> dict[str, str] | None:
    x = iq.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish-options/{{{DATA}}}x")
    if x is None:
        return None
    return {f.get("var", ""): f.findtext(f"{{{DATA}}}value", "") for f in x}


def node_of(iq: ET.Element) -> str | None:
    publish = iq.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish")
    assert publish is not None
    return publish.get("node")


async def stored(h: Harness, user: str = "alice") -> list[dict[str, object]]:
    text = await h.server.storage.keyval.get("localhost", user, "push", "registrations")
    return json.loads(text) if text else []


async def errors(h: Harness) -> dict[object, object]:
    """Failed publishes in a row, per registered service."""
    return {r["jid"]: r["errors"] for r in await stored(h)}


async def chat(h: Harness, frm: FakeSession, to: str = ALICE, body: str = "hi") -> None:
    await h.send(frm, f"<message type='chat' to='{to}'><body>{body}</body></message>")


async def registered_then_offline(h: Harness, **kw: str) -> FakeSession:
    """Alice enables push from a session that then ends; Bob stays online."""
    alice = await h.online(f"{ALICE}/phone")
    await enable(h, alice, **kw)
    await alice.close()
    return await h.online("bob@localhost/b")


# -- discovery and enabling (§4.1, §5) ------------------------------------------------------


async def test_account_advertises_push_xep0357_4_1(h: Harness) -> None:
    alice = await h.online(f"{ALICE}/phone")
    reply = await h.iq(alice, f"<iq type='get' to='{ALICE}'><query xmlns='{DISCO_INFO}'/></iq>")
    assert NS in {f.get("var") for f in reply.iter(f"{{{DISCO_INFO}}}feature")}


async def test_enable_stores_jid_node_and_publish_options_xep0357_5(h: Harness) -> None:
    alice = await h.online(f"{ALICE}/phone")
    await enable(h, alice, secret="s1")
    assert await stored(h) == [
        {"jid": PUSH, "node": "node1", "options": [["secret", ["s1"]]], "errors": 0}
    ]


async def test_enabling_the_same_jid_and_node_replaces_its_options_xep0357_5(
    h: Harness,
) -> None:
    bob = await registered_then_offline(h, secret="old")
    alice = await h.online(f"{ALICE}/phone")
    await enable(h, alice, secret="new")  # same jid and node: the last request wins
    await enable(h, alice, node="node2")  # another node of the same service: a second one
    await alice.close()
    await chat(h, bob)
    got = await publish_answered(h, 2)
    by_node = {node_of(iq): options(iq) for iq in got}
    assert by_node == {"node1": {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "new"}, "node2": None}
    assert len(await stored(h)) == 2


async def test_enable_without_a_valid_jid_is_bad_request_xep0357_5(h: Harness) -> None:
    alice = await h.online(f"{ALICE}/phone")
    for xml in (
        f"<iq type='set'><enable xmlns='{NS}' node='n'/></iq>",
        f"<iq type='set'><enable xmlns='{NS}' jid='not a jid' node='n'/></iq>",
        f"<iq type='set'><disable xmlns='{NS}'/></iq>",
        # A form that is not publish-options.
        f"<iq type='set'><enable xmlns='{NS}' jid='{PUSH}' node='n'><x xmlns='{DATA}' "
        "type='submit'><field var='FORM_TYPE'><value>urn:other</value></field></x></enable></iq>",
    ):
        reply = await h.iq(alice, xml)
        assert error_condition(reply) == "bad-request", xml
    assert await stored(h) == []


async def test_enable_for_another_account_is_forbidden_xep0357_5(h: Harness) -> None:
    await h.account("bob")
    alice = await h.online(f"{ALICE}/phone")
    reply = await h.iq(
        alice, f"<iq type='set' to='bob@localhost'><enable xmlns='{NS}' jid='{PUSH}'/></iq>"
    )
    assert error_condition(reply) == "forbidden"
    assert await stored(h, "bob") == []


async def test_registrations_per_account_are_bounded_xep0357_5(h: Harness) -> None:
    alice = await h.online(f"{ALICE}/phone")
    for i in range(20):
        await enable(h, alice, node=f"n{i}")
    reply = await h.iq(alice, enable_xml(node="n20"))
    assert error_condition(reply) == "not-allowed"
    await enable(h, alice, node="n3", secret="x")  # replacing one is still allowed
    assert len(await stored(h)) == 20


# -- disabling (§6) -----------------------------------------------------------------------


async def test_disable_one_node_or_every_node_of_a_service_xep0357_6(h: Harness) -> None:
    alice = await h.online(f"{ALICE}/phone")
    await enable(h, alice, node="a")
    await enable(h, alice, node="b")
    await enable(h, alice, node="c")
    await enable(h, alice, jid=OTHER, node="a")
    await disable(h, alice, PUSH, "a")
    assert {(r["jid"], r["node"]) for r in await stored(h)} == {
        (PUSH, "b"),
        (PUSH, "c"),
        (OTHER, "a"),
    }
    await disable(h, alice, PUSH)  # no node: every node of that service
    assert [(r["jid"], r["node"]) for r in await stored(h)] == [(OTHER, "a")]
    await disable(h, alice, OTHER, "a")
    assert await stored(h) == []
    # §6: a service that is not enabled gets nothing.
    await alice.close()
    bob = await h.online("bob@localhost/b")
    await chat(h, bob)
    await no_publish(h)


# -- publishing (§7) ----------------------------------------------------------------------


async def test_message_to_offline_account_is_published_with_a_summary_xep0357_7(
    h: Harness,
) -> None:
    bob = await registered_then_offline(h, secret="eruio234vzxc2kla-91")
    await chat(h, bob, body="Wherefore art thou?")
    (iq,) = await publishes(h)
    assert iq.get("type") == "set"
    assert iq.get("from") == ALICE and iq.get("to") == PUSH
    assert node_of(iq) == "node1"
    assert summary(iq) == {
        "FORM_TYPE": "urn:xmpp:push:summary",
        "message-count": "1",
        "last-message-sender": "bob@localhost/b",
    }
    assert options(iq) == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "eruio234vzxc2kla-91"}
    assert "Wherefore" not in ET.tostring(iq, encoding="unicode")  # §9: no body by default
    await answer(h, iq)
    # Delivery went on: the message waits in offline storage.
    assert await h.server.storage.offline.count("localhost", "alice") == 1


async def test_count_grows_until_the_account_is_live_again_xep0357_7(h: Harness) -> None:
    bob = await registered_then_offline(h)
    await chat(h, bob, body="1")
    await chat(h, bob, body="2")
    await chat(h, bob, f"{ALICE}/gone", "3")
    got = await publish_answered(h, 3)
    assert sorted(summary(iq)["message-count"] for iq in got) == ["1", "2", "3"]
    alice = await h.online(f"{ALICE}/phone")  # binding starts the count again
    await alice.close()
    await chat(h, bob)
    (iq,) = await publish_answered(h)
    assert summary(iq)["message-count"] == "1"


async def test_message_while_every_session_is_hibernated_is_published_xep0357_7(
    h: Harness,
) -> None:
    alice = await h.online(f"{ALICE}/phone")
    bob = await h.online("bob@localhost/b")
    await enable(h, alice)
    await alice.hibernate()
    await chat(h, bob, body="one")
    await chat(h, bob, f"{ALICE}/phone", "two")
    got = await publish_answered(h, 2)
    assert sorted(summary(iq)["message-count"] for iq in got) == ["1", "2"]
    # Delivery was not held up: both wait for the session to resume.
    assert [m.findtext("body") for m in alice.held] == ["one", "two"]
    await alice.resume()  # resuming starts the count again
    await alice.hibernate()
    await chat(h, bob)
    (iq,) = await publish_answered(h)
    assert summary(iq)["message-count"] == "1"


async def test_no_publish_while_a_live_session_gets_the_message_xep0357_7(
    h: Harness,
) -> None:
    phone = await h.online(f"{ALICE}/phone")
    laptop = await h.online(f"{ALICE}/laptop")
    bob = await h.online("bob@localhost/b")
    await enable(h, phone)
    await chat(h, bob)
    await phone.hibernate()
    await chat(h, bob)  # the laptop is live and gets it too
    await chat(h, bob, f"{ALICE}/laptop", "x")
    await no_publish(h)
    assert len(find(laptop.take(), "message")) == 3
    # To the hibernated resource's full JID: that session cannot read it now.
    await chat(h, bob, f"{ALICE}/phone", "x")
    await publish_answered(h)


async def test_only_messages_worth_a_notification_are_published_xep0357_7(
    h: Harness,
) -> None:
    bob = await registered_then_offline(h)
    for xml in (
        "<message type='headline'><body>news</body></message>",
        "<message type='groupchat'><body>room</body></message>",
        "<message type='error'><body>x</body></message>",
        "<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<message><received xmlns='urn:xmpp:receipts' id='r1'/></message>",
    ):
        el = ET.fromstring(xml)
        el.set("to", ALICE)
        await h.send(bob, el)
    await no_publish(h)
    for omemo in ("eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2"):
        await h.send(
            bob,
            f"<message to='{ALICE}'><encrypted xmlns='{omemo}'><payload/></encrypted></message>",
        )
    await h.send(bob, f"<message to='{ALICE}'><body>normal with a body</body></message>")
    await publish_answered(h, 3)


async def test_body_and_sender_follow_the_configuration_xep0357_9(make: Make) -> None:
    h = await make(include_body=True, include_sender=False)
    bob = await registered_then_offline(h)
    await chat(h, bob, body="Wherefore art thou, Romeo?")
    (iq,) = await publish_answered(h)
    assert summary(iq) == {
        "FORM_TYPE": "urn:xmpp:push:summary",
        "message-count": "1",
        "last-message-body": "Wherefore art thou, Romeo?",
    }


# -- publish errors (§7.1) ----------------------------------------------------------------


async def test_registration_removed_after_max_errors_in_a_row_xep0357_7_1(h: Harness) -> None:
    bob = await registered_then_offline(h)
    tablet = await h.online(f"{ALICE}/tablet")
    await enable(h, tablet, jid=OTHER, node="a")  # a second, healthy service
    await tablet.close()
    for n in (1, 2, 3):  # push.max_errors = 3
        await chat(h, bob, body=str(n))
        for iq in await publishes(h, 2):
            await answer(h, iq, "item-not-found" if iq.get("to") == PUSH else None)
        await eventually(lambda: errors(h), {PUSH: n, OTHER: 0} if n < 3 else {OTHER: 0})
    await chat(h, bob)
    (iq,) = await publish_answered(h)  # the failing service gets nothing more
    assert iq.get("to") == OTHER


async def test_a_success_resets_the_error_count_xep0357_7_1(h: Harness) -> None:
    bob = await registered_then_offline(h)
    for error, count in (("bad-request", 1), ("bad-request", 2), (None, 0), ("gone", 1)):
        await chat(h, bob)
        (iq,) = await publishes(h)
        await answer(h, iq, error)
        await eventually(lambda: errors(h), {PUSH: count})
    await chat(h, bob)
    (iq,) = await publishes(h)
    await answer(h, iq, "bad-request")
    await eventually(lambda: errors(h), {PUSH: 2})  # still there: not 3 in a row


async def test_a_timeout_counts_as_an_error_xep0357_7_1(make: Make) -> None:
    h = await make(timeout=0.05, max_errors=2)
    bob = await registered_then_offline(h)
    await chat(h, bob)
    await publishes(h)  # never answered
    await eventually(lambda: errors(h), {PUSH: 1})
    await chat(h, bob)
    await publishes(h)
    await eventually(lambda: stored(h), [])


# -- storage ------------------------------------------------------------------------------


async def test_registrations_survive_a_restart_xep0357_5(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/push.db"
    first = await Harness.create(tmp_path, storage_url=url)
    try:
        alice = await first.online(f"{ALICE}/phone")
        await enable(first, alice, secret="kept")
    finally:
        await first.stop()
    second = await Harness.create(tmp_path, storage_url=url)
    try:
        bob = await second.online("bob@localhost/b")
        await chat(second, bob)  # Alice has no session: the registration comes from storage
        (iq,) = await publish_answered(second)
        assert options(iq) == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": "kept"}
    finally:
        await second.stop()


async def test_message_hooks_only_while_an_online_user_has_registrations(h: Harness) -> None:
    """Design (module docstring): other traffic costs nothing while nobody online uses push."""
    push = h.module("push")
    alice = await h.online(f"{ALICE}/phone")
    assert not push._message_hooks.active  # type: ignore[attr-defined]
    await enable(h, alice)
    assert push._message_hooks.active  # type: ignore[attr-defined]
    await alice.close()
    assert not push._message_hooks.active  # type: ignore[attr-defined]
    alice = await h.online(f"{ALICE}/phone")  # loaded again on binding
    assert push._message_hooks.active  # type: ignore[attr-defined]
    await disable(h, alice, PUSH)
    assert not push._message_hooks.active  # type: ignore[attr-defined]
