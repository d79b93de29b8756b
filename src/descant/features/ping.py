"""XMPP Ping (XEP-0199): the server answers pings addressed to it."""

from __future__ import annotations

from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import iq_result
from descant.xml import ns


class PingModule(Module):
    name = "ping"

    def load(self) -> None:
        self.host.add_feature(ns.PING)
        self.hook_iq("get", "host,self", f"{ns.PING}:ping", self.pong)

    async def pong(self, ev: StanzaEvent) -> bool:
        return await self.answer(ev, iq_result(ev.stanza))
