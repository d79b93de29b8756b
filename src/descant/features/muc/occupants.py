"""Entering, changing nick, updating presence and leaving (XEP-0045 §7.2, §7.6, §7.7, §7.14).

Every handler checks and changes the room's state before its first ``await``, so
two users' sessions interleaving at an await never see a half-made change (e.g.
two joins both passing the nick-conflict check).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.features.muc.names import (
    AFF_RANK,
    CREATED,
    LOGGING_ON,
    MUC,
    NICK_CHANGED,
    NON_ANONYMOUS,
    q,
)
from descant.features.muc.room import Occupant, Room
from descant.jid import JID
from descant.routing.router import StanzaEvent
from descant.stanza import retarget

if TYPE_CHECKING:
    from descant.features.muc.service import MUCService


async def on_presence(svc: MUCService, ev: StanzaEvent) -> bool:
    stanza = ev.stanza
    type_ = stanza.get("type")
    if not ev.to.local:
        # service/resource names no room.
        if type_ is None:
            await svc.error(stanza, "jid-malformed", "address a room: room@service/nick")
        return True
    room = svc.rooms.get(ev.to.local)
    occ = room.by_jid.get(ev.frm) if room is not None else None
    if type_ in ("unavailable", "error"):
        # An error presence means the client cannot be reached: it leaves too.
        if room is not None and occ is not None:
            await leave(svc, room, occ, ev.frm, stanza)
        return True
    if type_ is not None:
        return True  # subscriptions and probes to an occupant: ignored
    if room is None or occ is None:
        await join(svc, room, ev)
    elif occ.nick != ev.to.resource:
        await change_nick(svc, room, occ, ev)
    elif (x := stanza.find(q(MUC, "x"))) is not None:
        # Entering again while in (a client that lost track, e.g. after a failed
        # XEP-0410 self-ping): it gets the room's state again.
        occ.presence = stanza
        await svc.send_all(room_state(svc, room, occ, ev.frm, x, broadcast=False))
    else:
        await update(svc, room, occ, ev)
    return True


async def on_presence_bare(svc: MUCService, ev: StanzaEvent) -> bool:
    """Presence to the room itself: unavailable leaves; entering needs a nick (§7.2.1)."""
    stanza = ev.stanza
    type_ = stanza.get("type")
    room = svc.rooms.get(ev.to.local)
    occ = room.by_jid.get(ev.frm) if room is not None else None
    if type_ == "unavailable" and room is not None and occ is not None:
        await leave(svc, room, occ, ev.frm, stanza)
    elif type_ is None:
        await svc.error(stanza, "jid-malformed", "a nickname is required to enter a room")
    return True


async def join(svc: MUCService, room: Room | None, ev: StanzaEvent) -> None:
    stanza, frm, nick = ev.stanza, ev.frm, ev.to.resource
    x = stanza.find(q(MUC, "x"))
    creating = False
    if room is None:
        if not svc.may_create(frm):
            await svc.error(stanza, "not-allowed", "you may not create rooms here")
            return
        limit = svc.server.config.limits.max_rooms_per_account
        if svc.owned(frm) >= limit:
            svc.log.info("%s may not create %s: owns %d rooms", frm.bare, ev.to.bare, limit)
            await svc.error(stanza, "not-allowed", f"you own {limit} rooms already")
            return
        if not nick.strip():
            await svc.error(stanza, "jid-malformed", "the nickname is empty")
            return
        # §10.1.2: with <x xmlns='…muc'/> the room stays locked until configured;
        # a groupchat 1.0 client (no <x/>) gets an instant room.
        room = svc.create_room(ev.to.local, frm, locked=x is not None)
        creating = True
    bare = frm.bare
    aff = room.affiliation(bare)
    existing = room.occupants.get(nick)
    if not nick.strip():
        error = ("jid-malformed", "the nickname is empty")
    elif room.locked and not creating and aff != "owner":
        error = ("item-not-found", "the room is locked until its owner configures it")
    elif aff == "outcast":
        error = ("forbidden", "you are banned from this room")
    elif room.config.members_only and AFF_RANK[aff] < AFF_RANK["member"]:
        error = ("registration-required", "this room is for members only")
    elif room.config.password_protected and _password(x) != room.config.password:
        error = ("not-authorized", "a password is required")
    elif existing is not None and existing.bare != bare:
        error = ("conflict", "that nickname is in use")
    elif (
        existing is None
        and aff not in ("owner", "admin")
        and len(room.occupants) >= svc.limit(room)
    ):
        error = ("service-unavailable", "the room is full")
    else:
        error = None
    if error is not None:
        await svc.error(stanza, *error)
        return
    if existing is not None:
        # Another session of the same user, under the same nick (§7.2 multi-session).
        occ = existing
        occ.sessions.append(frm)
        occ.presence = stanza
    else:
        occ = Occupant(nick, bare, room.default_role(aff), stanza, [frm])
        room.occupants[nick] = occ
    room.by_jid[frm] = occ
    await svc.send_all(room_state(svc, room, occ, frm, x, creating, broadcast=existing is None))


def room_state(
    svc: MUCService,
    room: Room,
    occ: Occupant,
    frm: JID,
    x: ET.Element | None,
    creating: bool = False,
    broadcast: bool = True,
) -> list[ET.Element]:
    """What an entering session gets (§7.2.3): the others' presence, its own (and,
    with ``broadcast``, everyone else's copy of it), the history, the subject."""
    me = str(frm)
    out: list[ET.Element] = []
    see = room.sees_jids(occ)
    for other in room.occupants.values():
        if other is not occ:
            out.append(retarget(room.presence(other, show_jid=see), to=me))
    self_codes = []
    if room.config.non_anonymous:
        self_codes.append(NON_ANONYMOUS)
    if room.config.logging:
        self_codes.append(LOGGING_ON)
    if creating:
        self_codes.append(CREATED)
    if broadcast:
        out += svc.fanout(room, occ, self_to=[frm], self_codes=tuple(self_codes))
    else:
        out.append(retarget(room.presence(occ, codes=(*self_codes, "110"), show_jid=True), to=me))
    history = x.find(q(MUC, "history")) if x is not None else None
    out += room.history_for(history, me)
    out.append(retarget(room.subject_message(), to=me))
    return out


def _password(x: ET.Element | None) -> str | None:
    return None if x is None else x.findtext(q(MUC, "password"))


async def change_nick(svc: MUCService, room: Room, occ: Occupant, ev: StanzaEvent) -> None:
    """§7.6: unavailable from the old nick with 303 and the new nick, then available."""
    new = ev.to.resource
    if not new.strip():
        await svc.error(ev.stanza, "jid-malformed", "the nickname is empty")
        return
    if new in room.occupants:
        await svc.error(ev.stanza, "conflict", "that nickname is in use")
        return
    out = svc.fanout(
        room, occ, self_to=occ.sessions, type_="unavailable", codes=(NICK_CHANGED,), nick=new
    )
    del room.occupants[occ.nick]
    occ.nick = new
    occ.presence = ev.stanza
    room.occupants[new] = occ
    out += svc.fanout(room, occ, self_to=occ.sessions)
    await svc.send_all(out)


async def update(svc: MUCService, room: Room, occ: Occupant, ev: StanzaEvent) -> None:
    """§7.7: a changed availability status is broadcast."""
    occ.presence = ev.stanza
    occ.sessions.remove(ev.frm)
    occ.sessions.append(ev.frm)
    await svc.send_all(svc.fanout(room, occ, self_to=occ.sessions))


async def leave(svc: MUCService, room: Room, occ: Occupant, frm: JID, stanza: ET.Element) -> None:
    """§7.14: unavailable to everyone (status 110 to the one leaving)."""
    leaving = dataclasses.replace(occ, presence=stanza, sessions=[*occ.sessions])
    leaving.sessions.remove(frm)
    leaving.sessions.append(frm)
    if len(occ.sessions) > 1:
        # Another session keeps the nick: only this one is told it left.
        p = room.presence(leaving, type_="unavailable", codes=("110",), show_jid=True)
        occ.sessions.remove(frm)
        del room.by_jid[frm]
        await svc.send_all([retarget(p, to=str(frm))])
        return
    out = svc.fanout(room, leaving, self_to=[frm], type_="unavailable")
    remove(room, occ)
    await svc.send_all(out)
    await svc.vanish_if_empty(room)


def remove(room: Room, occ: Occupant) -> None:
    if room.occupants.get(occ.nick) is occ:
        del room.occupants[occ.nick]
    for s in occ.sessions:
        room.by_jid.pop(s, None)


async def expel(
    svc: MUCService,
    room: Room,
    occ: Occupant,
    codes: tuple[str, ...],
    actor: str | None,
    reason: str | None,
) -> None:
    """Kick, ban or membership loss (§8.2, §9.1, §9.4): gone with a status code."""
    out = svc.fanout(
        room,
        occ,
        self_to=occ.sessions,
        type_="unavailable",
        codes=codes,
        actor=actor,
        reason=reason,
    )
    remove(room, occ)
    await svc.send_all(out)
    await svc.vanish_if_empty(room)
