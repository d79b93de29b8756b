"""Client State Indication (XEP-0352 v1.0.0): less traffic for a client nobody looks at.

Offered as the ``<csi xmlns='urn:xmpp:csi:0'/>`` stream feature after
authentication (§4.1). A session starts active and stays so until its client
says otherwise (§5); ``<inactive/>`` and ``<active/>`` from a bound session
switch it (§4.2). From a stream with no bound resource they are ignored, and
neither is ever answered. The state is unrelated to the user's presence (§5)
and is never shown to anyone else (§6).

    ACTIVE --<inactive/>--> INACTIVE: the session's output passes ``filter``
    INACTIVE --<active/>, or the session hibernates--> ACTIVE: what was held
                is delivered, in order, and the filter removed

While inactive, what the server sends the client is sorted (§3.2 lists such
optimisations):

- urgent: delivered at once, after everything held (in order): a message with
  a body (not groupchat, not headline), a groupchat message whose body
  mentions the user (the user's nick in that room, or the user's localpart,
  case-insensitively) or that carries a ``<subject/>``, an OMEMO
  ``<encrypted/>`` message, an invitation (XEP-0249 or XEP-0045 mediated),
  every iq, presence subscription requests and answers, and every error;
- presence (available, unavailable): held, only the latest per sender (full
  JID); a newer one replaces the older and takes its place at the end, so what
  is delivered is a subsequence of what was sent (RFC 6120 §10.1 order between
  two entities holds);
- a message carrying only a chat state (XEP-0085): dropped (§3.2);
- anything else (groupchat without a mention, headlines such as PEP
  notifications, receipts and markers): held in order.

A carbon copy (XEP-0280) is sorted as the message it carries. More than
``max_held`` stanzas held flushes them all. ``<active/>`` flushes inside its
own handler, so everything held is written before the client's next request
is processed (§5.1, in-order processing).

Stream resumption (§5.2): when the session loses its transport and hibernates,
what was held goes into the stream management queue (resumption sends it,
expiry hands it to ``stanza-undelivered``) and the session is active again,
which is also the state of the resumed stream. An unbound session's state is
dropped.

The user's nick per room is learned from the room's self-presence (XEP-0045
§7.2.3: status 110) on ``presence/full``, whatever the state (rooms are usually
joined before the client goes inactive), forgotten on unavailable, and bounded
per session (``max_rooms``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, ClassVar

from descant.modules import Module

if TYPE_CHECKING:
    from descant.c2s.session import ClientSession
    from descant.c2s.stream import NonzaEvent
    from descant.routing.router import StanzaEvent
    from descant.routing.sessions import Session

NS = "urn:xmpp:csi:0"
_KEY = "csi"

MUC_USER = "http://jabber.org/protocol/muc#user"
_MUC_USER_X = f"{{{MUC_USER}}}x"
_INVITE = f"{{{MUC_USER}}}invite"
_STATUS = f"{{{MUC_USER}}}status"
_CHATSTATE = "{http://jabber.org/protocol/chatstates}"
_HINT = "{urn:xmpp:hints}"
_CARBONS = frozenset(("{urn:xmpp:carbons:2}received", "{urn:xmpp:carbons:2}sent"))
_FORWARDED = "{urn:xmpp:forward:0}forwarded"
# Payloads that make any message urgent: OMEMO (legacy and v2), direct MUC invitations.
_URGENT_PAYLOADS = frozenset(
    (
        "{eu.siacs.conversations.axolotl}encrypted",
        "{urn:xmpp:omemo:2}encrypted",
        "{jabber:x:conference}x",
    )
)

# How the filter sorts a stanza.
_URGENT, _HOLD, _DROP = 0, 1, 2


class _State:
    """One session's indication state, held stanzas and room nicks."""

    __slots__ = ("held", "inactive", "limit", "nicks", "seq")

    def __init__(self, limit: int) -> None:
        self.inactive = False
        self.limit = limit
        # Insertion-ordered: presence keyed by its sender (a replacement goes
        # to the end), everything else by a sequence number.
        self.held: dict[str | int, ET.Element] = {}
        self.seq = 0
        self.nicks: dict[str, str] = {}  # room bare JID → the user's nick there

    def flush(self, session: ClientSession) -> None:
        held, self.held = self.held, {}
        for stanza in held.values():
            session.deliver(stanza)

    def filter(self, session: ClientSession, stanza: ET.Element) -> bool:
        """The session's output filter while inactive: True when the stanza was
        held or dropped, False when it goes out now (after what was held)."""
        tag = stanza.tag
        if tag == "presence":
            type_ = stanza.get("type")
            if type_ is None or type_ == "unavailable":
                key = stanza.get("from", "")
                held = self.held
                held.pop(key, None)
                held[key] = stanza
                if len(held) > self.limit:
                    self.flush(session)
                return True
            verdict = _URGENT  # subscriptions, errors
        elif tag == "message":
            verdict = self._message(session, stanza, True)
        else:
            verdict = _URGENT  # iq
        if verdict == _URGENT:
            if self.held:
                self.flush(session)
            return False
        if verdict == _HOLD:
            self.seq += 1
            self.held[self.seq] = stanza
            if len(self.held) > self.limit:
                self.flush(session)
        return True

    def _message(self, session: ClientSession, stanza: ET.Element, unwrap: bool) -> int:
        type_ = stanza.get("type")
        if type_ == "error":
            return _URGENT
        body: ET.Element | None = None
        subject = False
        states = others = 0
        for child in stanza:
            tag = child.tag
            if tag == "body":
                body = child
            elif tag == "subject":
                subject = True
            elif tag in _URGENT_PAYLOADS:
                return _URGENT
            elif tag == _MUC_USER_X:
                if child.find(_INVITE) is not None:
                    return _URGENT
                others += 1
            elif tag in _CARBONS and unwrap:
                inner = _forwarded(child)
                return self._message(session, inner, False) if inner is not None else _HOLD
            elif tag.startswith(_CHATSTATE):
                states += 1
            elif tag != "thread" and not tag.startswith(_HINT):
                others += 1
        if type_ == "groupchat":
            if subject or (body is not None and self._mentioned(session, stanza, body.text)):
                return _URGENT
            return _HOLD
        if body is not None:
            # Headlines (RFC 6121 §5.2.2: no reply expected) are not worth a wake-up.
            return _HOLD if type_ == "headline" else _URGENT
        if states and not others:
            return _DROP
        return _HOLD

    def _mentioned(self, session: ClientSession, stanza: ET.Element, text: str | None) -> bool:
        if not text:
            return False
        text = text.casefold()
        nick = self.nicks.get(stanza.get("from", "").partition("/")[0])
        if nick is not None and nick.casefold() in text:
            return True
        return session.jid.local.casefold() in text


def _forwarded(carbon: ET.Element) -> ET.Element | None:
    # Carbons are made by this server (features/carbons.py): the copy is un-namespaced.
    return carbon.find(f"{_FORWARDED}/message")


class ClientStateModule(Module):
    name = "csi"
    max_held: ClassVar[int] = 256  # stanzas held per session before everything is flushed
    max_rooms: ClassVar[int] = 256  # room nicks remembered per session

    def load(self) -> None:
        self._feature = ET.Element(f"{{{NS}}}csi")
        self.host.stream_features.append(self._feature)
        self.hook(f"nonza/{NS}:inactive", self.inactive)
        self.hook(f"nonza/{NS}:active", self.active)
        self.hook("session-hibernated", self._hibernated)
        self.hook("session-resumed", self._resumed)
        self.hook("resource-unbound", self._unbound)
        # After blocking (20), ahead of delivery (0); only looks.
        self.hook("presence/full", self._room_presence, 10)

    def unload(self) -> None:
        super().unload()
        if self._feature in self.host.stream_features:
            self.host.stream_features.remove(self._feature)

    def _state(self, session: Session) -> _State:
        state = session.data.get(_KEY)
        if not isinstance(state, _State):
            state = _State(self.max_held)
            session.data[_KEY] = state
        return state

    async def inactive(self, ev: NonzaEvent) -> bool:
        session = ev.session
        if session is None:
            return True  # nothing bound to indicate the state of: ignored
        state = self._state(session)
        if not state.inactive:
            state.inactive = True
            session.filter = state.filter
        return True

    async def active(self, ev: NonzaEvent) -> bool:
        if ev.session is not None:
            self._activate(ev.session)
        return True

    def _activate(self, session: ClientSession) -> None:
        state = session.data.get(_KEY)
        if isinstance(state, _State) and state.inactive:
            state.inactive = False
            session.filter = None
            state.flush(session)

    async def _hibernated(self, session: ClientSession) -> None:
        # Into the SM queue, so that neither resumption nor expiry loses anything.
        self._activate(session)

    async def _resumed(self, session: ClientSession) -> None:
        self._activate(session)  # §5.2: a resumed stream starts active

    async def _unbound(self, session: ClientSession) -> None:
        state = session.data.pop(_KEY, None)
        if isinstance(state, _State) and state.inactive:
            session.filter = None

    async def _room_presence(self, ev: StanzaEvent) -> None:
        """Learn the user's nick in a room from its self-presence (status 110)."""
        stanza = ev.stanza
        x = stanza.find(_MUC_USER_X)
        if x is None or not any(s.get("code") == "110" for s in x.iterfind(_STATUS)):
            return None
        room, _, nick = stanza.get("from", "").partition("/")
        session = self.host.sessions.get(ev.to.local, ev.to.resource)
        if not nick or session is None:
            return None
        if stanza.get("type") == "unavailable":
            state = session.data.get(_KEY)
            if isinstance(state, _State):
                state.nicks.pop(room, None)
            return None
        if stanza.get("type") is not None:
            return None
        nicks = self._state(session).nicks
        nicks.pop(room, None)
        if len(nicks) >= self.max_rooms:
            del nicks[next(iter(nicks))]  # the room joined longest ago
        nicks[room] = nick
        return None
