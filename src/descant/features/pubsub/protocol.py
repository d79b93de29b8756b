"""The XEP-0060 requests, answered for a ``Service``: the part PEP (pep.py) and
the pubsub service (domain.py) share.

``PubSubModule`` takes ``<pubsub/>`` (§6, §7) and ``<pubsub xmlns='…#owner'/>`` (§8)
iq requests, asks the subclass which service they address (``service_for``), runs
them there and answers; then it sends the event notifications the change made
(§7.1.2, §7.2.2, §8.4.2, §8.5.2) to ``recipients``, which the subclass extends
(PEP adds contacts whose clients asked for them, XEP-0163 §4).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable

from descant import forms
from descant.errors import StanzaError
from descant.features.pubsub.names import (
    EVENT,
    NODE_CONFIG,
    OWNER,
    PUBLISH_OPTIONS,
    PUBSUB,
    error,
    q,
    unsupported,
)
from descant.features.pubsub.service import AFFILIATIONS, Node, Published, Service, payload_of
from descant.features.roster import RosterModule
from descant.jid import JID, InvalidJID, parse
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stamps import format_stamp
from descant.stanza import error_reply, iq_result, retarget_all
from descant.storage.api import PubsubItem

Handler = Callable[[StanzaEvent, Service, ET.Element], Awaitable[ET.Element | None]]


class PubSubModule(Module):
    """Base of the PEP and pubsub service modules; ``to`` is where requests arrive
    (``"self,bare"`` for PEP, ``"host"`` for a service)."""

    to = ""

    def load(self) -> None:
        for type_ in ("get", "set"):
            self.hook_iq(type_, self.to, f"{PUBSUB}:pubsub", self.on_pubsub)
            self.hook_iq(type_, self.to, f"{OWNER}:pubsub", self.on_owner)
        self._user: dict[tuple[str, str], Handler] = {
            ("set", "create"): self._create,
            ("set", "publish"): self._publish,
            ("set", "retract"): self._retract,
            ("set", "subscribe"): self._subscribe,
            ("set", "unsubscribe"): self._unsubscribe,
            ("get", "items"): self._items,
            ("get", "subscriptions"): self._my_subscriptions,
            ("get", "affiliations"): self._my_affiliations,
            ("get", "default"): self._default_subscription,
        }
        self._owner: dict[tuple[str, str], Handler] = {
            ("get", "configure"): self._get_config,
            ("set", "configure"): self._set_config,
            ("get", "default"): self._default,
            ("set", "delete"): self._delete,
            ("set", "purge"): self._purge,
            ("get", "affiliations"): self._get_affiliations,
            ("set", "affiliations"): self._set_affiliations,
            ("get", "subscriptions"): self._get_subscriptions,
            ("set", "subscriptions"): self._set_subscriptions,
        }

    # -- what subclasses provide -------------------------------------------------------

    async def service_for(self, ev: StanzaEvent) -> Service | None:
        """The service a request addresses; None: no such service."""
        raise NotImplementedError

    async def recipients(self, service: Service, node: Node) -> Iterable[str]:
        """Who gets a node's notifications: its subscribers that may still see it (an
        access model changed, a roster entry went, an outcast; XEP-0163 §7.1) — PEP
        adds more."""
        out = []
        allowed: dict[JID, bool] = {}
        for jid, state in list(node.subscriptions.items()):
            if state != "subscribed":
                continue
            try:
                bare = parse(jid).bare
            except InvalidJID:
                continue
            if bare not in allowed:
                allowed[bare] = await service.can_retrieve(node, bare)
            if allowed[bare]:
                out.append(jid)
        return out

    async def roster_entry(self, owner: str, requester: str) -> tuple[str, tuple[str, ...]] | None:
        """(subscription, groups) of ``requester`` in the roster of ``owner``, a local
        account (presence and roster access models); None: not a contact, or not local."""
        local, _, domain = owner.partition("@")
        host = self.server.hosts.get(domain)
        roster = host.modules.get("roster") if host is not None else None
        if not isinstance(roster, RosterModule):
            return None
        item = await roster.get_item(local, requester)
        return None if item is None else (item.subscription, item.groups)

    def may_create(self, service: Service, who: JID) -> bool:
        return service.affiliation(None, who) == "owner"

    async def published(self, service: Service, published: Published) -> None:
        """A client published an item (after its notifications went out)."""

    # -- dispatch -------------------------------------------------------------------------

    async def on_pubsub(self, ev: StanzaEvent) -> bool:
        return await self._dispatch(ev, self._user)

    async def on_owner(self, ev: StanzaEvent) -> bool:
        return await self._dispatch(ev, self._owner)

    async def _dispatch(self, ev: StanzaEvent, table: dict[tuple[str, str], Handler]) -> bool:
        stanza = ev.stanza
        query = stanza[0]
        try:
            service = await self.service_for(ev)
            if service is None:
                raise StanzaError("service-unavailable")
            if len(query) == 0:
                raise StanzaError("bad-request", "empty request")
            verb = query[0]
            handler = table.get((stanza.get("type", ""), verb.tag.rpartition("}")[2]))
            if handler is None:
                raise StanzaError("feature-not-implemented", f"{verb.tag} is not supported")
            payload = await handler(ev, service, query)
        except StanzaError as exc:
            return await self.answer(ev, error_reply(stanza, exc))
        return await self.answer(ev, iq_result(stanza, payload))

    # -- publish and retract (§7) ------------------------------------------------------------

    async def _create(
        self, ev: StanzaEvent, service: Service, query: ET.Element
    ) -> ET.Element | None:
        if not self.may_create(service, ev.frm):
            raise StanzaError("forbidden", "you may not create nodes here")
        config = service.defaults
        configure = query.find(q(PUBSUB, "configure"))
        form = configure.find(q(forms.DATA, "x")) if configure is not None else None
        if form is not None:
            config = config.apply(_form_values(form, NODE_CONFIG), service.max_items)
        requested = query[0].get("node")
        node = await service.create(requested, ev.frm, config)
        if requested:
            return None
        out = ET.Element(q(PUBSUB, "pubsub"))
        ET.SubElement(out, q(PUBSUB, "create"), {"node": node.name})
        return out

    async def _publish(self, ev: StanzaEvent, service: Service, query: ET.Element) -> ET.Element:
        publish = query[0]
        name = publish.get("node")
        if not name:
            raise error("bad-request", "nodeid-required")
        items = publish.findall(q(PUBSUB, "item"))
        if not items:
            raise error("bad-request", "item-required")
        if len(items) > 1 or len(items[0]) > 1:
            raise error("bad-request", "invalid-payload")
        options = query.find(q(PUBSUB, "publish-options"))
        form = options.find(q(forms.DATA, "x")) if options is not None else None
        wanted = _form_values(form, PUBLISH_OPTIONS) if form is not None else {}
        item = items[0]
        payload = item[0] if len(item) else None
        node = await service.node(name)
        if node is None:
            if not self.may_create(service, ev.frm):
                if service.owner is not None:
                    raise StanzaError("forbidden", "only the account publishes here")
                raise StanzaError("item-not-found", f"no node {name!r}")
            # Auto-create (§7.1.4) with the publish options as its configuration,
            # once the item is known to be acceptable there.
            config = service.defaults.with_options(wanted, service.max_items)
            service.check_payload(config, payload)
            try:
                node = await service.create(name, ev.frm, config)
            except StanzaError as exc:
                # Made by a publication that came in meanwhile: publish into it.
                made = await service.node(name) if exc.condition == "conflict" else None
                if made is None:
                    raise
                node = made
                service.may_publish(node, ev.frm)
                if wanted:
                    node.config.check_preconditions(wanted, service.max_items)
        else:
            service.may_publish(node, ev.frm)
            if wanted:
                node.config.check_preconditions(wanted, service.max_items)
        published = await service.publish(node, ev.frm, item.get("id"), payload)
        await self.notify_publish(service, published)
        await self.published(service, published)
        out = ET.Element(q(PUBSUB, "pubsub"))
        p = ET.SubElement(out, q(PUBSUB, "publish"), {"node": name})
        ET.SubElement(p, q(PUBSUB, "item"), {"id": published.item.id})
        return out

    async def _retract(self, ev: StanzaEvent, service: Service, query: ET.Element) -> None:
        retract = query[0]
        items = retract.findall(q(PUBSUB, "item"))
        if not items or not all(item.get("id") for item in items):
            raise error("bad-request", "item-required")
        node = await service.existing(retract.get("node"))
        ids = [item.get("id", "") for item in items]
        await service.may_retract(node, ev.frm, ids)  # all of them, or none
        for item_id in ids:
            await service.retract(node, ev.frm, item_id)
        if node.config.notify_retract or retract.get("notify") in ("1", "true"):
            await self.notify(service, node, event_retract(node.name, ids))

    # -- subscriptions (§6) ------------------------------------------------------------------

    async def _subscribe(self, ev: StanzaEvent, service: Service, query: ET.Element) -> ET.Element:
        sub = query[0]
        jid = _requester_jid(sub, ev.frm)
        node = await service.existing(sub.get("node"))
        if query.find(q(PUBSUB, "options")) is not None:
            raise unsupported("subscription-options")
        await service.may_retrieve(node, ev.frm)
        service.may_subscribe(node, jid)
        await service.set_subscription(node, jid, "subscribed")
        last = await service.last_item(node)
        if node.config.send_last_published_item != "never" and last is not None:
            await self.send_items(service, node, [last], jid, delayed=True)
        out = ET.Element(q(PUBSUB, "pubsub"))
        ET.SubElement(
            out,
            q(PUBSUB, "subscription"),
            {"node": node.name, "jid": jid, "subscription": "subscribed"},
        )
        return out

    async def _unsubscribe(self, ev: StanzaEvent, service: Service, query: ET.Element) -> None:
        unsub = query[0]
        jid = _requester_jid(unsub, ev.frm)
        node = await service.existing(unsub.get("node"))
        if jid not in node.subscriptions:
            raise error("unexpected-request", "not-subscribed")
        await service.set_subscription(node, jid, None)

    async def _my_subscriptions(
        self, ev: StanzaEvent, service: Service, query: ET.Element
    ) -> ET.Element:
        out = ET.Element(q(PUBSUB, "pubsub"))
        subs = ET.SubElement(out, q(PUBSUB, "subscriptions"))
        only = query[0].get("node")
        for jid in {str(ev.frm), str(ev.frm.bare)}:
            for name, state in sorted(
                (await service.store.subscriptions_of(service.jid, jid)).items()
            ):
                if only is None or name == only:
                    attrs = {"node": name, "jid": jid, "subscription": state}
                    ET.SubElement(subs, q(PUBSUB, "subscription"), attrs)
        return out

    async def _my_affiliations(
        self, ev: StanzaEvent, service: Service, query: ET.Element
    ) -> ET.Element:
        out = ET.Element(q(PUBSUB, "pubsub"))
        affs = ET.SubElement(out, q(PUBSUB, "affiliations"))
        only = query[0].get("node")
        if service.owner is not None and service.affiliation(None, ev.frm) == "owner":
            mine = {name: "owner" for name in await service.names()}
        else:
            mine = await service.store.affiliations_of(service.jid, str(ev.frm.bare))
        for name, aff in sorted(mine.items()):
            if only is None or name == only:
                ET.SubElement(affs, q(PUBSUB, "affiliation"), {"node": name, "affiliation": aff})
        return out

    # -- items (§6.5) ---------------------------------------------------------------------------

    async def _items(self, ev: StanzaEvent, service: Service, query: ET.Element) -> ET.Element:
        request = query[0]
        ids = [item.get("id", "") for item in request.findall(q(PUBSUB, "item"))]
        limit = None
        if request.get("max_items") is not None:
            try:
                limit = int(request.get("max_items", ""))
            except ValueError:
                raise StanzaError("bad-request", "max_items is not a number") from None
            if limit < 1:
                raise StanzaError("bad-request", "max_items must be positive")
        node = await service.existing(request.get("node"))
        await service.may_retrieve(node, ev.frm)
        if query.find("{http://jabber.org/protocol/rsm}set") is not None and not ids:
            limit = min(limit or service.max_items, service.max_items)
        found = await service.items(node, ids, limit)
        out = ET.Element(q(PUBSUB, "pubsub"))
        items = ET.SubElement(out, q(PUBSUB, "items"), {"node": node.name})
        for item in found:
            el = ET.SubElement(items, q(PUBSUB, "item"), {"id": item.id})
            payload = payload_of(item)
            if payload is not None:
                el.append(payload)
        return out

    # -- owner use cases (§8) ------------------------------------------------------------------

    async def _owned(self, ev: StanzaEvent, service: Service, name: str | None) -> Node:
        node = await service.existing(name)
        if service.affiliation(node, ev.frm) != "owner":
            raise StanzaError("forbidden", "only an owner may do that")
        return node

    async def _get_config(self, ev: StanzaEvent, service: Service, query: ET.Element) -> ET.Element:
        node = await self._owned(ev, service, query[0].get("node"))
        out = ET.Element(q(OWNER, "pubsub"))
        conf = ET.SubElement(out, q(OWNER, "configure"), {"node": node.name})
        form = node.config.form(service.max_items)
        conf.append(form)
        return out

    async def _set_config(self, ev: StanzaEvent, service: Service, query: ET.Element) -> None:
        node = await self._owned(ev, service, query[0].get("node"))
        form = query[0].find(q(forms.DATA, "x"))
        if form is None:
            raise StanzaError("bad-request", "configure needs a form")
        if form.get("type") == "cancel":
            return
        config = node.config.apply(_form_values(form, NODE_CONFIG), service.max_items)
        await service.configure(node, config)
        if config.notify_config:
            event = ET.Element(q(EVENT, "event"))
            ET.SubElement(event, q(EVENT, "configuration"), {"node": node.name})
            await self.notify(service, node, event)

    async def _default_subscription(
        self, ev: StanzaEvent, service: Service, query: ET.Element
    ) -> ET.Element:
        """Default subscription options (§6.4): there are none to configure."""
        raise unsupported("retrieve-default-sub")

    async def _default(self, ev: StanzaEvent, service: Service, query: ET.Element) -> ET.Element:
        ns = query.tag[1:].partition("}")[0]
        out = ET.Element(q(ns, "pubsub"))
        ET.SubElement(out, q(ns, "default")).append(service.defaults.form(service.max_items))
        return out

    async def _delete(self, ev: StanzaEvent, service: Service, query: ET.Element) -> None:
        node = await self._owned(ev, service, query[0].get("node"))
        targets = list(await self.recipients(service, node)) if node.config.notify_delete else []
        await service.delete(node)
        event = ET.Element(q(EVENT, "event"))
        ET.SubElement(event, q(EVENT, "delete"), {"node": node.name})
        await self.send_event(service, event, targets)

    async def _purge(self, ev: StanzaEvent, service: Service, query: ET.Element) -> None:
        node = await self._owned(ev, service, query[0].get("node"))
        await service.purge(node)
        if node.config.notify_retract:
            event = ET.Element(q(EVENT, "event"))
            ET.SubElement(event, q(EVENT, "purge"), {"node": node.name})
            await self.notify(service, node, event)

    async def _get_affiliations(
        self, ev: StanzaEvent, service: Service, query: ET.Element
    ) -> ET.Element:
        node = await self._owned(ev, service, query[0].get("node"))
        out = ET.Element(q(OWNER, "pubsub"))
        affs = ET.SubElement(out, q(OWNER, "affiliations"), {"node": node.name})
        listed = dict(node.affiliations)
        if service.owner is not None:
            listed[service.owner] = "owner"
        for jid, aff in sorted(listed.items()):
            ET.SubElement(affs, q(OWNER, "affiliation"), {"jid": jid, "affiliation": aff})
        return out

    async def _set_affiliations(self, ev: StanzaEvent, service: Service, query: ET.Element) -> None:
        node = await self._owned(ev, service, query[0].get("node"))
        changes = []
        for el in query[0].findall(q(OWNER, "affiliation")):
            jid = _bare(el.get("jid"))
            aff = el.get("affiliation", "")
            if aff not in AFFILIATIONS:
                raise StanzaError("bad-request", f"unknown affiliation {aff!r}")
            if jid == service.owner:
                raise StanzaError("not-acceptable", "the account owns its PEP nodes")
            changes.append((jid, aff))
        owners = {j for j, a in node.affiliations.items() if a == "owner"}
        for jid, aff in changes:
            (owners.add if aff == "owner" else owners.discard)(jid)
        if service.owner is None and not owners:
            raise StanzaError("not-acceptable", "a node keeps at least one owner")
        for jid, aff in changes:
            await service.set_affiliation(node, jid, aff)

    async def _get_subscriptions(
        self, ev: StanzaEvent, service: Service, query: ET.Element
    ) -> ET.Element:
        node = await self._owned(ev, service, query[0].get("node"))
        out = ET.Element(q(OWNER, "pubsub"))
        subs = ET.SubElement(out, q(OWNER, "subscriptions"), {"node": node.name})
        for jid, state in sorted(node.subscriptions.items()):
            ET.SubElement(subs, q(OWNER, "subscription"), {"jid": jid, "subscription": state})
        return out

    async def _set_subscriptions(
        self, ev: StanzaEvent, service: Service, query: ET.Element
    ) -> None:
        node = await self._owned(ev, service, query[0].get("node"))
        changes = []
        for el in query[0].findall(q(OWNER, "subscription")):
            try:
                jid = str(parse(el.get("jid", "")))
            except InvalidJID:
                raise StanzaError("jid-malformed") from None
            state = el.get("subscription", "")
            if state not in ("subscribed", "none"):
                raise StanzaError("bad-request", f"unsupported subscription state {state!r}")
            changes.append((jid, state))
        for jid, state in changes:
            await service.set_subscription(node, jid, state)

    # -- notifications -------------------------------------------------------------------------

    async def notify_publish(self, service: Service, published: Published) -> None:
        node = published.node
        if not node.config.deliver_notifications:
            return
        payload = published.element if node.config.deliver_payloads else None
        event, items = _items_event(node.name, published.item.id, payload)
        for dropped in published.dropped if node.config.notify_retract else ():
            ET.SubElement(items, q(EVENT, "retract"), {"id": dropped})
        await self.notify(service, node, event)

    async def notify(self, service: Service, node: Node, event: ET.Element) -> None:
        await self.send_event(service, event, await self.recipients(service, node))

    async def send_event(self, service: Service, event: ET.Element, targets: Iterable[str]) -> None:
        # One message shared by every copy: the event is serialized once, not per recipient.
        msg = ET.Element("message", {"from": service.jid, "type": "headline"})
        msg.append(event)
        for copy in retarget_all(msg, targets):
            await self.server.router.route(copy)

    async def send_items(
        self, service: Service, node: Node, items: list[PubsubItem], to: str, delayed: bool
    ) -> None:
        """Items as notifications to one entity (the last item on subscription or
        presence, §6.1.7, XEP-0163 §4.3.4), with their publication time."""
        for item in items:
            payload = payload_of(item) if node.config.deliver_payloads else None
            event, _ = _items_event(node.name, item.id, payload)
            msg = ET.Element("message", {"from": service.jid, "to": to, "type": "headline"})
            msg.append(event)
            if delayed:
                ET.SubElement(
                    msg,
                    "{urn:xmpp:delay}delay",
                    {"from": service.jid, "stamp": format_stamp(item.stamp)},
                )
            await self.server.router.route(msg)


def _items_event(
    node: str, item_id: str, payload: ET.Element | None
) -> tuple[ET.Element, ET.Element]:
    """``<event><items node=…><item id=…>payload</item></items></event>`` and its
    ``<items/>`` (to add retractions to)."""
    event = ET.Element(q(EVENT, "event"))
    items = ET.SubElement(event, q(EVENT, "items"), {"node": node})
    item = ET.SubElement(items, q(EVENT, "item"), {"id": item_id})
    if payload is not None:
        item.append(payload)
    return event, items


def event_retract(node: str, ids: list[str]) -> ET.Element:
    event = ET.Element(q(EVENT, "event"))
    items = ET.SubElement(event, q(EVENT, "items"), {"node": node})
    for item_id in ids:
        ET.SubElement(items, q(EVENT, "retract"), {"id": item_id})
    return event


def _form_values(form: ET.Element, form_type: str) -> dict[str, list[str]]:
    if form.get("type", "submit") not in ("submit", "form"):
        raise StanzaError("bad-request", "the form must be submitted")
    given = forms.form_type(form)
    if given is not None and given != form_type:
        raise StanzaError("bad-request", f"FORM_TYPE must be {form_type}")
    values = forms.values(form)
    values.pop("FORM_TYPE", None)
    return values


def _requester_jid(el: ET.Element, frm: JID) -> str:
    """The ``jid`` of a (un)subscribe, which must be the requester's (§6.1.3.1)."""
    try:
        jid = parse(el.get("jid", ""))
    except InvalidJID:
        raise error("bad-request", "invalid-jid") from None
    if jid.bare != frm.bare:
        raise error("bad-request", "invalid-jid")
    return str(jid)


def _bare(text: str | None) -> str:
    try:
        return str(parse(text or "").bare)
    except InvalidJID:
        raise StanzaError("jid-malformed") from None
