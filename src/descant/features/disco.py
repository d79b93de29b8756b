"""Service discovery (XEP-0030) for the server and, on their behalf, for accounts.

Features and identities come from what the host's modules registered, so a
module that adds a protocol makes it discoverable without touching this file.
Extra items (e.g. the MUC service) are added by modules to ``self.items``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING

from descant.errors import StanzaError
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result
from descant.xml import ns

if TYPE_CHECKING:
    from descant.host import Host
    from descant.server import Server


@dataclass(slots=True)
class NodeRequest:
    """A disco#info or disco#items request for a node of the server (``disco-node-*``)."""

    ev: StanzaEvent
    node: str


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

    async def _result(self, ev: StanzaEvent, query: ET.Element) -> bool:
        return await self.answer(ev, iq_result(ev.stanza, query))

    async def _error(self, ev: StanzaEvent, condition: str) -> bool:
        return await self.answer(ev, error_reply(ev.stanza, StanzaError(condition)))

    async def _node(self, ev: StanzaEvent, kind: str) -> bool:
        """A node of the server's own: the module that owns it answers with the query
        element (``disco-node-info``, ``disco-node-items``), or it does not exist."""
        node = ev.stanza[0].get("node", "")
        query = await self.host.events.fire(f"disco-node-{kind}", NodeRequest(ev, node))
        if query is None:
            return await self._error(ev, "item-not-found")
        query.set("node", node)
        return await self._result(ev, query)

    async def host_info(self, ev: StanzaEvent) -> bool:
        if ev.stanza[0].get("node"):
            return await self._node(ev, "info")
        return await self._result(ev, self.host.disco_info())

    async def host_items(self, ev: StanzaEvent) -> bool:
        if ev.stanza[0].get("node"):
            return await self._node(ev, "items")
        query = ET.Element("{%s}query" % ns.DISCO_ITEMS)
        for jid, name in self.items:
            attrs = {"jid": jid}
            if name:
                attrs["name"] = name
            ET.SubElement(query, "{%s}item" % ns.DISCO_ITEMS, attrs)
        return await self._result(ev, query)

    async def account_info(self, ev: StanzaEvent) -> bool:
        if not await self._may_see(ev):
            return await self._error(ev, "service-unavailable")
        query = ET.Element("{%s}query" % ns.DISCO_INFO)
        for category, type_ in self.host.account_identities:
            attrs = {"category": category, "type": type_}
            ET.SubElement(query, "{%s}identity" % ns.DISCO_INFO, attrs)
        for feature in sorted({ns.DISCO_INFO} | self.host.account_features):
            ET.SubElement(query, "{%s}feature" % ns.DISCO_INFO, {"var": feature})
        return await self._result(ev, query)

    async def account_items(self, ev: StanzaEvent) -> bool:
        if not await self._may_see(ev):
            return await self._error(ev, "service-unavailable")
        return await self._result(ev, ET.Element("{%s}query" % ns.DISCO_ITEMS))

    async def _may_see(self, ev: StanzaEvent) -> bool:
        """Accounts are visible to themselves and to contacts with a subscription
        (XEP-0030 §3.1 lets the server hide the rest, so presence is not leaked)."""
        if ev.frm.bare == ev.to.bare:
            return True
        item = await self.host.storage.roster.get_item(
            self.host.domain, ev.to.local, str(ev.frm.bare)
        )
        return item is not None and item.subscription in ("from", "both")


def add_service_hosts(
    server: Server, prefix: str, modules: list[type[Module]], name: str
) -> list[Host]:
    """Create (not start) a Host ``<prefix>.<domain>`` for every served domain, loaded
    with ``modules`` and listed as ``name`` in the domain's disco#items (the MUC and
    pubsub services); return them."""
    from descant.host import Host

    added = []
    for domain in server.config.server.domains:
        service = f"{prefix}.{domain}"
        if service in server.hosts:
            continue
        host = Host(server, service)
        host.load(modules)
        server.hosts[service] = host
        added.append(host)
        user_host = server.hosts.get(domain)
        disco = user_host.modules.get("disco") if user_host is not None else None
        if isinstance(disco, DiscoModule):
            disco.items.append((service, name))
    return added
