"""Tombstones: what an archive keeps of a retracted message (XEP-0424 §6, and
XEP-0425 for messages a room moderator removed)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

from descant.stamps import format_stamp
from descant.xml.parser import parse_element
from descant.xml.serialize import serialize

RETRACT = "urn:xmpp:message-retract:1"
MODERATE = "urn:xmpp:message-moderate:1"
SID = "urn:xmpp:sid:0"
OCCUPANT_ID = "urn:xmpp:occupant-id:0"
_KEEP = frozenset({f"{{{SID}}}origin-id", f"{{{SID}}}stanza-id", f"{{{OCCUPANT_ID}}}occupant-id"})


def tombstone_element(
    old: ET.Element, stamp: datetime, moderated: ET.Element | None = None, reason: str = ""
) -> ET.Element:
    """The message's envelope and ids, with ``<retracted/>`` in place of its content;
    ``moderated`` (a ``<moderated/>`` element) when a moderator removed it."""
    out = ET.Element("message", dict(old.attrib))
    retracted = ET.SubElement(out, f"{{{RETRACT}}}retracted", {"stamp": format_stamp(stamp)})
    if moderated is not None:
        retracted.append(moderated)
    if reason:
        ET.SubElement(retracted, f"{{{RETRACT}}}reason").text = reason
    out.extend(c for c in old if c.tag in _KEEP)
    return out


def tombstone(stored: str, stamp: datetime) -> str:
    """:func:`tombstone_element` of a stored message, as text."""
    return serialize(tombstone_element(parse_element(stored), stamp))
