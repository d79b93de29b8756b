"""PEP (XEP-0163) and the XEP-0060 core under it, on the in-process harness."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

from descant.features.caps import ver_hash
from descant.jid import parse as parse_jid
from tests.features.conftest import set_roster
from tests.harness import FakeSession, Harness, dump, error_condition

PUBSUB = "http://jabber.org/protocol/pubsub"
OWNER = PUBSUB + "#owner"
EVENT = PUBSUB + "#event"
ERRORS = PUBSUB + "#errors"
DISCO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
TUNE = "http://jabber.org/protocol/tune"


def publish(node: str, item_id: str | None = None, payload: str = "") -> str:
    payload = payload or f"<tune xmlns='{TUNE}'><title>Song</title></tune>"
    id_attr = f" id='{item_id}'" if item_id else ""
    return (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{node}'>"
        f"<item{id_attr}>{payload}</item></publish></pubsub></iq>"
    )


def options_form(**fields: str) -> str:
    out = [
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{PUBSUB}#publish-options</value></field>"
    ]
    out += [f"<field var='pubsub#{k}'><value>{v}</value></field>" for k, v in fields.items()]
    return "".join(out) + "</x>"


def app_condition(reply: ET.Element) -> str | None:
    err = reply.find("error")
    if err is None:
        return None
    for child in err:
        if child.tag.startswith(f"{{{ERRORS}}}"):
            return child.tag.rpartition("}")[2]
    return None


def events(session: FakeSession) -> list[ET.Element]:
    return [m for m in session.take() if m.find(f"{{{EVENT}}}event") is not None]


async def friends(h: Harness, a: str, b: str) -> None:
    await set_roster(h, a, f"{b}@localhost", "both")
    await set_roster(h, b, f"{a}@localhost", "both")


async def with_caps(h: Harness, full_jid: str, notify: list[str]) -> FakeSession:
    """Bind and send presence with caps advertising ``<node>+notify``; answer the
    disco#info query the server makes for an unknown hash (XEP-0115)."""
    features = [DISCO] + [f"{n}+notify" for n in notify]
    query = ET.Element(f"{{{DISCO}}}query")
    ET.SubElement(query, f"{{{DISCO}}}identity", {"category": "client", "type": "pc"})
    for f in features:
        ET.SubElement(query, f"{{{DISCO}}}feature", {"var": f})
    ver = ver_hash(query, "sha-1")
    session = await h.bind(full_jid)
    await h.send(
        session,
        f"<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
        f"node='https://test' ver='{ver}'/></presence>",
    )
    await answer_disco(h, session, query)
    return session


async def answer_disco(h: Harness, session: FakeSession, query: ET.Element) -> None:
    for _ in range(20):
        await asyncio.sleep(0)
        for got in list(session.received):
            if (
                got.tag == "iq"
                and got.get("type") == "get"
                and got.find(f"{{{DISCO}}}query") is not None
            ):
                session.received.remove(got)
                reply = ET.Element(
                    "iq", {"type": "result", "id": got.get("id", ""), "to": got.get("from", "")}
                )
                answer = ET.fromstring(ET.tostring(query))
                answer.set("node", got.find(f"{{{DISCO}}}query").get("node", ""))  # type: ignore[union-attr]
                reply.append(answer)
                await h.send(session, reply)
    for _ in range(20):
        await asyncio.sleep(0)


async def test_publish_autocreates_and_returns_generated_id_xep0060_7_1(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    reply = await h.iq(alice, publish(TUNE))
    assert reply.get("type") == "result", dump([reply])
    item = reply.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}publish/{{{PUBSUB}}}item")
    assert item is not None and item.get("id")
    got = await h.iq(
        alice, f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/></pubsub></iq>"
    )
    ids = [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")]
    assert ids == [item.get("id")]


async def test_contact_with_notify_gets_event_others_do_not_xep0163_4_3(h: Harness) -> None:
    await friends(h, "alice", "bob")
    await friends(h, "alice", "carol")
    alice = await h.online("alice@localhost/a")
    bob = await with_caps(h, "bob@localhost/phone", [TUNE])
    carol = await with_caps(h, "carol@localhost/pc", ["urn:other"])
    dave = await with_caps(h, "dave@localhost/pc", [TUNE])  # not a contact
    for s in (bob, carol, dave):
        s.take()
    await h.iq(alice, publish(TUNE, "current"))
    got = events(bob)
    assert len(got) == 1, dump(got)
    assert got[0].get("from") == "alice@localhost"
    item = got[0].find(f"{{{EVENT}}}event/{{{EVENT}}}items/{{{EVENT}}}item")
    assert item is not None and item.get("id") == "current"
    assert item.find(f"{{{TUNE}}}tune") is not None
    assert events(carol) == [] and events(dave) == []


async def test_last_item_sent_when_contact_comes_online_xep0163_4_3_4(h: Harness) -> None:
    await friends(h, "alice", "bob")
    alice = await h.online("alice@localhost/a")
    await h.iq(alice, publish(TUNE, "first"))
    await h.iq(alice, publish(TUNE, "second"))
    bob = await with_caps(h, "bob@localhost/phone", [TUNE])
    got = events(bob)
    assert [m.find(f".//{{{EVENT}}}item").get("id") for m in got] == ["second"]  # type: ignore[union-attr]
    assert got[0].find("{urn:xmpp:delay}delay") is not None


async def test_own_resources_get_own_events_xep0163_4_3(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    other = await with_caps(h, "alice@localhost/b", [TUNE])
    other.take()
    await h.iq(alice, publish(TUNE, "x"))
    assert len(events(other)) == 1


async def test_presence_access_denies_non_contacts_xep0060_6_5_3(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.iq(alice, publish(TUNE, "x"))
    eve = await h.online("eve@localhost/e")
    reply = await h.iq(
        eve,
        f"<iq type='get' to='alice@localhost'><pubsub xmlns='{PUBSUB}'><items node='{TUNE}'/>"
        "</pubsub></iq>",
    )
    assert error_condition(reply) == "not-authorized"
    assert app_condition(reply) == "presence-subscription-required"


async def test_open_node_readable_by_anyone_and_missing_node(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    q = (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='open'><item id='1'>"
        "<x xmlns='urn:x'/></item></publish>"
    )
    q += f"<publish-options>{options_form(access_model='open')}</publish-options></pubsub></iq>"
    assert (await h.iq(alice, q)).get("type") == "result"
    eve = await h.online("eve@localhost/e")
    ok = await h.iq(
        eve,
        f"<iq type='get' to='alice@localhost'><pubsub xmlns='{PUBSUB}'><items node='open'/>"
        "</pubsub></iq>",
    )
    assert ok.get("type") == "result"
    missing = await h.iq(
        eve,
        f"<iq type='get' to='alice@localhost'><pubsub xmlns='{PUBSUB}'><items node='nope'/>"
        "</pubsub></iq>",
    )
    assert error_condition(missing) == "item-not-found"


async def test_publish_options_conflict_is_precondition_not_met_xep0223(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.iq(alice, publish("n", "1"))  # default: presence access
    q = publish("n", "2").replace(
        "</pubsub>",
        f"<publish-options>{options_form(access_model='whitelist')}</publish-options></pubsub>",
    )
    reply = await h.iq(alice, q)
    assert error_condition(reply) == "conflict"
    assert app_condition(reply) == "precondition-not-met"


async def test_publish_to_another_account_is_forbidden(h: Harness) -> None:
    await h.account("bob")
    alice = await h.online("alice@localhost/a")
    reply = await h.iq(
        alice, publish(TUNE).replace("<iq type='set'>", "<iq type='set' to='bob@localhost'>")
    )
    assert error_condition(reply) == "forbidden"


async def test_max_items_keeps_newest_and_retract_notifies(h: Harness) -> None:
    await friends(h, "alice", "bob")
    alice = await h.online("alice@localhost/a")
    q = publish("multi", "1").replace(
        "</pubsub>", f"<publish-options>{options_form(max_items='2')}</publish-options></pubsub>"
    )
    assert (await h.iq(alice, q)).get("type") == "result"
    for i in ("2", "3"):
        await h.iq(alice, publish("multi", i))
    got = await h.iq(
        alice, f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='multi'/></pubsub></iq>"
    )
    assert [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")] == ["3", "2"]
    bob = await with_caps(h, "bob@localhost/phone", ["multi"])
    bob.take()
    r = await h.iq(
        alice,
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='multi' notify='1'>"
        "<item id='3'/></retract></pubsub></iq>",
    )
    assert r.get("type") == "result"
    got_ev = events(bob)
    assert got_ev and got_ev[0].find(f".//{{{EVENT}}}retract").get("id") == "3"  # type: ignore[union-attr]
    again = await h.iq(
        alice,
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='multi'><item id='3'/>"
        "</retract></pubsub></iq>",
    )
    assert error_condition(again) == "item-not-found"


async def test_configure_get_set_and_bad_value(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.iq(alice, publish("c", "1"))
    form = await h.iq(
        alice, f"<iq type='get'><pubsub xmlns='{OWNER}'><configure node='c'/></pubsub></iq>"
    )
    assert form.get("type") == "result"
    values = {
        f.get("var"): f.findtext("{jabber:x:data}value") for f in form.iter("{jabber:x:data}field")
    }
    assert values["pubsub#access_model"] == "presence"
    bad = (
        f"<iq type='set'><pubsub xmlns='{OWNER}'><configure node='c'>"
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>"
        f"{PUBSUB}#node_config</value></field><field var='pubsub#access_model'>"
        "<value>bogus</value></field>"
        "</x></configure></pubsub></iq>"
    )
    assert error_condition(await h.iq(alice, bad)) == "not-acceptable"
    good = bad.replace("bogus", "open")
    assert (await h.iq(alice, good)).get("type") == "result"
    form = await h.iq(
        alice, f"<iq type='get'><pubsub xmlns='{OWNER}'><configure node='c'/></pubsub></iq>"
    )
    values = {
        f.get("var"): f.findtext("{jabber:x:data}value") for f in form.iter("{jabber:x:data}field")
    }
    assert values["pubsub#access_model"] == "open"


async def test_delete_and_purge(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.iq(alice, publish("d", "1"))
    assert (
        await h.iq(alice, f"<iq type='set'><pubsub xmlns='{OWNER}'><purge node='d'/></pubsub></iq>")
    ).get("type") == "result"
    got = await h.iq(
        alice, f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='d'/></pubsub></iq>"
    )
    assert list(got.iter(f"{{{PUBSUB}}}item")) == []
    assert (
        await h.iq(
            alice, f"<iq type='set'><pubsub xmlns='{OWNER}'><delete node='d'/></pubsub></iq>"
        )
    ).get("type") == "result"
    gone = await h.iq(
        alice, f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='d'/></pubsub></iq>"
    )
    assert error_condition(gone) == "item-not-found"


async def test_bad_publish_requests(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    no_item = f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='n'/></pubsub></iq>"
    r = await h.iq(alice, no_item)
    assert (error_condition(r), app_condition(r)) == ("bad-request", "item-required")
    two = (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='n'><item><a xmlns='x'/>"
        "<b xmlns='x'/></item></publish></pubsub></iq>"
    )
    r = await h.iq(alice, two)
    assert (error_condition(r), app_condition(r)) == ("bad-request", "invalid-payload")
    no_node = (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish><item><a xmlns='x'/></item>"
        "</publish></pubsub></iq>"
    )
    r = await h.iq(alice, no_node)
    assert (error_condition(r), app_condition(r)) == ("bad-request", "nodeid-required")
    big = publish("n", "1", f"<a xmlns='x'>{'z' * 70000}</a>")
    r = await h.iq(alice, big)
    assert (error_condition(r), app_condition(r)) == ("not-acceptable", "payload-too-big")


async def test_account_disco_lists_pep_identity_and_nodes(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.iq(alice, publish(TUNE, "1"))
    info = await h.iq(alice, f"<iq type='get' to='alice@localhost'><query xmlns='{DISCO}'/></iq>")
    idents = {(i.get("category"), i.get("type")) for i in info.iter(f"{{{DISCO}}}identity")}
    assert ("pubsub", "pep") in idents
    feats = {f.get("var") for f in info.iter(f"{{{DISCO}}}feature")}
    assert f"{PUBSUB}#publish-options" in feats
    items = await h.iq(
        alice, f"<iq type='get' to='alice@localhost'><query xmlns='{DISCO_ITEMS}'/></iq>"
    )
    assert [i.get("node") for i in items.iter(f"{{{DISCO_ITEMS}}}item")] == [TUNE]


async def test_pubsub_service_nodes_and_subscriptions_xep0060(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    svc = "pubsub.localhost"
    created = await h.iq(
        alice,
        f"<iq type='set' to='{svc}'><pubsub xmlns='{PUBSUB}'><create node='news'/></pubsub></iq>",
    )
    assert created.get("type") == "result", dump([created])
    sub = await h.iq(
        bob,
        f"<iq type='set' to='{svc}'><pubsub xmlns='{PUBSUB}'>"
        "<subscribe node='news' jid='bob@localhost/b'/></pubsub></iq>",
    )
    assert sub.get("type") == "result", dump([sub])
    r = await h.iq(
        alice, publish("news", "n1").replace("<iq type='set'>", f"<iq type='set' to='{svc}'>")
    )
    assert r.get("type") == "result"
    got = events(bob)
    assert len(got) == 1 and got[0].get("from") == svc
    forbidden = await h.iq(
        bob, publish("news", "n2").replace("<iq type='set'>", f"<iq type='set' to='{svc}'>")
    )
    assert error_condition(forbidden) == "forbidden"
    items = await h.iq(bob, f"<iq type='get' to='{svc}'><query xmlns='{DISCO_ITEMS}'/></iq>")
    assert [i.get("node") for i in items.iter(f"{{{DISCO_ITEMS}}}item")] == ["news"]


async def test_presence_update_does_not_resend_last_item_but_return_does(h: Harness) -> None:
    """XEP-0163 §4.3.4: the last item goes to a resource that newly shows interest."""
    await friends(h, "alice", "bob")
    alice = await h.online("alice@localhost/a")
    await h.iq(alice, publish(TUNE, "one"))
    bob = await with_caps(h, "bob@localhost/phone", [TUNE])
    assert len(events(bob)) == 1
    caps = bob.presence.find("{http://jabber.org/protocol/caps}c")  # type: ignore[union-attr]
    assert caps is not None
    away = f"<presence><show>away</show>{ET.tostring(caps).decode()}</presence>"
    await h.send(bob, away)
    assert events(bob) == []  # an update, not new interest
    await h.send(bob, "<presence type='unavailable'/>")
    await h.send(bob, away)
    assert len(events(bob)) == 1  # back online: the last item again


async def test_interest_is_bounded_per_account(h: Harness) -> None:
    pep = h.module("pep")
    pep.max_interested = 2  # type: ignore[attr-defined]
    await h.online("alice@localhost/a")
    for name in ("bob", "carol", "dave"):
        await friends(h, "alice", name)
        await with_caps(h, f"{name}@localhost/x", [TUNE])
    assert len(pep.interest["alice"]) == 2  # type: ignore[attr-defined]


async def test_many_resources_with_one_unknown_hash_share_one_query_xep0115(h: Harness) -> None:
    """A login rush: 50 contacts show the same unknown caps before it is learnt. One
    disco#info query and one background task serve them all; every one is notified."""
    pep = h.module("pep")
    pep.tasks.limit = 3  # one task per hash, not per presence
    alice = await h.online("alice@localhost/a")
    query = ET.Element(f"{{{DISCO}}}query")
    ET.SubElement(query, f"{{{DISCO}}}identity", {"category": "client", "type": "pc"})
    for var in (DISCO, f"{TUNE}+notify"):
        ET.SubElement(query, f"{{{DISCO}}}feature", {"var": var})
    caps = (
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
        f"node='https://test' ver='{ver_hash(query, 'sha-1')}'/></presence>"
    )
    names = [f"c{i}" for i in range(50)]
    sessions = []
    for name in names:
        await friends(h, "alice", name)
        session = await h.bind(f"{name}@localhost/r")
        await h.send(session, caps)
        sessions.append(session)
    for _ in range(10):
        await asyncio.sleep(0)
    asked = [s for s in sessions for got in s.received if got.find(f"{{{DISCO}}}query") is not None]
    assert len(asked) == 1
    await answer_disco(h, asked[0], query)
    for s in sessions:
        s.take()
    await h.iq(alice, publish(TUNE, "now"))
    assert all(len(events(s)) == 1 for s in sessions)


# -- access kept true after the fact (XEP-0163 §7.1, XEP-0191) ---------------------------


def subscribe(node: str, jid: str, to: str = "alice@localhost") -> str:
    return (
        f"<iq type='set' to='{to}'><pubsub xmlns='{PUBSUB}'>"
        f"<subscribe node='{node}' jid='{jid}'/></pubsub></iq>"
    )


async def test_subscriber_who_lost_access_gets_nothing_xep0163_7_1(h: Harness) -> None:
    await friends(h, "alice", "bob")
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    await h.iq(alice, publish("geo", "1"))
    assert (await h.iq(bob, subscribe("geo", "bob@localhost/b"))).get("type") == "result"
    bob.take()
    await h.iq(alice, publish("geo", "2"))
    assert len(events(bob)) == 1
    await set_roster(h, "alice", "bob@localhost", "none")  # alice stops sharing presence
    await h.iq(alice, publish("geo", "3"))
    assert events(bob) == []


async def test_blocked_contact_gets_no_pep_xep0191(h: Harness) -> None:
    await friends(h, "alice", "bob")
    alice = await h.online("alice@localhost/a")
    bob = await with_caps(h, "bob@localhost/phone", [TUNE])
    await h.iq(alice, publish(TUNE, "1"))
    assert len(events(bob)) == 1
    block = (
        "<iq type='set'><block xmlns='urn:xmpp:blocking'><item jid='bob@localhost'/></block></iq>"
    )
    assert (await h.iq(alice, block)).get("type") == "result"
    bob.take()
    await h.iq(alice, publish(TUNE, "2"))
    assert events(bob) == []
    items = (
        f"<iq type='get' to='alice@localhost'><pubsub xmlns='{PUBSUB}'>"
        f"<items node='{TUNE}'/></pubsub></iq>"
    )
    assert error_condition(await h.iq(bob, items)) == "service-unavailable"


async def test_roster_rename_does_not_resend_last_items(h: Harness) -> None:
    await friends(h, "alice", "bob")
    alice = await h.online("alice@localhost/a")
    await h.iq(alice, publish(TUNE, "1"))
    bob = await with_caps(h, "bob@localhost/phone", [TUNE])
    assert len(events(bob)) == 1
    rename = (
        "<iq type='set'><query xmlns='jabber:iq:roster'>"
        "<item jid='bob@localhost' name='Bobby'/></query></iq>"
    )
    assert (await h.iq(alice, rename)).get("type") == "result"
    for _ in range(5):
        await asyncio.sleep(0)
    assert events(bob) == []


async def test_retract_of_several_items_is_all_or_nothing(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    opts = f"<publish-options>{options_form(max_items='5')}</publish-options></pubsub>"
    await h.iq(alice, publish("m", "1").replace("</pubsub>", opts))
    await h.iq(alice, publish("m", "2"))
    retract = (
        f"<iq type='set'><pubsub xmlns='{PUBSUB}'><retract node='m'>"
        "<item id='1'/><item id='missing'/></retract></pubsub></iq>"
    )
    assert error_condition(await h.iq(alice, retract)) == "item-not-found"
    got = await h.iq(
        alice, f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='m'/></pubsub></iq>"
    )
    assert sorted(i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")) == ["1", "2"]


async def test_outcast_loses_full_jid_subscriptions_and_subscriptions_are_bounded(
    h: Harness,
) -> None:
    svc = "pubsub.localhost"
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    create = (
        f"<iq type='set' to='{svc}'><pubsub xmlns='{PUBSUB}'><create node='feed'/></pubsub></iq>"
    )
    assert (await h.iq(alice, create)).get("type") == "result"
    for i in range(10):
        r = await h.iq(bob, subscribe("feed", f"bob@localhost/r{i}", to=svc))
        assert r.get("type") == "result"
    too_many = await h.iq(bob, subscribe("feed", "bob@localhost/r10", to=svc))
    assert error_condition(too_many) == "policy-violation"
    assert app_condition(too_many) == "too-many-subscriptions"
    ban = (
        f"<iq type='set' to='{svc}'><pubsub xmlns='{OWNER}'><affiliations node='feed'>"
        "<affiliation jid='bob@localhost' affiliation='outcast'/></affiliations></pubsub></iq>"
    )
    assert (await h.iq(alice, ban)).get("type") == "result"
    subs = await h.iq(
        alice,
        f"<iq type='get' to='{svc}'><pubsub xmlns='{OWNER}'>"
        "<subscriptions node='feed'/></pubsub></iq>",
    )
    assert list(subs.iter(f"{{{OWNER}}}subscription")) == []


async def test_a_node_loaded_twice_at_once_keeps_one_state(tmp_path: object) -> None:
    """Two tasks miss the cache together; the second load must not replace the node
    the first one already changed (its last item)."""
    from descant.features.pubsub.config import NodeConfig
    from descant.features.pubsub.service import Service
    from descant.jid import parse
    from descant.storage.memory import MemoryStorage

    storage = MemoryStorage()
    await storage.open()

    class Slow:
        def __getattr__(self, name: str) -> object:
            method = getattr(storage.pubsub, name)

            async def slow(*args: object, **kwargs: object) -> object:
                await asyncio.sleep(0)
                return await method(*args, **kwargs)

            return slow

    async def no_roster(owner: str, requester: str) -> None:
        return None

    service = Service(
        "alice@localhost", Slow(), NodeConfig(), 1000, no_roster, owner="alice@localhost"
    )  # type: ignore[arg-type]
    await storage.pubsub.create_node("alice@localhost", "n", "{}")
    first, second = await asyncio.gather(service.node("n"), service.node("n"))
    assert first is second
    await service.publish(first, parse("alice@localhost"), "new", ET.Element("{urn:x}x"))  # type: ignore[arg-type]
    again = await service.node("n")
    assert again is first and again.last is not None and again.last.id == "new"


async def test_cached_nodes_are_bounded_per_service(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    service = h.module("pep").service("alice")  # type: ignore[attr-defined]
    service.max_cached = 2
    for name in ("n1", "n2", "n3"):
        await h.iq(alice, publish(name, "1"))
    assert list(service._nodes) == ["n2", "n3"]
    got = await h.iq(
        alice, f"<iq type='get'><pubsub xmlns='{PUBSUB}'><items node='n1'/></pubsub></iq>"
    )
    assert [i.get("id") for i in got.iter(f"{{{PUBSUB}}}item")] == ["1"]  # read back from storage


async def test_a_node_dropped_from_the_cache_while_in_use_stays_one_object() -> None:
    from descant.features.pubsub.config import NodeConfig
    from descant.features.pubsub.service import Service
    from descant.storage.memory import MemoryStorage

    storage = MemoryStorage()
    await storage.open()

    async def no_roster(owner: str, requester: str) -> None:
        return None

    service = Service(
        "a@localhost", storage.pubsub, NodeConfig(), 10, no_roster, owner="a@localhost"
    )
    service.max_cached = 1
    for name in ("x", "y"):
        await storage.pubsub.create_node("a@localhost", name, "{}")
    held = await service.node("x")
    await service.node("y")  # x leaves the LRU, but a task still holds it
    assert await service.node("x") is held


async def test_a_newer_hash_wins_over_one_still_being_learnt_xep0115(h: Harness) -> None:
    """A resource shows hash H1 (being learnt: its client is slow to answer), then H2,
    already known; H1's late answer must not replace what H2 said."""
    from descant.features.caps import Caps

    await friends(h, "alice", "bob")
    await h.online("alice@localhost/a")
    pep = h.module("pep")
    caps = pep.caps  # type: ignore[attr-defined]
    h1, h2 = Caps("n", "h1", "sha-1"), Caps("n", "h2", "sha-1")
    caps._remember(("sha-1", "h2"), frozenset({f"{TUNE}+notify"}))
    answer: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()

    async def slow(asker: object, jid: object, c: Caps) -> frozenset[str]:
        assert c == h1
        return await answer

    caps.features = slow
    bob = parse_jid("bob@localhost/b")
    await pep._caps_seen("alice", bob, h1)  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    await pep._caps_seen("alice", bob, h2)  # type: ignore[attr-defined]
    assert pep.interest["alice"][bob] == {TUNE}  # type: ignore[attr-defined]
    answer.set_result(frozenset())  # H1 turns out to want nothing
    for _ in range(10):
        await asyncio.sleep(0)
    assert pep.interest["alice"][bob] == {TUNE}  # type: ignore[attr-defined]
