"""One publish-subscribe service (XEP-0060): its nodes, who may do what, and the
changes to nodes, items, affiliations and subscriptions, without the wire format.

A service is an account's PEP service (XEP-0163: the account owns every node) or a
pubsub service's domain. Nodes are loaded from ``Storage.pubsub`` on first use and
kept (configuration, affiliations, subscriptions, last item); every change is
written through before it is acknowledged. Who may retrieve items and subscribe
follows the node's access model (§4.5):

- open: anyone not an outcast;
- presence: entities subscribed to an owner's presence;
- roster: an owner's contacts in one of ``roster_groups_allowed``;
- whitelist: members, publishers and owners.

Owners, publishers and members may always retrieve; outcasts never. Methods raise
``StanzaError`` with the XEP's conditions; the caller answers the request and
sends the notifications the change produced (``Change``).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import weakref
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from descant.errors import StanzaError
from descant.features.pubsub.config import NodeConfig
from descant.features.pubsub.names import error, unsupported
from descant.jid import JID
from descant.storage.api import PubsubItem, PubsubStore
from descant.xml.parser import parse_element
from descant.xml.serialize import serialize

AFFILIATIONS = ("owner", "publisher", "publish-only", "member", "none", "outcast")

# (subscription, groups) of a requester in an owner's roster; None: not in it.
RosterLookup = Callable[[str, str], Awaitable[tuple[str, tuple[str, ...]] | None]]


MAX_SUBSCRIBERS = 10_000  # explicit subscriptions to one node
MAX_SUBSCRIPTIONS_PER_JID = 10  # of them by one account (its bare and full JIDs)

# Last items larger than this are read from storage when needed, not kept in memory
# (avatars: thousands of cached nodes would otherwise hold megabytes each).
LAST_IN_MEMORY = 4096


@dataclass(slots=True, weakref_slot=True)
class Node:
    name: str
    config: NodeConfig
    affiliations: dict[str, str] = field(default_factory=dict)
    subscriptions: dict[str, str] = field(default_factory=dict)
    last: PubsubItem | None = None  # the newest item, if small
    has_last: bool = False

    def remember(self, item: PubsubItem | None) -> None:
        self.has_last = item is not None
        self.last = item if item is not None and len(item.payload) <= LAST_IN_MEMORY else None


@dataclass(frozen=True, slots=True)
class Published:
    node: Node
    item: PubsubItem
    element: ET.Element | None  # the payload, parsed
    dropped: list[str]  # ids of older items pushed out by max_items


class Service:
    max_cached = 1000  # nodes kept in memory per service

    def __init__(
        self,
        jid: str,
        store: PubsubStore,
        defaults: NodeConfig,
        max_items: int,
        roster: RosterLookup,
        owner: str | None = None,
        max_payload: int = 65536,
        max_nodes: int | None = None,
    ) -> None:
        self.jid = jid
        self.store = store
        self.defaults = defaults
        self.max_items = max_items
        self.roster = roster
        self.owner = owner  # PEP: the account, owner of every node
        self.max_payload = max_payload
        self.max_nodes = max_nodes
        # Nodes in use, least recently used first; bounded (``max_cached``).
        self._nodes: OrderedDict[str, Node] = OrderedDict()
        self._live: weakref.WeakValueDictionary[str, Node] = weakref.WeakValueDictionary()
        self._names: set[str] | None = None  # every node's name, once listed

    # -- nodes ------------------------------------------------------------------------

    async def node(self, name: str) -> Node | None:
        cached = self._nodes.get(name) or self._live.get(name)
        if cached is not None:
            return self._cache(cached)
        if self._names is not None and name not in self._names:
            return None  # known absent without asking storage (PEP's last-item checks)
        raw = await self.store.get_node(self.jid, name)
        if raw is None:
            return None
        config = NodeConfig.from_json(json.loads(raw), self.defaults)
        # "max" is the service's bound now, not when the node was made.
        config = dataclasses.replace(config, max_items=min(config.max_items, self.max_items))
        node = Node(
            name,
            config,
            await self.store.get_affiliations(self.jid, name),
            await self.store.get_subscriptions(self.jid, name),
        )
        items = await self.store.get_items(self.jid, name, limit=1)
        node.remember(items[0] if items else None)
        return self._cache(node)

    def _cache(self, node: Node) -> Node:
        """The one Node object for its name: another task may have loaded (and
        changed) it meanwhile, and a node dropped from the LRU while some task still
        holds it is that task's object still (``_live``), so changes are never split
        between two copies."""
        kept = self._live.setdefault(node.name, node)
        self._nodes[node.name] = kept
        self._nodes.move_to_end(node.name)
        if len(self._nodes) > self.max_cached:
            self._nodes.popitem(last=False)
        return kept

    async def last_item(self, node: Node) -> PubsubItem | None:
        """The node's newest item: from memory when small (``Node.remember``)."""
        if node.last is None and node.has_last:
            items = await self.store.get_items(self.jid, node.name, limit=1)
            return items[0] if items else None
        return node.last

    async def existing(self, name: str | None) -> Node:
        if not name:
            raise error("bad-request", "nodeid-required")
        node = await self.node(name)
        if node is None:
            raise StanzaError("item-not-found", f"no node {name!r}")
        return node

    async def names(self) -> list[str]:
        if self._names is None:
            listed = set(await self.store.list_nodes(self.jid))
            if self._names is None:
                # Nodes made while listing are in the cache, maybe not in the list.
                self._names = listed | set(self._nodes)
        return sorted(self._names)

    def affiliation(self, node: Node | None, who: JID) -> str:
        bare = str(who.bare)
        if bare == self.owner or (
            self.owner is None and who.local == "" and who.domain == self.jid
        ):
            return "owner"
        if node is None:
            return "none"
        return node.affiliations.get(bare, "none")

    async def may_retrieve(self, node: Node, who: JID) -> None:
        """Raise the XEP-0060 §6.5.3 / §6.1.3 error if ``who`` may not see the node."""
        aff = self.affiliation(node, who)
        if aff == "outcast":
            raise StanzaError("forbidden", "you are banned from this node")
        if aff in ("owner", "publisher", "member"):
            return
        model = node.config.access_model
        if model == "open":
            return
        if model == "whitelist":
            raise error("not-allowed", "closed-node")
        owners = (
            [self.owner]
            if self.owner
            else [j for j, a in node.affiliations.items() if a == "owner"]
        )
        requester = str(who.bare)
        for owner in owners:
            entry = await self.roster(owner, requester)
            if entry is None:
                continue
            subscription, groups = entry
            if model == "presence" and subscription in ("from", "both"):
                return
            if model == "roster" and set(groups) & set(node.config.roster_groups_allowed):
                return
        if model == "presence":
            raise error("not-authorized", "presence-subscription-required")
        raise error("not-authorized", "not-in-roster-group")

    async def can_retrieve(self, node: Node, who: JID) -> bool:
        try:
            await self.may_retrieve(node, who)
        except StanzaError:
            return False
        return True

    async def create(self, name: str | None, who: JID, config: NodeConfig | None = None) -> Node:
        if not name:
            if self.owner is not None:
                raise error("not-acceptable", "nodeid-required")
            name = "node-" + secrets.token_hex(8)  # an instant node (§8.1.2)
        if await self.node(name) is not None:
            raise StanzaError("conflict", f"node {name!r} exists")
        if self.max_nodes is not None:
            if self.owner is not None:
                count = len(await self.names())
            else:  # on a shared service, nodes per creator
                owned = await self.store.affiliations_of(self.jid, str(who.bare))
                count = sum(1 for aff in owned.values() if aff == "owner")
            if count >= self.max_nodes:
                raise StanzaError("resource-constraint", f"at most {self.max_nodes} nodes")
        node = Node(name, config or self.defaults)
        if self.owner is None:
            node.affiliations[str(who.bare)] = "owner"
        if not await self.store.create_node(self.jid, name, json.dumps(node.config.to_json())):
            raise StanzaError("conflict", f"node {name!r} exists")
        # Cached before the affiliations are written, so no task loads it without them.
        node = self._cache(node)
        if self._names is not None:
            self._names.add(name)
        for jid, aff in list(node.affiliations.items()):
            await self.store.set_affiliation(self.jid, name, jid, aff)
        return node

    async def configure(self, node: Node, config: NodeConfig) -> None:
        await self.store.set_node_config(self.jid, node.name, json.dumps(config.to_json()))
        shrunk = config.stored_items() < node.config.stored_items()
        node.config = config
        if shrunk:
            # Fewer items kept: trim now by republishing nothing — drop the oldest.
            items = await self.store.get_items(self.jid, node.name)
            for old in items[config.stored_items() :]:
                await self.store.retract(self.jid, node.name, old.id)

    async def delete(self, node: Node) -> None:
        await self.store.delete_node(self.jid, node.name)
        self._nodes.pop(node.name, None)
        self._live.pop(node.name, None)
        if self._names is not None:
            self._names.discard(node.name)

    async def purge(self, node: Node) -> None:
        if not node.config.persist_items:
            raise unsupported("persistent-items")
        await self.store.purge(self.jid, node.name)
        node.remember(None)

    # -- items --------------------------------------------------------------------------

    def may_publish(self, node: Node | None, who: JID) -> None:
        aff = self.affiliation(node, who)
        if aff in ("owner", "publisher", "publish-only"):
            return
        if node is not None and aff != "outcast":
            model = node.config.publish_model
            if model == "open" or (
                model == "subscribers" and node.subscriptions.get(str(who.bare)) == "subscribed"
            ):
                return
        raise StanzaError("forbidden", "you may not publish to this node")

    def check_payload(self, config: NodeConfig, payload: ET.Element | None) -> str:
        """The payload as stored, or the XEP-0060 §7.1.3 error for it."""
        if payload is None and (config.persist_items or config.deliver_payloads):
            raise error("bad-request", "payload-required")
        text = serialize(payload) if payload is not None else ""
        if len(text) > self.max_payload:
            raise error("not-acceptable", "payload-too-big")
        return text

    async def publish(
        self, node: Node, who: JID, item_id: str | None, payload: ET.Element | None
    ) -> Published:
        text = self.check_payload(node.config, payload)
        item = PubsubItem(
            id=item_id or secrets.token_hex(12),
            publisher=str(who.bare),
            stamp=datetime.now(UTC),
            payload=text,
        )
        dropped = await self.store.publish(self.jid, node.name, item, node.config.stored_items())
        node.remember(item)
        return Published(node, item, payload, dropped)

    async def items(self, node: Node, ids: list[str], limit: int | None) -> list[PubsubItem]:
        return await self.store.get_items(self.jid, node.name, ids, limit)

    async def may_retract(self, node: Node, who: JID, ids: list[str]) -> None:
        """<item-not-found/> for an id the node does not hold, <forbidden/> for one
        ``who`` may not remove (owners and publishers any, others their own)."""
        found = {item.id: item for item in await self.store.get_items(self.jid, node.name, ids)}
        aff = self.affiliation(node, who)
        for item_id in ids:
            item = found.get(item_id)
            if item is None:
                raise StanzaError("item-not-found", f"no item {item_id!r}")
            if aff not in ("owner", "publisher") and (
                aff == "outcast" or item.publisher != str(who.bare)
            ):
                raise StanzaError("forbidden", "you may not retract this item")

    async def retract(self, node: Node, who: JID, item_id: str) -> None:
        await self.may_retract(node, who, [item_id])
        if not await self.store.retract(self.jid, node.name, item_id):
            raise StanzaError("item-not-found", f"no item {item_id!r}")
        if node.has_last:
            items = await self.store.get_items(self.jid, node.name, limit=1)
            node.remember(items[0] if items else None)

    # -- affiliations and subscriptions ---------------------------------------------------

    async def set_affiliation(self, node: Node, jid: str, affiliation: str) -> None:
        if affiliation not in AFFILIATIONS:
            raise StanzaError("bad-request", f"unknown affiliation {affiliation!r}")
        if affiliation == "none":
            node.affiliations.pop(jid, None)
        else:
            node.affiliations[jid] = affiliation
        if affiliation == "outcast":
            for subscriber in [j for j in node.subscriptions if j.split("/", 1)[0] == jid]:
                await self.set_subscription(node, subscriber, None)
        await self.store.set_affiliation(self.jid, node.name, jid, affiliation)

    def may_subscribe(self, node: Node, jid: str) -> None:
        """XEP-0060 §6.1.3.9: a node's subscriber list, and one account's share of it,
        are bounded (one publication must not fan out without end)."""
        if jid in node.subscriptions:
            return
        bare = jid.split("/", 1)[0]
        mine = sum(1 for j in node.subscriptions if j.split("/", 1)[0] == bare)
        if len(node.subscriptions) >= MAX_SUBSCRIBERS or mine >= MAX_SUBSCRIPTIONS_PER_JID:
            raise error("policy-violation", "too-many-subscriptions")

    async def set_subscription(self, node: Node, jid: str, state: str | None) -> None:
        if state is None or state == "none":
            if node.subscriptions.pop(jid, None) is not None:
                await self.store.set_subscription(self.jid, node.name, jid, None)
            return
        node.subscriptions[jid] = state
        await self.store.set_subscription(self.jid, node.name, jid, state)


def payload_of(item: PubsubItem) -> ET.Element | None:
    return parse_element(item.payload) if item.payload else None
