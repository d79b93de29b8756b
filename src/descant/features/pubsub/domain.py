"""A publish-subscribe service (XEP-0060) at ``pubsub.<domain>``, for feeds and
push app servers, on the same core as PEP.

Like the MUC service it is a Host of its own (``add_services``), so the router
delivers requests to it. Local accounts create nodes and own what they create;
owners make others publishers, members (whitelist nodes) or outcasts. Nodes
are open by default; presence and roster access look at the node owners' rosters.
Notifications go to explicit subscribers only.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from descant import forms
from descant.errors import StanzaError
from descant.features.pubsub.config import NodeConfig
from descant.features.pubsub.names import META_DATA, OWNER, PUBSUB, SERVICE_FEATURES
from descant.features.pubsub.protocol import PubSubModule
from descant.features.pubsub.service import Service
from descant.jid import JID
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result
from descant.xml import ns

SERVICE_DEFAULTS = NodeConfig(
    access_model="open",
    max_items=10,
    send_last_published_item="on_sub",
)


class PubSubServiceModule(PubSubModule):
    name = "pubsub"
    to = "host"

    def load(self) -> None:
        super().load()
        self.options = self.server.config.pubsub
        self.host.add_identity("pubsub", "service", "Publish-Subscribe")
        self.host.add_feature(
            ns.DISCO_INFO,
            ns.DISCO_ITEMS,
            PUBSUB,
            OWNER,
            *(f"{PUBSUB}#{f}" for f in SERVICE_FEATURES),
        )
        self.core = Service(
            self.host.domain,
            self.host.storage.pubsub,
            SERVICE_DEFAULTS,
            self.options.max_items,
            self.roster_entry,
            max_payload=self.options.max_payload,
            max_nodes=self.options.max_nodes,
        )
        self.hook_iq("get", "host", f"{ns.DISCO_INFO}:query", self.disco_info)
        self.hook_iq("get", "host", f"{ns.DISCO_ITEMS}:query", self.disco_items)

    async def service_for(self, ev: StanzaEvent) -> Service | None:
        return self.core

    def may_create(self, service: Service, who: JID) -> bool:
        if self.options.node_creation == "anyone":
            return True
        return who.domain in self.server.config.server.domains and bool(who.local)

    async def disco_info(self, ev: StanzaEvent) -> bool:
        name = ev.stanza[0].get("node")
        if not name:
            return await self.answer(ev, iq_result(ev.stanza, self.host.disco_info()))
        node = await self.core.node(name)
        if node is None or not await self.core.can_retrieve(node, ev.frm):
            return await self.answer(ev, error_reply(ev.stanza, StanzaError("item-not-found")))
        query = ET.Element("{%s}query" % ns.DISCO_INFO, {"node": name})
        ET.SubElement(query, "{%s}identity" % ns.DISCO_INFO, {"category": "pubsub", "type": "leaf"})
        ET.SubElement(query, "{%s}feature" % ns.DISCO_INFO, {"var": PUBSUB})
        owners = [j for j, a in node.affiliations.items() if a == "owner"]
        fields: list[forms.Field] = [
            ("pubsub#title", "text-single", "", [node.config.title]),
            ("pubsub#description", "text-single", "", [node.config.description]),
            ("pubsub#type", "text-single", "", [node.config.type]),
            ("pubsub#access_model", "list-single", "", [node.config.access_model]),
            ("pubsub#owner", "jid-multi", "", sorted(owners)),
        ]
        query.append(forms.build("result", META_DATA, fields))
        return await self.answer(ev, iq_result(ev.stanza, query))

    async def disco_items(self, ev: StanzaEvent) -> bool:
        if ev.stanza[0].get("node"):
            # Leaf nodes only: nothing below a node.
            query = ET.Element("{%s}query" % ns.DISCO_ITEMS, {"node": ev.stanza[0].get("node", "")})
            return await self.answer(ev, iq_result(ev.stanza, query))
        query = ET.Element("{%s}query" % ns.DISCO_ITEMS)
        for name in await self.core.names():
            node = await self.core.node(name)
            if node is not None and await self.core.can_retrieve(node, ev.frm):
                attrs = {"jid": self.host.domain, "node": name}
                if node.config.title:
                    attrs["name"] = node.config.title
                ET.SubElement(query, "{%s}item" % ns.DISCO_ITEMS, attrs)
        return await self.answer(ev, iq_result(ev.stanza, query))
