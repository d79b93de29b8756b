"""Offline messages (XEP-0160) with delay stamps (XEP-0203).

Messages the message module could not deliver (``message/offline``) are stored
up to ``limits.offline_max_messages`` per user, then bounced with
<service-unavailable/>. They are delivered, oldest first, when a session
sends initial presence with non-negative priority (``presence-initial``), ahead of
any live stanza that reached the session meanwhile (it holds them: presence.py), and
storing and reading take turns per user, so nothing stored is left behind.

Messages a session never acknowledged before it ended (XEP-0198 §4,
``stanza-undelivered``) are stored the same way, with the time they were
first sent as their delay stamp, when the user has no other available
resource; otherwise their sender gets an error (c2s/manager.py), since the
other resources may have seen them already (carbons).
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.locks import KeyedLock
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stamps import format_stamp
from descant.stanza import retarget
from descant.xml import ns
from descant.xml.parser import parse_element
from descant.xml.serialize import serialize

if TYPE_CHECKING:
    from descant.c2s.manager import Undelivered
    from descant.routing.sessions import Session


class OfflineModule(Module):
    name = "offline"

    def load(self) -> None:
        self.host.add_feature(ns.OFFLINE)
        self.hook("message/offline", self.store)
        self.hook("presence-initial", self.deliver)
        self.hook("stanza-undelivered", self.undelivered)
        self._locks = KeyedLock()

    async def store(self, ev: StanzaEvent) -> bool | None:
        # Under the user's lock, which delivery takes too: a message found no session
        # available is in storage before a session that just became available reads
        # it, never after (where it would wait for the next login).
        async with self._locks(ev.to.local):
            return await self._push(ev.to.local, ev.stanza, datetime.datetime.now(datetime.UTC))

    async def _push(self, user: str, stanza: ET.Element, when: datetime.datetime) -> bool | None:
        store = self.host.storage.offline
        if (
            await store.count(self.host.domain, user)
            >= self.server.config.limits.offline_max_messages
        ):
            return None  # full: the caller bounces it
        await store.push(self.host.domain, user, serialize(stanza), when)
        return True

    async def undelivered(self, ev: Undelivered) -> bool | None:
        stanza, session = ev.stanza, ev.session
        if stanza.tag != "message" or stanza.get("type", "normal") not in ("normal", "chat"):
            return None
        user = session.jid.local
        if self.host.sessions.available(user):
            return None
        sent = datetime.datetime.fromtimestamp(ev.stamp, datetime.UTC)
        bare = str(session.jid.bare)
        async with self._locks(user):
            return await self._push(user, retarget(stanza, to=bare), sent)

    async def deliver(self, session: Session) -> None:
        if session.priority < 0:
            return
        async with self._locks(session.jid.local):
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
            session.send_ahead(msg)  # before live messages that raced the read
