"""The multi-user chat service (XEP-0045): a module on the service's own Host.

For each served domain D, :func:`descant.features.muc.add_services` creates a Host
for ``<muc.domain_prefix>.D`` and loads this module there, so the router fires
room stanzas on that host's bus like any other: ``presence/full`` for
``room@service/nick`` (join, nick change, leave; occupants.py), ``message/bare``
and ``message/full`` (groupchat, subject, invitations, voice requests, private
messages; messages.py), ``iq-*/bare/…muc#admin`` and ``…muc#owner`` (admin.py)
and disco on the service and rooms (here).

Occupants live on user hosts, local or remote: everything the room sends goes
through ``router.route`` with no origin. An occupant whose connection drops
leaves because the user's server sends unavailable presence to every target of
directed presence (RFC 6121 §4.6.3; features/presence.py does it on
``resource-unbound``), and a joined room is such a target.

The ``rooms`` dict is the truth while the server runs. Persistent rooms (their
configuration, subject and affiliations) are written through ``Storage.rooms``
whenever they change and loaded at start; temporary rooms vanish with their
last occupant.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable

from descant import forms
from descant.errors import StanzaError
from descant.features.mam.retraction import MODERATE, RETRACT
from descant.features.muc import admin, archive, messages, moderation, occupants
from descant.features.muc.config import RoomConfig
from descant.features.muc.names import (
    MUC,
    MUC_ADMIN,
    MUC_OWNER,
    MUC_ROOMINFO,
    MUC_USER,
    OCCUPANT_ID,
    RSM,
    q,
)
from descant.features.muc.room import Occupant, Room
from descant.jid import JID
from descant.locks import KeyedLock
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import iq_result, retarget, retarget_all
from descant.xml import ns


class MUCService(Module):
    name = "muc"

    def load(self) -> None:
        self.options = self.server.config.muc
        self.rooms: dict[str, Room] = {}
        self.host.add_identity("conference", "text", "Chatrooms")
        self.host.add_feature(MUC, ns.DISCO_INFO, ns.DISCO_ITEMS, OCCUPANT_ID, RSM)
        self.hook("presence/full", lambda ev: occupants.on_presence(self, ev))
        self.hook("presence/bare", lambda ev: occupants.on_presence_bare(self, ev))
        self.hook("message/bare", lambda ev: messages.on_message(self, ev))
        self.hook("message/full", lambda ev: messages.on_private(self, ev))
        self.hook("iq/full", lambda ev: messages.on_iq_to_occupant(self, ev))
        self.hook("iq-result/bare", self._ignore)
        self.hook_iq("get", "host", f"{ns.DISCO_INFO}:query", self.service_info)
        self.hook_iq("get", "host", f"{ns.DISCO_ITEMS}:query", self.service_items)
        self.hook_iq("get", "bare", f"{ns.DISCO_INFO}:query", self.room_info)
        self.hook_iq("get", "bare", f"{ns.DISCO_ITEMS}:query", self.room_items)
        for type_ in ("get", "set"):
            self.hook_iq(type_, "bare", f"{MUC_ADMIN}:query", lambda ev: admin.on_admin(self, ev))
            self.hook_iq(type_, "bare", f"{MUC_OWNER}:query", lambda ev: admin.on_owner(self, ev))
        self.hook_iq("set", "bare", f"{archive.MAM}:query", lambda ev: archive.on_query(self, ev))
        self.hook_iq("get", "bare", f"{archive.MAM}:query", lambda ev: archive.on_fields(self, ev))
        self.hook_iq(
            "set", "bare", f"{MODERATE}:moderate", lambda ev: moderation.on_moderate(self, ev)
        )
        # Groupchat messages of one room go out one at a time (messages.groupchat).
        self.room_order = KeyedLock()
        # Forwarded iq between occupants, oldest first: our id → (requester, its id,
        # the occupant's real JID it went to, the requester's nick it came from).
        self.iq_pending: dict[str, tuple[str, str, str, str]] = {}

    async def start(self) -> None:
        store = self.host.storage.rooms
        for _, name in await store.list_rooms(self.host.domain):
            raw = await store.get_room(self.host.domain, name)
            if raw is None:
                continue
            data = json.loads(raw)
            room = Room(
                JID(name, self.host.domain, ""),
                RoomConfig.from_json(data.get("config", {})),
                await store.get_affiliations(self.host.domain, name),
                data.get("salt"),
                self.options.history_length,
            )
            room.subject = data.get("subject", "")
            room.subject_by = data.get("subject_by", "")
            if room.config.logging:
                await archive.load_history(self, room)
            self.rooms[name] = room
        if self.rooms:
            self.log.info("loaded %d persistent rooms on %s", len(self.rooms), self.host.domain)

    async def _ignore(self, ev: StanzaEvent) -> bool:
        return True

    # -- rooms ------------------------------------------------------------------------

    def may_create(self, jid: JID) -> bool:
        if self.options.room_creation == "anyone":
            return True
        return jid.domain in self.server.config.server.domains

    def owned(self, jid: JID) -> int:
        """Rooms of this service ``jid`` (its account) owns."""
        bare = str(jid.bare)
        return sum(1 for room in self.rooms.values() if room.affiliations.get(bare) == "owner")

    def create_room(self, name: str, owner: JID, locked: bool) -> Room:
        room = Room(JID(name, self.host.domain, ""), history_length=self.options.history_length)
        room.affiliations[str(owner.bare)] = "owner"
        room.locked = locked
        self.rooms[name] = room
        self.log.info("room %s created by %s", room.jid, owner.bare)
        return room

    def limit(self, room: Room) -> int:
        return min(room.max_users or self.options.max_occupants, self.options.max_occupants)

    async def save(self, room: Room, affiliations: bool = False) -> None:
        """Store a persistent room (and all its affiliations if asked); forget a temporary one."""
        store = self.host.storage.rooms
        name = room.jid.local
        if not room.config.persistent:
            if await store.get_room(self.host.domain, name) is not None:
                await store.delete_room(self.host.domain, name)
            return
        data = {
            "config": room.config.to_json(),
            "subject": room.subject,
            "subject_by": room.subject_by,
            "salt": room.salt,
        }
        await store.save_room(self.host.domain, name, json.dumps(data))
        if affiliations:
            stored = await store.get_affiliations(self.host.domain, name)
            for jid in set(stored) - set(room.affiliations):
                await store.set_affiliation(self.host.domain, name, jid, "none")
            for jid, aff in room.affiliations.items():
                if stored.get(jid) != aff:
                    await store.set_affiliation(self.host.domain, name, jid, aff)

    async def save_affiliation(self, room: Room, jid: str, affiliation: str) -> None:
        if room.config.persistent:
            await self.host.storage.rooms.set_affiliation(
                self.host.domain, room.jid.local, jid, affiliation
            )

    async def vanish_if_empty(self, room: Room) -> None:
        """Temporary rooms go with their last occupant; so does a room never configured."""
        if room.occupants or self.rooms.get(room.jid.local) is not room:
            return
        if room.locked or not room.config.persistent:
            del self.rooms[room.jid.local]
            if room.config.logging:  # a temporary room's archive goes with it
                await self.host.storage.rooms.delete_room(self.host.domain, room.jid.local)
            self.log.info("room %s vanished (empty, temporary)", room.jid)

    async def destroy(
        self,
        room: Room,
        reason: str | None = None,
        alternate: str | None = None,
        password: str | None = None,
    ) -> None:
        """§10.9: every occupant is told and removed; the room is forgotten."""
        d = ET.Element(q(MUC_USER, "destroy"))
        if alternate:
            d.set("jid", alternate)
        if reason:
            ET.SubElement(d, q(MUC_USER, "reason")).text = reason
        if password:
            ET.SubElement(d, q(MUC_USER, "password")).text = password
        out: list[ET.Element] = []
        for occ in list(room.occupants.values()):
            p = room.presence(occ, type_="unavailable", destroy=d, codes=())
            out.extend(retarget(p, to=str(s)) for s in occ.sessions)
        room.occupants.clear()
        room.by_jid.clear()
        self.rooms.pop(room.jid.local, None)
        await self.host.storage.rooms.delete_room(self.host.domain, room.jid.local)
        self.log.info("room %s destroyed", room.jid)
        await self.send_all(out)

    # -- sending ------------------------------------------------------------------------

    async def send_all(self, stanzas: Iterable[ET.Element]) -> None:
        for stanza in stanzas:
            await self.server.router.route(stanza)

    async def error(self, stanza: ET.Element, condition: str, text: str | None = None) -> bool:
        await self.server.router.bounce(stanza, StanzaError(condition, text))
        return True

    async def reply(self, iq: ET.Element, payload: ET.Element | None = None) -> bool:
        await self.server.router.route(iq_result(iq, payload))
        return True

    def fanout(
        self,
        room: Room,
        occ: Occupant,
        *,
        self_to: Iterable[JID],
        self_codes: tuple[str, ...] = (),
        codes: tuple[str, ...] = (),
        type_: str | None = None,
        nick: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
    ) -> list[ET.Element]:
        """``occ``'s presence for everyone in the room: one variant per view (real JID
        shown or not, and the occupant's own with status 110), retargeted per session."""

        def build(codes: tuple[str, ...], show_jid: bool) -> ET.Element:
            return room.presence(
                occ,
                type_=type_,
                codes=codes,
                show_jid=show_jid,
                nick=nick,
                actor=actor,
                reason=reason,
            )

        targets: dict[bool, list[str]] = {True: [], False: []}
        for other in room.occupants.values():
            if other.nick != occ.nick:
                targets[room.sees_jids(other)].extend(str(s) for s in other.sessions)
        out: list[ET.Element] = []
        for see, to in targets.items():
            if to:
                out += retarget_all(build(codes, see), to)
        out += retarget_all(build((*codes, *self_codes, "110"), True), [str(s) for s in self_to])
        return out

    def to_everyone(self, room: Room, stanza: ET.Element) -> list[ET.Element]:
        """One copy per occupant session, the payload serialized once for all."""
        return retarget_all(stanza, [str(s) for o in room.occupants.values() for s in o.sessions])

    # -- discovery (XEP-0030, XEP-0045 §6) ---------------------------------------------

    async def service_info(self, ev: StanzaEvent) -> bool:
        if ev.stanza[0].get("node"):
            return await self.error(ev.stanza, "item-not-found")
        return await self.reply(ev.stanza, self.host.disco_info())

    async def service_items(self, ev: StanzaEvent) -> bool:
        """§6.3: public rooms, paged with RSM (XEP-0059) when asked."""
        if ev.stanza[0].get("node"):
            return await self.error(ev.stanza, "item-not-found")
        rooms = sorted(
            (r for r in self.rooms.values() if r.config.public and not r.locked),
            key=lambda r: str(r.jid),
        )
        query = ET.Element(q(ns.DISCO_ITEMS, "query"))
        rsm = ev.stanza[0].find(q(RSM, "set"))
        page = rooms
        first_index = 0
        if rsm is not None:
            after = rsm.findtext(q(RSM, "after"))
            before = rsm.findtext(q(RSM, "before"))
            max_text = rsm.findtext(q(RSM, "max"))
            limit = int(max_text) if max_text and max_text.isdigit() else len(rooms)
            index = rsm.findtext(q(RSM, "index"))
            if after:
                first_index = next(
                    (i + 1 for i, r in enumerate(rooms) if str(r.jid) == after), len(rooms)
                )
                page = rooms[first_index : first_index + limit]
            elif before is not None:
                end = next((i for i, r in enumerate(rooms) if str(r.jid) == before), len(rooms))
                first_index = max(0, end - limit)
                page = rooms[first_index:end]
            else:
                first_index = int(index) if index and index.isdigit() else 0
                page = rooms[first_index : first_index + limit]
        for r in page:
            ET.SubElement(
                query,
                q(ns.DISCO_ITEMS, "item"),
                {"jid": str(r.jid), "name": r.config.name or r.jid.local},
            )
        if rsm is not None:
            s = ET.SubElement(query, q(RSM, "set"))
            if page:
                ET.SubElement(s, q(RSM, "first"), {"index": str(first_index)}).text = str(
                    page[0].jid
                )
                ET.SubElement(s, q(RSM, "last")).text = str(page[-1].jid)
            ET.SubElement(s, q(RSM, "count")).text = str(len(rooms))
        return await self.reply(ev.stanza, query)

    async def room_info(self, ev: StanzaEvent) -> bool:
        """§6.4: the room's features and the muc#roominfo form."""
        room = self.rooms.get(ev.to.local)
        node = ev.stanza[0].get("node")
        if room is not None and node == "x-roomuser-item":
            # §7.12: no registered nicknames here, so the answer is empty.
            return await self.reply(
                ev.stanza, ET.Element(q(ns.DISCO_INFO, "query"), {"node": node})
            )
        if room is None or node:
            return await self.error(ev.stanza, "item-not-found")
        cfg = room.config
        query = ET.Element(q(ns.DISCO_INFO, "query"))
        ET.SubElement(
            query,
            q(ns.DISCO_INFO, "identity"),
            {"category": "conference", "type": "text", "name": cfg.name or room.jid.local},
        )
        features = [
            MUC,
            ns.DISCO_INFO,
            OCCUPANT_ID,
            RETRACT,
            MODERATE,
            "muc_public" if cfg.public else "muc_hidden",
            "muc_persistent" if cfg.persistent else "muc_temporary",
            "muc_membersonly" if cfg.members_only else "muc_open",
            "muc_moderated" if cfg.moderated else "muc_unmoderated",
            "muc_passwordprotected" if cfg.password_protected else "muc_unsecured",
            "muc_nonanonymous" if cfg.non_anonymous else "muc_semianonymous",
        ]
        if cfg.logging:
            features += [archive.MAM, archive.SID]
        for f in features:
            ET.SubElement(query, q(ns.DISCO_INFO, "feature"), {"var": f})
        query.append(
            forms.build(
                "result",
                MUC_ROOMINFO,
                [
                    ("muc#roominfo_description", "", "Description", [cfg.description]),
                    ("muc#roominfo_occupants", "", "Occupants", [str(len(room.occupants))]),
                    ("muc#roominfo_subject", "", "Subject", [room.subject]),
                    ("muc#roominfo_lang", "", "Language", [cfg.lang]),
                    ("muc#roomconfig_roomname", "", "Name", [cfg.name]),
                    ("muc#maxhistoryfetch", "", "History", [str(room.history.maxlen or 0)]),
                ],
            )
        )
        return await self.reply(ev.stanza, query)

    async def room_items(self, ev: StanzaEvent) -> bool:
        """§6.5: the occupant list is not disclosed; an empty list is allowed."""
        room = self.rooms.get(ev.to.local)
        if room is None:
            return await self.error(ev.stanza, "item-not-found")
        return await self.reply(ev.stanza, ET.Element(q(ns.DISCO_ITEMS, "query")))
