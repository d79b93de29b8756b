"""Message delivery to local users (RFC 6121 §8.5).

Full JID, resource online: delivered. Resource offline: normal/chat are handled
as if sent to the bare JID, groupchat bounces, headline and error are dropped
(§8.5.3.2.1). Bare JID: delivered to the available resources with the highest
non-negative priority (all of them for headline, §8.5.2.1.1); with none, normal
and chat go to offline storage (``message/offline``), headline is dropped, and
an unknown user gets <service-unavailable/> (§8.5.2.2).
"""

from __future__ import annotations

from descant.errors import StanzaError
from descant.modules import Module
from descant.routing.router import StanzaEvent


class MessageModule(Module):
    name = "message"

    def load(self) -> None:
        self.hook("message/full", self.to_full)
        self.hook("message/bare", self.to_bare)
        self.hook("message/self", self.to_bare)
        self.hook("iq/full", self.iq_to_full)

    async def to_full(self, ev: StanzaEvent) -> bool:
        session = self.host.sessions.get(ev.to.local, ev.to.resource)
        if session is not None:
            session.send(ev.stanza)
            return True
        type_ = ev.stanza.get("type", "normal")
        if type_ in ("normal", "chat"):
            return await self.to_bare(ev)
        if type_ == "groupchat":
            await self.server.router.bounce(ev.stanza, StanzaError("service-unavailable"))
        return True

    async def to_bare(self, ev: StanzaEvent) -> bool:
        stanza = ev.stanza
        type_ = stanza.get("type", "normal")
        if type_ == "groupchat":
            await self.server.router.bounce(stanza, StanzaError("service-unavailable"))
            return True
        targets = self.host.sessions.message_targets(ev.to.local, type_)
        if targets:
            for session in targets:
                session.send(stanza)
            return True
        if type_ == "error":
            return True
        if not self.host.sessions.of_user(ev.to.local) and not await self.user_exists(ev.to.local):
            await self.server.router.bounce(stanza, StanzaError("service-unavailable"))
            return True
        if type_ == "headline":
            return True
        if await self.host.events.fire("message/offline", ev) is None:
            await self.server.router.bounce(stanza, StanzaError("service-unavailable"))
        return True

    async def user_exists(self, user: str) -> bool:
        return await self.host.storage.accounts.get(self.host.domain, user) is not None

    async def iq_to_full(self, ev: StanzaEvent) -> bool:
        session = self.host.sessions.get(ev.to.local, ev.to.resource)
        if session is not None:
            session.send(ev.stanza)
        elif ev.stanza.get("type") in ("get", "set"):
            await self.server.router.bounce(ev.stanza, StanzaError("service-unavailable"))
        return True
