"""Bookmarks conversion (XEP-0411): XEP-0048 bookmarks in private XML storage and
PEP Native Bookmarks (XEP-0402) are one list, kept in the PEP node.

Clients that still use private storage (``storage:bookmarks``, XEP-0049) read a
document built from the ``urn:xmpp:bookmarks:1`` items, and what they store is
published there item by item (one per room, its JID the item id) with the
node options XEP-0402 §3 requires, retracting rooms they removed; clients on PEP
get the notifications as if another client had published. URL bookmarks of
XEP-0048 have no place in XEP-0402 and are not kept.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from descant.errors import StanzaError
from descant.features.pubsub.config import NodeConfig
from descant.features.pubsub.pep import PEPModule
from descant.jid import InvalidJID, parse
from descant.modules import Module
from descant.xml.parser import parse_element

LEGACY = "storage:bookmarks"
NODE = "urn:xmpp:bookmarks:1"
CONVERSION = "urn:xmpp:bookmarks-conversion:0"
_TRUE = ("1", "true")
# The node options XEP-0402 §3 publishes with: private, every bookmark kept.
_REQUIRED = ("access_model", "persist_items", "max_items", "send_last_published_item")


class BookmarksModule(Module):
    name = "bookmarks"

    def load(self) -> None:
        self.host.add_account_feature(CONVERSION, NODE + "#compat")
        self.hook(f"private-get/{LEGACY}:storage", self.legacy_get)
        self.hook(f"private-set/{LEGACY}:storage", self.legacy_set)

    @property
    def pep(self) -> PEPModule:
        return self.require(PEPModule)

    def node_config(self) -> NodeConfig:
        return NodeConfig(
            access_model="whitelist",
            persist_items=True,
            max_items=self.server.config.pubsub.max_items,
            send_last_published_item="never",
        )

    async def legacy_get(self, user: str) -> ET.Element:
        storage = ET.Element(f"{{{LEGACY}}}storage")
        for item in reversed(await self.pep.own_items(user, NODE) or []):
            if not item.payload:
                continue
            conference = parse_element(item.payload)
            if conference.tag != f"{{{NODE}}}conference":
                continue
            attrs = {"jid": item.id}
            for name in ("name", "autojoin"):
                if conference.get(name) is not None:
                    attrs[name] = conference.get(name, "")
            out = ET.SubElement(storage, f"{{{LEGACY}}}conference", attrs)
            for child in ("nick", "password"):
                text = conference.findtext(f"{{{NODE}}}{child}")
                if text is not None:
                    ET.SubElement(out, f"{{{LEGACY}}}{child}").text = text
        return storage

    async def legacy_set(self, change: tuple[str, ET.Element]) -> bool:
        """Store what a XEP-0048 client saved: rooms it removed are retracted, new or
        changed ones published; unchanged ones are left alone (no notification), and a
        room's ``<extensions/>`` other clients stored are kept (XEP-0402 §5)."""
        user, storage = change
        wanted: dict[str, ET.Element] = {}
        for conference in storage.findall(f"{{{LEGACY}}}conference"):
            try:
                room = str(parse(conference.get("jid", "")).bare)
            except InvalidJID:
                continue
            wanted[room] = _native(conference)
        existing = {
            item.id: parse_element(item.payload)
            for item in await self.pep.own_items(user, NODE) or []
            if item.payload
        }
        try:
            # First of all: the node is private, whatever else this save changes.
            await self.pep.configure_own(user, NODE, self.node_config(), _REQUIRED)
            for room in existing.keys() - wanted.keys():
                await self.pep.retract_own(user, NODE, room)
            config = self.node_config()
            for room, payload in wanted.items():
                old = existing.get(room)
                extensions = old.find(f"{{{NODE}}}extensions") if old is not None else None
                if extensions is not None:
                    payload.append(extensions)
                if old is not None and _fields(old) == _fields(payload):
                    continue
                await self.pep.publish_own(user, NODE, room, payload, config, require=_REQUIRED)
        except StanzaError as exc:
            # Private storage has no finer error to give; the PEP node is the truth.
            raise StanzaError("not-acceptable", f"bookmarks not stored: {exc}") from None
        return True


def _native(conference: ET.Element) -> ET.Element:
    """A XEP-0048 ``<conference/>`` as XEP-0402's."""
    attrs = {"autojoin": "true" if conference.get("autojoin") in _TRUE else "false"}
    if conference.get("name"):
        attrs["name"] = conference.get("name", "")
    out = ET.Element(f"{{{NODE}}}conference", attrs)
    for child in ("nick", "password"):
        text = conference.findtext(f"{{{LEGACY}}}{child}")
        if text:
            ET.SubElement(out, f"{{{NODE}}}{child}").text = text
    return out


def _fields(conference: ET.Element) -> tuple[str, bool, str, str]:
    """What XEP-0048 can express of a bookmark, to tell a changed one."""
    return (
        conference.get("name", ""),
        conference.get("autojoin") in _TRUE,
        conference.findtext(f"{{{NODE}}}nick") or "",
        conference.findtext(f"{{{NODE}}}password") or "",
    )
