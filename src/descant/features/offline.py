"""Offline messages (XEP-0160) with delay stamps (XEP-0203).

Messages the message module could not deliver (``message/offline``) are stored
up to ``limits.offline_max_messages`` per user, then bounced with
<service-unavailable/>. They are delivered, oldest first, when a session
sends initial presence with non-negative priority (``presence-initial``).
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stamps import format_stamp
from descant.xml import ns
from descant.xml.parser import parse_element
from descant.xml.serialize import serialize

if TYPE_CHECKING:
    from descant.routing.sessions import Session


class OfflineModule(Module):
    name = "offline"

    def load(self) -> None:
        self.host.add_feature(ns.OFFLINE)
        self.hook("message/offline", self.store)
        self.hook("presence-initial", self.deliver)

    async def store(self, ev: StanzaEvent) -> bool | None:
        store = self.host.storage.offline
        user = ev.to.local
        if (
            await store.count(self.host.domain, user)
            >= self.server.config.limits.offline_max_messages
        ):
            return None  # full: the message module bounces it
        now = datetime.datetime.now(datetime.UTC)
        await store.push(self.host.domain, user, serialize(ev.stanza), now)
        return True

    async def deliver(self, session: Session) -> None:
        if session.priority < 0:
            return
        stored = await self.host.storage.offline.pop_all(self.host.domain, session.jid.local)
        for xml, stamp in stored:
            try:
                msg = parse_element(xml)
            except Exception:
                self.log.exception("unreadable offline message for %s", session.jid)
                continue
            ET.SubElement(
                msg,
                "{%s}delay" % ns.DELAY,
                {"from": self.host.domain, "stamp": format_stamp(stamp)},
            ).text = "Offline storage"
            session.send(msg)
