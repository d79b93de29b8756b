"""A worked example of a Descant module (docs/modules.md): Entity Time and an echo bot.

Load it with::

    [modules]
    extra = ["descant_example:ExampleModule"]

(with this file's directory on PYTHONPATH, or installed as a package).
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET

from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import iq_result

TIME_NS = "urn:xmpp:time"


class ExampleModule(Module):
    name = "example"

    def load(self) -> None:
        # Advertised in the host's disco#info (XEP-0030).
        self.host.add_feature(TIME_NS)
        # iq-get/host/urn:xmpp:time:time — an iq get to the domain itself.
        self.hook_iq("get", "host", f"{TIME_NS}:time", self.time)
        # Ahead of the core message module (priority 0), so echo@domain is ours.
        self.hook("message/bare", self.echo, priority=10)

    async def time(self, ev: StanzaEvent) -> bool:
        """XEP-0202 Entity Time: answer with UTC time and offset."""
        now = datetime.datetime.now(datetime.UTC)
        el = ET.Element("{%s}time" % TIME_NS)
        ET.SubElement(el, "{%s}tzo" % TIME_NS).text = "+00:00"
        ET.SubElement(el, "{%s}utc" % TIME_NS).text = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        return await self.answer(ev, iq_result(ev.stanza, el))  # True: taken

    async def echo(self, ev: StanzaEvent) -> bool | None:
        """Messages to echo@<domain> come back to the sender."""
        if ev.to.local != "echo" or ev.stanza.get("type") == "error":
            return None  # not ours: let the next handler (normal delivery) have it
        body = ev.stanza.findtext("body")
        if body is None:
            return True
        reply = ET.Element("message", {"from": str(ev.to), "to": str(ev.frm), "type": "chat"})
        ET.SubElement(reply, "body").text = body
        await self.server.router.route(reply)
        return True
