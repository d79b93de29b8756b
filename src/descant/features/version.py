"""Software Version (XEP-0092) of the server."""

from __future__ import annotations

import platform
import xml.etree.ElementTree as ET

from descant import __version__
from descant.modules import Module
from descant.routing.router import StanzaEvent
from descant.stanza import iq_result
from descant.xml import ns


class VersionModule(Module):
    name = "version"

    def load(self) -> None:
        self.host.add_feature(ns.VERSION)
        self.hook_iq("get", "host", f"{ns.VERSION}:query", self.version)

    async def version(self, ev: StanzaEvent) -> bool:
        query = ET.Element("{%s}query" % ns.VERSION)
        ET.SubElement(query, "{%s}name" % ns.VERSION).text = "Descant"
        ET.SubElement(query, "{%s}version" % ns.VERSION).text = __version__
        ET.SubElement(query, "{%s}os" % ns.VERSION).text = platform.system()
        return await self.answer(ev, iq_result(ev.stanza, query))
