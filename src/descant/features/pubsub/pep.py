"""Personal Eventing Protocol (XEP-0163): a pubsub service on every account.

Requests to an account's bare JID (or with no ``to``, from the account itself)
address its PEP service (protocol.py does XEP-0060 on it); the account owns every
node, nodes are created on first publish, and the defaults are XEP-0163 §4.5's
(presence access, one item, last item sent on subscription and presence).

Who hears of a publication (§4.3): explicit subscribers, and every available
resource of a contact subscribed to the account's presence (or of the account
itself) whose entity capabilities (XEP-0115) advertise ``<node>+notify``. Those
resources are learnt from the presence the account receives: a contact's client
broadcasts to the account's bare JID (``presence/bare``, looked at ahead of the
presence module, never taken), and the account's own resources send theirs
(``pre-presence``). The features behind a caps hash come from the caps module,
which asks the client once per hash. When a resource first shows interest in a
node (it comes online, or its caps change), it gets the node's last item; so does a
contact the account lets subscribe (``roster-changed``).

``interest`` holds, per account, the available resources of its contacts and its
own that sent it presence with caps, and the nodes each wants; an entry goes when
its resource sends unavailable presence. Both levels are bounded (``max_services``
accounts, least recently seen dropped first; ``max_interested`` resources each).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Iterable

from descant.errors import StanzaError
from descant.features.blocking import BlockingModule, matches
from descant.features.caps import Caps, CapsModule, caps_of
from descant.features.pubsub.config import NodeConfig
from descant.features.pubsub.names import OWNER, PEP_FEATURES, PUBSUB
from descant.features.pubsub.protocol import PubSubModule, event_retract
from descant.features.pubsub.service import Node, Published, Service
from descant.features.roster import RosterChange, RosterModule
from descant.jid import JID, InvalidJID, parse
from descant.routing.router import StanzaEvent
from descant.routing.sessions import Session
from descant.stanza import iq_result
from descant.storage.api import PubsubItem
from descant.xml import ns

NOTIFY = "+notify"
# XEP-0163 §4.5 recommended defaults.
PEP_DEFAULTS = NodeConfig(
    access_model="presence",
    max_items=1,
    send_last_published_item="on_sub_and_presence",
)


class PEPModule(PubSubModule):
    name = "pep"
    to = "self,bare"
    max_services = 10_000  # accounts whose nodes are cached
    max_interested = 1000  # interested resources tracked per account
    max_learning = 1000  # unknown caps hashes being learnt at once
    max_waiters = 10_000  # resources waiting for one hash to be learnt

    def load(self) -> None:
        super().load()
        self.host.add_account_identity("pubsub", "pep")
        self.host.add_account_feature(PUBSUB, OWNER, *(f"{PUBSUB}#{f}" for f in PEP_FEATURES))
        self.services: OrderedDict[str, Service] = OrderedDict()
        self.interest: OrderedDict[str, dict[JID, frozenset[str]]] = OrderedDict()
        self._learning: dict[Caps, dict[tuple[str, JID], None]] = {}
        self._pending: dict[tuple[str, JID], Caps] = {}  # each waiting resource's hash
        self.hook("presence/bare", self.on_presence_in, priority=10)
        self.hook("pre-presence", self.on_presence_out, priority=10)
        self.hook("resource-unbound", self.on_unbound)
        self.hook("roster-changed", self.on_roster_changed)
        self.hook("account-removed", self.on_account_removed)
        for kind in ("self", "bare"):
            # Ahead of the disco module, which lists no items for an account.
            self.hook(f"iq-get/{kind}/{ns.DISCO_ITEMS}:query", self.disco_items, priority=10)

    @property
    def caps(self) -> CapsModule:
        return self.require(CapsModule)

    @property
    def roster(self) -> RosterModule:
        return self.require(RosterModule)

    # -- services -----------------------------------------------------------------------

    def service(self, user: str) -> Service:
        service = self.services.get(user)
        if service is not None:
            self.services.move_to_end(user)
            return service
        bare = f"{user}@{self.host.domain}"
        options = self.server.config.pubsub
        service = Service(
            bare,
            self.host.storage.pubsub,
            PEP_DEFAULTS,
            options.max_items,
            self.roster_entry,
            owner=bare,
            max_payload=options.max_payload,
            max_nodes=options.max_nodes,
        )
        service.max_cached = options.max_nodes  # all an account may have
        self.services[user] = service
        if len(self.services) > self.max_services:
            self.services.popitem(last=False)
        return service

    async def service_for(self, ev: StanzaEvent) -> Service | None:
        user = ev.to.local
        if ev.to_kind == "bare" and (
            not await self._exists(user) or matches(await self._blocked(user), ev.frm)
        ):
            return None  # what any other iq gets from an account that blocked its sender
        return self.service(user)

    async def _blocked(self, user: str) -> set[str]:
        """The account's block list (XEP-0191): blocked JIDs get no PEP (§4.3.3)."""
        blocking = self.host.modules.get("blocking")
        return await blocking.blocked(user) if isinstance(blocking, BlockingModule) else set()

    async def _exists(self, user: str) -> bool:
        if self.host.sessions.of_user(user) or user in self.services:
            return True
        return await self.host.storage.accounts.get(self.host.domain, user) is not None

    async def recipients(self, service: Service, node: Node) -> Iterable[str]:
        user = service.jid.partition("@")[0]
        blocked = await self._blocked(user)
        out = [j for j in await super().recipients(service, node) if not _matches(blocked, j)]
        subscribed = set(out)
        allowed: dict[JID, bool] = {}
        for jid, nodes in list(self._interests(user).items()):
            if node.name not in nodes or str(jid) in subscribed or str(jid.bare) in subscribed:
                continue
            bare = jid.bare
            if bare not in allowed:
                allowed[bare] = not matches(blocked, jid) and await service.can_retrieve(node, bare)
            if allowed[bare]:
                out.append(str(jid))
        return out

    # -- who is interested ------------------------------------------------------------------

    async def on_presence_in(self, ev: StanzaEvent) -> None:
        """A contact's presence to the account (XEP-0163 §4.3.1, §4.3.4). Never takes
        the presence, and a failure here never keeps it from being delivered. Every
        presence a user receives passes here: what needs no caps returns at once."""
        stanza, frm = ev.stanza, ev.frm
        if frm.bare == ev.to.bare:
            return  # the account's own resources are seen on pre-presence
        type_ = stanza.get("type")
        if type_ == "unavailable":
            self._forget(ev.to.local, frm)
            return
        caps = caps_of(stanza) if type_ is None and frm.resource else None
        if caps is None:
            if type_ is None:
                self._forget(ev.to.local, frm)  # no caps (any more): no interests
            return
        try:
            user = ev.to.local
            if await self.roster.get_item(user, str(frm.bare)) is None:
                return  # not a contact: never a presence-based recipient
            await self._caps_seen(user, frm, caps)
        except Exception:
            self.log.exception("PEP could not handle presence from %s", frm)

    async def on_presence_out(self, ev: StanzaEvent) -> None:
        """The account's own resource sends presence to its contacts."""
        session = ev.origin
        if session is None or ev.stanza.get("to") is not None:
            return
        type_ = ev.stanza.get("type")
        if type_ == "unavailable":
            self._forget(session.jid.local, session.jid)
        elif type_ is None:
            try:
                await self._caps_seen(session.jid.local, session.jid, caps_of(ev.stanza))
            except Exception:
                self.log.exception("PEP could not handle presence from %s", session.jid)

    async def on_account_removed(self, user: str) -> None:
        """The account's nodes are gone from storage: its cached service goes too, or
        the name would still look taken, and its nodes alive, to others."""
        self.services.pop(user, None)
        self.interest.pop(user, None)

    async def on_unbound(self, session: Session) -> None:
        self._forget(session.jid.local, session.jid)

    async def on_roster_changed(self, change: RosterChange) -> None:
        """A contact newly subscribed to the account's presence gets the last items
        its resources asked for (§4.3.4); they are sent from a task, since the roster
        lock is held here. Other roster edits (names, groups) send nothing."""
        item, before = change.item, change.before
        if item.subscription not in ("from", "both") or (
            before is not None and before.subscription in ("from", "both")
        ):
            return
        targets = [
            (jid, nodes)
            for jid, nodes in self._interests(change.user).items()
            if str(jid.bare) == item.jid
        ]
        if targets:
            self.tasks.spawn(self._send_last_to(change.user, targets))

    async def _send_last_to(self, user: str, targets: list[tuple[JID, frozenset[str]]]) -> None:
        for jid, nodes in targets:
            await self.send_last(user, jid, nodes)

    async def _caps_seen(self, user: str, jid: JID, caps: Caps | None) -> None:
        key = (user, jid)
        if caps is None:
            self._forget(user, jid)
            return
        features = self.caps.known(caps)
        if features is not None:
            self._pending.pop(key, None)  # a hash being learnt is superseded
            await self._interested(user, jid, _notify_nodes(features))
            return
        # Known to be online, interests not yet: one task per unknown hash asks (through
        # the caps module) and serves every resource that showed it meanwhile; a
        # resource waits for its latest hash only.
        self._record(user, jid, self._interests(user).get(jid, frozenset()))
        previous = self._pending.pop(key, None)
        if previous == caps:
            self._pending[key] = caps
            return
        if previous is not None:
            self._learning.get(previous, {}).pop(key, None)
        waiters = self._learning.get(caps)
        if waiters is None:
            if len(self._learning) >= self.max_learning:
                return  # interests learnt at this resource's next presence
            waiters = self._learning[caps] = {}
            if not self.tasks.spawn(self._learn(caps, waiters)):
                del self._learning[caps]
                return
        if len(waiters) < self.max_waiters:
            waiters[key] = None
            self._pending[key] = caps

    async def _learn(self, caps: Caps, waiters: dict[tuple[str, JID], None]) -> None:
        try:
            while waiters:
                key = next(iter(waiters))
                del waiters[key]
                user, jid = key
                if self._pending.get(key) != caps:
                    continue  # gone, or showed another hash since
                features = self.caps.known(caps)
                if features is None:
                    # Unverified answers serve only who gave them: ask each in turn.
                    asker = JID(user, self.host.domain, "")
                    features = await self.caps.features(asker, jid, caps)
                if self._pending.get(key) != caps:
                    continue  # ... while its client was being asked
                del self._pending[key]
                if features is not None and jid in self._interests(user):
                    await self._interested(user, jid, _notify_nodes(features))
        finally:
            del self._learning[caps]
            for key in waiters:
                if self._pending.get(key) == caps:
                    del self._pending[key]

    async def _interested(self, user: str, jid: JID, nodes: frozenset[str]) -> None:
        before = self._interests(user).get(jid, frozenset())
        self._record(user, jid, nodes)
        new = nodes - before
        if new:
            await self.send_last(user, jid, new)

    def _interests(self, user: str) -> dict[JID, frozenset[str]]:
        return self.interest.get(user) or {}

    def _record(self, user: str, jid: JID, nodes: frozenset[str]) -> None:
        known = self.interest.get(user)
        if known is None:
            known = self.interest[user] = {}
            if len(self.interest) > self.max_services:
                # The least recently seen account's contacts get their last items again
                # when they next send presence; nothing else is lost.
                self.interest.pop(next(iter(self.interest)))
        else:
            self.interest.move_to_end(user)
        if jid in known or len(known) < self.max_interested:
            known[jid] = nodes

    def _forget(self, user: str, jid: JID) -> None:
        self._pending.pop((user, jid), None)
        known = self.interest.get(user)
        if known is not None:
            known.pop(jid, None)
            if not known:
                del self.interest[user]

    async def send_last(self, user: str, jid: JID, nodes: Iterable[str]) -> None:
        """The last item of each of the account's nodes in ``nodes`` that ``jid`` may see."""
        service = self.service(user)
        existing = await service.names()
        wanted = sorted(set(nodes).intersection(existing))
        if not wanted or matches(await self._blocked(user), jid):
            return
        for name in wanted:
            node = await service.node(name)
            if (
                node is None
                or node.config.send_last_published_item != "on_sub_and_presence"
                or not await service.can_retrieve(node, jid.bare)
            ):
                continue
            last = await service.last_item(node)
            if last is not None:
                await self.send_items(service, node, [last], str(jid), delayed=True)

    # -- for other modules (bookmarks and avatar conversion) ------------------------------

    async def published(self, service: Service, published: Published) -> None:
        """Tell modules that convert between PEP and older storage (``pep-published/<node>``:
        the account's localpart and the publication)."""
        event = f"pep-published/{published.node.name}"
        if self.host.events.has(event):
            await self.host.events.fire(event, (service.jid.partition("@")[0], published))

    async def publish_own(
        self,
        user: str,
        name: str,
        item_id: str,
        payload: ET.Element,
        config: NodeConfig,
        require: tuple[str, ...] = (),
    ) -> None:
        """Publish as the account itself, creating the node with ``config`` if needed,
        and first giving an existing node the options named in ``require`` (a private
        node must not stay readable by contacts); notifications go out as for a
        publication by a client. Raises StanzaError as a client's publication would."""
        service = self.service(user)
        node = await service.node(name)
        if node is None:
            node = await service.create(name, JID(user, self.host.domain, ""), config)
        else:
            await self.configure_own(user, name, config, require)
        published = await service.publish(node, JID(user, self.host.domain, ""), item_id, payload)
        await self.notify_publish(service, published)

    async def configure_own(
        self, user: str, name: str, config: NodeConfig, require: tuple[str, ...]
    ) -> None:
        """Give one of the account's nodes, if it exists, the options of ``config``
        named in ``require``."""
        service = self.service(user)
        node = await service.node(name)
        if node is not None and any(getattr(node.config, f) != getattr(config, f) for f in require):
            changes = {f: getattr(config, f) for f in require}
            await service.configure(node, dataclasses.replace(node.config, **changes))

    async def retract_own(self, user: str, name: str, item_id: str) -> None:
        service = self.service(user)
        node = await service.node(name)
        if node is None:
            return
        try:
            await service.retract(node, JID(user, self.host.domain, ""), item_id)
        except StanzaError:
            return
        if node.config.notify_retract:
            await self.notify(service, node, event_retract(node.name, [item_id]))

    async def own_items(
        self, user: str, name: str, ids: list[str] | None = None
    ) -> list[PubsubItem] | None:
        """Items of one of the account's nodes (all, or those in ``ids``), newest
        first; None: no such node."""
        service = self.service(user)
        node = await service.node(name)
        if node is None:
            return None
        return await service.items(node, ids or [], None)

    # -- disco -----------------------------------------------------------------------------

    async def disco_items(self, ev: StanzaEvent) -> bool | None:
        """The account's nodes the requester may see (XEP-0163 §4.6, XEP-0030)."""
        if ev.stanza[0].get("node"):
            return None
        if ev.frm.bare != ev.to.bare:
            # Strangers get what the disco module tells them (nothing: XEP-0030 §3.1).
            item = await self.roster.get_item(ev.to.local, str(ev.frm.bare))
            if item is None or item.subscription not in ("from", "both"):
                return None
        service = self.service(ev.to.local)
        query = ET.Element("{%s}query" % ns.DISCO_ITEMS)
        for name in await service.names():
            node = await service.node(name)
            if node is not None and await service.can_retrieve(node, ev.frm):
                attrs = {"jid": service.jid, "node": name}
                ET.SubElement(query, "{%s}item" % ns.DISCO_ITEMS, attrs)
        return await self.answer(ev, iq_result(ev.stanza, query))


def _matches(blocked: set[str], jid: str) -> bool:
    try:
        return matches(blocked, parse(jid))
    except InvalidJID:
        return True


def _notify_nodes(features: frozenset[str]) -> frozenset[str]:
    return frozenset(f[: -len(NOTIFY)] for f in features if f.endswith(NOTIFY))
