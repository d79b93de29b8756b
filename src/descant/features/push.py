"""Push Notifications (XEP-0357): wake a client whose connection is gone.

A client registers its app server (an "XMPP Push Service", a pubsub service run
for that client application) with the user's account; when a message arrives
that nobody can read right now, the server publishes a short summary to every
registered service, which wakes the device through its platform's push system.

Discovery (§4.1): ``urn:xmpp:push:0`` is a feature of every account (its bare
JID's disco#info).

Registering (§5): ``<enable xmlns='urn:xmpp:push:0' jid=… node=…/>`` in an iq
set to the user's own bare JID stores the registration: the service JID, the
node (SHOULD be given; without one the publish names none) and the fields of an
optional ``jabber:x:data`` form whose FORM_TYPE is
``http://jabber.org/protocol/pubsub#publish-options`` (credentials the app
server wants back with each publish). Enabling the same JID and node again
replaces its options. A missing or invalid ``jid``, another form, or options
over 4096 characters are <bad-request/>; the same request to someone else's
account is <forbidden/>. An account holds at most 20 registrations (one per
client application and device is plenty): past that <not-allowed/>.

Unregistering (§6): ``<disable jid=… [node=…]/>`` removes that JID and node, or
every node of that JID when no node is given. Removing what is not there is
still a result.

Publishing (§7): a message worth a notification — type chat or normal with a
body, or with an OMEMO ``<encrypted/>`` payload (``eu.siacs.conversations.axolotl``,
``urn:xmpp:omemo:2``); never groupchat, headline, error or bare chat states —
for an account with registrations, when every session the message would reach
is hibernated (XEP-0198: waiting for the client to resume) or there is none
(it goes to offline storage, ``message/offline``), is published to each
registration as an iq set from the account's bare JID: a ``<notification/>``
item holding a ``urn:xmpp:push:summary`` form (``message-count``: messages
notified since the account last had a live session; ``last-message-sender``
unless ``push.include_sender`` is off; ``last-message-body`` only when
``push.include_body`` is on, §9: bodies would pass through third parties), and
the stored publish-options. Publishing runs in the module's task group, so no
delivery waits for an app server. This module only looks at messages; it never
takes one.

Errors (§7.1): an error answer or no answer within ``push.timeout`` seconds
counts as a failure; ``push.max_errors`` failures in a row remove the
registration (logged at INFO), and a successful publish resets the count.

Registrations are one JSON document per account in the key-value store (store
``push``, key ``registrations``), so they survive restarts, with the failure
counts; they are cached while the user has sessions. The hooks on
``message/bare`` and ``message/full`` are in place only while some user with
sessions on this host has registrations, so other traffic costs nothing.
Notification counts are kept in memory only (for at most 10 000 accounts) and
start again when a session of the account binds or resumes.

The commonest case is a phone that drops off the network silently: messages
are written to a connection that looks alive, and nobody reads them. So when a
session hibernates and no session of the account is live any more, the
messages worth a notification that its client never acknowledged are
published too (one notification, counting them all).

Not done: remote disabling by the service's affiliation change (§8, a MAY;
failures remove a registration instead).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING

from descant import forms
from descant.errors import StanzaError, condition_of
from descant.jid import JID, InvalidJID, parse
from descant.modules import HookSet, Module
from descant.routing.requests import TooManyRequests
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result
from descant.xml import ns
from descant.xml.parser import parse_element

if TYPE_CHECKING:
    from descant.routing.sessions import Session

NS = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = forms.DATA
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"
SUMMARY = "urn:xmpp:push:summary"
OMEMO = ("eu.siacs.conversations.axolotl", "urn:xmpp:omemo:2")

MAX_REGISTRATIONS = 20
MAX_OPTIONS = 4096  # characters of publish-options names and values per registration
MAX_COUNTERS = 10000  # accounts whose notification count is remembered
_STORE = "push"
_KEY = "registrations"
_LOCKS = 64

Fields = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class Registration:
    """One app server node an account publishes to (§5)."""

    jid: str
    node: str  # "" when the client named none
    options: Fields = ()
    errors: int = 0  # failed publishes in a row (§7.1)

    @property
    def key(self) -> tuple[str, str]:
        return (self.jid, self.node)


def worth_notifying(stanza: ET.Element) -> bool:
    """A message a user would want to be woken for: chat or normal, with a body or
    an OMEMO payload (so not chat states or receipts alone)."""
    if stanza.get("type", "normal") not in ("chat", "normal"):
        return False
    if stanza.findtext("body"):
        return True
    return any(stanza.find(f"{{{uri}}}encrypted") is not None for uri in OMEMO)


def parse_options(enable: ET.Element) -> Fields:
    """The publish-options fields of an ``<enable/>`` (FORM_TYPE left out).

    Raises ValueError when the form is not publish-options or too large."""
    form = enable.find(f"{{{DATA}}}x")
    if form is None:
        return ()
    form_type = None
    fields: list[tuple[str, tuple[str, ...]]] = []
    size = 0
    for field in form.findall(f"{{{DATA}}}field"):
        var = field.get("var")
        if not var:
            raise ValueError("a publish-options field without 'var'")
        values = tuple(v.text or "" for v in field.findall(f"{{{DATA}}}value"))
        if var == "FORM_TYPE":
            form_type = values[0] if values else None
            continue
        size += len(var) + sum(len(v) for v in values)
        fields.append((var, values))
    if form_type != PUBLISH_OPTIONS:
        raise ValueError(f"the form must have FORM_TYPE {PUBLISH_OPTIONS}")
    if size > MAX_OPTIONS:
        raise ValueError(f"publish-options larger than {MAX_OPTIONS} characters")
    return tuple(fields)


def data_form(form_type: str, fields: Fields) -> ET.Element:
    return forms.build("submit", form_type, [(var, "", "", list(vals)) for var, vals in fields])


def notification(
    frm: str, reg: Registration, count: int, sender: str | None, body: str | None
) -> ET.Element:
    """The publish iq for one registration (§7)."""
    iq = ET.Element("iq", {"type": "set", "from": frm, "to": reg.jid})
    pubsub = ET.SubElement(iq, f"{{{PUBSUB}}}pubsub")
    publish = ET.SubElement(pubsub, f"{{{PUBSUB}}}publish", {"node": reg.node} if reg.node else {})
    item = ET.SubElement(publish, f"{{{PUBSUB}}}item")
    summary: list[tuple[str, tuple[str, ...]]] = [("message-count", (str(count),))]
    if sender is not None:
        summary.append(("last-message-sender", (sender,)))
    if body is not None:
        summary.append(("last-message-body", (body,)))
    ET.SubElement(item, f"{{{NS}}}notification").append(data_form(SUMMARY, tuple(summary)))
    if reg.options:
        options = ET.SubElement(pubsub, f"{{{PUBSUB}}}publish-options")
        options.append(data_form(PUBLISH_OPTIONS, reg.options))
    return iq


def dump_registrations(regs: list[Registration]) -> str | None:
    if not regs:
        return None
    return json.dumps(
        [
            {
                "jid": r.jid,
                "node": r.node,
                "options": [[var, list(values)] for var, values in r.options],
                "errors": r.errors,
            }
            for r in regs
        ]
    )


def load_registrations(text: str | None) -> list[Registration]:
    """Raises ValueError (or KeyError, TypeError) on a document not written here."""
    if not text:
        return []
    return [
        Registration(
            str(d["jid"]),
            str(d["node"]),
            tuple((str(var), tuple(map(str, values))) for var, values in d["options"]),
            int(d["errors"]),
        )
        for d in json.loads(text)
    ]


def _condition(stanza: ET.Element) -> str:
    err = stanza.find("error")
    condition = condition_of(err, ns.STANZAS_ERR) if err is not None else None
    return condition or "error"


class PushModule(Module):
    name = "push"

    def load(self) -> None:
        self.config = self.server.config.push
        self.host.add_account_feature(NS)
        self.hook_iq("set", "self", f"{NS}:enable", self.enable)
        self.hook_iq("set", "self", f"{NS}:disable", self.disable)
        self.hook_iq("set", "bare", f"{NS}:enable", self.forbidden)
        self.hook_iq("set", "bare", f"{NS}:disable", self.forbidden)
        self.hook("resource-bound", self._bound)
        self.hook("session-resumed", self._resumed)
        self.hook("session-hibernated", self._hibernated)
        self.hook("resource-unbound", self._unbound)
        # Ahead of offline storage (priority 0); only looks.
        self.hook("message/offline", self.offline, 10)
        # user → registrations, for users with sessions and registrations.
        self._cache: dict[str, list[Registration]] = {}
        # user → messages notified since the account last had a live session.
        self._counts: dict[str, int] = {}
        # Read-modify-write of a user's document, striped so the table stays fixed.
        self._locks = [asyncio.Lock() for _ in range(_LOCKS)]
        self._message_hooks = HookSet(
            self,
            (
                # Ahead of delivery (priority 0), behind blocking (20) and carbons (10).
                ("message/bare", self.to_bare, 5),
                ("message/full", self.to_full, 5),
            ),
        )

    def unload(self) -> None:
        self._cache.clear()
        self._sync_hooks()
        super().unload()

    def _sync_hooks(self) -> None:
        self._message_hooks.set(bool(self._cache))

    # -- registrations -------------------------------------------------------------------

    def _lock(self, user: str) -> asyncio.Lock:
        return self._locks[hash(user) % _LOCKS]

    async def _read(self, user: str) -> list[Registration]:
        cached = self._cache.get(user)
        if cached is not None:
            return list(cached)
        text = await self.host.storage.keyval.get(self.host.domain, user, _STORE, _KEY)
        try:
            return load_registrations(text)
        except (ValueError, KeyError, TypeError):
            self.log.warning("%s@%s: unreadable push registrations", user, self.host.domain)
            return []

    async def _write(self, user: str, regs: list[Registration]) -> None:
        """Store (caller holds the user's lock), and keep the cache in step."""
        await self.host.storage.keyval.set(
            self.host.domain, user, _STORE, _KEY, dump_registrations(regs)
        )
        self._remember(user, regs)

    def _remember(self, user: str, regs: list[Registration]) -> None:
        if regs and self.host.sessions.of_user(user):
            self._cache[user] = regs
        else:
            self._cache.pop(user, None)
        self._sync_hooks()

    async def _bound(self, session: Session) -> None:
        user = session.jid.local
        self._counts.pop(user, None)  # a live session: the count starts again
        if user in self._cache:
            return
        async with self._lock(user):
            self._remember(user, await self._read(user))

    async def _resumed(self, session: Session) -> None:
        self._counts.pop(session.jid.local, None)

    async def _unbound(self, session: Session) -> None:
        user = session.jid.local
        if user in self._cache and not self.host.sessions.of_user(user):
            del self._cache[user]
            self._sync_hooks()

    # -- enable and disable (§5, §6) ----------------------------------------------------

    async def _bad_request(self, ev: StanzaEvent, text: str) -> bool:
        return await self.answer(ev, error_reply(ev.stanza, StanzaError("bad-request", text)))

    async def enable(self, ev: StanzaEvent) -> bool:
        el = ev.stanza[0]
        try:
            jid = str(parse(el.get("jid", "")))
        except InvalidJID:
            return await self._bad_request(ev, "a valid 'jid' of the push service is required")
        try:
            options = parse_options(el)
        except ValueError as exc:
            return await self._bad_request(ev, str(exc))
        reg = Registration(jid, el.get("node", ""), options)
        user = ev.to.local
        async with self._lock(user):
            regs = [r for r in await self._read(user) if r.key != reg.key]
            if len(regs) >= MAX_REGISTRATIONS:
                err = StanzaError("not-allowed", f"at most {MAX_REGISTRATIONS} push registrations")
                return await self.answer(ev, error_reply(ev.stanza, err))
            regs.append(reg)  # the same JID and node again: the last options win (§5)
            await self._write(user, regs)
        self.log.info("%s: push enabled to %s node %r", ev.to.bare, jid, reg.node)
        return await self.answer(ev, iq_result(ev.stanza))

    async def disable(self, ev: StanzaEvent) -> bool:
        el = ev.stanza[0]
        try:
            jid = str(parse(el.get("jid", "")))
        except InvalidJID:
            return await self._bad_request(ev, "a valid 'jid' of the push service is required")
        node = el.get("node")  # none: every node of that service (§6)
        user = ev.to.local
        async with self._lock(user):
            regs = await self._read(user)
            keep = [r for r in regs if r.jid != jid or (node is not None and r.node != node)]
            if len(keep) != len(regs):
                await self._write(user, keep)
                what = "every node" if node is None else f"node {node!r}"
                self.log.info("%s: push disabled to %s %s", ev.to.bare, jid, what)
        return await self.answer(ev, iq_result(ev.stanza))

    async def forbidden(self, ev: StanzaEvent) -> bool:
        """Only the account itself registers its push services."""
        return await self.answer(ev, error_reply(ev.stanza, StanzaError("forbidden")))

    # -- when to publish (§7) ------------------------------------------------------------

    async def to_bare(self, ev: StanzaEvent) -> None:
        """Every session the message reaches is hibernated: nobody reads it now."""
        regs = self._cache.get(ev.to.local)
        if regs is None or not worth_notifying(ev.stanza):
            return None
        targets = self.host.sessions.message_targets(ev.to.local, ev.stanza.get("type", "normal"))
        # No target at all: it goes to offline storage, and offline() notifies.
        if targets and all(s.hibernated for s in targets):
            self._notify(ev, regs)
        return None

    async def to_full(self, ev: StanzaEvent) -> None:
        regs = self._cache.get(ev.to.local)
        if regs is None or not worth_notifying(ev.stanza):
            return None
        session = self.host.sessions.get(ev.to.local, ev.to.resource)
        if session is None:
            # Chat and normal to a gone resource are delivered as to the bare JID
            # (RFC 6121 §8.5.3.2.1).
            return await self.to_bare(ev)
        if session.hibernated:
            self._notify(ev, regs)
        return None

    async def offline(self, ev: StanzaEvent) -> None:
        """No session takes the message: it is stored for later."""
        if not worth_notifying(ev.stanza):
            return None
        regs = await self._read(ev.to.local)
        if regs:
            self._notify(ev, regs)
        return None

    async def _hibernated(self, session: Session) -> None:
        """The connection was lost with messages still unacknowledged (XEP-0198):
        the client may never have seen them."""
        user = session.jid.local
        regs = self._cache.get(user)
        sm = getattr(session, "sm", None)
        if regs is None or sm is None:
            return
        if any(not s.hibernated for s in self.host.sessions.of_user(user)):
            return  # a live session of the account shows them
        stanzas = (parse_element(text) for text, _, _ in sm.pending())
        unseen = [st for st in stanzas if worth_notifying(st)]
        if unseen:
            last = unseen[-1]
            self._publish_all(user, session.jid.bare, regs, len(unseen), last.get("from"), last)

    def _notify(self, ev: StanzaEvent, regs: list[Registration]) -> None:
        self._publish_all(ev.to.local, ev.to.bare, regs, 1, str(ev.frm), ev.stanza)

    def _publish_all(
        self,
        user: str,
        bare: JID,
        regs: list[Registration],
        new: int,
        sender: str | None,
        last: ET.Element,
    ) -> None:
        count = self._counts.pop(user, 0) + new
        self._counts[user] = count  # re-inserted: the oldest counts go first
        if len(self._counts) > MAX_COUNTERS:
            del self._counts[next(iter(self._counts))]
        if not self.config.include_sender:
            sender = None
        body = last.findtext("body") if self.config.include_body else None
        frm = str(bare)
        for reg in regs:
            iq = notification(frm, reg, count, sender, body)
            self.tasks.spawn(self._publish(user, reg.key, iq))

    async def _publish(self, user: str, key: tuple[str, str], iq: ET.Element) -> None:
        try:
            answer = await self.send_iq(iq, self.config.timeout)
        except TimeoutError:
            why = "timeout"
        except TooManyRequests:
            self.log.warning("%s@%s: push not sent, too many requests wait", user, self.host.domain)
            return
        else:
            why = "" if answer.get("type") == "result" else _condition(answer)
        await self._outcome(user, key, why)

    async def _outcome(self, user: str, key: tuple[str, str], why: str) -> None:
        """Count a failure (``why``) or a success ("") of a publish (§7.1)."""
        async with self._lock(user):
            regs = await self._read(user)
            i = next((i for i, r in enumerate(regs) if r.key == key), None)
            if i is None:
                return  # disabled meanwhile
            reg = regs[i]
            if not why:
                if reg.errors == 0:
                    return
                regs[i] = dataclasses.replace(reg, errors=0)
            elif reg.errors + 1 >= self.config.max_errors:
                del regs[i]
                self.log.info(
                    "%s@%s: push disabled to %s node %r after %d failures (last: %s)",
                    user,
                    self.host.domain,
                    reg.jid,
                    reg.node,
                    reg.errors + 1,
                    why,
                )
            else:
                regs[i] = dataclasses.replace(reg, errors=reg.errors + 1)
                self.log.debug("%s@%s: push to %s failed: %s", user, self.host.domain, reg.jid, why)
            await self._write(user, regs)
