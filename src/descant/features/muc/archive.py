"""The message archive of rooms that log (XEP-0313 on the room JID, XEP-0359 ids).

A room with ``muc#roomconfig_enablelogging`` stamps each groupchat message it
reflects with a ``<stanza-id by='room'/>`` and stores it through
``Storage.rooms``; occupants (and, in an open room, anyone not banned) query it
with ``urn:xmpp:mam:2`` filters (start, end, with = room/nick) and RSM paging.
Persistent logging rooms also refill their join history from it at start.
"""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from descant import forms
from descant.errors import StanzaError
from descant.features.mam import query as mam_query
from descant.features.muc.names import AFF_RANK, DATA, RSM, q
from descant.features.muc.room import HistoryEntry, Room
from descant.jid import InvalidJID, parse
from descant.routing.router import StanzaEvent
from descant.storage.api import ArchivedMessage, ArchiveQuery, UnknownArchiveId
from descant.xml.parser import parse_element

if TYPE_CHECKING:
    from descant.features.muc.service import MUCService

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
FORWARD = "urn:xmpp:forward:0"
MAX_PAGE = 250


def stamp_id(room: Room, message: ET.Element) -> str:
    """Give a reflected message its archive id (XEP-0359 §3); return the id."""
    for old in message.findall(q(SID, "stanza-id")):
        if old.get("by") == str(room.jid):
            message.remove(old)  # a client may not forge the room's id
    id_ = uuid.uuid4().hex[:20]
    ET.SubElement(message, q(SID, "stanza-id"), {"id": id_, "by": str(room.jid)})
    return id_


async def store(svc: MUCService, room: Room, xml: str, nick: str, id_: str) -> None:
    """Archive a reflected message, given as its serialized text."""
    msg = ArchivedMessage(id_, datetime.now(UTC), nick, xml)
    await svc.host.storage.rooms.archive_add(svc.host.domain, room.jid.local, msg)


async def load_history(svc: MUCService, room: Room) -> None:
    """Refill the join history of a logging room from its archive."""
    size = room.history.maxlen or 0
    if not size:
        return
    page, _ = await svc.host.storage.rooms.archive_query(
        svc.host.domain, room.jid.local, ArchiveQuery(before="", limit=size)
    )
    for m in page:
        room.history.append(HistoryEntry(parse_element(m.stanza), m.stamp, len(m.stanza)))


def _may_read(room: Room, bare: str) -> bool:
    aff = room.affiliation(bare)
    if aff == "outcast":
        return False
    return not room.config.members_only or AFF_RANK[aff] >= AFF_RANK["member"]


def _query(room: Room, query: ET.Element) -> ArchiveQuery | None:
    """The storage query a MAM request asks for; None when it can match nothing."""
    form = query.find(q(DATA, "x"))
    values = forms.values(form) if form is not None else {}
    nick = None
    with_ = forms.single(values.get("with", []))
    if with_:
        try:
            jid = parse(with_)
        except InvalidJID:
            raise StanzaError("jid-malformed", "with: not a JID") from None
        if jid.bare != room.jid:
            return None
        nick = jid.resource or None
    limit = 50
    after = before = None
    rsm = query.find(q(RSM, "set"))
    if rsm is not None:
        max_text = rsm.findtext(q(RSM, "max"))
        if max_text is not None:
            if not max_text.strip().isdigit():
                raise StanzaError("bad-request", "max: not a number")
            limit = min(int(max_text), MAX_PAGE)
        after = rsm.findtext(q(RSM, "after"))
        before = rsm.findtext(q(RSM, "before"))
    return ArchiveQuery(
        mam_query.form_time(values, "start"),
        mam_query.form_time(values, "end"),
        nick,
        after,
        before,
        limit,
    )


async def on_query(svc: MUCService, ev: StanzaEvent) -> bool:
    """XEP-0313 §4: results as forwarded messages, then the iq result with <fin/>."""
    stanza = ev.stanza
    room = svc.rooms.get(ev.to.local)
    if room is None:
        return await svc.error(stanza, "item-not-found", "no such room")
    if not _may_read(room, str(ev.frm.bare)):
        return await svc.error(stanza, "forbidden", "you may not read this archive")
    query = stanza[0]
    try:
        aq = _query(room, query)
        page: list[ArchivedMessage] = []
        complete = True
        if aq is not None:
            page, complete = await svc.host.storage.rooms.archive_query(
                svc.host.domain, room.jid.local, aq
            )
    except StanzaError as err:
        await svc.server.router.bounce(stanza, err)
        return True
    except UnknownArchiveId:
        return await svc.error(stanza, "item-not-found", "no message with that id")
    queryid = query.get("queryid")
    to, frm = str(ev.frm), str(room.jid)
    await svc.send_all(
        mam_query.result_message(to, frm, queryid, m.id, m.stamp, parse_element(m.stanza))
        for m in page
    )
    first, last = (page[0].id, page[-1].id) if page else (None, None)
    return await svc.reply(stanza, mam_query.fin(first, last, complete))


async def on_fields(svc: MUCService, ev: StanzaEvent) -> bool:
    """XEP-0313 §6.1: the filter fields the service supports."""
    query = ET.Element(q(MAM, "query"))
    query.append(
        forms.build(
            "form",
            MAM,
            [
                ("with", "jid-single", "", []),
                ("start", "text-single", "", []),
                ("end", "text-single", "", []),
            ],
        )
    )
    return await svc.reply(ev.stanza, query)
