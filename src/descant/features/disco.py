"""Service discovery (XEP-0030) for the server and, on their behalf, for accounts.

Features and identities come from what the host's modules registered, so a
module that adds a protocol makes it discoverable without touching this file.
Extra items (e.g. the MUC service) are added by modules to ``self.items``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from descant.errors import StanzaError
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result
from descant.xml import ns


class DiscoModule(Module):
    name = "disco"

    def load(self) -> None:
        self.items: list[tuple[str, str]] = []  # (jid, name)
        self.host.add_identity("server", "im", "Descant")
        self.host.add_feature(ns.DISCO_INFO, ns.DISCO_ITEMS)
        self.hook_iq("get", "host", f"{ns.DISCO_INFO}:query", self.host_info)
        self.hook_iq("get", "host", f"{ns.DISCO_ITEMS}:query", self.host_items)
        self.hook_iq("get", "bare,self", f"{ns.DISCO_INFO}:query", self.account_info)
        self.hook_iq("get", "bare,self", f"{ns.DISCO_ITEMS}:query", self.account_items)

    async def _reply(self, ev: StanzaEvent, query: ET.Element) -> bool:
        if ev.origin is not None:
            ev.origin.send(iq_result(_reply_addr(ev), query))
        else:
            await self.server.router.route(iq_result(_reply_addr(ev), query))
        return True

    async def _node_error(self, ev: StanzaEvent) -> bool:
        reply = error_reply(_reply_addr(ev), StanzaError("item-not-found"))
        await self.server.router.route(reply)
        return True

    async def host_info(self, ev: StanzaEvent) -> bool:
        if ev.stanza[0].get("node"):
            return await self._node_error(ev)
        query = ET.Element("{%s}query" % ns.DISCO_INFO)
        for category, type_, name in self.host.identities:
            attrs = {"category": category, "type": type_}
            if name:
                attrs["name"] = name
            ET.SubElement(query, "{%s}identity" % ns.DISCO_INFO, attrs)
        for feature in sorted(self.host.features):
            ET.SubElement(query, "{%s}feature" % ns.DISCO_INFO, {"var": feature})
        return await self._reply(ev, query)

    async def host_items(self, ev: StanzaEvent) -> bool:
        if ev.stanza[0].get("node"):
            return await self._node_error(ev)
        query = ET.Element("{%s}query" % ns.DISCO_ITEMS)
        for jid, name in self.items:
            attrs = {"jid": jid}
            if name:
                attrs["name"] = name
            ET.SubElement(query, "{%s}item" % ns.DISCO_ITEMS, attrs)
        return await self._reply(ev, query)

    async def account_info(self, ev: StanzaEvent) -> bool:
        if not await self._may_see(ev):
            await self.server.router.route(
                error_reply(_reply_addr(ev), StanzaError("service-unavailable"))
            )
            return True
        query = ET.Element("{%s}query" % ns.DISCO_INFO)
        ET.SubElement(
            query, "{%s}identity" % ns.DISCO_INFO, {"category": "account", "type": "registered"}
        )
        ET.SubElement(query, "{%s}feature" % ns.DISCO_INFO, {"var": ns.DISCO_INFO})
        return await self._reply(ev, query)

    async def account_items(self, ev: StanzaEvent) -> bool:
        if not await self._may_see(ev):
            await self.server.router.route(
                error_reply(_reply_addr(ev), StanzaError("service-unavailable"))
            )
            return True
        return await self._reply(ev, ET.Element("{%s}query" % ns.DISCO_ITEMS))

    async def _may_see(self, ev: StanzaEvent) -> bool:
        """Accounts are visible to themselves and to contacts with a subscription
        (XEP-0030 §3.1 lets the server hide the rest, so presence is not leaked)."""
        if ev.frm.bare == ev.to.bare:
            return True
        item = await self.host.storage.roster.get_item(
            self.host.domain, ev.to.local, str(ev.frm.bare)
        )
        return item is not None and item.subscription in ("from", "both")


def _reply_addr(ev: StanzaEvent) -> ET.Element:
    """The request with an explicit ``to`` so replies carry the right ``from``."""
    if ev.stanza.get("to"):
        return ev.stanza
    el = ET.Element(ev.stanza.tag, dict(ev.stanza.attrib))
    el.set("to", str(ev.to))
    el.extend(ev.stanza)
    return el
