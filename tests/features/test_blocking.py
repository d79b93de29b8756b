"""Blocking Command (XEP-0191) on the in-process harness."""

from __future__ import annotations

from tests.harness import Harness, error_condition, find, one

NS = "urn:xmpp:blocking"


async def _block(h: Harness, session: object, *jids: str, kind: str = "block") -> object:
    items = "".join(f"<item jid='{j}'/>" for j in jids)
    return await h.iq(session, f"<iq type='set'><{kind} xmlns='{NS}'>{items}</{kind}></iq>")  # type: ignore[arg-type]


async def test_block_list_get_block_unblock_and_pushes_xep0191_3(h: Harness) -> None:
    phone = await h.online("alice@localhost/phone")
    laptop = await h.online("alice@localhost/laptop")
    empty = await h.iq(laptop, f"<iq type='get'><blocklist xmlns='{NS}'/></iq>")
    assert empty.find(f"{{{NS}}}blocklist") is not None
    reply = await _block(h, phone, "spam@example.org", "evil.example")
    assert reply.get("type") == "result"  # type: ignore[attr-defined]
    push = one(laptop.take(), "iq", type="set")  # laptop asked for the list: it is told
    assert {i.get("jid") for i in push.iter(f"{{{NS}}}item")} == {
        "spam@example.org",
        "evil.example",
    }
    got = await h.iq(phone, f"<iq type='get'><blocklist xmlns='{NS}'/></iq>")
    assert {i.get("jid") for i in got.iter(f"{{{NS}}}item")} == {"spam@example.org", "evil.example"}

    await _block(h, phone, "spam@example.org", kind="unblock")
    got = await h.iq(phone, f"<iq type='get'><blocklist xmlns='{NS}'/></iq>")
    assert {i.get("jid") for i in got.iter(f"{{{NS}}}item")} == {"evil.example"}
    await _block(h, phone, kind="unblock")  # no items: everything
    got = await h.iq(phone, f"<iq type='get'><blocklist xmlns='{NS}'/></iq>")
    assert not list(got.iter(f"{{{NS}}}item"))


async def test_block_without_items_or_with_bad_jid_is_bad_request_xep0191_3_3(
    h: Harness,
) -> None:
    alice = await h.online("alice@localhost/a")
    assert error_condition(await _block(h, alice)) == "bad-request"  # type: ignore[arg-type]
    bad = await _block(h, alice, "@@bad")
    assert error_condition(bad) == "bad-request"  # type: ignore[arg-type]


async def test_blocked_sender_cannot_reach_the_user_xep0191_3_4(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    await _block(h, alice, "bob@localhost")
    await h.send(bob, "<message type='chat' to='alice@localhost'><body>hi</body></message>")
    await h.send(bob, "<iq type='get' id='q' to='alice@localhost/a'><x xmlns='urn:x'/></iq>")
    await h.send(bob, "<presence type='subscribe' to='alice@localhost'/>")
    assert not alice.take()
    errors = find(bob.take(), type="error")
    assert {e.tag for e in errors} == {"message", "iq"}
    assert all(error_condition(e) == "service-unavailable" for e in errors)


async def test_user_cannot_send_to_a_blocked_jid_xep0191_3_5(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    bob = await h.online("bob@localhost/b")
    await _block(h, alice, "bob@localhost")
    await h.send(alice, "<message type='chat' to='bob@localhost'><body>hi</body></message>")
    assert not find(bob.take(), "message")
    err = one(alice.take(), "message", type="error")
    assert error_condition(err) == "not-acceptable"
    assert err.find("error/{urn:xmpp:blocking:errors}blocked") is not None


async def test_blocking_a_subscriber_hides_presence_xep0191_3_3(h: Harness) -> None:
    from tests.features.conftest import set_roster

    await h.account("alice")
    await h.account("bob")
    await set_roster(h, "alice", "bob@localhost", "both")
    await set_roster(h, "bob", "alice@localhost", "both")
    bob = await h.online("bob@localhost/b")
    alice = await h.online("alice@localhost/a")
    bob.take()
    await _block(h, alice, "bob@localhost")
    gone = one(bob.take(), "presence", type="unavailable")
    assert gone.get("from") == "alice@localhost/a"
    await h.send(alice, "<presence><show>away</show></presence>")
    assert not find(bob.take(), "presence")  # broadcasts skip the blocked contact
    await _block(h, alice, "bob@localhost", kind="unblock")
    await h.send(alice, "<presence><show>chat</show></presence>")
    assert find(bob.take(), "presence")


def test_matching_rules_xep0191_3_4() -> None:
    from descant.features.blocking import matches
    from descant.jid import parse

    blocked = {"evil.example", "bob@localhost", "carol@localhost/phone"}
    assert matches(blocked, parse("anyone@evil.example/r"))
    assert matches(blocked, parse("bob@localhost/any"))
    assert matches(blocked, parse("carol@localhost/phone"))
    assert not matches(blocked, parse("carol@localhost/laptop"))
    assert not matches(blocked, parse("dave@localhost"))
