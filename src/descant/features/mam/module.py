"""Message Archive Management for every account (XEP-0313 1.1, XEP-0359, XEP-0424).

Each message an account sends or receives is archived once in that account's
archive, if it is worth keeping (policy.py) and the account's preferences say so:

- sent by a local session: on ``pre-message``, after blocking (priority 20) has
  refused what it refuses; a message to the account's own JID is archived only
  when it arrives, so once;
- arriving for a local account (``message/bare|full|self``, priority 15: after
  blocking, before carbons (10) and delivery (0)): any ``<stanza-id/>`` claiming
  to be by the account is removed and the archive's own added (XEP-0359 §5), so
  the delivered message, its carbons copies and the copy in offline storage all
  carry the id a MAM-syncing client de-duplicates by.

Archiving costs the message path an append to the background writer (writer.py).
Queries (§4), preferences (§6.2), the query form (§6.1) and metadata (1.1,
``urn:xmpp:mam:2#extended``) are iqs to the account's own bare JID; an iq for
someone else's archive is <forbidden/>. A retraction (XEP-0424) replaces the
retracted message in the archives of both parties with a tombstone, and is
archived itself; a client that tries to retract a message its contact sent gets
<forbidden/> and the retraction goes nowhere.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from descant.config import parse_duration
from descant.errors import StanzaError
from descant.features.mam.policy import RETRACT, Prefs, archivable
from descant.features.mam.query import (
    EXTENDED,
    MAM,
    fin,
    parse_request,
    query_form,
    result_message,
)
from descant.features.mam.retraction import tombstone
from descant.features.mam.writer import ArchiveWriter
from descant.jid import InvalidJID, parse
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stamps import format_stamp
from descant.stanza import iq_result
from descant.storage.api import MamEntry, MamIds, UnknownArchiveId, mam_id, mam_stamp
from descant.xml.parser import parse_element
from descant.xml.serialize import escape_attr, serialize

SID = "urn:xmpp:sid:0"
_STANZA_ID = f"{{{SID}}}stanza-id"
_ORIGIN_ID = f"{{{SID}}}origin-id"
_RETRACT = f"{{{RETRACT}}}retract"
PREFS_CACHE = 10_000  # accounts whose preferences are kept in memory
EXPIRE_BATCH = 1000
EXPIRE_EVERY = 600.0  # seconds between expiry runs


# One allocator for the process: ids (keys) increase across every host's archive, so two
# messages never share one, and a message's place in the archive is its id's.
_IDS = MamIds()


def origin_id(stanza: ET.Element) -> str:
    """What a sender retracts a message by: its origin-id, else its id (XEP-0424 §4)."""
    oid = stanza.find(_ORIGIN_ID)
    if oid is not None and oid.get("id"):
        return oid.get("id", "")
    return stanza.get("id", "")


class MamModule(Module):
    name = "mam"

    def load(self) -> None:
        cfg = self.server.config.mam
        self.enabled = cfg.enabled
        if not cfg.enabled:
            return
        self.host.add_account_feature(MAM, EXTENDED, SID)
        # Also on the server: clients that look there (Profanity) before asking the account.
        self.host.add_feature(MAM, EXTENDED)
        self.writer = ArchiveWriter(self.host.storage.mam)
        self._prefs: OrderedDict[str, Prefs] = OrderedDict()
        # The last outgoing message archived: (element, its length and attributes then, text).
        self._last: tuple[ET.Element, int, dict[str, str], str] | None = None
        self.hook("pre-message", self.outgoing, 15)
        for kind in ("bare", "full", "self"):
            self.hook(f"message/{kind}", self.incoming, 15)
        self.hook_iq("set", "self", f"{MAM}:query", self.on_query)
        self.hook_iq("get", "self", f"{MAM}:query", self.on_form)
        self.hook_iq("get", "self", f"{MAM}:prefs", self.on_prefs_get)
        self.hook_iq("set", "self", f"{MAM}:prefs", self.on_prefs_set)
        self.hook_iq("get", "self", f"{MAM}:metadata", self.on_metadata)
        self.hook("account-removed", self.on_account_removed)
        for type_ in ("get", "set"):
            for payload in ("query", "prefs", "metadata"):
                self.hook_iq(type_, "bare", f"{MAM}:{payload}", self.on_others)

    async def start(self) -> None:
        if not self.enabled:
            return
        self.writer.start()
        self._stopping = asyncio.Event()
        expire_after = parse_duration(self.server.config.mam.expire_after)
        # Expiry covers every host's archive at once: the first host runs it.
        if expire_after is not None and self.host.domain == self.server.default_domain:
            self.tasks.spawn(self._expire_loop(expire_after))

    async def stop(self) -> None:
        if self.enabled:
            self._stopping.set()
            await self.writer.close()

    async def on_account_removed(self, user: str) -> None:
        """Entries still queued reach storage before the account's data is swept away
        (features/register.py), and its cached preferences go."""
        self._prefs.pop(user, None)
        await self.writer.flush()

    # -- archiving ---------------------------------------------------------------------

    async def outgoing(self, ev: StanzaEvent) -> bool | None:
        self._last = None
        stanza = ev.stanza
        if not archivable(stanza) or ev.to.bare == ev.frm.bare:
            return None
        owner, contact = ev.frm.local, str(ev.to.bare)
        if not await self._wanted(owner, contact):
            return None
        if stanza.find(_RETRACT) is not None and not await self._retract(owner, contact, ev, True):
            return True  # not theirs to retract: refused, and delivered nowhere
        entry = self._entry(stanza, contact, ev.to.resource, True)
        # A local recipient's archive takes the same text plus its stanza-id (incoming):
        # kept to save serializing the message a second time.
        self._last = (stanza, len(stanza), dict(stanza.attrib), entry.stanza)
        await self.writer.put(self.host.domain, owner, entry)
        return None

    async def incoming(self, ev: StanzaEvent) -> bool | None:
        stanza = ev.stanza
        owner = ev.to.local
        by = f"{owner}@{self.host.domain}"
        forged = [c for c in stanza if c.tag == _STANZA_ID and c.get("by") == by]
        for c in forged:
            stanza.remove(c)  # only the archive gives ids by this account
        if not archivable(stanza):
            return None
        contact = str(ev.frm.bare)
        if not self.host.sessions.of_user(owner) and not await self._exists(owner):
            return None  # no such account: the message module answers the sender
        if not await self._wanted(owner, contact):
            return None
        if stanza.find(_RETRACT) is not None:
            await self._retract(owner, contact, ev, False)
        entry = self._entry(stanza, contact, ev.frm.resource, False, stamp_by=by)
        await self.writer.put(self.host.domain, owner, entry)
        return None

    def _entry(
        self,
        stanza: ET.Element,
        contact: str,
        resource: str,
        outgoing: bool,
        stamp_by: str | None = None,
    ) -> MamEntry:
        key = _IDS.next_key()
        id_ = mam_id(key)
        text = None
        if stamp_by is not None:
            last = self._last
            if (
                last is not None
                and last[0] is stanza
                and last[1] == len(stanza)
                and last[2] == stanza.attrib
            ):
                # The sender's copy, serialized a moment ago and unchanged since (children
                # are only ever added): the stanza-id goes in before the end tag.
                stored = last[3]
                tail = stored.rindex("</")
                sid = f"<stanza-id xmlns='{SID}' id='{id_}' by='{escape_attr(stamp_by)}'/>"
                text = stored[:tail] + sid + stored[tail:]
            self._last = None
            ET.SubElement(stanza, _STANZA_ID, {"id": id_, "by": stamp_by})
        return MamEntry(
            id=id_,
            # The key's time: now, or a microsecond or so later when several messages
            # arrived within one (keys only increase).
            stamp=mam_stamp(key),
            with_jid=contact,
            with_resource=resource,
            outgoing=outgoing,
            origin_id=origin_id(stanza),
            text=stanza.findtext("body") or "",
            stanza=text if text is not None else serialize(stanza),
        )

    async def _exists(self, owner: str) -> bool:
        return await self.host.storage.accounts.get(self.host.domain, owner) is not None

    async def _retract(self, owner: str, contact: str, ev: StanzaEvent, outgoing: bool) -> bool:
        """Put a tombstone in place of the message a retraction names, in ``owner``'s
        archive; ``outgoing``: the owner is the one retracting. A sender may retract
        only what it sent: False (and <forbidden/> to the sender) when the id names a
        message the contact sent."""
        retract = ev.stanza.find(_RETRACT)
        assert retract is not None
        target_id = retract.get("id", "")
        if not target_id:
            return True
        mam = self.host.storage.mam
        domain = self.host.domain
        await self.writer.flush()  # the message may still be on its way to storage
        found = await mam.find_origin(domain, owner, contact, target_id, outgoing)
        if found is not None:
            await mam.replace(domain, owner, found.id, tombstone(found.stanza, datetime.now(UTC)))
            return True
        if outgoing and await mam.find_origin(domain, owner, contact, target_id, False):
            await self.server.router.bounce(
                ev.stanza, StanzaError("forbidden", "only its sender may retract a message")
            )
            return False
        return True

    # -- preferences -------------------------------------------------------------------

    async def _prefs_of(self, owner: str) -> Prefs:
        cache = self._prefs
        prefs = cache.get(owner)
        if prefs is not None:
            cache.move_to_end(owner)
            return prefs
        default = self.server.config.mam.default
        text = await self.host.storage.keyval.get(self.host.domain, owner, "mam", "prefs")
        prefs = Prefs.from_json(text, default) if text else Prefs(default)
        cache[owner] = prefs
        if len(cache) > PREFS_CACHE:
            cache.popitem(last=False)
        return prefs

    async def _wanted(self, owner: str, contact: str) -> bool:
        prefs = await self._prefs_of(owner)
        decided = prefs.decide(contact, None)
        if decided is None:
            item = await self.host.storage.roster.get_item(self.host.domain, owner, contact)
            decided = item is not None
        return decided

    def _prefs_element(self, prefs: Prefs) -> ET.Element:
        el = ET.Element(f"{{{MAM}}}prefs", {"default": prefs.default})
        for name, jids in (("always", prefs.always), ("never", prefs.never)):
            lst = ET.SubElement(el, f"{{{MAM}}}{name}")
            for j in sorted(jids):
                ET.SubElement(lst, f"{{{MAM}}}jid").text = j
        return el

    async def on_prefs_get(self, ev: StanzaEvent) -> bool:
        prefs = await self._prefs_of(ev.frm.local)
        return await self.answer(ev, iq_result(ev.stanza, self._prefs_element(prefs)))

    async def on_prefs_set(self, ev: StanzaEvent) -> bool:
        el = ev.stanza[0]
        default = el.get("default", "")
        try:
            if default not in ("always", "roster", "never"):
                raise StanzaError("bad-request", "default: always, roster or never")
            lists: dict[str, frozenset[str]] = {}
            for name in ("always", "never"):
                found = el.find(f"{{{MAM}}}{name}")
                jids = set()
                for j in found.findall(f"{{{MAM}}}jid") if found is not None else ():
                    try:
                        jids.add(str(parse((j.text or "").strip()).bare))
                    except InvalidJID:
                        raise StanzaError("jid-malformed", f"{name}: not a JID") from None
                lists[name] = frozenset(jids)
        except StanzaError as err:
            await self.server.router.bounce(ev.stanza, err)
            return True
        owner = ev.frm.local
        prefs = Prefs(default, lists["always"], lists["never"])
        await self.host.storage.keyval.set(self.host.domain, owner, "mam", "prefs", prefs.to_json())
        self._prefs[owner] = prefs
        return await self.answer(ev, iq_result(ev.stanza, self._prefs_element(prefs)))

    # -- queries -----------------------------------------------------------------------

    async def on_others(self, ev: StanzaEvent) -> bool:
        await self.server.router.bounce(
            ev.stanza, StanzaError("forbidden", "an archive is only for its own account")
        )
        return True

    async def on_form(self, ev: StanzaEvent) -> bool:
        return await self.answer(ev, iq_result(ev.stanza, query_form()))

    async def on_query(self, ev: StanzaEvent) -> bool:
        owner = ev.frm.local
        try:
            request = parse_request(ev.stanza[0], self.server.config.mam.max_page)
            await self.writer.flush()
            page, complete = await self.host.storage.mam.query(
                self.host.domain, owner, request.query
            )
        except StanzaError as err:
            await self.server.router.bounce(ev.stanza, err)
            return True
        except UnknownArchiveId:
            await self.server.router.bounce(
                ev.stanza, StanzaError("item-not-found", "no message with that id")
            )
            return True
        to, frm = str(ev.frm), str(ev.frm.bare)
        session = ev.origin
        for m in reversed(page) if request.flip else page:
            msg = result_message(to, frm, request.queryid, m.id, m.stamp, parse_element(m.stanza))
            if session is not None:
                session.send(msg)
            else:
                await self.server.router.route(msg)
        first, last = (page[0].id, page[-1].id) if page else (None, None)
        return await self.answer(ev, iq_result(ev.stanza, fin(first, last, complete)))

    async def on_metadata(self, ev: StanzaEvent) -> bool:
        await self.writer.flush()
        bounds = await self.host.storage.mam.bounds(self.host.domain, ev.frm.local)
        meta = ET.Element(f"{{{MAM}}}metadata")
        if bounds is not None:
            for name, entry in zip(("start", "end"), bounds, strict=True):
                ET.SubElement(
                    meta,
                    f"{{{MAM}}}{name}",
                    {"id": entry.id, "timestamp": format_stamp(entry.stamp)},
                )
        return await self.answer(ev, iq_result(ev.stanza, meta))

    # -- retention ---------------------------------------------------------------------

    async def expire_now(self, expire_after: float) -> int:
        """Remove what is older than ``expire_after`` seconds, in batches; how many."""
        cutoff = datetime.now(UTC) - timedelta(seconds=expire_after)
        removed = 0
        while True:
            n = await self.host.storage.mam.expire(cutoff, EXPIRE_BATCH)
            removed += n
            if n < EXPIRE_BATCH:
                break
            await asyncio.sleep(0.01)  # between batches, room for everyone else's storage
        if removed:
            self.log.info("archive: %d messages older than %s removed", removed, cutoff)
        return removed

    async def _expire_loop(self, expire_after: float) -> None:
        while True:
            try:
                await self.expire_now(expire_after)
            except Exception:
                self.log.exception("archive expiry failed")
            try:
                await asyncio.wait_for(self._stopping.wait(), EXPIRE_EVERY)
                return
            except TimeoutError:
                pass
