"""Session establishment (RFC 3921 §3), kept for the clients that still ask for it.

RFC 6120 dropped the step; the stream features still offer ``<session/>`` as
``<optional/>`` (c2s/features.py), and clients that see it (strophe.js, older
libraries) send ``<iq type='set'><session xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq>``
after binding. It establishes nothing: the answer is a result. Before binding the
client stream answers it itself (c2s/stream.py), since nothing is routed yet.
"""

from __future__ import annotations

from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import iq_result
from descant.xml import ns


class LegacySessionModule(Module):
    name = "legacy_session"

    def load(self) -> None:
        self.hook_iq("set", "host,self", f"{ns.SESSION}:session", self.establish)

    async def establish(self, ev: StanzaEvent) -> bool:
        return await self.answer(ev, iq_result(ev.stanza))
