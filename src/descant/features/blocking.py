"""Blocking Command (XEP-0191): a user's block list, enforced by the server.

A blocked JID (bare JID, full JID or domain, matched per XEP-0191 §3.4) cannot
reach the user: its messages get <service-unavailable/>, its iqs to the user's
resources too, its presence is dropped. The user cannot reach it either: what
they send to it gets <not-acceptable/> with <blocked xmlns='urn:xmpp:blocking:errors'/>.
Blocking a contact the user shares presence with also sends it unavailable
presence, so the contact stops seeing the user online (§3.3).

The list is kept in the key-value store (one JID per line) and cached for users
with sessions; changes are pushed to the sessions that asked for the list.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.errors import StanzaError
from descant.jid import JID, InvalidJID, parse
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result, new_id

if TYPE_CHECKING:
    from descant.routing.sessions import Session

NS = "urn:xmpp:blocking"
ERRORS = "urn:xmpp:blocking:errors"
_STORE = "blocking"
_ASKED = "blocklist-requested"


def matches(blocked: set[str], jid: JID) -> bool:
    """XEP-0191 §3.4 (after RFC 6121 privacy rules): full JID, bare JID, domain."""
    if not blocked:
        return False
    return (
        str(jid) in blocked
        or str(jid.bare) in blocked
        or jid.domain in blocked
        or (bool(jid.resource) and f"{jid.domain}/{jid.resource}" in blocked)
    )


class BlockingModule(Module):
    name = "blocking"

    def load(self) -> None:
        self._cache: dict[str, set[str]] = {}
        self.host.add_feature(NS)
        self.hook_iq("get", "self", f"{NS}:blocklist", self.get)
        self.hook_iq("set", "self", f"{NS}:block", self.block)
        self.hook_iq("set", "self", f"{NS}:unblock", self.unblock)
        for kind in ("message", "presence", "iq"):
            self.hook(f"pre-{kind}", self.outbound, priority=20)
        for name in ("message/bare", "message/full", "presence/bare", "presence/full", "iq/full"):
            self.hook(name, self.inbound, priority=20)
        self.hook("resource-unbound", self.forget)

    # -- the list ----------------------------------------------------------------------

    async def blocked(self, user: str) -> set[str]:
        cached = self._cache.get(user)
        if cached is None:
            cached = await self._load(user)
        return cached

    async def _load(self, user: str) -> set[str]:
        text = await self.host.storage.keyval.get(self.host.domain, user, _STORE, "list")
        items = set(filter(None, (text or "").split("\n")))
        if self.host.sessions.of_user(user):
            self._cache[user] = items
        return items

    async def _save(self, user: str, items: set[str]) -> None:
        value = "\n".join(sorted(items)) if items else None
        await self.host.storage.keyval.set(self.host.domain, user, _STORE, "list", value)
        if self.host.sessions.of_user(user):
            self._cache[user] = items
        else:
            self._cache.pop(user, None)

    async def forget(self, session: Session) -> None:
        if not self.host.sessions.of_user(session.jid.local):
            self._cache.pop(session.jid.local, None)

    # -- iq ------------------------------------------------------------------------------

    async def get(self, ev: StanzaEvent) -> bool:
        if ev.origin is not None:
            ev.origin.data[_ASKED] = True
        query = ET.Element(f"{{{NS}}}blocklist")
        for jid in sorted(await self.blocked(ev.frm.local)):
            ET.SubElement(query, f"{{{NS}}}item", {"jid": jid})
        await self.answer(ev, iq_result(ev.stanza, query))
        return True

    def _items(self, ev: StanzaEvent) -> list[str] | None:
        out = []
        for item in ev.stanza[0].findall(f"{{{NS}}}item"):
            try:
                out.append(str(parse(item.get("jid", ""))))
            except InvalidJID:
                return None
        return out

    async def block(self, ev: StanzaEvent) -> bool:
        items = self._items(ev)
        if not items:  # none given, or one not a JID (§3.3)
            await self.answer(ev, error_reply(ev.stanza, StanzaError("bad-request")))
            return True
        user = ev.frm.local
        current = set(await self.blocked(user))
        await self._save(user, current | set(items))
        await self.answer(ev, iq_result(ev.stanza))
        await self._push(user, "block", items)
        await self._hide_from(user, [parse(j) for j in items])
        return True

    async def unblock(self, ev: StanzaEvent) -> bool:
        items = self._items(ev)
        if items is None:
            await self.answer(ev, error_reply(ev.stanza, StanzaError("bad-request")))
            return True
        user = ev.frm.local
        current = set(await self.blocked(user))
        removed = sorted(current & set(items)) if items else sorted(current)
        await self._save(user, current - set(removed))
        await self.answer(ev, iq_result(ev.stanza))
        await self._push(user, "unblock", items)  # an empty unblock: "everything" (§3.4)
        return True

    async def _push(self, user: str, kind: str, items: list[str]) -> None:
        """Tell the user's other interested sessions (§3.3, §3.4)."""
        for session in self.host.sessions.of_user(user):
            if not session.data.get(_ASKED):
                continue
            iq = ET.Element("iq", {"type": "set", "id": new_id("push"), "to": str(session.jid)})
            payload = ET.SubElement(iq, f"{{{NS}}}{kind}")
            for jid in items:
                ET.SubElement(payload, f"{{{NS}}}item", {"jid": jid})
            session.send(iq)

    async def _hide_from(self, user: str, jids: list[JID]) -> None:
        """Blocked contacts stop seeing the user's resources online (§3.3)."""
        for session in self.host.sessions.available(user):
            for jid in jids:
                if jid.local or jid.resource:
                    gone = ET.Element(
                        "presence",
                        {"type": "unavailable", "from": str(session.jid), "to": str(jid)},
                    )
                    await self.server.router.route(gone)

    # -- enforcement ---------------------------------------------------------------------

    async def outbound(self, ev: StanzaEvent) -> bool | None:
        """The user sends to a JID they blocked: refused (§3.5)."""
        to = ev.to
        if not ev.stanza.get("to") or to.bare == ev.frm.bare:
            return None  # broadcasts and the user's own account
        if not to.local and to.domain == self.host.domain:
            return None  # the user's own server (a ping, disco): no list read needed
        blocked = self._cache.get(ev.frm.local)
        if blocked is None:
            blocked = await self._load(ev.frm.local)
        if not blocked:
            return None
        if not matches(blocked, ev.to):
            return None
        if ev.stanza.get("type") == "error":
            return True
        app = ET.Element(f"{{{ERRORS}}}blocked")
        reply = error_reply(ev.stanza, StanzaError("not-acceptable", app=app))
        if ev.origin is not None:
            ev.origin.send(reply)
        return True

    async def inbound(self, ev: StanzaEvent) -> bool | None:
        """Something from a JID the user blocked: not delivered (§3.4)."""
        blocked = self._cache.get(ev.to.local)
        if blocked is None:
            blocked = await self._load(ev.to.local)
        if ev.frm.domain == self.host.domain and ev.frm.local and ev.stanza.tag == "presence":
            pass  # the sender's own list may matter too (below)
        elif not blocked:
            return None
        if ev.frm.bare == ev.to.bare:
            return None
        if not matches(blocked, ev.frm):
            # Presence the server broadcasts for a local user respects that
            # user's list too; going offline (and errors) still get through (§3.3).
            if (
                ev.stanza.tag != "presence"
                or ev.stanza.get("type") in ("unavailable", "error")
                or ev.frm.domain != self.host.domain
                or not ev.frm.local
            ):
                return None
            return True if matches(await self.blocked(ev.frm.local), ev.to) else None
        kind, type_ = ev.stanza.tag, ev.stanza.get("type")
        if (kind == "message" and type_ != "error") or (kind == "iq" and type_ in ("get", "set")):
            await self.server.router.bounce(ev.stanza, StanzaError("service-unavailable"))
        return True
