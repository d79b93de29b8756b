"""Client State Indication (XEP-0352) on the in-process harness.

The nonzas reach the module as c2s hands them over: a ``NonzaEvent`` fired as
``nonza/urn:xmpp:csi:0:<tag>`` (the module needs no stream, so none is given).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import cast

from descant.c2s.session import ClientSession
from descant.c2s.stream import ClientStream, NonzaEvent
from tests.features.conftest import set_roster
from tests.features.muc_util import ROOM, enter, new_room
from tests.harness import FakeSession, Harness, dump

NS = "urn:xmpp:csi:0"
CHATSTATES = "http://jabber.org/protocol/chatstates"
CARBONS = "urn:xmpp:carbons:2"


async def indicate(h: Harness, session: FakeSession | None, state: str) -> object:
    """Send ``<inactive/>`` or ``<active/>`` as the c2s stream of ``session`` does."""
    ev = NonzaEvent(
        ET.Element(f"{{{NS}}}{state}"), cast(ClientStream, None), cast(ClientSession, session)
    )
    return await h.host().events.fire(f"nonza/{NS}:{state}", ev)


async def contacts(h: Harness) -> tuple[FakeSession, FakeSession, FakeSession]:
    """Alice (phone) and Bob (phone, laptop) online, subscribed both ways."""
    await set_roster(h, "alice", "bob@localhost", "both")
    await set_roster(h, "bob", "alice@localhost", "both")
    alice = await h.online("alice@localhost/phone")
    bob = await h.online("bob@localhost/phone")
    laptop = await h.online("bob@localhost/laptop")
    alice.take()
    return alice, bob, laptop


def summary(stanzas: list[ET.Element]) -> list[tuple[str, str | None, str | None]]:
    """(tag, from, what it says) for each stanza: status or show, body or subject."""
    out = []
    for s in stanzas:
        said = s.findtext("status") or s.findtext("show") or s.findtext("body")
        out.append((s.tag, s.get("from"), said or s.findtext("subject") or s.get("type")))
    return out


def chat(to: str, body: str) -> str:
    return f"<message type='chat' to='{to}'><body>{body}</body></message>"


async def test_csi_stream_feature_after_authentication_xep0352_4_1(h: Harness) -> None:
    assert any(el.tag == f"{{{NS}}}csi" for el in h.host().stream_features)


async def test_indication_before_binding_is_ignored_without_reply_xep0352_4_2(
    h: Harness,
) -> None:
    assert await indicate(h, None, "inactive") is True
    assert await indicate(h, None, "active") is True


async def test_presence_held_and_only_the_latest_per_sender_kept_xep0352_3_2(
    h: Harness,
) -> None:
    alice, bob, laptop = await contacts(h)
    assert await indicate(h, alice, "inactive") is True
    await h.send(bob, "<presence><status>phone 1</status></presence>")
    await h.send(laptop, "<presence><status>laptop 1</status></presence>")
    await h.send(bob, "<presence><status>phone 2</status></presence>")
    assert not alice.take(), "presence must be held while inactive"
    # Active again: the latest per full JID; the replaced one moved to the end, so the
    # order of what arrives is the order in which it was sent (RFC 6120 §10.1).
    await indicate(h, alice, "active")
    assert summary(alice.take()) == [
        ("presence", "bob@localhost/laptop", "laptop 1"),
        ("presence", "bob@localhost/phone", "phone 2"),
    ]
    # Unavailable counts as presence too, and replaces the available one.
    await indicate(h, alice, "inactive")
    await h.send(laptop, "<presence><status>laptop 2</status></presence>")
    await h.send(laptop, "<presence type='unavailable'/>")
    assert not alice.take()
    await indicate(h, alice, "active")
    assert summary(alice.take()) == [("presence", "bob@localhost/laptop", "unavailable")]


async def test_chat_state_alone_is_dropped_xep0352_3_2(h: Harness) -> None:
    alice, bob, _ = await contacts(h)
    await indicate(h, alice, "inactive")
    await h.send(
        bob,
        f"<message type='chat' to='alice@localhost/phone'><composing xmlns='{CHATSTATES}'/>"
        "<no-store xmlns='urn:xmpp:hints'/></message>",
    )
    await indicate(h, alice, "active")
    assert not alice.take(), "a message with only a chat state is dropped, not held"
    # With a body it is a message like any other: delivered at once, state and all.
    await indicate(h, alice, "inactive")
    await h.send(
        bob,
        f"<message type='chat' to='alice@localhost/phone'><body>hi</body>"
        f"<active xmlns='{CHATSTATES}'/></message>",
    )
    got = alice.take()
    assert summary(got) == [("message", "bob@localhost/phone", "hi")]
    assert got[0].find(f"{{{CHATSTATES}}}active") is not None


async def test_message_with_body_flushes_what_is_held_then_itself_xep0352_3_2(
    h: Harness,
) -> None:
    alice, bob, laptop = await contacts(h)
    await indicate(h, alice, "inactive")
    await h.send(laptop, "<presence><status>busy</status></presence>")
    await h.send(
        bob, "<message type='headline' to='alice@localhost/phone'><body>news</body></message>"
    )
    assert not alice.take(), "presence and headlines are held"
    await h.send(bob, chat("alice@localhost/phone", "are you there?"))
    assert summary(alice.take()) == [
        ("presence", "bob@localhost/laptop", "busy"),
        ("message", "bob@localhost/phone", "news"),
        ("message", "bob@localhost/phone", "are you there?"),
    ]
    # Still inactive: the next presence is held again.
    await h.send(laptop, "<presence><status>free</status></presence>")
    assert not alice.take()


async def test_iq_subscription_and_errors_are_urgent_xep0352_3_2(h: Harness) -> None:
    alice, bob, laptop = await contacts(h)
    await indicate(h, alice, "inactive")
    await h.send(laptop, "<presence><status>1</status></presence>")
    assert not alice.take()
    await h.send(
        bob, "<iq type='get' id='p1' to='alice@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    got = alice.take()
    assert summary(got)[0] == ("presence", "bob@localhost/laptop", "1")
    assert got[1].tag == "iq" and got[1].get("id") == "p1", dump(got)
    # A subscription request is presence, but not one to hold.
    carol = await h.online("carol@localhost/c")
    await h.send(laptop, "<presence><status>2</status></presence>")
    await h.send(carol, "<presence type='subscribe' to='alice@localhost'/>")
    assert summary(alice.take()) == [
        ("presence", "bob@localhost/laptop", "2"),
        ("presence", "carol@localhost", "subscribe"),
    ]
    # So is an error (here: a bounce of what alice sent to nobody).
    await h.send(laptop, "<presence><status>3</status></presence>")
    await h.send(alice, chat("nobody@localhost", "x"))
    got = alice.take()
    assert summary(got)[0] == ("presence", "bob@localhost/laptop", "3")
    assert got[1].get("type") == "error", dump(got)


async def test_other_urgent_payloads_xep0352_3_2(h: Harness) -> None:
    alice, bob, laptop = await contacts(h)
    await indicate(h, alice, "inactive")
    to = "alice@localhost/phone"
    urgent = [
        # OMEMO without a fallback body, both namespaces.
        f"<message to='{to}'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>",
        f"<message to='{to}'><encrypted xmlns='urn:xmpp:omemo:2'/></message>",
        # A direct invitation (XEP-0249) and a mediated one (XEP-0045 §7.8.2).
        f"<message to='{to}'><x xmlns='jabber:x:conference' jid='{ROOM}'/></message>",
        f"<message to='{to}'><x xmlns='http://jabber.org/protocol/muc#user'>"
        "<invite from='bob@localhost'/></x></message>",
    ]
    for i, xml in enumerate(urgent):
        await h.send(laptop, f"<presence><status>{i}</status></presence>")
        assert not alice.take()
        await h.send(bob, xml)
        got = alice.take()
        assert len(got) == 2 and got[0].tag == "presence" and got[1].tag == "message", (
            i,
            dump(got),
        )
    # A receipt alone is neither: held.
    await h.send(bob, f"<message to='{to}'><received xmlns='urn:xmpp:receipts' id='m1'/></message>")
    assert not alice.take()
    await indicate(h, alice, "active")
    got = alice.take()
    assert len(got) == 1 and got[0].find("{urn:xmpp:receipts}received") is not None, dump(got)


async def test_carbon_copy_is_sorted_as_the_message_it_carries_xep0352_3_2(h: Harness) -> None:
    alice, bob, laptop = await contacts(h)
    await h.online("alice@localhost/laptop")
    reply = await h.iq(alice, f"<iq type='set'><enable xmlns='{CARBONS}'/></iq>")
    assert reply.get("type") == "result"
    alice.take()  # the laptop's presence
    await indicate(h, alice, "inactive")
    # A chat state alone, sent to another resource: its copy is dropped.
    await h.send(
        bob,
        f"<message type='chat' to='alice@localhost/laptop'>"
        f"<paused xmlns='{CHATSTATES}'/></message>",
    )
    await h.send(laptop, "<presence><status>1</status></presence>")
    assert not alice.take()
    # A message with a body: its copy is urgent.
    await h.send(bob, chat("alice@localhost/laptop", "copied"))
    got = alice.take()
    assert summary(got)[0] == ("presence", "bob@localhost/laptop", "1"), dump(got)
    assert len(got) == 2 and got[1].find(f"{{{CARBONS}}}received") is not None, dump(got)


async def test_groupchat_mention_of_nick_or_localpart_is_urgent_xep0352_3_2(
    h: Harness,
) -> None:
    bob = await h.online("bob@localhost/b")
    await new_room(h, bob, "bob")
    alice = await h.online("alice@localhost/phone")
    await enter(h, alice, "Wonderland")  # the self-presence (110) tells the nick
    bob.take()
    await indicate(h, alice, "inactive")

    async def say(body: str) -> None:
        await h.send(bob, f"<message to='{ROOM}' type='groupchat'><body>{body}</body></message>")

    await say("hello all")
    assert not alice.take(), "groupchat without a mention is held"
    await say("hey wonderland, look")  # the nick, in any case
    assert summary(alice.take()) == [
        ("message", f"{ROOM}/bob", "hello all"),
        ("message", f"{ROOM}/bob", "hey wonderland, look"),
    ]
    await say("still here")
    await say("ping Alice")  # the localpart
    assert [s.findtext("body") for s in alice.take()] == ["still here", "ping Alice"]
    # Out of the room, the nick is forgotten.
    await h.send(alice, f"<presence to='{ROOM}/Wonderland' type='unavailable'/>")
    await enter(h, alice, "Queen")
    await indicate(h, alice, "active")
    alice.take()
    await indicate(h, alice, "inactive")
    await say("wonderland is gone")
    assert not alice.take()
    await say("the queen speaks")
    assert len(alice.take()) == 2


async def test_groupchat_subject_is_urgent_xep0352_3_2(h: Harness) -> None:
    bob = await h.online("bob@localhost/b")
    await new_room(h, bob, "bob")
    alice = await h.online("alice@localhost/phone")
    await enter(h, alice, "al")
    await indicate(h, alice, "inactive")
    await h.send(bob, f"<message to='{ROOM}' type='groupchat'><body>chatter</body></message>")
    assert not alice.take()
    await h.send(bob, f"<message to='{ROOM}' type='groupchat'><subject>Topic</subject></message>")
    assert summary(alice.take()) == [
        ("message", f"{ROOM}/bob", "chatter"),
        ("message", f"{ROOM}/bob", "Topic"),
    ]


async def test_held_queue_is_bounded_xep0352_3_2(h: Harness) -> None:
    alice = await h.online("alice@localhost/phone")
    await indicate(h, alice, "inactive")
    limit = 256  # ClientStateModule.max_held
    for i in range(limit):
        await h.inject(
            f"<message type='headline' from='pubsub.example.org' to='alice@localhost/phone'"
            f" id='e{i}'><event xmlns='http://jabber.org/protocol/pubsub#event'/></message>"
        )
    assert not alice.take()
    await h.inject(
        "<message type='headline' from='pubsub.example.org' to='alice@localhost/phone' id='last'>"
        "<event xmlns='http://jabber.org/protocol/pubsub#event'/></message>"
    )
    got = alice.take()
    assert [s.get("id") for s in got] == [f"e{i}" for i in range(limit)] + ["last"]


async def test_active_flushes_everything_in_order_xep0352_5_1(h: Harness) -> None:
    alice, bob, laptop = await contacts(h)
    await indicate(h, alice, "inactive")
    await indicate(h, alice, "inactive")  # twice: still one state, nothing lost
    await h.send(laptop, "<presence><status>a</status></presence>")
    await h.send(
        bob,
        "<message to='alice@localhost/phone'>"
        "<displayed xmlns='urn:xmpp:chat-markers:0' id='x'/></message>",
    )
    await h.send(bob, "<presence><status>b</status></presence>")
    await h.send(laptop, "<presence><status>c</status></presence>")
    assert not alice.take()
    # The flush happens inside the nonza's handler: before anything the client sends next.
    assert await indicate(h, alice, "active") is True
    got = alice.take()
    assert summary(got) == [
        ("message", "bob@localhost/phone", None),
        ("presence", "bob@localhost/phone", "b"),
        ("presence", "bob@localhost/laptop", "c"),
    ]
    await h.send(laptop, "<presence><status>d</status></presence>")
    assert summary(alice.take()) == [("presence", "bob@localhost/laptop", "d")]
    assert await indicate(h, alice, "active") is True  # already active: nothing happens
    assert not alice.take()


async def test_hibernation_hands_held_stanzas_to_stream_management_xep0352_5_2(
    h: Harness,
) -> None:
    alice, _, laptop = await contacts(h)
    await indicate(h, alice, "inactive")
    await h.send(laptop, "<presence><status>held</status></presence>")
    assert not alice.take() and not alice.held
    await alice.hibernate()
    assert summary(alice.held) == [("presence", "bob@localhost/laptop", "held")]
    await h.send(laptop, "<presence><status>meanwhile</status></presence>")
    assert len(alice.held) == 2  # straight to the session: nothing waits in the module
    await alice.resume()
    assert [s.findtext("status") for s in alice.take()] == ["held", "meanwhile"]


async def test_resumed_stream_starts_active_xep0352_5_2(h: Harness) -> None:
    alice, _, laptop = await contacts(h)
    await indicate(h, alice, "inactive")
    await h.send(laptop, "<presence><status>1</status></presence>")
    assert not alice.take()
    await alice.hibernate()
    await alice.resume()
    alice.take()
    assert alice.filter is None
    await h.send(laptop, "<presence><status>2</status></presence>")
    assert summary(alice.take()) == [("presence", "bob@localhost/laptop", "2")]


async def test_unbound_session_state_is_dropped_xep0352_4_2(h: Harness) -> None:
    alice, _, laptop = await contacts(h)
    await indicate(h, alice, "inactive")
    await h.send(laptop, "<presence><status>1</status></presence>")
    assert "csi" in alice.data and alice.filter is not None
    await alice.close()
    assert "csi" not in alice.data and alice.filter is None
    # A new session for the resource starts active (§5).
    again = await h.online("alice@localhost/phone")
    await h.send(laptop, "<presence><status>2</status></presence>")
    assert summary(again.take()) == [("presence", "bob@localhost/laptop", "2")]
