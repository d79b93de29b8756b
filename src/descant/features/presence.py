"""Presence subscriptions (RFC 6121 §3) and presence broadcast (RFC 6121 §4).

Outbound stanzas (from a local client) are taken on ``pre-presence``, on the
sender's host; inbound ones on ``presence/bare`` and ``presence/full``, on the
recipient's host, whoever sent them (a local session, another local user via
the router, a remote server).

Subscription states (RFC 6121 Appendix A) are a contact's roster item
(``subscription``: to/from; ``ask``: pending out) plus a stored pending-in
request. :func:`outbound` and :func:`inbound` are Appendix A.2 and A.3 as pure
functions: for a subscription stanza and the current state, whether it is
routed (or delivered) and the new state. Around them:

- outbound ``subscribe``/``subscribed``/``unsubscribe``/``unsubscribed`` are
  stamped with the user's bare JID and routed (origin None) so the contact's
  server runs its inbound processing; ``subscribed`` with no request waiting
  is a pre-approval (§3.4), recorded on the item and not routed;
- inbound ``subscribe`` is answered ``subscribed`` at once when the contact is
  already subscribed or pre-approved, else stored (pending in) and delivered
  to the available resources, and again at each initial presence (§3.1.3);
- whoever stops sharing presence (outbound ``unsubscribed``, inbound
  ``unsubscribe``) sends ``unavailable`` from each available resource (§3.2.2,
  §3.3.3); ``subscribed`` sends the current presence (§3.1.5).

Presence (§4): initial presence probes the contacts the user is subscribed to,
is broadcast to subscribers and to the user's own available resources (the
sender included), and brings the other resources' presence and the pending
requests to the new session, then fires ``presence-initial``. Unavailable
presence, explicit or on ``resource-unbound``, also reaches every target of
directed presence (§4.6). Probes are answered only for subscribers (§4.3).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from descant.errors import StanzaError
from descant.features.roster import RosterModule
from descant.jid import JID
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, retarget, retarget_all
from descant.storage.api import RosterItem
from descant.xml import ns
from descant.xml.parser import parse_element
from descant.xml.serialize import serialize

if TYPE_CHECKING:
    from descant.host import Host
    from descant.routing.sessions import Session

SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})
PRESENCE_TYPES = SUBSCRIPTION_TYPES | {"unavailable", "probe", "error"}


@dataclass(frozen=True, slots=True)
class SubState:
    """A contact's subscription state, as RFC 6121 Appendix A names them."""

    to: bool = False
    from_: bool = False
    pending_out: bool = False
    pending_in: bool = False

    @classmethod
    def of(cls, item: RosterItem | None, pending_in: bool) -> SubState:
        sub = item.subscription if item else "none"
        return cls(
            to=sub in ("to", "both"),
            from_=sub in ("from", "both"),
            pending_out=bool(item and item.ask),
            pending_in=pending_in,
        )

    @classmethod
    def parse(cls, name: str) -> SubState:
        """'None + Pending Out/In' → SubState (the Appendix A spelling)."""
        base, _, pending = name.partition(" + Pending ")
        return cls(
            to=base in ("To", "Both"),
            from_=base in ("From", "Both"),
            pending_out="Out" in pending,
            pending_in="In" in pending,
        )

    @property
    def subscription(self) -> str:
        if self.to:
            return "both" if self.from_ else "to"
        return "from" if self.from_ else "none"

    def __str__(self) -> str:
        name = self.subscription.capitalize()
        pending = "/".join(
            p for p, on in (("Out", self.pending_out), ("In", self.pending_in)) if on
        )
        return f"{name} + Pending {pending}" if pending else name


def outbound(type_: str, s: SubState) -> tuple[bool, SubState]:
    """RFC 6121 Appendix A.2: the user sends ``type_`` to a contact in state ``s``;
    whether the user's server routes it, and the new state. ``subscribed`` that
    is not routed is a pre-approval (§3.4) when the contact is not subscribed."""
    if type_ == "subscribe":
        return True, s if s.to else dataclasses.replace(s, pending_out=True)
    if type_ == "unsubscribe":
        return True, dataclasses.replace(s, to=False, pending_out=False)
    if type_ == "subscribed":
        if not s.pending_in:
            return False, s
        return True, dataclasses.replace(s, from_=True, pending_in=False)
    if type_ == "unsubscribed":
        if not (s.pending_in or s.from_):
            return False, s
        return True, dataclasses.replace(s, from_=False, pending_in=False)
    raise ValueError(type_)


def inbound(type_: str, s: SubState) -> tuple[bool, SubState]:
    """RFC 6121 Appendix A.3: ``type_`` arrives from a contact in state ``s``;
    whether it is delivered to the user, and the new state. A ``subscribe`` from
    a subscriber is not delivered but answered (§3.1.3), which the caller does."""
    if type_ == "subscribe":
        if s.from_ or s.pending_in:
            return False, s
        return True, dataclasses.replace(s, pending_in=True)
    if type_ == "unsubscribe":
        if not (s.pending_in or s.from_):
            return False, s
        return True, dataclasses.replace(s, from_=False, pending_in=False)
    if type_ == "subscribed":
        if not s.pending_out:
            return False, s
        return True, dataclasses.replace(s, to=True, pending_out=False)
    if type_ == "unsubscribed":
        if not (s.pending_out or s.to):
            return False, s
        return True, dataclasses.replace(s, to=False, pending_out=False)
    raise ValueError(type_)


class PriorityError(ValueError):
    pass


def parse_priority(stanza: ET.Element) -> int:
    """The <priority/> of an available presence (RFC 6121 §4.7.2.3), 0 if absent."""
    text = stanza.findtext("priority")
    if text is None:
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        raise PriorityError("priority is not an integer") from None
    if not -128 <= value <= 127:
        raise PriorityError("priority is outside -128..127")
    return value


def _presence(frm: str, to: str, type_: str | None = None) -> ET.Element:
    attrs = {"from": frm, "to": to}
    if type_:
        attrs["type"] = type_
    return ET.Element("presence", attrs)


class PresenceModule(Module):
    name = "presence"

    def __init__(self, host: Host) -> None:
        super().__init__(host)
        self._stream_feature = ET.Element("{%s}sub" % ns.PRESENCE_SUB_PREAPPROVAL)

    def load(self) -> None:
        self.hook("pre-presence", self.on_outbound)
        self.hook("presence/bare", self.on_inbound)
        self.hook("presence/full", self.on_inbound)
        self.hook("resource-unbound", self.on_unbound)
        # RFC 6121 §3.4.1: pre-approval is announced as a stream feature.
        self.host.stream_features.append(self._stream_feature)

    def unload(self) -> None:
        super().unload()
        if self._stream_feature in self.host.stream_features:
            self.host.stream_features.remove(self._stream_feature)

    @property
    def roster(self) -> RosterModule:
        return self.require(RosterModule)

    async def _route(self, stanzas: list[ET.Element]) -> None:
        for stanza in stanzas:
            await self.server.router.route(stanza)

    async def _pending_in(self, user: str) -> dict[str, str]:
        pending = await self.host.storage.roster.list_pending_in(self.host.domain, user)
        return dict(pending)

    async def _exists(self, user: str) -> bool:
        if self.host.sessions.of_user(user):
            return True
        return await self.host.storage.accounts.get(self.host.domain, user) is not None

    def _current_presence(self, user: str, to: str) -> list[ET.Element]:
        """Each available resource's last presence, addressed to ``to`` (§3.1.5, §4.3.2)."""
        return [
            retarget(s.presence, to=to)
            for s in self.host.sessions.available(user)
            if s.presence is not None
        ]

    def _unavailable_from_each(self, user: str, to: str) -> list[ET.Element]:
        return [
            _presence(str(s.jid), to, "unavailable") for s in self.host.sessions.available(user)
        ]

    # -- outbound: what a local client sends ----------------------------------------

    async def on_outbound(self, ev: StanzaEvent) -> bool | None:
        session = ev.origin
        if session is None:
            return None
        stanza = ev.stanza
        type_ = stanza.get("type")
        to = stanza.get("to")
        if type_ is not None and type_ not in PRESENCE_TYPES:
            session.send(_error_to(session, stanza, "unknown presence type"))
            return True
        if type_ in SUBSCRIPTION_TYPES:
            if to is not None:
                await self._outbound_subscription(ev, type_)
            return True
        if to is None:
            if type_ is None:
                await self._available(session, stanza)
            elif type_ == "unavailable":
                await self._unavailable(session, stanza)
            # A probe or error to nobody in particular: nothing to do.
            return True
        if not await self._directed(session, ev.to, type_):
            limit = self.server.config.limits.max_directed_presences
            self.log.info("%s: directed presence refused, %d tracked", session.jid, limit)
            text = f"at most {limit} directed presences"
            session.send(_error_to(session, stanza, text, "resource-constraint"))
            return True
        return None  # the router delivers it

    async def _directed(self, session: Session, to: JID, type_: str | None) -> bool:
        """Track directed presence (RFC 6121 §4.6) so unavailable reaches it too;
        False: the session tracks as many as it may (``limits.max_directed_presences``),
        and this one must not go out untracked (it would never be told unavailable).

        Subscribers get the unavailable broadcast anyway, and so do the user's
        own resources, so neither is tracked.
        """
        if type_ in ("unavailable", "error"):
            session.directed.discard(to)
            return True
        if type_ is not None or to.bare == session.jid.bare or to in session.directed:
            return True
        item = await self.roster.get_item(session.jid.local, str(to.bare))
        if item is None or item.subscription not in ("from", "both"):
            if len(session.directed) >= self.server.config.limits.max_directed_presences:
                return False
            session.directed.add(to)
        return True

    async def _available(self, session: Session, stanza: ET.Element) -> None:
        """Initial presence (RFC 6121 §4.2.2) or a presence update (§4.4.2)."""
        try:
            priority = parse_priority(stanza)
        except PriorityError as exc:
            session.send(_error_to(session, stanza, str(exc)))
            return
        initial = session.presence is None
        if initial:
            # From the moment it is available, live stanzas for it wait until what
            # was stored for it has gone first (offline.py sends with send_ahead).
            session.hold()
        try:
            session.presence = stanza
            session.priority = priority
            await self._broadcast(session, stanza, initial)
        finally:
            if initial:
                session.release()

    async def _broadcast(self, session: Session, stanza: ET.Element, initial: bool) -> None:
        user = session.jid.local
        user_bare = str(session.jid.bare)
        roster = await self.roster.get_roster(user)
        out: list[ET.Element] = []
        if initial:
            for jid, item in roster.items():
                if item.subscription in ("to", "both") and jid != user_bare:
                    out.append(_presence(user_bare, jid, "probe"))
        # One shared payload for every subscriber (serialized once, not per contact).
        out += retarget_all(stanza, _subscribers(roster, user_bare))
        for other in self.host.sessions.available(user):
            other.send(retarget(stanza, to=str(other.jid)))
        if initial:
            me = str(session.jid)
            for other in self.host.sessions.available(user):
                if other is not session and other.presence is not None:
                    session.send(retarget(other.presence, to=me))
            for xml in (await self._pending_in(user)).values():
                try:
                    session.send(parse_element(xml))
                except Exception:
                    self.log.exception("unreadable subscription request for %s", user_bare)
        await self._route(out)
        if initial:
            await self.host.events.fire("presence-initial", session)

    async def _unavailable(self, session: Session, stanza: ET.Element) -> None:
        """Unavailable presence (RFC 6121 §4.5.2) to subscribers, the user's other
        resources (and the sender, while it is bound) and directed targets (§4.6.3)."""
        was_available = session.presence is not None
        session.presence = None
        user = session.jid.local
        user_bare = str(session.jid.bare)
        sent: set[str] = set()
        out: list[ET.Element] = []
        if was_available:
            roster = await self.roster.get_roster(user)
            subscribers = _subscribers(roster, user_bare)
            out += retarget_all(stanza, subscribers)
            sent.update(subscribers)
            for other in self.host.sessions.available(user):
                other.send(retarget(stanza, to=str(other.jid)))
            if self.host.sessions.get(user, session.jid.resource) is session:
                session.send(retarget(stanza, to=str(session.jid)))
        directed = list(session.directed)
        session.directed.clear()
        for target in directed:
            if str(target) not in sent:
                out.append(retarget(stanza, to=str(target)))
        await self._route(out)

    async def on_unbound(self, session: Session) -> None:
        """A session ended (logout or lost connection): it becomes unavailable."""
        if session.presence is not None or session.directed:
            stanza = ET.Element("presence", {"from": str(session.jid), "type": "unavailable"})
            await self._unavailable(session, stanza)

    async def _outbound_subscription(self, ev: StanzaEvent, type_: str) -> None:
        """RFC 6121 §3.1.2, §3.1.5, §3.2.2, §3.3.2, §3.4 and Appendix A.2."""
        user = ev.frm.local
        user_bare = str(ev.frm.bare)
        contact = str(ev.to.bare)
        if contact == user_bare:
            return  # the user is implicitly subscribed to itself both ways
        out: list[ET.Element] = []
        async with self.roster.lock(user):
            item = await self.roster.get_item(user, contact)
            if item is None and type_ == "subscribe" and await self.roster.full(user):
                # A subscription request makes a roster item: none beyond the limit.
                if ev.origin is not None:
                    full = "the roster is full"
                    ev.origin.send(_error_to(ev.origin, ev.stanza, full, "policy-violation"))
                return
            pending_in = contact in await self._pending_in(user)
            old = SubState.of(item, pending_in)
            route, new = outbound(type_, old)
            approved = bool(item and item.approved)
            if type_ == "subscribed" and not route and not old.from_:
                approved = True  # pre-approval (§3.4)
            elif type_ == "unsubscribed" or new.from_:
                approved = False  # cancelled (§3.4.3), or moot
            await self._apply(user, contact, item, old, new, approved)
            if route:
                out.append(retarget(ev.stanza, from_=user_bare, to=contact))
                if type_ == "subscribed":
                    out.extend(self._current_presence(user, contact))
                elif type_ == "unsubscribed" and old.from_:
                    out.extend(self._unavailable_from_each(user, contact))
        await self._route(out)

    async def _apply(
        self,
        user: str,
        contact: str,
        item: RosterItem | None,
        old: SubState,
        new: SubState,
        approved: bool,
        request: ET.Element | None = None,
    ) -> None:
        """Store a state change: the pending-in request, and the item (pushed)."""
        if new.pending_in != old.pending_in:
            store = self.host.storage.roster
            if new.pending_in:
                assert request is not None
                await store.add_pending_in(self.host.domain, user, contact, serialize(request))
            else:
                await store.remove_pending_in(self.host.domain, user, contact)
        was_approved = bool(item and item.approved)
        if (new.to, new.from_, new.pending_out) == (old.to, old.from_, old.pending_out) and (
            approved == was_approved
        ):
            return
        base = item if item is not None else RosterItem(jid=contact)
        updated = dataclasses.replace(
            base, subscription=new.subscription, ask=new.pending_out, approved=approved
        )
        await self.roster.set_item(user, updated)

    # -- inbound: what arrives for a local user ---------------------------------------

    async def on_inbound(self, ev: StanzaEvent) -> bool:
        stanza = ev.stanza
        type_ = stanza.get("type")
        if type_ in SUBSCRIPTION_TYPES or type_ == "probe":
            # Subscriptions are between bare JIDs, whatever the address (§3).
            await self._inbound_subscription(ev, type_)
            return True
        if type_ not in (None, "unavailable", "error"):
            return True
        if ev.to_kind == "full":
            # A resource that is not there: silently ignored (RFC 6121 §8.5.3.2.3).
            session = self.host.sessions.get(ev.to.local, ev.to.resource)
            if session is not None:
                session.send(stanza)
            return True
        for session in self.host.sessions.available(ev.to.local):
            session.send(stanza)
        return True

    async def _inbound_subscription(self, ev: StanzaEvent, type_: str) -> None:
        """RFC 6121 §3.1.3, §3.1.6, §3.2.3, §3.3.3, §4.3.2 and Appendix A.3."""
        user = ev.to.local
        user_bare = str(ev.to.bare)
        contact = str(ev.frm.bare)
        if not await self._exists(user):
            if type_ in ("subscribe", "probe"):
                # §3.1.3 and §4.3.2: no such user; say so rather than stay silent.
                await self._route([_presence(user_bare, contact, "unsubscribed")])
            return
        if type_ == "probe":
            await self._probe(ev, user, user_bare)
            return
        if contact == user_bare:
            return
        out: list[ET.Element] = []
        async with self.roster.lock(user):
            item = await self.roster.get_item(user, contact)
            pending = await self._pending_in(user)
            pending_in = contact in pending
            if (
                type_ == "subscribe"
                and not pending_in
                and item is None
                and len(pending) >= self.server.config.limits.max_roster_items
            ):
                # Requests waiting for an answer are bounded like the roster: a flood
                # of strangers' requests is dropped, not stored (logged once each).
                self.log.info("%s: subscription request from %s dropped", user_bare, contact)
                return
            old = SubState.of(item, pending_in)
            deliver, new = inbound(type_, old)
            approved = bool(item and item.approved)
            copy = retarget(ev.stanza, from_=contact, to=user_bare)
            if type_ == "subscribe" and not old.from_ and not old.pending_in and approved:
                # Pre-approved (§3.4.2): approve on the user's behalf.
                deliver, new, approved = False, dataclasses.replace(old, from_=True), False
            if type_ == "subscribe" and new.from_:
                # Already subscribed (§3.1.3), or just approved: answer for the user.
                out.append(_presence(user_bare, contact, "subscribed"))
                out.extend(self._current_presence(user, contact))
            elif type_ == "unsubscribe" and old.from_:
                out.extend(self._unavailable_from_each(user, contact))
            await self._apply(user, contact, item, old, new, approved, copy)
            if deliver:
                for session in self.host.sessions.available(user):
                    session.send(copy)
        await self._route(out)

    async def _probe(self, ev: StanzaEvent, user: str, user_bare: str) -> None:
        """A presence probe (RFC 6121 §4.3.2): revealed to subscribers and the user."""
        prober = ev.frm
        contact = str(prober.bare)
        if contact != user_bare:
            item = await self.roster.get_item(user, contact)
            if item is None or item.subscription not in ("from", "both"):
                await self._route([_presence(user_bare, contact, "unsubscribed")])
                return
        to = str(prober)
        out = self._current_presence(user, to)
        if not out:
            out = [_presence(user_bare, to, "unavailable")]
        await self._route(out)


def _error_to(
    session: Session, stanza: ET.Element, text: str, condition: str = "bad-request"
) -> ET.Element:
    """An error answer to the session for a presence it sent."""
    reply = error_reply(stanza, StanzaError(condition, text))
    reply.attrib.pop("from", None)
    reply.set("to", str(session.jid))
    return reply


def _subscribers(roster: Mapping[str, RosterItem], user_bare: str) -> list[str]:
    """Contacts that receive the user's presence broadcasts (RFC 6121 §4.2.2, §4.4.2)."""
    return [
        jid
        for jid, item in roster.items()
        if item.subscription in ("from", "both") and jid != user_bare
    ]
