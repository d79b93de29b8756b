"""Messages in a room: groupchat (§7.4), subject (§8.1), private messages (§7.5),
mediated invitations and declines (§7.8.2, §7.8.3), voice requests (§8.6), and iq
between occupants (§7.5, forwarded with the room's addresses).

Direct invitations (XEP-0249) go from user to user and never reach the room.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant import forms
from descant.features.mam.retraction import RETRACT
from descant.features.muc import admin, archive, moderation
from descant.features.muc.names import DATA, MUC_REQUEST, MUC_USER, q
from descant.features.muc.room import Occupant, Room
from descant.jid import InvalidJID, parse
from descant.routing.router import StanzaEvent
from descant.stanza import new_id, payload_key, retarget
from descant.xml.serialize import serialize

if TYPE_CHECKING:
    from descant.features.muc.service import MUCService


async def on_message(svc: MUCService, ev: StanzaEvent) -> bool:
    stanza = ev.stanza
    type_ = stanza.get("type", "normal")
    if type_ == "error":
        return True  # an occupant's client bounced something: nothing to answer
    room = svc.rooms.get(ev.to.local)
    if room is None:
        return await svc.error(stanza, "item-not-found", "no such room")
    occ = room.by_jid.get(ev.frm)
    if type_ == "groupchat":
        if occ is None:
            return await svc.error(stanza, "not-acceptable", "you are not in this room")
        return await groupchat(svc, room, occ, stanza)
    x = stanza.find(q(MUC_USER, "x"))
    if x is not None and x.find(q(MUC_USER, "invite")) is not None:
        return await invite(svc, room, occ, ev, x)
    if x is not None and x.find(q(MUC_USER, "decline")) is not None:
        return await decline(svc, room, ev, x)
    form = stanza.find(q(DATA, "x"))
    if form is not None and forms.form_type(form) == MUC_REQUEST:
        if occ is None:
            return await svc.error(stanza, "not-acceptable", "you are not in this room")
        return await voice_request(svc, room, occ, stanza, form)
    return await svc.error(stanza, "bad-request", "send groupchat messages to the room")


async def groupchat(svc: MUCService, room: Room, occ: Occupant, stanza: ET.Element) -> bool:
    subject = stanza.find("subject")
    is_subject = subject is not None and stanza.find("body") is None
    if is_subject:
        allowed = occ.role == "moderator" or (
            room.config.change_subject and occ.role == "participant"
        )
        if not allowed:
            return await svc.error(stanza, "forbidden", "you may not change the subject")
    elif occ.role not in ("participant", "moderator"):
        # §7.4: visitors in a moderated room have no voice.
        return await svc.error(stanza, "forbidden", "you have no voice in this room")
    if stanza.find(f"{{{RETRACT}}}retract") is not None and not await moderation.own_retraction(
        svc, room, occ, stanza
    ):
        return True
    # One order per room: a message is reflected, kept in history, delivered to every
    # occupant and archived before the next one starts, so every occupant, the
    # history and the archive see the same order (a slow recipient, one whose
    # delivery waits on storage or federation, would otherwise let a later message
    # overtake an earlier one for some occupants).
    async with svc.room_order(room.jid.local):
        reflected = room.reflect(stanza, occ)
        archive_id = None
        if is_subject:
            assert subject is not None
            room.subject = subject.text or ""
            room.subject_by = occ.nick
        elif stanza.find("body") is not None or stanza.find(f"{{{RETRACT}}}retract") is not None:
            if room.config.logging:
                archive_id = archive.stamp_id(room, reflected)
            if room.history.maxlen or archive_id is not None:
                xml = serialize(reflected)  # once, for the history's length and the archive
                room.remember(reflected, len(xml))
        await svc.send_all(svc.to_everyone(room, reflected))
        if is_subject and room.config.persistent:
            await svc.save(room)
        elif archive_id is not None:
            await archive.store(svc, room, xml, occ.nick, archive_id)
    return True


async def on_private(svc: MUCService, ev: StanzaEvent) -> bool:
    """§7.5: a private message to room/nick goes to the occupant's sessions."""
    stanza = ev.stanza
    type_ = stanza.get("type", "normal")
    room = svc.rooms.get(ev.to.local)
    if type_ == "error":
        return True
    if room is None:
        return await svc.error(stanza, "item-not-found", "no such room")
    occ = room.by_jid.get(ev.frm)
    if occ is None:
        return await svc.error(stanza, "not-acceptable", "you are not in this room")
    if type_ == "groupchat":
        return await svc.error(stanza, "bad-request", "groupchat goes to the room")
    target = room.occupants.get(ev.to.resource)
    if target is None:
        return await svc.error(stanza, "item-not-found", "no such occupant")
    allow = room.config.allow_pm
    permitted = (
        allow == "anyone"
        or (allow == "participants" and occ.role in ("participant", "moderator"))
        or (allow == "moderators" and occ.role == "moderator")
    )
    if not permitted:
        return await svc.error(stanza, "forbidden", "private messages are not allowed here")
    attrs = dict(stanza.attrib)
    attrs["from"] = str(room.nick_jid(occ.nick))
    out = ET.Element("message", attrs)
    out.text = stanza.text
    out.extend(c for c in stanza if c.tag != q(MUC_USER, "x"))
    ET.SubElement(out, q(MUC_USER, "x"))
    await svc.send_all(retarget(out, to=str(s)) for s in target.sessions)
    return True


async def invite(
    svc: MUCService, room: Room, occ: Occupant | None, ev: StanzaEvent, x: ET.Element
) -> bool:
    """§7.8.2: the room passes the invitation on, from itself."""
    stanza = ev.stanza
    if occ is None:
        return await svc.error(stanza, "not-acceptable", "you are not in this room")
    aff = room.affiliation(occ.bare)
    privileged = aff in ("owner", "admin")
    if room.config.members_only and not (privileged or room.config.allow_invites):
        return await svc.error(stanza, "forbidden", "only admins may invite to this room")
    out = []
    for inv in x.findall(q(MUC_USER, "invite")):
        try:
            invitee = parse(inv.get("to", ""))
        except InvalidJID:
            return await svc.error(stanza, "jid-malformed", "invalid invitee")
        if room.config.members_only and room.affiliation(invitee.bare) == "none":
            # §7.8.2: inviting to a members-only room makes the invitee a member.
            room.set_affiliation(str(invitee.bare), "member")
            await svc.save_affiliation(room, str(invitee.bare), "member")
        msg = ET.Element(
            "message", {"from": str(room.jid), "to": str(invitee), "id": new_id("inv")}
        )
        ux = ET.SubElement(msg, q(MUC_USER, "x"))
        fwd = ET.SubElement(ux, q(MUC_USER, "invite"), {"from": str(ev.frm.bare)})
        reason = inv.findtext(q(MUC_USER, "reason"))
        if reason:
            ET.SubElement(fwd, q(MUC_USER, "reason")).text = reason
        if room.config.password_protected:
            ET.SubElement(ux, q(MUC_USER, "password")).text = room.config.password
        ET.SubElement(msg, "body").text = f"{ev.frm.bare} invites you to the room {room.jid}" + (
            f": {reason}" if reason else ""
        )
        out.append(msg)
    await svc.send_all(out)
    return True


async def decline(svc: MUCService, room: Room, ev: StanzaEvent, x: ET.Element) -> bool:
    """§7.8.3: a declined invitation goes back to the inviter, from the room."""
    dec = x.find(q(MUC_USER, "decline"))
    assert dec is not None
    try:
        inviter = parse(dec.get("to", ""))
    except InvalidJID:
        return await svc.error(ev.stanza, "jid-malformed", "invalid inviter")
    msg = ET.Element("message", {"from": str(room.jid), "to": str(inviter), "id": new_id("dec")})
    ux = ET.SubElement(msg, q(MUC_USER, "x"))
    fwd = ET.SubElement(ux, q(MUC_USER, "decline"), {"from": str(ev.frm.bare)})
    reason = dec.findtext(q(MUC_USER, "reason"))
    if reason:
        ET.SubElement(fwd, q(MUC_USER, "reason")).text = reason
    await svc.send_all([msg])
    return True


async def voice_request(
    svc: MUCService, room: Room, occ: Occupant, stanza: ET.Element, form: ET.Element
) -> bool:
    """§8.6: a visitor asks for voice (form to the moderators); a moderator's
    submitted approval (muc#request_allow) grants it (§8.6 "approval")."""
    vals = forms.values(form)
    if form.get("type") == "submit" and "muc#request_allow" in vals:
        if occ.role != "moderator":
            return await svc.error(stanza, "forbidden", "only moderators approve voice requests")
        nick = forms.single(vals.get("muc#roomnick", []))
        target = room.occupants.get(nick)
        allow = forms.boolean(vals["muc#request_allow"], "muc#request_allow")
        if allow and target is not None and target.role == "visitor":
            await admin.set_role(svc, room, target, "participant", occ.nick, None)
        return True
    if occ.role != "visitor":
        return True  # has voice already
    req = forms.build(
        "form",
        MUC_REQUEST,
        [
            ("muc#role", "list-single", "Requested role", ["participant"]),
            ("muc#jid", "jid-single", "User ID", [str(occ.jid)]),
            ("muc#roomnick", "text-single", "Room Nickname", [occ.nick]),
            ("muc#request_allow", "boolean", "Grant voice to this person?", ["0"]),
        ],
        title="Voice request",
    )
    out = []
    for mod in room.occupants.values():
        if mod.role == "moderator":
            for s in mod.sessions:
                msg = ET.Element(
                    "message", {"from": str(room.jid), "to": str(s), "id": new_id("vr")}
                )
                msg.append(req)
                out.append(msg)
    await svc.send_all(out)
    return True


IQ_PENDING_LIMIT = 10_000  # forwarded iqs awaiting an answer, per MUC service


async def on_iq_to_occupant(svc: MUCService, ev: StanzaEvent) -> bool:
    """An iq between occupants (vCard, ping, version…): passed on with room addresses,
    the answer passed back under the original id."""
    stanza = ev.stanza
    type_ = stanza.get("type")
    room = svc.rooms.get(ev.to.local)
    if type_ in ("result", "error"):
        iq_id = stanza.get("id", "")
        pending = svc.iq_pending.get(iq_id)
        # Only the occupant the request went to may answer it, to the nick it came from.
        if pending is None or room is None or pending[2:] != (str(ev.frm), ev.to.resource):
            return True
        del svc.iq_pending[iq_id]
        requester, orig_id = pending[:2]
        frm = room.by_jid.get(ev.frm)
        if frm is not None:
            await svc.send_all(
                [retarget(stanza, from_=str(room.nick_jid(frm.nick)), to=requester, id=orig_id)]
            )
        return True
    if room is None:
        return await svc.error(stanza, "item-not-found", "no such room")
    occ = room.by_jid.get(ev.frm)
    target = room.occupants.get(ev.to.resource)
    if occ is None:
        return await svc.error(stanza, "not-acceptable", "you are not in this room")
    if target is None:
        return await svc.error(stanza, "item-not-found", "no such occupant")
    if target is occ and payload_key(stanza) == "urn:xmpp:ping:ping":
        # XEP-0410 self-ping: the room answers that the sender is still in.
        return await svc.reply(stanza)
    if len(svc.iq_pending) >= IQ_PENDING_LIMIT:
        # The oldest request whose answer never came goes: the table does not grow.
        del svc.iq_pending[next(iter(svc.iq_pending))]
    iq_id = new_id("miq")
    svc.iq_pending[iq_id] = (str(ev.frm), stanza.get("id", ""), str(target.jid), occ.nick)
    fwd = retarget(stanza, from_=str(room.nick_jid(occ.nick)), to=str(target.jid), id=iq_id)
    await svc.send_all([fwd])
    return True
