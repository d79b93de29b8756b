"""Moderation and administration: the muc#admin (§8, §9) and muc#owner (§10) queries.

Privileges (XEP-0045 §5): moderators change roles (voice, kick); admins and
owners change affiliations (member, ban) of users who rank below admin; only
owners change admins and owners, configure and destroy the room. A request
beyond the requester's privileges is ``<forbidden/>``; one against a user the
rules protect (kicking an admin, an admin banning an owner) is
``<not-allowed/>``; removing the last owner is ``<conflict/>``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from descant.errors import StanzaError
from descant.features.muc import config as roomconfig
from descant.features.muc.names import (
    AFF_RANK,
    AFFILIATION_REMOVED,
    AFFILIATIONS,
    BANNED,
    CONFIG_CHANGED,
    DATA,
    KICKED,
    MEMBERS_ONLY_REMOVED,
    MUC_ADMIN,
    MUC_OWNER,
    MUC_USER,
    ROLE_RANK,
    ROLES,
    q,
)
from descant.features.muc.occupants import expel
from descant.features.muc.room import Occupant, Room
from descant.jid import InvalidJID, parse
from descant.routing.router import StanzaEvent
from descant.stanza import new_id

if TYPE_CHECKING:
    from descant.features.muc.service import MUCService


async def on_admin(svc: MUCService, ev: StanzaEvent) -> bool:
    stanza = ev.stanza
    room = svc.rooms.get(ev.to.local)
    if room is None:
        return await svc.error(stanza, "item-not-found", "no such room")
    items = stanza[0].findall(q(MUC_ADMIN, "item"))
    if not items:
        return await svc.error(stanza, "bad-request", "an <item/> is required")
    actor = room.by_jid.get(ev.frm)
    try:
        if stanza.get("type") == "get":
            result = list_query(room, ev, actor, items[0])
            return await svc.reply(stanza, result)
        changes = [check_change(room, ev, actor, item) for item in items]
    except StanzaError as err:
        await svc.server.router.bounce(stanza, err)
        return True
    for change in changes:
        await change(svc)
    return await svc.reply(stanza)


def list_query(room: Room, ev: StanzaEvent, actor: Occupant | None, item: ET.Element) -> ET.Element:
    """§8.5, §9.5, §9.8, §10.5, §10.8: occupants with a role, or JIDs with an affiliation."""
    my_aff = room.affiliation(ev.frm.bare)
    query = ET.Element(q(MUC_ADMIN, "query"))
    role = item.get("role")
    aff = item.get("affiliation")
    if role is not None:
        if role not in ROLES or role == "none":
            raise StanzaError("bad-request", "unknown role")
        needed_admin = role == "moderator"
        if (actor is None or actor.role != "moderator") or (
            needed_admin and AFF_RANK[my_aff] < AFF_RANK["admin"]
        ):
            raise StanzaError("forbidden", "you may not see that list")
        for occ in room.occupants.values():
            if occ.role == role:
                ET.SubElement(
                    query,
                    q(MUC_ADMIN, "item"),
                    {
                        "nick": occ.nick,
                        "role": occ.role,
                        "affiliation": room.affiliation(occ.bare),
                        "jid": str(occ.jid),
                    },
                )
        return query
    if aff is None or aff not in AFFILIATIONS or aff == "none":
        raise StanzaError("bad-request", "ask for a role or an affiliation")
    if AFF_RANK[my_aff] < AFF_RANK["admin"]:
        raise StanzaError("forbidden", "only admins and owners see affiliation lists")
    for jid in room.with_affiliation(aff):
        ET.SubElement(query, q(MUC_ADMIN, "item"), {"affiliation": aff, "jid": jid})
    return query


Change = Callable[["MUCService"], Awaitable[None]]


def check_change(room: Room, ev: StanzaEvent, actor: Occupant | None, item: ET.Element) -> Change:
    """Validate one change against §5's rules; return the coroutine function applying it."""
    reason = item.findtext(q(MUC_ADMIN, "reason"))
    my_aff = room.affiliation(ev.frm.bare)
    actor_nick = actor.nick if actor is not None else None
    role = item.get("role")
    if role is not None:
        if role not in ROLES:
            raise StanzaError("bad-request", "unknown role")
        if actor is None or actor.role != "moderator":
            raise StanzaError("forbidden", "only moderators change roles")
        found = room.occupants.get(item.get("nick", ""))
        if found is None:
            raise StanzaError("item-not-found", "no such occupant")
        target = found
        target_aff = room.affiliation(target.bare)
        if "moderator" in (role, target.role) and AFF_RANK[my_aff] < AFF_RANK["admin"]:
            raise StanzaError("forbidden", "only admins grant or revoke moderator")
        demotion = ROLE_RANK[role] < ROLE_RANK[target.role]
        if demotion and target_aff in ("admin", "owner") and not room.outranks(my_aff, target_aff):
            raise StanzaError("not-allowed", f"you may not do that to an {target_aff}")

        async def apply_role(svc: MUCService) -> None:
            await set_role(svc, room, target, role, actor_nick, reason)

        return apply_role
    aff = item.get("affiliation")
    if aff is None or aff not in AFFILIATIONS:
        raise StanzaError("bad-request", "give a role or an affiliation")
    if AFF_RANK[my_aff] < AFF_RANK["admin"]:
        raise StanzaError("forbidden", "only admins and owners change affiliations")
    if item.get("jid"):
        try:
            bare = str(parse(item.get("jid", "")).bare)
        except InvalidJID:
            raise StanzaError("jid-malformed", "invalid jid") from None
    else:
        by_nick = room.occupants.get(item.get("nick", ""))
        if by_nick is None:
            raise StanzaError("bad-request", "give a jid (or the nick of an occupant)")
        bare = str(by_nick.bare)
    old = room.affiliation(bare)
    if my_aff != "owner" and (old in ("admin", "owner") or aff in ("admin", "owner")):
        raise StanzaError("not-allowed", "only owners change admins and owners")
    if old == "owner" and aff != "owner" and len(room.with_affiliation("owner")) == 1:
        raise StanzaError("conflict", "a room needs an owner")

    async def apply_affiliation(svc: MUCService) -> None:
        await set_affiliation(svc, room, bare, aff, actor_nick, reason)

    return apply_affiliation


async def set_role(
    svc: MUCService, room: Room, target: Occupant, role: str, actor: str | None, reason: str | None
) -> None:
    if role == "none":
        await expel(svc, room, target, (KICKED,), actor, reason)  # §8.2
        return
    target.role = role
    await svc.send_all(svc.fanout(room, target, self_to=target.sessions, reason=reason))


async def set_affiliation(
    svc: MUCService, room: Room, bare: str, aff: str, actor: str | None, reason: str | None
) -> None:
    room.set_affiliation(bare, aff)
    await svc.save_affiliation(room, bare, aff)
    for occ in [o for o in room.occupants.values() if str(o.bare) == bare]:
        if aff == "outcast":
            await expel(svc, room, occ, (BANNED,), actor, reason)  # §9.1
        elif room.config.members_only and aff == "none":
            await expel(svc, room, occ, (AFFILIATION_REMOVED,), actor, reason)  # §9.4
        else:
            occ.role = room.default_role(aff)
            await svc.send_all(svc.fanout(room, occ, self_to=occ.sessions, reason=reason))


async def on_owner(svc: MUCService, ev: StanzaEvent) -> bool:
    """§10: the configuration form (get, submit, cancel) and room destruction."""
    stanza = ev.stanza
    room = svc.rooms.get(ev.to.local)
    if room is None:
        return await svc.error(stanza, "item-not-found", "no such room")
    if room.affiliation(ev.frm.bare) != "owner":
        return await svc.error(stanza, "forbidden", "only owners configure the room")
    query = stanza[0]
    limit = svc.options.max_occupants
    if stanza.get("type") == "get":
        out = ET.Element(q(MUC_OWNER, "query"))
        out.append(
            roomconfig.to_form(
                room.config, limit, room.with_affiliation("owner"), room.with_affiliation("admin")
            )
        )
        return await svc.reply(stanza, out)
    destroy = query.find(q(MUC_OWNER, "destroy"))
    if destroy is not None:
        await svc.reply(stanza)
        await svc.destroy(
            room,
            destroy.findtext(q(MUC_OWNER, "reason")),
            destroy.get("jid"),
            destroy.findtext(q(MUC_OWNER, "password")),
        )
        return True
    form = query.find(q(DATA, "x"))
    if form is None:
        return await svc.error(stanza, "bad-request", "a data form or <destroy/> is required")
    if form.get("type") == "cancel":
        await svc.reply(stanza)
        if room.locked:
            await svc.destroy(room)  # §10.1.3: cancelling the initial configuration
        return True
    if form.get("type") != "submit":
        return await svc.error(stanza, "bad-request", "submit or cancel the form")
    try:
        sub = roomconfig.apply_form(room.config, form, limit)
    except StanzaError as err:
        await svc.server.router.bounce(stanza, err)
        return True
    old = room.config
    initial = room.locked
    room.config = sub.config
    room.locked = False
    for jid in sub.admins:
        if room.affiliation(jid) != "owner":
            room.set_affiliation(jid, "admin")
    for jid in sub.owners:
        room.set_affiliation(jid, "owner")
    await svc.save(room, affiliations=True)
    await svc.reply(stanza)
    if not initial:
        await _config_changed(svc, room, old)
    return True


async def _config_changed(svc: MUCService, room: Room, old: roomconfig.RoomConfig) -> None:
    """§10.2.1: occupants learn of the change (104; 172/173 for anonymity);
    non-members leave a room that became members-only (322)."""
    codes = [CONFIG_CHANGED]
    if room.config.whois != old.whois:
        codes.append("172" if room.config.non_anonymous else "173")
    msg = ET.Element("message", {"from": str(room.jid), "type": "groupchat", "id": new_id("cfg")})
    x = ET.SubElement(msg, q(MUC_USER, "x"))
    for code in codes:
        ET.SubElement(x, q(MUC_USER, "status"), {"code": code})
    await svc.send_all(svc.to_everyone(room, msg))
    if room.config.members_only and not old.members_only:
        for occ in list(room.occupants.values()):
            if AFF_RANK[room.affiliation(occ.bare)] < AFF_RANK["member"]:
                await expel(svc, room, occ, (MEMBERS_ONLY_REMOVED,), None, None)
