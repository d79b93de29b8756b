"""vCard-temp (XEP-0054): each account's public vCard, kept by its server.

A user sets and reads their own vCard (an iq without ``to``, or to their own bare
JID); anyone, local or remote, reads another account's (to its bare JID) and
gets an empty ``<vCard/>`` when none was published. Setting someone else's is
``<forbidden/>``; an account that does not exist is ``<service-unavailable/>``,
as for any other iq to it. vCards are stored as XML text in the key-value store.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from descant.errors import StanzaError
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result
from descant.xml.parser import parse_element
from descant.xml.serialize import serialize

NS = "vcard-temp"
TAG = f"{{{NS}}}vCard"
_STORE = "vcard"


class VCardModule(Module):
    name = "vcard"

    def load(self) -> None:
        self.host.add_feature(NS)
        self.hook_iq("get", "self,bare", f"{NS}:vCard", self.get)
        self.hook_iq("set", "self", f"{NS}:vCard", self.set)
        self.hook_iq("set", "bare", f"{NS}:vCard", self.forbidden)

    async def get(self, ev: StanzaEvent) -> bool:
        user = ev.to.local
        kv = self.host.storage.keyval
        stored = await kv.get(self.host.domain, user, _STORE, "current")
        accounts = self.host.storage.accounts
        if (
            stored is None
            and ev.to_kind == "bare"
            and await accounts.get(self.host.domain, user) is None
        ):
            return await self.answer(ev, error_reply(ev.stanza, StanzaError("service-unavailable")))
        vcard = parse_element(stored) if stored is not None else ET.Element(TAG)
        return await self.answer(ev, iq_result(ev.stanza, vcard))

    async def set(self, ev: StanzaEvent) -> bool:
        vcard = ev.stanza[0]
        before = await self.stored(ev.to.local) if self.host.events.has("vcard-set") else None
        await self.store(ev.to.local, vcard)
        await self.host.events.fire("vcard-set", (ev.to.local, vcard, before))
        return await self.answer(ev, iq_result(ev.stanza))

    async def stored(self, user: str) -> ET.Element | None:
        stored = await self.host.storage.keyval.get(self.host.domain, user, _STORE, "current")
        return parse_element(stored) if stored is not None else None

    async def store(self, user: str, vcard: ET.Element) -> None:
        await self.host.storage.keyval.set(
            self.host.domain, user, _STORE, "current", serialize(vcard)
        )

    async def forbidden(self, ev: StanzaEvent) -> bool:
        """Only the owner may change a vCard (XEP-0054 §3.2)."""
        return await self.answer(ev, error_reply(ev.stanza, StanzaError("forbidden")))
