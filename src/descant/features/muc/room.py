"""One room's state: configuration, affiliations, occupants, subject and history.

A ``Room`` is plain data plus the rules that need nothing but that data: which
role an affiliation gets (XEP-0045 §5.1), who may see real JIDs (§7.2.3/§7.2.4),
the presence and message stanzas the room sends. The service (service.py) does
all routing, so a Room can be unit-tested on its own.

Occupants are keyed by nick. One user may join under one nick from several
sessions (§7.2 "multiple sessions"): an ``Occupant`` then holds several full JIDs,
and what the room sends to the occupant goes to each of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import xml.etree.ElementTree as ET
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from descant.features.muc.config import RoomConfig
from descant.features.muc.names import AFF_RANK, MUC, MUC_USER, OCCUPANT_ID, q
from descant.jid import JID
from descant.stamps import format_stamp, parse_stamp
from descant.stanza import new_id, retarget
from descant.xml import ns

# Children of a client's presence that the room does not pass on.
_DROP = frozenset({q(MUC, "x"), q(MUC_USER, "x"), q(OCCUPANT_ID, "occupant-id")})


@dataclass(slots=True)
class Occupant:
    nick: str
    bare: JID
    role: str
    presence: ET.Element  # the last presence received, as the client sent it
    sessions: list[JID] = field(default_factory=list)  # full JIDs, latest last

    @property
    def jid(self) -> JID:
        """The full JID shown as the occupant's (the most recent session)."""
        return self.sessions[-1]


@dataclass(slots=True)
class HistoryEntry:
    stanza: ET.Element  # from room/nick, no 'to'
    stamp: datetime
    chars: int


class Room:
    def __init__(
        self,
        jid: JID,
        config: RoomConfig | None = None,
        affiliations: dict[str, str] | None = None,
        salt: str | None = None,
        history_length: int = 50,
    ) -> None:
        self.jid = jid
        self.config = config or RoomConfig()
        self.affiliations: dict[str, str] = dict(affiliations or {})
        self.salt = salt or base64.b64encode(os.urandom(12)).decode()
        self.occupants: dict[str, Occupant] = {}
        self.by_jid: dict[JID, Occupant] = {}
        self.subject = ""
        self.subject_by = ""  # nick that set it; "" for the room itself
        self.history: deque[HistoryEntry] = deque(maxlen=history_length)
        self.locked = False  # created, waiting for its owner to configure it (§10.1)

    def __repr__(self) -> str:
        return f"<Room {self.jid} {len(self.occupants)} occupants>"

    # -- affiliations and roles -------------------------------------------------------

    def affiliation(self, bare: JID | str) -> str:
        return self.affiliations.get(str(bare), "none")

    def set_affiliation(self, bare: str, affiliation: str) -> None:
        if affiliation == "none":
            self.affiliations.pop(bare, None)
        else:
            self.affiliations[bare] = affiliation

    def with_affiliation(self, affiliation: str) -> list[str]:
        return sorted(j for j, a in self.affiliations.items() if a == affiliation)

    def default_role(self, affiliation: str) -> str:
        """§5.1: the role an occupant gets on entering."""
        if affiliation in ("owner", "admin"):
            return "moderator"
        if affiliation == "outcast":
            return "none"
        if self.config.moderated and affiliation != "member":
            return "visitor"
        return "participant"

    def outranks(self, actor: str, target: str) -> bool:
        return AFF_RANK[actor] > AFF_RANK[target]

    def sees_jids(self, occ: Occupant) -> bool:
        return self.config.non_anonymous or occ.role == "moderator"

    def occupant_id(self, bare: JID) -> str:
        """XEP-0421: stable per room and user, opaque (keyed with the room's salt)."""
        digest = hmac.new(self.salt.encode(), str(bare).encode(), hashlib.sha256).digest()
        return base64.b64encode(digest[:18]).decode()

    def nick_jid(self, nick: str) -> JID:
        return JID(self.jid.local, self.jid.domain, nick)

    @property
    def max_users(self) -> int:
        return self.config.max_users

    # -- what the room sends ------------------------------------------------------------

    def presence(
        self,
        occ: Occupant,
        *,
        type_: str | None = None,
        codes: tuple[str, ...] = (),
        show_jid: bool = False,
        nick: str | None = None,
        actor: str | None = None,
        reason: str | None = None,
        destroy: ET.Element | None = None,
    ) -> ET.Element:
        """The presence of ``occ`` as the room broadcasts it (without 'to')."""
        attrs = {"from": str(self.nick_jid(occ.nick))}
        if type_:
            attrs["type"] = type_
        out = ET.Element("presence", attrs)
        if type_ is None:
            out.extend(c for c in occ.presence if c.tag not in _DROP)
        elif (status := occ.presence.find("status")) is not None:
            out.append(status)
        x = ET.SubElement(out, q(MUC_USER, "x"))
        role = "none" if type_ == "unavailable" else occ.role
        item_attrs = {"affiliation": self.affiliation(occ.bare), "role": role}
        if show_jid:
            item_attrs["jid"] = str(occ.jid)
        if nick is not None:
            item_attrs["nick"] = nick
        item = ET.SubElement(x, q(MUC_USER, "item"), item_attrs)
        if actor is not None:
            ET.SubElement(item, q(MUC_USER, "actor"), {"nick": actor})
        if reason:
            ET.SubElement(item, q(MUC_USER, "reason")).text = reason
        if destroy is not None:
            x.append(destroy)
        for code in codes:
            ET.SubElement(x, q(MUC_USER, "status"), {"code": code})
        ET.SubElement(out, q(OCCUPANT_ID, "occupant-id"), {"id": self.occupant_id(occ.bare)})
        return out

    def subject_message(self) -> ET.Element:
        """§7.2.15: the subject, sent last on entering (an empty one if unset)."""
        frm = str(self.nick_jid(self.subject_by)) if self.subject_by else str(self.jid)
        msg = ET.Element("message", {"from": frm, "type": "groupchat", "id": new_id("subj")})
        ET.SubElement(msg, "subject").text = self.subject or None
        return msg

    def reflect(self, stanza: ET.Element, occ: Occupant) -> ET.Element:
        """A groupchat message as the room reflects it: from the nick, same id,
        the sender's own occupant-id replaced by the room's (XEP-0421 §4)."""
        attrs = dict(stanza.attrib)
        attrs["from"] = str(self.nick_jid(occ.nick))
        attrs.pop("to", None)
        out = ET.Element("message", attrs)
        out.text = stanza.text
        out.extend(c for c in stanza if c.tag != q(OCCUPANT_ID, "occupant-id"))
        ET.SubElement(out, q(OCCUPANT_ID, "occupant-id"), {"id": self.occupant_id(occ.bare)})
        return out

    # -- history (§7.2.14) ------------------------------------------------------------

    def remember(self, stanza: ET.Element, chars: int) -> None:
        """Keep a reflected message for history; ``chars`` is its serialized length."""
        if self.history.maxlen:
            self.history.append(HistoryEntry(stanza, datetime.now(UTC), chars))

    def history_for(self, request: ET.Element | None, to: str) -> list[ET.Element]:
        """The history a joining occupant asked for, each with a delay stamp."""
        entries = list(self.history)
        if request is not None:
            entries = _limit(entries, request)
        out = []
        for e in entries:
            msg = retarget(e.stanza, to=to)
            stamp = format_stamp(e.stamp)
            ET.SubElement(msg, q(ns.DELAY, "delay"), {"from": str(self.jid), "stamp": stamp})
            out.append(msg)
        return out


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return max(0, int(value))
    except ValueError:
        return None


def _limit(entries: list[HistoryEntry], req: ET.Element) -> list[HistoryEntry]:
    """Apply <history maxchars maxstanzas seconds since/> (§7.2.14): every limit given."""
    maxstanzas = _int(req.get("maxstanzas"))
    if maxstanzas is not None:
        entries = entries[len(entries) - maxstanzas :] if maxstanzas else []
    seconds = _int(req.get("seconds"))
    if seconds is not None:
        cutoff = datetime.now(UTC) - timedelta(seconds=seconds)
        entries = [e for e in entries if e.stamp >= cutoff]
    since = req.get("since")
    if since:
        try:
            t = parse_stamp(since)
            entries = [e for e in entries if e.stamp > t]
        except ValueError:
            pass
    maxchars = _int(req.get("maxchars"))
    if maxchars is not None:
        kept: list[HistoryEntry] = []
        total = 0
        for e in reversed(entries):
            total += e.chars
            if total > maxchars:
                break
            kept.append(e)
        entries = kept[::-1]
    return entries
