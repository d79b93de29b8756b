"""Iq requests the server sends, matched to their answers (RFC 6120 §8.2.3).

``Host.requests.send(iq, timeout)`` routes an iq get/set from the host (or
from one of its accounts) and waits for the result or error. Its id is made
here, unguessable (so no third party can answer in its place), and an answer
counts only when it comes from the address asked (a bare JID asked may answer
from one of its full JIDs). At most ``limit`` requests wait at once per host;
a request beyond that fails at once rather than growing the table.
"""

from __future__ import annotations

import asyncio
import secrets
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.jid import JID, InvalidJID, parse

if TYPE_CHECKING:
    from descant.host import Host
    from descant.routing.router import StanzaEvent

MAX_PENDING = 10000


class TooManyRequests(Exception):
    """More requests wait for answers than the host allows."""


class IqRequests:
    def __init__(self, host: Host, limit: int = MAX_PENDING) -> None:
        self.host = host
        self.limit = limit
        self._pending: dict[str, tuple[asyncio.Future[ET.Element], JID]] = {}
        for type_ in ("result", "error"):
            for kind in ("host", "bare", "self"):
                host.events.hook(f"iq-{type_}/{kind}", self._answer, 100)

    def __len__(self) -> int:
        return len(self._pending)

    async def send(self, iq: ET.Element, timeout: float = 30.0) -> ET.Element:
        """Route ``iq`` and return the result or error stanza answering it.

        ``from`` defaults to the host; ``to`` is required. Raises TimeoutError when
        no answer comes in ``timeout`` seconds, TooManyRequests past the bound.
        """
        if len(self._pending) >= self.limit:
            raise TooManyRequests(f"{len(self._pending)} requests already wait")
        to = parse(iq.get("to", ""))
        iq.set("from", iq.get("from") or self.host.domain)
        ident = secrets.token_urlsafe(12)
        iq.set("id", ident)
        fut: asyncio.Future[ET.Element] = asyncio.get_running_loop().create_future()
        self._pending[ident] = (fut, to)
        try:
            await self.host.server.router.route(iq)
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(ident, None)

    async def _answer(self, ev: StanzaEvent) -> bool | None:
        entry = self._pending.get(ev.stanza.get("id", ""))
        if entry is None:
            return None
        fut, asked = entry
        try:
            frm = parse(ev.stanza.get("from", ""))
        except InvalidJID:
            return None
        if frm != asked and not (not asked.resource and frm.bare == asked):
            return None  # not from whom we asked: someone guessing, not the answer
        if not fut.done():
            fut.set_result(ev.stanza)
        return True
