"""Delivery rules for messages and iqs (RFC 6121 §8.5, RFC 6120 §8), service discovery
of accounts (XEP-0030 §3), offline storage limits (XEP-0160)."""

from __future__ import annotations

import dataclasses

from descant.config import LimitsConfig
from tests.harness import Harness, error_condition, find, one

DISCO_INFO = "http://jabber.org/protocol/disco#info"
DISCO_ITEMS = "http://jabber.org/protocol/disco#items"


async def test_groupchat_to_a_user_bounces_rfc6121_8_5_2_1_1(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    for to in ("bob@localhost", "bob@localhost/gone"):
        await h.send(alice, f"<message type='groupchat' to='{to}'><body>x</body></message>")
        err = one(alice.take(), "message", type="error")
        assert error_condition(err) == "service-unavailable"
    assert not bob.take()
    # To an online full JID it is delivered: that is how rooms reach occupants.
    await h.send(alice, "<message type='groupchat' to='bob@localhost/b'><body>x</body></message>")
    one(bob.take(), "message", type="groupchat")


async def test_headline_to_offline_resource_is_dropped_rfc6121_8_5_3_2_1(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    await h.send(alice, "<message type='headline' to='bob@localhost/gone'><body>x</body></message>")
    assert not alice.take()
    assert not bob.take()


async def test_headline_to_bare_goes_to_all_non_negative_rfc6121_8_5_2_1_1(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    b1 = await h.online("bob@localhost/one", "<presence><priority>1</priority></presence>")
    b2 = await h.online("bob@localhost/two", "<presence><priority>9</priority></presence>")
    neg = await h.online("bob@localhost/neg", "<presence><priority>-5</priority></presence>")
    await h.send(alice, "<message type='headline' to='bob@localhost'><body>news</body></message>")
    assert find(b1.take(), "message", type="headline")
    assert find(b2.take(), "message", type="headline")
    assert not find(neg.take(), "message")


async def test_error_message_to_bare_is_ignored_rfc6121_8_5_2_1_1(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    await h.send(alice, "<message type='error' to='bob@localhost'/>")
    assert not bob.take()
    assert not alice.take()


async def test_ties_in_priority_all_receive_chat_rfc6121_8_5_2_1_1(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    b1 = await h.online("bob@localhost/one", "<presence><priority>3</priority></presence>")
    b2 = await h.online("bob@localhost/two", "<presence><priority>3</priority></presence>")
    await h.send(alice, "<message type='chat' to='bob@localhost'><body>hi</body></message>")
    assert find(b1.take(), "message", type="chat")
    assert find(b2.take(), "message", type="chat")


async def test_bound_but_unavailable_session_gets_no_bare_messages_rfc6121_8_5_2(
    h: Harness,
) -> None:
    alice = await h.online("alice@localhost/a")
    bob = await h.bind("bob@localhost/quiet")  # no initial presence
    await h.send(alice, "<message type='chat' to='bob@localhost'><body>hi</body></message>")
    assert not find(bob.take(), "message")
    assert await h.server.storage.offline.count("localhost", "bob") == 1


async def test_iq_to_offline_full_jid_is_service_unavailable_rfc6121_8_5_3_2_2(
    h: Harness,
) -> None:
    alice = await h.online("alice@localhost/a")
    await h.account("bob")
    reply = await h.iq(alice, "<iq type='get' to='bob@localhost/gone'><q xmlns='urn:x'/></iq>")
    assert reply.get("type") == "error"
    assert error_condition(reply) == "service-unavailable"
    assert reply.get("from") == "bob@localhost/gone"


async def test_iq_to_online_full_jid_is_delivered_and_answer_routed_back(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    await h.send(alice, "<iq type='get' id='v1' to='bob@localhost/b'><q xmlns='urn:x'/></iq>")
    request = one(bob.take(), "iq", type="get", id="v1")
    assert request.get("from") == "alice@localhost/a"
    await h.send(bob, "<iq type='result' id='v1' to='alice@localhost/a'/>")
    one(alice.take(), "iq", type="result", id="v1", from_="bob@localhost/b")


async def test_offline_storage_limit_bounces_xep0160(tmp_path: object) -> None:
    limits = dataclasses.replace(LimitsConfig(), offline_max_messages=2)
    h = await Harness.create(tmp_path, limits=limits)  # type: ignore[arg-type]
    try:
        alice = await h.online("alice@localhost/a")
        await h.account("bob")
        for i in range(3):
            await h.send(
                alice, f"<message type='chat' to='bob@localhost'><body>{i}</body></message>"
            )
        errors = find(alice.take(), "message", type="error")
        assert len(errors) == 1
        assert error_condition(errors[0]) == "service-unavailable"
        assert await h.server.storage.offline.count("localhost", "bob") == 2
    finally:
        await h.stop()


async def test_offline_messages_wait_for_non_negative_priority_xep0160(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    await h.account("bob")
    await h.send(alice, "<message type='chat' to='bob@localhost'><body>later</body></message>")
    neg = await h.bind("bob@localhost/neg")
    await h.send(neg, "<presence><priority>-1</priority></presence>")
    assert not find(neg.take(), "message")
    pos = await h.bind("bob@localhost/pos")
    await h.send(pos, "<presence/>")
    msg = one(pos.take(), "message")
    delay = msg.find("{urn:xmpp:delay}delay")
    assert delay is not None and delay.get("from") == "localhost"
    assert delay.get("stamp", "").endswith("Z")


async def test_disco_info_on_server_lists_module_features_xep0030(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    reply = await h.iq(alice, f"<iq type='get' to='localhost'><query xmlns='{DISCO_INFO}'/></iq>")
    query = reply.find(f"{{{DISCO_INFO}}}query")
    assert query is not None
    features = {f.get("var") for f in query.findall(f"{{{DISCO_INFO}}}feature")}
    assert {DISCO_INFO, DISCO_ITEMS, "urn:xmpp:ping", "jabber:iq:version"} <= features
    identity = query.find(f"{{{DISCO_INFO}}}identity")
    assert identity is not None and identity.get("category") == "server"


async def test_disco_unknown_node_is_item_not_found_xep0030(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    for ns in (DISCO_INFO, DISCO_ITEMS):
        reply = await h.iq(
            alice, f"<iq type='get' to='localhost'><query xmlns='{ns}' node='nope'/></iq>"
        )
        assert error_condition(reply) == "item-not-found"


async def test_disco_items_on_server_lists_services_xep0030(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    reply = await h.iq(alice, f"<iq type='get' to='localhost'><query xmlns='{DISCO_ITEMS}'/></iq>")
    assert reply.get("type") == "result"
    assert reply.find(f"{{{DISCO_ITEMS}}}query") is not None


async def test_disco_on_own_account_and_subscribed_contact_xep0030_3_1(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    for to in ("", " to='alice@localhost'"):
        reply = await h.iq(alice, f"<iq type='get'{to}><query xmlns='{DISCO_INFO}'/></iq>")
        identity = reply.find(f"{{{DISCO_INFO}}}query/{{{DISCO_INFO}}}identity")
        assert identity is not None
        assert (identity.get("category"), identity.get("type")) == ("account", "registered")
    reply = await h.iq(alice, f"<iq type='get'><query xmlns='{DISCO_ITEMS}'/></iq>")
    assert reply.get("type") == "result"


async def test_disco_on_stranger_account_is_hidden_xep0030_3_1(h: Harness) -> None:
    """Answering for strangers would reveal which accounts exist."""
    alice = await h.online("alice@localhost/a")
    await h.account("bob")
    for ns in (DISCO_INFO, DISCO_ITEMS):
        reply = await h.iq(alice, f"<iq type='get' to='bob@localhost'><query xmlns='{ns}'/></iq>")
        assert error_condition(reply) == "service-unavailable"
        assert reply.get("from") == "bob@localhost"
