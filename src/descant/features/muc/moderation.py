"""Retracting messages in a room: by their sender (XEP-0424) and by a moderator
(XEP-0425 0.3, ``urn:xmpp:message-moderate:1``).

A sender's retraction is a groupchat message with ``<retract id='stanza-id'/>``:
the room accepts it only when the message it names was sent by the same occupant
(the same occupant-id, XEP-0421), else <forbidden/>; it is then reflected and
archived like any message. A moderator asks with an iq
``<moderate id='stanza-id'><retract/></moderate>``; the room broadcasts a
``<retract/>`` carrying ``<moderated by='room/nick'/>`` (and the reason), and
archives that. Either way the message is replaced by a tombstone in the archive
and in the join history, so that nobody joining or syncing later sees it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from descant.features.mam.retraction import MODERATE, OCCUPANT_ID, RETRACT, tombstone_element
from descant.features.muc import archive
from descant.features.muc.room import HistoryEntry, Occupant, Room
from descant.routing.router import StanzaEvent
from descant.stanza import new_id
from descant.xml.parser import parse_element
from descant.xml.serialize import serialize

if TYPE_CHECKING:
    from descant.features.muc.service import MUCService

_SID = f"{{{archive.SID}}}stanza-id"
_OCC = f"{{{OCCUPANT_ID}}}occupant-id"


def _find(room: Room, target: str) -> tuple[int | None, ET.Element | None]:
    """The history entry holding the message with archive id ``target``."""
    by = str(room.jid)
    for i, entry in enumerate(room.history):
        for sid in entry.stanza.iterfind(_SID):
            if sid.get("id") == target and sid.get("by") == by:
                return i, entry.stanza
    return None, None


async def _original(svc: MUCService, room: Room, target: str) -> ET.Element | None:
    _, stanza = _find(room, target)
    if stanza is not None:
        return stanza
    if room.config.logging:
        stored = await svc.host.storage.rooms.archive_get(svc.host.domain, room.jid.local, target)
        if stored is not None:
            return parse_element(stored.stanza)
    return None


async def _bury(
    svc: MUCService, room: Room, target: str, old: ET.Element, dead: ET.Element
) -> None:
    """Put the tombstone in place of the message, in history and in the archive."""
    i, _ = _find(room, target)
    if i is not None:
        entry = room.history[i]
        room.history[i] = HistoryEntry(dead, entry.stamp, len(serialize(dead)))
    if room.config.logging:
        await svc.host.storage.rooms.archive_replace(
            svc.host.domain, room.jid.local, target, serialize(dead)
        )


async def own_retraction(svc: MUCService, room: Room, occ: Occupant, stanza: ET.Element) -> bool:
    """A groupchat ``<retract/>`` from an occupant: True to go on reflecting it, False
    when it was refused (<forbidden/> sent)."""
    retract = stanza.find(f"{{{RETRACT}}}retract")
    assert retract is not None
    target = retract.get("id", "")
    old = await _original(svc, room, target) if target else None
    if old is None:
        return True  # nothing here to check it against; clients check the occupant-id
    occupant = old.find(_OCC)
    if occupant is None or occupant.get("id") != room.occupant_id(occ.bare):
        await svc.error(stanza, "forbidden", "only its sender may retract a message")
        return False
    await _bury(svc, room, target, old, tombstone_element(old, datetime.now(UTC)))
    return True


async def on_moderate(svc: MUCService, ev: StanzaEvent) -> bool:
    """XEP-0425 §4: a moderator removes a message."""
    stanza = ev.stanza
    room = svc.rooms.get(ev.to.local)
    if room is None:
        return await svc.error(stanza, "item-not-found", "no such room")
    occ = room.by_jid.get(ev.frm)
    if occ is None or occ.role != "moderator":
        return await svc.error(stanza, "forbidden", "only moderators may moderate")
    request = stanza[0]
    if request.find(f"{{{RETRACT}}}retract") is None:
        return await svc.error(stanza, "bad-request", "only retraction is supported")
    target = request.get("id", "")
    reason = (request.findtext(f"{{{MODERATE}}}reason") or "").strip()
    async with svc.room_order(room.jid.local):
        old = await _original(svc, room, target) if target else None
        if old is None:
            return await svc.error(stanza, "item-not-found", "no message with that id")
        by = str(room.nick_jid(occ.nick))
        now = datetime.now(UTC)
        moderated = ET.Element(f"{{{MODERATE}}}moderated", {"by": by})
        ET.SubElement(moderated, _OCC, {"id": room.occupant_id(occ.bare)})
        await _bury(svc, room, target, old, tombstone_element(old, now, moderated, reason))
        notice = ET.Element("message", {"type": "groupchat", "from": str(room.jid), "id": new_id()})
        retract = ET.SubElement(notice, f"{{{RETRACT}}}retract", {"id": target})
        retract.append(moderated)
        if reason:
            ET.SubElement(retract, f"{{{RETRACT}}}reason").text = reason
        archive_id = None
        if room.config.logging:
            archive_id = archive.stamp_id(room, notice)
        xml = serialize(notice)
        room.remember(notice, len(xml))
        await svc.send_all(svc.to_everyone(room, notice))
        if archive_id is not None:
            await archive.store(svc, room, xml, "", archive_id)
    svc.log.info("room %s: message %s removed by %s", room.jid, target, ev.frm.bare)
    return await svc.reply(stanza)
