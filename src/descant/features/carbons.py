"""Message Carbons (XEP-0280): every client of a user sees the whole conversation.

A session opts in with ``<enable xmlns='urn:xmpp:carbons:2'/>`` (state kept in
``session.data``). Then:

- a message the user sends from one resource is copied, wrapped in
  ``<sent/>``, to the user's other enabled resources (``pre-message``);
- a message for the user that reaches one resource is copied, wrapped in
  ``<received/>``, to the user's other enabled resources, ahead of the message
  module's delivery (``message/bare``, ``message/full``; this module only
  looks and never takes the stanza).

Eligible (§6): type chat, or normal with a body; not groupchat, not error;
not marked ``<private/>`` or ``<no-copy/>`` (XEP-0334); not MUC private
messages to the user (XEP-0280 §6: those reach only the joined resource).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.errors import StanzaError
from descant.modules import HookSet, Module
from descant.routing.router import StanzaEvent
from descant.stanza import error_reply, iq_result

if TYPE_CHECKING:
    from descant.c2s.manager import Undelivered
    from descant.routing.sessions import Session

NS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"
HINTS = "urn:xmpp:hints"
MUC_USER = "http://jabber.org/protocol/muc#user"
_KEY = "carbons"


def eligible(stanza: ET.Element) -> bool:
    type_ = stanza.get("type", "normal")
    if type_ == "chat":
        pass
    elif type_ != "normal" or stanza.find("body") is None:
        return False
    return (
        stanza.find(f"{{{NS}}}private") is None
        and stanza.find(f"{{{HINTS}}}no-copy") is None
        and stanza.find(f"{{{NS}}}received") is None
        and stanza.find(f"{{{NS}}}sent") is None
    )


def wrap(kind: str, stanza: ET.Element, user_bare: str, to: str) -> ET.Element:
    """``<message from=bare to=resource><kind><forwarded>original</forwarded></kind>``."""
    out = ET.Element("message", {"from": user_bare, "to": to, "type": stanza.get("type", "normal")})
    forwarded = ET.SubElement(ET.SubElement(out, f"{{{NS}}}{kind}"), f"{{{FORWARD}}}forwarded")
    forwarded.append(stanza)
    return out


class CarbonsModule(Module):
    name = "carbons"

    def load(self) -> None:
        self.host.add_feature(NS)
        self.hook_iq("set", "self", f"{NS}:enable", self.enable)
        self.hook_iq("set", "self", f"{NS}:disable", self.disable)
        self.hook("resource-unbound", self._unbound)
        # Ahead of offline storage: copies need no second delivery.
        self.hook("stanza-undelivered", self._undelivered, 10)
        # user → sessions that enabled carbons. The message hooks are in place
        # only while someone on this host has carbons on, so that messages cost
        # nothing extra otherwise (the router skips events nobody listens to).
        self._users: dict[str, list[Session]] = {}
        self._copy_hooks = HookSet(
            self,
            (
                ("pre-message", self.sent, 0),
                # Ahead of the message module's delivery (priority 0); never takes it.
                ("message/bare", self.received_bare, 10),
                ("message/full", self.received_full, 10),
            ),
        )

    def _sync_hooks(self) -> None:
        self._copy_hooks.set(bool(self._users))

    def unload(self) -> None:
        self._users.clear()
        self._sync_hooks()
        super().unload()

    async def _set(self, ev: StanzaEvent, on: bool) -> bool:
        session = ev.origin
        if session is None:  # only a client session can opt in
            return await self.answer(ev, error_reply(ev.stanza, StanzaError("not-allowed")))
        session.data[_KEY] = on
        enabled = [s for s in self._users.pop(session.jid.local, []) if s is not session]
        if on:
            enabled.append(session)
        if enabled:
            self._users[session.jid.local] = enabled
        self._sync_hooks()
        return await self.answer(ev, iq_result(ev.stanza))

    async def enable(self, ev: StanzaEvent) -> bool:
        return await self._set(ev, True)

    async def disable(self, ev: StanzaEvent) -> bool:
        return await self._set(ev, False)

    async def _unbound(self, session: Session) -> None:
        enabled = self._users.get(session.jid.local)
        if enabled and any(s is session for s in enabled):
            rest = [s for s in enabled if s is not session]
            if rest:
                self._users[session.jid.local] = rest
            else:
                del self._users[session.jid.local]
            self._sync_hooks()

    async def _undelivered(self, ev: Undelivered) -> bool | None:
        """A stanza the client of an ended session never acknowledged (XEP-0198 §4):
        a carbon copy is dropped (the original went elsewhere), and so is a message
        the user's other resources already got as a carbon."""
        stanza = ev.stanza
        if stanza.tag != "message":
            return None
        if stanza.find(f"{{{NS}}}received") is not None or stanza.find(f"{{{NS}}}sent") is not None:
            return True
        user = ev.session.jid.local
        if eligible(stanza) and self._enabled(user, [ev.session]):
            return True
        return None

    def _enabled(self, user: str, skip: list[Session]) -> list[Session]:
        return [
            s
            for s in self._users.get(user, ())
            if s.presence is not None and all(s is not k for k in skip)
        ]

    async def sent(self, ev: StanzaEvent) -> None:
        """Copies of what a user sends, to the user's other resources (§7)."""
        origin = ev.origin
        if ev.frm.local not in self._users or origin is None or not eligible(ev.stanza):
            return None
        user_bare = str(ev.frm.bare)
        if ev.to.bare == ev.frm.bare:
            return None  # to oneself: the resources get the message itself
        for s in self._enabled(ev.frm.local, [origin]):
            s.send(wrap("sent", ev.stanza, user_bare, str(s.jid)))
        return None

    async def received_bare(self, ev: StanzaEvent) -> None:
        """Copies for resources a bare-JID message does not reach (§8)."""
        stanza = ev.stanza
        if ev.to.local not in self._users or not eligible(stanza) or ev.frm.bare == ev.to.bare:
            return None
        targets = self.host.sessions.message_targets(ev.to.local, stanza.get("type", "normal"))
        if targets:
            self._copy(ev, targets)
        return None

    async def received_full(self, ev: StanzaEvent) -> None:
        stanza = ev.stanza
        if ev.to.local not in self._users or not eligible(stanza) or ev.frm.bare == ev.to.bare:
            return None
        if stanza.find(f"{{{MUC_USER}}}x") is not None:
            return None  # a MUC private message: only the joined resource
        session = self.host.sessions.get(ev.to.local, ev.to.resource)
        if session is not None:
            self._copy(ev, [session])
        else:
            # Offline resource: the message module delivers as to the bare JID.
            return await self.received_bare(ev)
        return None

    def _copy(self, ev: StanzaEvent, receivers: list[Session]) -> None:
        user_bare = str(ev.to.bare)
        for s in self._enabled(ev.to.local, receivers):
            s.send(wrap("received", ev.stanza, user_bare, str(s.jid)))
