"""Helpers for the multi-user chat feature tests (test_muc*.py)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tests.harness import FakeSession, Harness, dump

SERVICE = "conference.localhost"
ROOM = f"room@{SERVICE}"
MUC_NS = "http://jabber.org/protocol/muc"
MUC = "{%s}" % MUC_NS
USER = "{http://jabber.org/protocol/muc#user}"
ADMIN = "http://jabber.org/protocol/muc#admin"
OWNER = "http://jabber.org/protocol/muc#owner"
DATA = "{jabber:x:data}"
OCC_ID = "{urn:xmpp:occupant-id:0}occupant-id"
X = f"<x xmlns='{MUC_NS}'/>"


def codes(stanza: ET.Element) -> set[str]:
    return {s.get("code", "") for s in stanza.findall(f"{USER}x/{USER}status")}


def item(stanza: ET.Element) -> ET.Element:
    it = stanza.find(f"{USER}x/{USER}item")
    assert it is not None, dump([stanza])
    return it


def presences(got: list[ET.Element], frm: str) -> list[ET.Element]:
    return [s for s in got if s.tag == "presence" and s.get("from") == frm]


async def enter(
    h: Harness, s: FakeSession, nick: str, room: str = ROOM, x: str = X
) -> list[ET.Element]:
    await h.send(s, f"<presence to='{room}/{nick}'>{x}</presence>")
    return s.take()


async def submit(h: Harness, s: FakeSession, room: str = ROOM, **fields: str) -> ET.Element:
    """Submit the owner configuration form with these muc#roomconfig_<name> fields."""
    body = "".join(
        f"<field var='muc#roomconfig_{k}'><value>{v}</value></field>" for k, v in fields.items()
    )
    return await h.iq(
        s,
        f"<iq type='set' to='{room}'><query xmlns='{OWNER}'>"
        f"<x xmlns='jabber:x:data' type='submit'>{body}</x></query></iq>",
    )


async def new_room(
    h: Harness, owner: FakeSession, nick: str = "owner", room: str = ROOM, **fields: str
) -> None:
    """Create a room (reserved, configured with ``fields``) and clear what that brought."""
    await enter(h, owner, nick, room)
    answer = await submit(h, owner, room, **fields)
    assert answer.get("type") == "result", dump([answer])
    owner.take()


async def admin_set(h: Harness, s: FakeSession, items: str, room: str = ROOM) -> ET.Element:
    return await h.iq(s, f"<iq type='set' to='{room}'><query xmlns='{ADMIN}'>{items}</query></iq>")


async def admin_get(h: Harness, s: FakeSession, attr: str, room: str = ROOM) -> ET.Element:
    return await h.iq(
        s, f"<iq type='get' to='{room}'><query xmlns='{ADMIN}'><item {attr}/></query></iq>"
    )
