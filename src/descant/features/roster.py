"""Rosters (RFC 6121 §2) with roster versioning (XEP-0237, RFC 6121 §2.6).

A client reads its roster with an iq get (which makes the session *interested*:
it receives roster pushes from then on, §2.1.6) and edits names and groups
with an iq set carrying exactly one item (§2.3). Subscription states are never
changed by a roster set: they follow presence subscriptions (the presence
module calls :meth:`RosterModule.set_item`), except that removing an item
(``subscription='remove'``, §2.5) also cancels the subscriptions both ways.

Every change is written through to storage, bumps the roster version and is
pushed to the user's interested sessions. Rosters of users with sessions are
cached in memory, because presence broadcasts read them on every presence
change; a user's cache entry is dropped when the last session unbinds. Cached
item dicts are replaced, never mutated (copy on write), so a caller may await
while iterating one.

State changes that read then write an item (roster sets, subscription
handling) hold :meth:`RosterModule.lock` for the user; nothing may be routed
while holding it, since the recipient may be a local user whose handling
takes locks in the other order.
"""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from descant.errors import StanzaError
from descant.jid import InvalidJID, parse
from descant.locks import KeyedLock
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result, new_id
from descant.storage.api import SUBSCRIPTIONS, RosterItem
from descant.xml import ns

if TYPE_CHECKING:
    from descant.host import Host
    from descant.routing.sessions import Session

QUERY = "{%s}query" % ns.ROSTER
ITEM = "{%s}item" % ns.ROSTER
GROUP = "{%s}group" % ns.ROSTER
ROSTER_QUERY = f"{ns.ROSTER}:query"

# RFC 6121 §2.3.3: names and groups longer than a server limit are <not-acceptable/>.
MAX_TEXT = 1023


def item_element(item: RosterItem) -> ET.Element:
    """The wire form of a roster item (RFC 6121 §2.1.2, approved: §3.4)."""
    attrs = {"jid": item.jid, "subscription": item.subscription}
    if item.name:
        attrs["name"] = item.name
    if item.ask:
        attrs["ask"] = "subscribe"
    if item.approved:
        attrs["approved"] = "true"
    el = ET.Element(ITEM, attrs)
    for group in item.groups:
        ET.SubElement(el, GROUP).text = group
    return el


@dataclass(frozen=True, slots=True)
class ItemUpdate:
    """What a roster set asks for: one item's name and groups, or its removal."""

    jid: str
    name: str | None
    groups: tuple[str, ...]
    remove: bool


def parse_set_item(query: ET.Element) -> ItemUpdate:
    """Validate a roster set's query (RFC 6121 §2.3.3); raise StanzaError."""
    items = [child for child in query if child.tag == ITEM]
    if len(items) != 1:
        raise StanzaError("bad-request", "a roster set carries exactly one item")
    el = items[0]
    jid_s = el.get("jid")
    if not jid_s:
        raise StanzaError("bad-request", "the item has no jid")
    try:
        jid = parse(jid_s)
    except InvalidJID as exc:
        raise StanzaError("jid-malformed", str(exc)) from None
    if jid.resource:
        raise StanzaError("bad-request", "roster items are bare JIDs")
    sub = el.get("subscription")
    # §2.1.2.5: in a set the server ignores any subscription value but "remove";
    # a value that is no subscription state at all is a malformed request.
    if sub is not None and sub != "remove" and sub not in SUBSCRIPTIONS:
        raise StanzaError("bad-request", f"invalid subscription {sub!r}")
    name = el.get("name") or None
    if name is not None and len(name) > MAX_TEXT:
        raise StanzaError("not-acceptable", "the name is too long")
    groups: list[str] = []
    for g in el.iter(GROUP):
        text = g.text or ""
        if not text.strip():
            raise StanzaError("not-acceptable", "empty group name")
        if len(text) > MAX_TEXT:
            raise StanzaError("not-acceptable", "the group name is too long")
        if text in groups:
            raise StanzaError("bad-request", f"duplicate group {text!r}")
        groups.append(text)
    return ItemUpdate(str(jid), name, tuple(groups), sub == "remove")


@dataclass(slots=True)
class _Cached:
    version: str
    items: dict[str, RosterItem]


@dataclass(frozen=True, slots=True)
class RosterChange:
    """A roster item stored (``roster-changed``); ``before`` is the item it replaced,
    when the roster was cached (the user online), else None."""

    user: str
    item: RosterItem
    before: RosterItem | None


class RosterModule(Module):
    name = "roster"

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self._cache: dict[str, _Cached] = {}
        self._locks = KeyedLock()
        # Loads in flight per user, and users written while one was: such a load
        # may have read the old state, so its result is not cached.
        self._loading: dict[str, int] = {}
        self._stale: set[str] = set()
        self._stream_feature = ET.Element("{%s}ver" % ns.ROSTERVER)

    def load(self) -> None:
        self.hook_iq("get", "self", ROSTER_QUERY, self.on_get)
        self.hook_iq("set", "self", ROSTER_QUERY, self.on_set)
        # Nobody reads or edits another user's roster (RFC 6121 §2.1.5, §2.3.3).
        self.hook_iq("get", "bare", ROSTER_QUERY, self.on_other)
        self.hook_iq("set", "bare", ROSTER_QUERY, self.on_other)
        # Late, so that modules acting on the unbind still find the cache.
        self.hook("resource-unbound", self.on_unbound, priority=-100)
        self.host.stream_features.append(self._stream_feature)

    def unload(self) -> None:
        super().unload()
        with contextlib.suppress(ValueError):
            self.host.stream_features.remove(self._stream_feature)

    # -- the API other modules use ------------------------------------------------

    async def get_roster(self, user: str) -> Mapping[str, RosterItem]:
        """The user's items keyed by bare JID; read-only, safe to iterate across awaits."""
        return (await self._entry(user)).items

    async def get_version(self, user: str) -> str:
        return (await self._entry(user)).version

    async def get_item(self, user: str, jid: str) -> RosterItem | None:
        if user in self._cache or self.host.sessions.of_user(user):
            return (await self._entry(user)).items.get(jid)
        return await self.host.storage.roster.get_item(self.host.domain, user, jid)

    async def full(self, user: str) -> bool:
        """The roster holds ``limits.max_roster_items`` items: no new contact goes in."""
        limit = self.server.config.limits.max_roster_items
        if len(await self.get_roster(user)) < limit:
            return False
        self.log.info("%s@%s: roster full (%d items)", user, self.host.domain, limit)
        return True

    async def set_item(self, user: str, item: RosterItem, push: bool = True) -> str:
        """Store an item (insert or replace), push it; return the new roster version."""
        cached = self._cache.get(user)
        before = cached.items.get(item.jid) if cached is not None else None
        version = await self.host.storage.roster.put_item(self.host.domain, user, item)
        self._update(user, version, item.jid, item)
        if push:
            self.push(user, item_element(item), version)
        await self.host.events.fire("roster-changed", RosterChange(user, item, before))
        return version

    async def remove_item(self, user: str, jid: str, push: bool = True) -> str:
        """Delete an item, push its removal (RFC 6121 §2.5.2); return the new version."""
        version = await self.host.storage.roster.remove_item(self.host.domain, user, jid)
        self._update(user, version, jid, None)
        if push:
            self.push(user, ET.Element(ITEM, {"jid": jid, "subscription": "remove"}), version)
        return version

    def push(self, user: str, item: ET.Element, version: str) -> None:
        """A roster push (RFC 6121 §2.1.6) to every interested session of the user.

        The push has no 'from', which clients take as coming from their account.
        """
        query = ET.Element(QUERY, {"ver": version})
        query.append(item)
        for session in self.host.sessions.of_user(user):
            if session.interested:
                iq = ET.Element("iq", {"type": "set", "id": new_id("push"), "to": str(session.jid)})
                iq.append(query)
                session.send(iq)

    def lock(self, user: str) -> AbstractAsyncContextManager[None]:
        """Serialize read-modify-write changes to one user's roster.

        Not reentrant; route nothing while holding it (see the module docstring).
        """
        return self._locks(user)

    # -- cache ----------------------------------------------------------------------

    async def _entry(self, user: str) -> _Cached:
        entry = self._cache.get(user)
        if entry is not None:
            return entry
        self._loading[user] = self._loading.get(user, 0) + 1
        try:
            version, items = await self.host.storage.roster.get_roster(self.host.domain, user)
        finally:
            left = self._loading[user] - 1
            if left:
                self._loading[user] = left
            else:
                del self._loading[user]
        entry = _Cached(version, items)
        if user in self._stale:
            if user not in self._loading:
                self._stale.discard(user)
            return entry
        if self.host.sessions.of_user(user):
            # Another load may have finished first: keep the one already cached.
            entry = self._cache.setdefault(user, entry)
        return entry

    def _update(self, user: str, version: str, jid: str, item: RosterItem | None) -> None:
        entry = self._cache.get(user)
        if entry is None:
            if user in self._loading:
                self._stale.add(user)
            return
        items = dict(entry.items)
        if item is None:
            items.pop(jid, None)
        else:
            items[jid] = item
        entry.items = items
        entry.version = version

    async def on_unbound(self, session: Session) -> None:
        user = session.jid.local
        if not self.host.sessions.of_user(user):
            self._cache.pop(user, None)

    # -- iq handlers ------------------------------------------------------------------

    async def on_other(self, ev: StanzaEvent) -> bool:
        await self.answer(ev, error_reply(ev.stanza, StanzaError("forbidden")))
        return True

    async def on_get(self, ev: StanzaEvent) -> bool:
        """Roster get (RFC 6121 §2.1.3); with a current 'ver', an empty result (§2.6.3)."""
        user = ev.frm.local
        if not user:
            return await self.on_other(ev)
        entry = await self._entry(user)
        if ev.origin is not None:
            ev.origin.interested = True
        client_ver = ev.stanza[0].get("ver")
        if client_ver is not None and client_ver == entry.version:
            await self.answer(ev, iq_result(ev.stanza))
            return True
        query = ET.Element(QUERY, {"ver": entry.version})
        for item in entry.items.values():
            query.append(item_element(item))
        await self.answer(ev, iq_result(ev.stanza, query))
        return True

    async def on_set(self, ev: StanzaEvent) -> bool:
        """Roster set (RFC 6121 §2.3): add or update one item, or remove it (§2.5)."""
        user = ev.frm.local
        if not user:
            return await self.on_other(ev)
        try:
            update = parse_set_item(ev.stanza[0])
        except StanzaError as err:
            await self.answer(ev, error_reply(ev.stanza, err))
            return True
        if update.remove:
            return await self._remove(ev, user, update.jid)
        async with self.lock(user):
            old = await self.get_item(user, update.jid)
            if old is None and await self.full(user):
                full = StanzaError("policy-violation", "the roster is full")
                await self.answer(ev, error_reply(ev.stanza, full))
                return True
            # A roster set never changes subscription, ask or approval (§2.1.2.5).
            item = RosterItem(
                jid=update.jid,
                name=update.name,
                subscription=old.subscription if old else "none",
                ask=old.ask if old else False,
                approved=old.approved if old else False,
                groups=update.groups,
            )
            await self.set_item(user, item)
        await self.answer(ev, iq_result(ev.stanza))
        return True

    async def _remove(self, ev: StanzaEvent, user: str, jid: str) -> bool:
        """Removal cancels subscriptions both ways before the item goes (§2.5.2)."""
        store = self.host.storage.roster
        domain = self.host.domain
        async with self.lock(user):
            item = await self.get_item(user, jid)
            pending_in = any(c == jid for c, _ in await store.list_pending_in(domain, user))
            out = None
            if item is not None or pending_in:
                out = cancellations(f"{user}@{domain}", item, jid, pending_in)
                if sub_from(item):
                    # As for any cancelled subscription (RFC 6121 §3.2.2): the contact
                    # learns that each available resource went away.
                    for session in self.host.sessions.available(user):
                        out.append(_presence(str(session.jid), jid, "unavailable"))
                if pending_in:
                    await store.remove_pending_in(domain, user, jid)
                if item is not None:
                    await self.remove_item(user, jid)
        if out is None:
            await self.answer(ev, error_reply(ev.stanza, StanzaError("item-not-found")))
            return True
        await self.answer(ev, iq_result(ev.stanza))
        for stanza in out:
            await self.server.router.route(stanza)
        return True


def sub_from(item: RosterItem | None) -> bool:
    """Whether the contact is subscribed to the user's presence."""
    return item is not None and item.subscription in ("from", "both")


def cancellations(
    user_bare: str, item: RosterItem | None, jid: str, pending_in: bool
) -> list[ET.Element]:
    """What removing an item sends the contact (RFC 6121 §2.5.2): unsubscribe if the
    user is subscribed or asked to be, unsubscribed if the contact is or asked."""
    out = []
    if item is not None and (item.subscription in ("to", "both") or item.ask):
        out.append(_presence(user_bare, jid, "unsubscribe"))
    if sub_from(item) or pending_in:
        out.append(_presence(user_bare, jid, "unsubscribed"))
    return out


def _presence(frm: str, to: str, type_: str) -> ET.Element:
    return ET.Element("presence", {"from": frm, "to": to, "type": type_})
