"""Presence subscriptions (RFC 6121 §3, Appendix A) and presence (RFC 6121 §4)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from descant.features.presence import SubState, inbound, outbound, parse_priority
from descant.routing.sessions import Session
from descant.storage.api import RosterItem
from tests.features.conftest import set_roster
from tests.harness import FakeSession, Harness, error_condition, find, one

R = "{jabber:iq:roster}"
CAROL = "carol@remote.example"


async def item(h: Harness, user: str, contact: str) -> RosterItem | None:
    return await h.server.storage.roster.get_item("localhost", user, contact)


async def state(h: Harness, user: str, contact: str) -> str:
    pending = dict(await h.server.storage.roster.list_pending_in("localhost", user))
    return str(SubState.of(await item(h, user, contact), contact in pending))


async def set_state(h: Harness, user: str, contact: str, name: str) -> None:
    """Put user's relation to contact in an Appendix A state."""
    s = SubState.parse(name)
    await set_roster(h, user, contact, s.subscription, ask=s.pending_out)
    if s.pending_in:
        request = f"<presence from='{contact}' to='{user}@localhost' type='subscribe'/>"
        await h.server.storage.roster.add_pending_in("localhost", user, contact, request)


async def interested(h: Harness, full_jid: str) -> FakeSession:
    """A session that sent initial presence and read its roster (gets pushes)."""
    session = await h.online(full_jid)
    await h.iq(session, "<iq type='get'><query xmlns='jabber:iq:roster'/></iq>")
    session.take()
    return session


def pushed(stanzas: list[ET.Element], contact: str) -> list[ET.Element]:
    """The roster items for ``contact`` in the roster pushes among ``stanzas``."""
    return [
        el
        for push in find(stanzas, "iq", type="set")
        for el in push.iter(R + "item")
        if el.get("jid") == contact
    ]


# -- Appendix A, as the RFC prints it --------------------------------------------------------

STATES = [
    "None",
    "None + Pending Out",
    "None + Pending In",
    "None + Pending Out/In",
    "To",
    "To + Pending In",
    "From",
    "From + Pending Out",
    "Both",
]
SAME = "no state change"

# (existing state, route?, new state) per RFC 6121 A.2.1-A.2.4 (user's server, outbound).
OUTBOUND = {
    "subscribe": [  # A.2.1
        ("None", True, "None + Pending Out"),
        ("None + Pending Out", True, SAME),
        ("None + Pending In", True, "None + Pending Out/In"),
        ("None + Pending Out/In", True, SAME),
        ("To", True, SAME),
        ("To + Pending In", True, SAME),
        ("From", True, "From + Pending Out"),
        ("From + Pending Out", True, SAME),
        ("Both", True, SAME),
    ],
    "unsubscribe": [  # A.2.2
        ("None", True, SAME),
        ("None + Pending Out", True, "None"),
        ("None + Pending In", True, SAME),
        ("None + Pending Out/In", True, "None + Pending In"),
        ("To", True, "None"),
        ("To + Pending In", True, "None + Pending In"),
        ("From", True, SAME),
        ("From + Pending Out", True, "From"),
        ("Both", True, "From"),
    ],
    "subscribed": [  # A.2.3
        ("None", False, SAME),
        ("None + Pending Out", False, SAME),
        ("None + Pending In", True, "From"),
        ("None + Pending Out/In", True, "From + Pending Out"),
        ("To", False, SAME),
        ("To + Pending In", True, "Both"),
        ("From", False, SAME),
        ("From + Pending Out", False, SAME),
        ("Both", False, SAME),
    ],
    "unsubscribed": [  # A.2.4
        ("None", False, SAME),
        ("None + Pending Out", False, SAME),
        ("None + Pending In", True, "None"),
        ("None + Pending Out/In", True, "None + Pending Out"),
        ("To", False, SAME),
        ("To + Pending In", True, "To"),
        ("From", True, "None"),
        ("From + Pending Out", True, "None + Pending Out"),
        ("Both", True, "To"),
    ],
}

# (existing state, deliver?, new state) per RFC 6121 A.3.1-A.3.4 (contact's server, inbound).
INBOUND = {
    "subscribe": [  # A.3.1 ("no *": answered with subscribed instead)
        ("None", True, "None + Pending In"),
        ("None + Pending Out", True, "None + Pending Out/In"),
        ("None + Pending In", False, SAME),
        ("None + Pending Out/In", False, SAME),
        ("To", True, "To + Pending In"),
        ("To + Pending In", False, SAME),
        ("From", False, SAME),
        ("From + Pending Out", False, SAME),
        ("Both", False, SAME),
    ],
    "unsubscribe": [  # A.3.2
        ("None", False, SAME),
        ("None + Pending Out", False, SAME),
        ("None + Pending In", True, "None"),
        ("None + Pending Out/In", True, "None + Pending Out"),
        ("To", False, SAME),
        ("To + Pending In", True, "To"),
        ("From", True, "None"),
        ("From + Pending Out", True, "None + Pending Out"),
        ("Both", True, "To"),
    ],
    "subscribed": [  # A.3.3
        ("None", False, SAME),
        ("None + Pending Out", True, "To"),
        ("None + Pending In", False, SAME),
        ("None + Pending Out/In", True, "To + Pending In"),
        ("To", False, SAME),
        ("To + Pending In", False, SAME),
        ("From", False, SAME),
        ("From + Pending Out", True, "Both"),
        ("Both", False, SAME),
    ],
    "unsubscribed": [  # A.3.4
        ("None", False, SAME),
        ("None + Pending Out", True, "None"),
        ("None + Pending In", False, SAME),
        ("None + Pending Out/In", True, "None + Pending In"),
        ("To", True, "None"),
        ("To + Pending In", True, "None + Pending In"),
        ("From", False, SAME),
        ("From + Pending Out", True, "From"),
        ("Both", True, "From"),
    ],
}


def _rows(table: dict[str, list[tuple[str, bool, str]]]) -> list[tuple[str, str, bool, str]]:
    return [
        (t, old, yes, old if new == SAME else new)
        for t, rows in table.items()
        for old, yes, new in rows
    ]


def test_state_names_round_trip() -> None:
    """RFC 6121 Appendix A.1: the nine states."""
    assert [str(SubState.parse(n)) for n in STATES] == STATES


@pytest.mark.parametrize(("type_", "old", "route", "new"), _rows(OUTBOUND))
def test_outbound_transition_function(type_: str, old: str, route: bool, new: str) -> None:
    """RFC 6121 Appendix A.2 as a pure function."""
    routed, after = outbound(type_, SubState.parse(old))
    assert (routed, str(after)) == (route, new)


@pytest.mark.parametrize(("type_", "old", "deliver", "new"), _rows(INBOUND))
def test_inbound_transition_function(type_: str, old: str, deliver: bool, new: str) -> None:
    """RFC 6121 Appendix A.3 as a pure function."""
    delivered, after = inbound(type_, SubState.parse(old))
    assert (delivered, str(after)) == (deliver, new)


@pytest.mark.parametrize(("type_", "old", "route", "new"), _rows(OUTBOUND))
async def test_outbound_subscription_states(
    h: Harness, type_: str, old: str, route: bool, new: str
) -> None:
    """RFC 6121 Appendix A.2 end to end: alice sends to a remote contact; the stanza
    leaves (stamped with alice's bare JID) only when the table says so, the state
    changes as it says, and a change is pushed (§3.1.2, §3.2.2, §3.3.2)."""
    await set_state(h, "alice", CAROL, old)
    alice = await interested(h, "alice@localhost/phone")
    before = await item(h, "alice", CAROL)
    h.take_remote()
    await h.send(alice, f"<presence to='{CAROL}/laptop' type='{type_}'/>")
    routed = find(h.take_remote(), "presence", type=type_)
    assert len(routed) == (1 if route else 0)
    if route:
        assert routed[0].get("from") == "alice@localhost"
        assert routed[0].get("to") == CAROL
    assert await state(h, "alice", CAROL) == new
    after = await item(h, "alice", CAROL)
    items = pushed(alice.take(), CAROL)
    if after != before:
        assert after is not None
        assert [el.get("subscription") for el in items] == [after.subscription]
    else:
        assert items == []


@pytest.mark.parametrize(("type_", "old", "deliver", "new"), _rows(INBOUND))
async def test_inbound_subscription_states(
    h: Harness, type_: str, old: str, deliver: bool, new: str
) -> None:
    """RFC 6121 Appendix A.3 end to end: a remote contact's stanza reaches alice's
    available resources only when the table says so (from the bare JID)."""
    await set_state(h, "alice", CAROL, old)
    alice = await interested(h, "alice@localhost/phone")
    await h.inject(f"<presence from='{CAROL}/laptop' to='alice@localhost' type='{type_}'/>")
    delivered = find(alice.take(), "presence", type=type_)
    assert len(delivered) == (1 if deliver else 0)
    if deliver:
        assert delivered[0].get("from") == CAROL
    assert await state(h, "alice", CAROL) == new


@pytest.mark.parametrize("old", ["From", "From + Pending Out", "Both"])
async def test_inbound_subscribe_from_subscriber_is_answered(h: Harness, old: str) -> None:
    """RFC 6121 §3.1.3 (A.3.1 "no *"): already subscribed → auto-reply subscribed."""
    await set_state(h, "alice", CAROL, old)
    alice = await interested(h, "alice@localhost/phone")
    h.take_remote()
    await h.inject(f"<presence from='{CAROL}' to='alice@localhost' type='subscribe'/>")
    sent = h.take_remote()
    one(sent, "presence", type="subscribed", from_="alice@localhost", to=CAROL)
    # With it, alice's current presence (resynchronising the contact's view).
    one(sent, "presence", type=None, from_="alice@localhost/phone", to=CAROL)
    assert find(alice.take(), "presence", type="subscribe") == []


# -- the whole handshake between two local users (§3.1) ----------------------------------------


async def test_subscription_handshake_local(h: Harness) -> None:
    """RFC 6121 §3.1.1-§3.1.6: none → to/from → both, with pushes and presence."""
    alice = await interested(h, "alice@localhost/phone")
    bob = await interested(h, "bob@localhost/desk")

    # §3.1.1/3.1.2: alice asks; her item becomes none + ask, bob gets the request.
    await h.send(
        alice, "<presence to='bob@localhost' type='subscribe'><status>hi</status></presence>"
    )
    got = alice.take()
    (it,) = pushed(got, "bob@localhost")
    assert (it.get("subscription"), it.get("ask")) == ("none", "subscribe")
    request = one(bob.take(), "presence", type="subscribe")
    assert request.get("from") == "alice@localhost"
    assert request.findtext("status") == "hi"
    assert await state(h, "bob", "alice@localhost") == "None + Pending In"

    # §3.1.5: bob approves; bob's item: from; alice's: to, and she gets bob's presence.
    await h.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    (it,) = pushed(bob.take(), "alice@localhost")
    assert (it.get("subscription"), it.get("ask")) == ("from", None)
    got = alice.take()
    one(got, "presence", type="subscribed", from_="bob@localhost")
    (it,) = pushed(got, "bob@localhost")
    assert (it.get("subscription"), it.get("ask")) == ("to", None)
    one(got, "presence", type=None, from_="bob@localhost/desk")

    # And the other way round, to "both".
    await h.send(bob, "<presence to='alice@localhost' type='subscribe'/>")
    one(alice.take(), "presence", type="subscribe", from_="bob@localhost")
    await h.send(alice, "<presence to='bob@localhost' type='subscribed'/>")
    one(bob.take(), "presence", type=None, from_="alice@localhost/phone")
    assert (await item(h, "alice", "bob@localhost")).subscription == "both"  # type: ignore[union-attr]
    assert (await item(h, "bob", "alice@localhost")).subscription == "both"  # type: ignore[union-attr]
    assert await h.server.storage.roster.list_pending_in("localhost", "alice") == []
    assert await h.server.storage.roster.list_pending_in("localhost", "bob") == []

    # Now presence flows both ways (§4.4).
    await h.send(alice, "<presence><show>away</show></presence>")
    assert one(bob.take(), "presence", from_="alice@localhost/phone").findtext("show") == "away"


async def test_pending_request_is_stored_and_redelivered(h: Harness) -> None:
    """RFC 6121 §3.1.3: a request for a user with no available resource is kept and
    delivered at initial presence, each time, until answered."""
    alice = await interested(h, "alice@localhost/phone")
    await h.account("bob")
    await h.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    assert len(await h.server.storage.roster.list_pending_in("localhost", "bob")) == 1

    bob = await h.bind("bob@localhost/desk")
    assert bob.take() == []  # bound but not available: not yet
    await h.send(bob, "<presence/>")
    one(bob.take(), "presence", type="subscribe", from_="alice@localhost", to="bob@localhost")
    await bob.close()

    bob = await h.bind("bob@localhost/desk")
    await h.send(bob, "<presence/>")
    one(bob.take(), "presence", type="subscribe", from_="alice@localhost")
    await h.send(bob, "<presence to='alice@localhost' type='unsubscribed'/>")
    one(alice.take(), "presence", type="unsubscribed", from_="bob@localhost")
    assert await item(h, "alice", "bob@localhost") == RosterItem("bob@localhost")
    await h.send(bob, "<presence type='unavailable'/>")
    await h.send(bob, "<presence/>")
    assert find(bob.take(), "presence", type="subscribe") == []


async def test_pre_approval(h: Harness) -> None:
    """RFC 6121 §3.4: "subscribed" before any request is remembered (approved='true',
    not routed); the later request is approved without asking the user."""
    alice = await interested(h, "alice@localhost/phone")
    bob = await interested(h, "bob@localhost/desk")
    await h.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    (it,) = pushed(bob.take(), "alice@localhost")
    assert (it.get("subscription"), it.get("approved")) == ("none", "true")
    assert alice.take() == []

    await h.send(alice, "<presence to='bob@localhost' type='subscribe'/>")
    got = alice.take()
    one(got, "presence", type="subscribed", from_="bob@localhost")
    one(got, "presence", type=None, from_="bob@localhost/desk")
    assert pushed(got, "bob@localhost")[-1].get("subscription") == "to"
    to_bob = bob.take()
    assert find(to_bob, "presence", type="subscribe") == []
    (it,) = pushed(to_bob, "alice@localhost")
    assert (it.get("subscription"), it.get("approved")) == ("from", None)


async def test_pre_approval_cancelled_by_unsubscribed(h: Harness) -> None:
    """RFC 6121 §3.4: "unsubscribed" withdraws a pre-approval (and is not routed)."""
    alice = await interested(h, "alice@localhost/phone")
    await h.send(alice, f"<presence to='{CAROL}' type='subscribed'/>")
    assert (await item(h, "alice", CAROL)).approved  # type: ignore[union-attr]
    await h.send(alice, f"<presence to='{CAROL}' type='unsubscribed'/>")
    assert not (await item(h, "alice", CAROL)).approved  # type: ignore[union-attr]
    assert h.take_remote() == []
    await h.inject(f"<presence from='{CAROL}' to='alice@localhost' type='subscribe'/>")
    one(alice.take(), "presence", type="subscribe", from_=CAROL)


async def test_unsubscribe_and_unsubscribed_both_directions(h: Harness) -> None:
    """RFC 6121 §3.3 (unsubscribing) and §3.2 (cancelling), with the unavailable
    presence the side that stops sharing sends (§3.3.3, §3.2.2)."""
    for a, b in (("alice", "bob"), ("bob", "alice")):
        await set_roster(h, a, f"{b}@localhost", "both")
    alice = await interested(h, "alice@localhost/phone")
    bob = await interested(h, "bob@localhost/desk")

    # alice no longer wants bob's presence.
    await h.send(alice, "<presence to='bob@localhost' type='unsubscribe'/>")
    got = alice.take()
    assert pushed(got, "bob@localhost")[-1].get("subscription") == "from"
    one(got, "presence", type="unavailable", from_="bob@localhost/desk")
    to_bob = bob.take()
    one(to_bob, "presence", type="unsubscribe", from_="alice@localhost")
    assert pushed(to_bob, "alice@localhost")[-1].get("subscription") == "to"

    # alice cancels bob's subscription to her presence.
    await h.send(alice, "<presence to='bob@localhost' type='unsubscribed'/>")
    assert pushed(alice.take(), "bob@localhost")[-1].get("subscription") == "none"
    to_bob = bob.take()
    one(to_bob, "presence", type="unsubscribed", from_="alice@localhost")
    one(to_bob, "presence", type="unavailable", from_="alice@localhost/phone")
    assert pushed(to_bob, "alice@localhost")[-1].get("subscription") == "none"

    # Nothing left: presence no longer flows either way (§4.4.2).
    await h.send(alice, "<presence><show>dnd</show></presence>")
    await h.send(bob, "<presence><show>dnd</show></presence>")
    assert find(bob.take(), "presence", from_="alice@localhost/phone") == []
    assert find(alice.take(), "presence", from_="bob@localhost/desk") == []


async def test_inbound_unsubscribed_from_local_contact_withdraws_presence(h: Harness) -> None:
    """RFC 6121 §3.2.3: when bob cancels alice's subscription, alice's resources get
    unavailable from each of bob's (sent by bob's server, §3.2.2)."""
    await set_roster(h, "alice", "bob@localhost", "to")
    await set_roster(h, "bob", "alice@localhost", "from")
    alice = await interested(h, "alice@localhost/phone")
    bob = await interested(h, "bob@localhost/desk")
    bob2 = await interested(h, "bob@localhost/mobile")
    alice.take()
    await h.send(bob, "<presence to='alice@localhost' type='unsubscribed'/>")
    got = alice.take()
    one(got, "presence", type="unsubscribed", from_="bob@localhost")
    one(got, "presence", type="unavailable", from_="bob@localhost/desk")
    one(got, "presence", type="unavailable", from_=str(bob2.jid))
    assert await state(h, "alice", "bob@localhost") == "None"


async def test_subscribe_to_unknown_user_is_refused(h: Harness) -> None:
    """RFC 6121 §3.1.3: a request for a user that does not exist gets "unsubscribed",
    which ends the pending out state (A.3.4)."""
    alice = await interested(h, "alice@localhost/phone")
    await h.send(alice, "<presence to='nobody@localhost' type='subscribe'/>")
    got = alice.take()
    one(got, "presence", type="unsubscribed", from_="nobody@localhost")
    assert [el.get("ask") for el in pushed(got, "nobody@localhost")] == ["subscribe", None]
    assert await state(h, "alice", "nobody@localhost") == "None"


async def test_subscription_stanzas_to_self_are_ignored(h: Harness) -> None:
    """The user is implicitly subscribed to itself (RFC 6121 §4.3.2 answers its probes)."""
    alice = await interested(h, "alice@localhost/phone")
    await h.send(alice, "<presence to='alice@localhost' type='subscribe'/>")
    assert alice.take() == []
    assert await item(h, "alice", "alice@localhost") is None


# -- presence (§4) -------------------------------------------------------------------------


async def _contacts(h: Harness) -> dict[str, FakeSession]:
    """alice's roster: bob both, dave to, erin from, frank none (the contacts' rosters
    match); everyone but alice online."""
    relations = {"bob": ("both", "both"), "dave": ("to", "from"), "erin": ("from", "to")}
    relations["frank"] = ("none", "none")
    sessions = {}
    for name, (mine, theirs) in relations.items():
        await set_roster(h, "alice", f"{name}@localhost", mine)
        await set_roster(h, name, "alice@localhost", theirs)
        sessions[name] = await h.online(f"{name}@localhost/res")
    return sessions


async def test_initial_presence(h: Harness) -> None:
    """RFC 6121 §4.2.2: initial presence goes to subscribers (from/both) only, probes
    the contacts alice is subscribed to (to/both), whose servers answer (§4.3.2), and
    is echoed to alice's resources."""
    contacts = await _contacts(h)
    fired: list[Session] = []

    async def on_initial(session: Session) -> None:
        fired.append(session)

    h.host().events.hook("presence-initial", on_initial)
    alice = await h.bind("alice@localhost/phone")
    await h.send(alice, "<presence><status>here</status></presence>")
    for name, expected in (("bob", 1), ("erin", 1), ("dave", 0), ("frank", 0)):
        got = find(contacts[name].take(), "presence", from_="alice@localhost/phone")
        assert len(got) == expected, name
    got = alice.take()
    one(got, "presence", from_="alice@localhost/phone", to="alice@localhost/phone")
    assert {el.get("from") for el in find(got, "presence", type=None)} == {
        "alice@localhost/phone",
        "bob@localhost/res",
        "dave@localhost/res",
    }
    assert fired == [alice]
    assert alice.presence is not None and alice.presence.findtext("status") == "here"


async def test_initial_presence_probes_remote_contacts_from_bare_jid(h: Harness) -> None:
    """RFC 6121 §4.2.2 / §4.3.1: probes come from the user's bare JID; the broadcast
    from the full JID; both to the contacts' bare JIDs."""
    await set_roster(h, "alice", CAROL, "both")
    await set_roster(h, "alice", "zed@remote.example", "to")
    await h.online("alice@localhost/phone")
    sent = h.take_remote()
    one(sent, "presence", type="probe", from_="alice@localhost", to=CAROL)
    one(sent, "presence", type="probe", from_="alice@localhost", to="zed@remote.example")
    one(sent, "presence", type=None, from_="alice@localhost/phone", to=CAROL)
    assert len(sent) == 3


async def test_presence_update_is_broadcast_without_probes(h: Harness) -> None:
    """RFC 6121 §4.4.2: an update goes to subscribers and the user's resources; no probes,
    no second ``presence-initial``."""
    contacts = await _contacts(h)
    alice = await h.online("alice@localhost/phone")
    for s in contacts.values():
        s.take()
    await h.send(alice, "<presence><show>away</show><priority>3</priority></presence>")
    assert alice.priority == 3
    assert find(contacts["bob"].take(), "presence", type="probe") == []
    one(contacts["erin"].take(), "presence", from_="alice@localhost/phone")
    assert contacts["dave"].take() == []
    echo = one(alice.take(), "presence")
    assert echo.findtext("show") == "away"


async def test_other_resources_exchange_presence(h: Harness) -> None:
    """RFC 6121 §4.2.2: a new resource gets the presence of the user's other available
    resources, and they get its presence."""
    phone = await h.online("alice@localhost/phone", "<presence><show>xa</show></presence>")
    laptop = await h.bind("alice@localhost/laptop")
    await h.send(laptop, "<presence/>")
    got = laptop.take()
    assert one(got, "presence", from_="alice@localhost/phone").findtext("show") == "xa"
    one(got, "presence", from_="alice@localhost/laptop")
    one(phone.take(), "presence", from_="alice@localhost/laptop", to="alice@localhost/phone")


async def test_unavailable_when_session_ends(h: Harness) -> None:
    """RFC 6121 §4.5.2: a session that goes away (logout or lost connection) is
    announced unavailable to subscribers and the user's other resources."""
    contacts = await _contacts(h)
    alice = await h.online("alice@localhost/phone")
    other = await h.online("alice@localhost/laptop")
    for s in [*contacts.values(), other, alice]:
        s.take()
    await alice.close()
    for name, expected in (("bob", 1), ("erin", 1), ("dave", 0), ("frank", 0)):
        got = find(contacts[name].take(), "presence", type="unavailable")
        assert len(got) == expected, name
    one(other.take(), "presence", type="unavailable", from_="alice@localhost/phone")
    assert alice.take() == []


async def test_explicit_unavailable_then_nothing_on_close(h: Harness) -> None:
    """RFC 6121 §4.5.2: explicit unavailable is broadcast (with its status) once; closing
    afterwards sends nothing more."""
    contacts = await _contacts(h)
    alice = await h.online("alice@localhost/phone")
    contacts["bob"].take()
    await h.send(alice, "<presence type='unavailable'><status>bye</status></presence>")
    gone = one(contacts["bob"].take(), "presence", type="unavailable")
    assert gone.findtext("status") == "bye"
    assert alice.presence is None
    await alice.close()
    assert contacts["bob"].take() == []


async def test_directed_presence_and_unavailable_on_logout(h: Harness) -> None:
    """RFC 6121 §4.6: directed presence is delivered and remembered; the targets get
    unavailable when the session ends; subscribers are not tracked twice."""
    contacts = await _contacts(h)
    alice = await h.online("alice@localhost/phone")
    for s in contacts.values():
        s.take()
    await h.send(alice, "<presence to='frank@localhost'/>")
    await h.send(alice, "<presence to='bob@localhost'/>")  # a subscriber anyway
    await h.send(alice, f"<presence to='{CAROL}/x'/>")
    one(contacts["frank"].take(), "presence", from_="alice@localhost/phone")
    one(contacts["bob"].take(), "presence", from_="alice@localhost/phone")
    assert {str(j) for j in alice.directed} == {"frank@localhost", f"{CAROL}/x"}
    h.take_remote()
    await alice.close()
    one(contacts["frank"].take(), "presence", type="unavailable")
    one(contacts["bob"].take(), "presence", type="unavailable")
    one(h.take_remote(), "presence", type="unavailable", to=f"{CAROL}/x")
    assert alice.directed == set()


async def test_directed_unavailable_forgets_target(h: Harness) -> None:
    """RFC 6121 §4.6.3: after directed unavailable, the target is not told again."""
    await h.account("frank")
    frank = await h.online("frank@localhost/res")
    alice = await h.online("alice@localhost/phone")
    await h.send(alice, "<presence to='frank@localhost'/>")
    await h.send(alice, "<presence to='frank@localhost' type='unavailable'/>")
    assert len(find(frank.take(), "presence")) == 2
    assert alice.directed == set()
    await alice.close()
    assert frank.take() == []


@pytest.mark.parametrize(
    ("xml", "expected"),
    [
        ("<presence/>", 0),
        ("<presence><priority>5</priority></presence>", 5),
        ("<presence><priority> -128 </priority></presence>", -128),
        ("<presence><priority>127</priority></presence>", 127),
    ],
)
def test_priority_parse(xml: str, expected: int) -> None:
    """RFC 6121 §4.7.2.3: an integer from -128 to 127, 0 when absent."""
    assert parse_priority(ET.fromstring(xml)) == expected


@pytest.mark.parametrize("value", ["128", "-129", "high", "", "1.5"])
async def test_bad_priority_is_refused(h: Harness, value: str) -> None:
    """RFC 6121 §4.7.2.3: out of range or not an integer → <bad-request/>, and the
    presence is neither recorded nor broadcast."""
    await set_roster(h, "alice", "bob@localhost", "from")
    bob = await h.online("bob@localhost/res")
    alice = await h.bind("alice@localhost/phone")
    await h.send(alice, f"<presence><priority>{value}</priority></presence>")
    err = one(alice.take(), "presence", type="error")
    assert error_condition(err) == "bad-request"
    assert err.get("to") == "alice@localhost/phone"
    assert alice.presence is None
    assert bob.take() == []


async def test_unknown_presence_type_is_refused(h: Harness) -> None:
    """RFC 6120 §8.2.2 / RFC 6121 §4.7.1: the type is one of the defined values."""
    alice = await h.bind("alice@localhost/phone")
    await h.send(alice, "<presence type='bogus'/>")
    assert error_condition(one(alice.take(), "presence", type="error")) == "bad-request"


async def test_inbound_presence_to_bare_and_full(h: Harness) -> None:
    """RFC 6121 §8.5.2.1.1 / §8.5.3.1: presence to the bare JID reaches every available
    resource; to a full JID, that resource; to a missing resource, nobody
    (§8.5.3.2.3); a bound but unavailable session gets no bare-JID presence."""
    phone = await h.online("alice@localhost/phone")
    laptop = await h.online("alice@localhost/laptop")
    idle = await h.bind("alice@localhost/idle")
    phone.take()
    await h.inject(f"<presence from='{CAROL}/x' to='alice@localhost'/>")
    one(phone.take(), "presence", from_=f"{CAROL}/x")
    one(laptop.take(), "presence", from_=f"{CAROL}/x")
    assert idle.take() == []
    await h.inject(f"<presence from='{CAROL}/x' to='alice@localhost/laptop' type='unavailable'/>")
    assert phone.take() == []
    one(laptop.take(), "presence", type="unavailable")
    await h.inject(f"<presence from='{CAROL}/x' to='alice@localhost/gone'/>")
    assert phone.take() == laptop.take() == idle.take() == []


async def test_presence_error_is_delivered(h: Harness) -> None:
    """RFC 6121 §8.5.3.1 / RFC 6120 §8.3: presence errors reach the user."""
    alice = await h.online("alice@localhost/phone")
    await h.inject(f"<presence from='{CAROL}' to='alice@localhost/phone' type='error'/>")
    one(alice.take(), "presence", type="error")


async def test_probe_answers(h: Harness) -> None:
    """RFC 6121 §4.3.2: a subscriber's probe gets each available resource's presence,
    or unavailable when none; others get "unsubscribed"; an unknown user too."""
    await set_roster(h, "alice", CAROL, "from")
    await h.account("alice")
    probe = "<presence from='{}' to='{}' type='probe'/>"
    await h.inject(probe.format(CAROL, "alice@localhost"))
    one(h.take_remote(), "presence", type="unavailable", from_="alice@localhost", to=CAROL)

    await h.online("alice@localhost/phone", "<presence><show>chat</show></presence>")
    h.take_remote()
    await h.inject(probe.format(CAROL, "alice@localhost"))
    answer = one(h.take_remote(), "presence", from_="alice@localhost/phone", to=CAROL)
    assert answer.findtext("show") == "chat"

    await h.inject(probe.format("zed@remote.example", "alice@localhost"))
    one(h.take_remote(), "presence", type="unsubscribed", to="zed@remote.example")
    await h.inject(probe.format("zed@remote.example", "nobody@localhost"))
    one(h.take_remote(), "presence", type="unsubscribed", from_="nobody@localhost")


async def test_probe_from_own_resource(h: Harness) -> None:
    """RFC 6121 §4.3.2: the user may probe its own bare JID."""
    phone = await h.online("alice@localhost/phone")
    laptop = await h.online("alice@localhost/laptop")
    phone.take()
    await h.send(laptop, "<presence to='alice@localhost' type='probe'/>")
    got = laptop.take()
    one(got, "presence", from_="alice@localhost/phone", to="alice@localhost/laptop")
    assert phone.take() == []


async def test_multi_host_subscription(h: Harness) -> None:
    """RFC 6121 §3.1: subscriptions between two domains served by the same server go
    through each host's own processing."""
    alice = await interested(h, "alice@localhost/phone")
    bob = await interested(h, "bob@example.org/desk")
    await h.send(alice, "<presence to='bob@example.org' type='subscribe'/>")
    one(bob.take(), "presence", type="subscribe", from_="alice@localhost")
    await h.send(bob, "<presence to='alice@localhost' type='subscribed'/>")
    one(alice.take(), "presence", type=None, from_="bob@example.org/desk")
    assert (await item(h, "alice", "bob@example.org")).subscription == "to"  # type: ignore[union-attr]


async def test_directed_presences_tracked_are_bounded(tmp_path: Path) -> None:
    """limits.max_directed_presences: one more directed presence is refused with
    <resource-constraint/> rather than sent untracked (its target would never learn
    the session went offline); updates to targets already tracked still go."""
    from descant.config import LimitsConfig

    h = await Harness.create(tmp_path, limits=LimitsConfig(max_directed_presences=2))
    try:
        alice = await h.online("alice@localhost/a")
        for n in (1, 2):
            await h.send(alice, f"<presence to='stranger{n}@remote.test'/>")
        assert alice.take() == []
        await h.send(alice, "<presence to='stranger3@remote.test' id='p3'/>")
        reply = one(alice.take(), "presence", type="error")
        assert error_condition(reply) == "resource-constraint"
        assert [p.get("to") for p in h.take_remote()] == [
            "stranger1@remote.test",
            "stranger2@remote.test",
        ]
        await h.send(alice, "<presence to='stranger1@remote.test'><show>away</show></presence>")
        assert alice.take() == [] and len(h.take_remote()) == 1
    finally:
        await h.stop()
