"""Entity capabilities (XEP-0115) on the in-process harness: the disco#info queries the
caps module sends to contacts' clients, and what it caches of their answers."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Callable

from descant.features.caps import Caps, CapsModule, ver_hash
from descant.jid import parse
from tests.harness import FakeSession, Harness, one

DISCO = "http://jabber.org/protocol/disco#info"
NODE = "http://code.google.com/p/exodus"
VER = "QgayPKawpkPSDYmwT/WM94uAlu0="  # of QUERY (XEP-0115 §5.2)
QUERY = f"""<query xmlns='{DISCO}' node='{NODE}#{VER}'>
  <identity category='client' type='pc' name='Exodus 0.9.1'/>
  <feature var='http://jabber.org/protocol/caps'/>
  <feature var='http://jabber.org/protocol/disco#info'/>
  <feature var='http://jabber.org/protocol/disco#items'/>
  <feature var='http://jabber.org/protocol/muc'/>
</query>"""
FEATURES = frozenset(
    "http://jabber.org/protocol/" + f for f in ("caps", "disco#info", "disco#items", "muc")
)
CAPS = Caps(NODE, VER, "sha-1")
ALICE = parse("alice@localhost")


def module(h: Harness) -> CapsModule:
    mod = h.module("caps")
    assert isinstance(mod, CapsModule)
    return mod


async def until(cond: Callable[[], object], turns: int = 100) -> None:
    """Let the event loop run until ``cond()`` is true (the module's query task is routed)."""
    for _ in range(turns):
        if cond():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never became true")


def disco_query(session: FakeSession) -> ET.Element:
    """The one disco#info get ``session`` received (and took)."""
    return one(session.take(), "iq", child=f"{{{DISCO}}}query", type="get")


async def answer(h: Harness, session: FakeSession, iq: ET.Element, query: str = QUERY) -> None:
    await h.send(
        session, f"<iq type='result' id='{iq.get('id')}' to='{iq.get('from')}'>{query}</iq>"
    )


def start(
    mod: CapsModule, session: FakeSession, caps: Caps = CAPS
) -> asyncio.Task[frozenset[str] | None]:
    return asyncio.create_task(mod.features(ALICE, session.jid, caps))


async def test_asks_the_entity_for_node_hash_ver_from_the_asker_xep0115_6_2(h: Harness) -> None:
    mod = module(h)
    bob = await h.online("bob@localhost/b")
    task = start(mod, bob)
    await until(lambda: bob.received)
    iq = disco_query(bob)
    assert iq.get("from") == "alice@localhost"
    assert iq.get("to") == "bob@localhost/b"
    query = iq.find(f"{{{DISCO}}}query")
    assert query is not None and query.get("node") == f"{NODE}#{VER}"
    await answer(h, bob, iq)
    assert await task == FEATURES


async def test_verified_answer_is_cached_for_every_entity_xep0115_5_4_step_3_8(
    h: Harness,
) -> None:
    mod = module(h)
    bob = await h.online("bob@localhost/b")
    carol = await h.online("carol@localhost/c")
    assert mod.known(CAPS) is None
    task = start(mod, bob)
    await until(lambda: bob.received)
    await answer(h, bob, disco_query(bob))
    assert await task == FEATURES
    assert mod.known(CAPS) == FEATURES
    # Carol advertises the same (hash, ver): answered from the cache, nothing asked.
    got = await asyncio.wait_for(mod.features(ALICE, carol.jid, CAPS), 1.0)
    assert got == FEATURES
    assert carol.received == [] and bob.received == []


async def test_unverified_answer_is_returned_not_cached_xep0115_5_4_step_3_9(
    h: Harness,
) -> None:
    mod = module(h)
    bob = await h.online("bob@localhost/b")
    carol = await h.online("carol@localhost/c")
    lying = QUERY.replace("protocol/muc", "protocol/muc#lie")
    task = start(mod, bob)
    await until(lambda: bob.received)
    await answer(h, bob, disco_query(bob), lying)
    got = await task
    assert got is not None and "http://jabber.org/protocol/muc#lie" in got
    assert mod.known(CAPS) is None
    # Carol's client with the same ver is asked itself, and its true answer is cached.
    task = start(mod, carol)
    await until(lambda: carol.received)
    await answer(h, carol, disco_query(carol))
    assert await task == FEATURES
    assert mod.known(CAPS) == FEATURES


async def test_concurrent_calls_share_one_query(h: Harness) -> None:
    mod = module(h)
    bob = await h.online("bob@localhost/b")
    carol = await h.online("carol@localhost/c")
    first, second = start(mod, bob), start(mod, carol)
    await until(lambda: bob.received)
    for _ in range(10):
        await asyncio.sleep(0)
    iq = disco_query(bob)
    assert carol.received == []
    await answer(h, bob, iq)
    assert await first == FEATURES
    assert await second == FEATURES
    assert carol.received == []


async def test_concurrent_call_for_another_entity_does_not_take_an_unverified_answer(
    h: Harness,
) -> None:
    """§5.4: an answer that does not verify is bob's alone, even for a call waiting on it."""
    mod = module(h)
    bob = await h.online("bob@localhost/b")
    carol = await h.online("carol@localhost/c")
    first, second = start(mod, bob), start(mod, carol)
    await until(lambda: bob.received)
    await answer(h, bob, disco_query(bob), QUERY.replace("protocol/muc", "protocol/lie"))
    got = await first
    assert got is not None and "http://jabber.org/protocol/lie" in got
    await until(lambda: carol.received)
    await answer(h, carol, disco_query(carol))
    assert await second == FEATURES


async def test_error_answer_gives_none(h: Harness) -> None:
    mod = module(h)
    bob = await h.online("bob@localhost/b")
    task = start(mod, bob)
    await until(lambda: bob.received)
    iq = disco_query(bob)
    await h.send(
        bob,
        f"<iq type='error' id='{iq.get('id')}' to='alice@localhost'>"
        f"<query xmlns='{DISCO}' node='{NODE}#{VER}'/><error type='cancel'>"
        "<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>",
    )
    assert await task is None
    assert mod.known(CAPS) is None


async def test_timeout_gives_none(h: Harness) -> None:
    mod = module(h)
    mod.timeout = 0.05
    bob = await h.online("bob@localhost/b")
    assert await asyncio.wait_for(mod.features(ALICE, bob.jid, CAPS), 2.0) is None
    disco_query(bob)  # it was asked, and never answered
    assert mod.known(CAPS) is None


async def test_an_answer_from_someone_else_does_not_count(h: Harness) -> None:
    mod = module(h)
    mod.timeout = 0.2
    bob = await h.online("bob@localhost/b")
    mallory = await h.online("mallory@localhost/m")
    task = start(mod, bob)
    await until(lambda: bob.received)
    await answer(h, mallory, disco_query(bob))
    assert await task is None
    assert mod.known(CAPS) is None


async def test_legacy_caps_and_unknown_hash_are_asked_but_never_cached_xep0115_5_4(
    h: Harness,
) -> None:
    mod = module(h)
    bob = await h.online("bob@localhost/b")
    for caps in (Caps(NODE, "0.9", ""), Caps(NODE, VER, "sha-3000")):
        for _ in range(2):  # asked each time: nothing was cached
            task = start(mod, bob, caps)
            await until(lambda: bob.received)
            await answer(h, bob, disco_query(bob))
            assert await task == FEATURES
            assert mod.known(caps) is None


async def test_too_many_queries_in_flight_gives_none(h: Harness) -> None:
    mod = module(h)
    mod.max_pending = 1
    bob = await h.online("bob@localhost/b")
    task = start(mod, bob)
    await until(lambda: bob.received)
    other = Caps(NODE, "other-ver=", "sha-1")
    assert await asyncio.wait_for(mod.features(ALICE, bob.jid, other), 1.0) is None
    await answer(h, bob, disco_query(bob))
    assert await task == FEATURES


async def test_cache_is_a_bounded_lru(h: Harness) -> None:
    mod = module(h)
    mod.max_entries = 2
    bob = await h.online("bob@localhost/b")
    entries: list[Caps] = []
    for name in ("one", "two", "three"):
        query = QUERY.replace("protocol/muc", f"protocol/{name}")
        ver = ver_hash(ET.fromstring(query), "sha-256")
        assert ver is not None
        caps = Caps(NODE, ver, "sha-256")
        entries.append(caps)
        task = start(mod, bob, caps)
        await until(lambda: bob.received)
        await answer(h, bob, disco_query(bob), query)
        assert await task is not None
        assert mod.known(caps) is not None
        if name == "two":
            assert mod.known(entries[0]) is not None  # "one" is now the most recently used
    one_, two, three = entries
    assert mod.known(two) is None  # least recently used: evicted
    assert mod.known(one_) is not None and mod.known(three) is not None
