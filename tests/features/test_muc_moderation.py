"""Retraction in rooms: by the sender (XEP-0424) and by moderators (XEP-0425)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.features.muc_util import ROOM, enter, new_room
from tests.harness import FakeSession, Harness, error_condition, find, one

RETRACT = "urn:xmpp:message-retract:1"
MODERATE = "urn:xmpp:message-moderate:1"
MAM = "urn:xmpp:mam:2"
SID = "{urn:xmpp:sid:0}stanza-id"
FWD = "urn:xmpp:forward:0"


async def _room(h: Harness) -> tuple[FakeSession, FakeSession, FakeSession]:
    alice = await h.online("alice@localhost/a")  # owner, moderator
    bob = await h.online("bob@localhost/b")
    carol = await h.online("carol@localhost/c")
    await new_room(h, alice, "al", enablelogging="1")
    await enter(h, bob, "bob")
    await enter(h, carol, "carol")
    for s in (alice, bob, carol):
        s.take()
    return alice, bob, carol


async def _say(h: Harness, s: FakeSession, body: str, extra: str = "") -> str:
    """Send a groupchat message; its archive id, as the sender sees it reflected."""
    await h.send(s, f"<message type='groupchat' to='{ROOM}'><body>{body}</body>{extra}</message>")
    got = [m for m in s.take() if m.findtext("body") == body]
    assert len(got) == 1
    sid = got[0].find(SID)
    assert sid is not None
    return sid.get("id", "")


async def _archive(h: Harness, s: FakeSession) -> list[ET.Element]:
    s.take()
    await h.iq(s, f"<iq type='set' to='{ROOM}'><query xmlns='{MAM}'/></iq>")
    return [
        m.find(f"{{{MAM}}}result/{{{FWD}}}forwarded/message")  # type: ignore[misc]
        for m in s.take()
        if m.find(f"{{{MAM}}}result") is not None
    ]


async def test_sender_retracts_own_message(h: Harness) -> None:
    alice, bob, carol = await _room(h)
    target = await _say(h, bob, "typo")
    await h.send(
        bob,
        f"<message type='groupchat' to='{ROOM}'><retract xmlns='{RETRACT}' id='{target}'/>"
        "<body>retracted</body></message>",
    )
    got = one(carol.take(), "message", child=f"{{{RETRACT}}}retract")
    assert got.get("from") == f"{ROOM}/bob"
    archived = await _archive(h, alice)
    assert archived[0].find("body") is None
    assert archived[0].find(f"{{{RETRACT}}}retracted") is not None
    assert archived[1].find(f"{{{RETRACT}}}retract") is not None  # the retraction itself
    # A newcomer's history has the tombstone too.
    dave = await h.online("dave@localhost/d")
    history = await enter(h, dave, "dave")
    assert not [m for m in history if m.findtext("body") == "typo"]


async def test_retracting_anothers_message_is_forbidden(h: Harness) -> None:
    alice, bob, carol = await _room(h)
    target = await _say(h, bob, "mine")
    await h.send(
        carol,
        f"<message type='groupchat' to='{ROOM}' id='r1'><retract xmlns='{RETRACT}' "
        f"id='{target}'/><body>x</body></message>",
    )
    err = one(carol.take(), "message", id="r1")
    assert error_condition(err) == "forbidden"
    assert not find(bob.take(), "message")
    assert [m.findtext("body") for m in await _archive(h, alice)] == ["mine"]


async def test_moderator_removes_a_message_xep0425(h: Harness) -> None:
    alice, bob, carol = await _room(h)
    target = await _say(h, bob, "spam")
    reply = await h.iq(
        alice,
        f"<iq type='set' to='{ROOM}'><moderate xmlns='{MODERATE}' id='{target}'>"
        f"<retract xmlns='{RETRACT}'/><reason>Spam</reason></moderate></iq>",
    )
    assert reply.get("type") == "result"
    notice = one(carol.take(), "message", child=f"{{{RETRACT}}}retract")
    assert notice.get("from") == ROOM and notice.get("type") == "groupchat"
    retract = notice.find(f"{{{RETRACT}}}retract")
    assert retract is not None and retract.get("id") == target
    moderated = retract.find(f"{{{MODERATE}}}moderated")
    assert moderated is not None and moderated.get("by") == f"{ROOM}/al"
    assert retract.findtext(f"{{{RETRACT}}}reason") == "Spam"
    archived = await _archive(h, bob)
    tomb = archived[0].find(f"{{{RETRACT}}}retracted")
    assert tomb is not None and archived[0].find("body") is None
    assert tomb.find(f"{{{MODERATE}}}moderated") is not None


async def test_non_moderator_and_unknown_id(h: Harness) -> None:
    alice, bob, carol = await _room(h)
    target = await _say(h, bob, "fine")
    reply = await h.iq(
        carol,
        f"<iq type='set' to='{ROOM}'><moderate xmlns='{MODERATE}' id='{target}'>"
        f"<retract xmlns='{RETRACT}'/></moderate></iq>",
    )
    assert error_condition(reply) == "forbidden"
    reply = await h.iq(
        alice,
        f"<iq type='set' to='{ROOM}'><moderate xmlns='{MODERATE}' id='nope'>"
        f"<retract xmlns='{RETRACT}'/></moderate></iq>",
    )
    assert error_condition(reply) == "item-not-found"
    assert [m.findtext("body") for m in await _archive(h, alice)] == ["fine"]


async def test_room_advertises_retraction_and_moderation(h: Harness) -> None:
    alice, _, _ = await _room(h)
    disco = "http://jabber.org/protocol/disco#info"
    reply = await h.iq(alice, f"<iq type='get' to='{ROOM}'><query xmlns='{disco}'/></iq>")
    features = {f.get("var") for f in reply.iter(f"{{{disco}}}feature")}
    assert {RETRACT, MODERATE} <= features
