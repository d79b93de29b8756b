"""Message Carbons (XEP-0280) on the in-process harness."""

from __future__ import annotations

from tests.harness import FakeSession, Harness, find, one

NS = "urn:xmpp:carbons:2"
FWD = "urn:xmpp:forward:0"


async def _enable(h: Harness, session: FakeSession) -> None:
    reply = await h.iq(session, f"<iq type='set'><enable xmlns='{NS}'/></iq>")
    assert reply.get("type") == "result"


def _inner(carbon: object, kind: str) -> object:
    el = carbon.find(f"{{{NS}}}{kind}/{{{FWD}}}forwarded/message")  # type: ignore[attr-defined]
    assert el is not None, "no forwarded message"
    return el


async def test_sent_messages_are_copied_to_other_enabled_resources_xep0280_7(
    h: Harness,
) -> None:
    phone = await h.online("alice@localhost/phone")
    laptop = await h.online("alice@localhost/laptop")
    quiet = await h.online("alice@localhost/quiet")  # did not enable carbons
    bob = await h.online("bob@localhost/b")
    await _enable(h, phone)
    await _enable(h, laptop)
    await h.send(phone, "<message type='chat' to='bob@localhost' id='m1'><body>hi</body></message>")
    one(bob.take(), "message", id="m1")
    carbon = one(laptop.take(), "message", from_="alice@localhost", to="alice@localhost/laptop")
    inner = _inner(carbon, "sent")
    assert inner.get("from") == "alice@localhost/phone"  # type: ignore[attr-defined]
    assert inner.get("to") == "bob@localhost"  # type: ignore[attr-defined]
    assert not find(phone.take(), "message")
    assert not find(quiet.take(), "message")


async def test_received_messages_are_copied_to_other_resources_xep0280_8(h: Harness) -> None:
    phone = await h.online("alice@localhost/phone", "<presence><priority>5</priority></presence>")
    laptop = await h.online("alice@localhost/laptop")
    bob = await h.online("bob@localhost/b")
    await _enable(h, laptop)
    await h.send(bob, "<message type='chat' to='alice@localhost' id='m2'><body>yo</body></message>")
    one(phone.take(), "message", id="m2")  # the highest priority gets the message
    carbon = one(laptop.take(), "message", from_="alice@localhost")
    assert _inner(carbon, "received").get("id") == "m2"  # type: ignore[attr-defined]
    # To a full JID: the other enabled resources get a copy as well.
    await h.send(bob, "<message type='chat' to='alice@localhost/phone'><body>2</body></message>")
    assert find(laptop.take(), "message", child=f"{{{NS}}}received")


async def test_private_groupchat_and_disabled_are_not_copied_xep0280_6(h: Harness) -> None:
    phone = await h.online("alice@localhost/phone", "<presence><priority>5</priority></presence>")
    laptop = await h.online("alice@localhost/laptop")
    bob = await h.online("bob@localhost/b")
    await _enable(h, laptop)
    await h.send(
        bob,
        f"<message type='chat' to='alice@localhost'><body>x</body><private xmlns='{NS}'/>"
        "<no-copy xmlns='urn:xmpp:hints'/></message>",
    )
    await h.send(bob, "<message type='headline' to='alice@localhost'><body>news</body></message>")
    assert not find(laptop.take(), "message", child=f"{{{NS}}}received")
    phone.take()
    reply = await h.iq(laptop, f"<iq type='set'><disable xmlns='{NS}'/></iq>")
    assert reply.get("type") == "result"
    await h.send(bob, "<message type='chat' to='alice@localhost'><body>y</body></message>")
    assert not find(laptop.take(), "message")


async def test_carbons_feature_is_advertised_xep0280_4(h: Harness) -> None:
    alice = await h.online("alice@localhost/a")
    disco = "http://jabber.org/protocol/disco#info"
    reply = await h.iq(alice, f"<iq type='get' to='localhost'><query xmlns='{disco}'/></iq>")
    features = {f.get("var") for f in reply.iter(f"{{{disco}}}feature")}
    assert NS in features
