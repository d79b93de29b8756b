"""What goes into an account's archive (XEP-0313 §5, with the anchors' practice).

Archived: messages of type chat or normal that carry a body, an encrypted
payload (OMEMO, both namespaces; OpenPGP), a retraction (XEP-0424), or the
``<store/>`` hint (XEP-0334). Never: errors, headlines, groupchat (the room keeps
its own archive), carbons copies, messages marked ``<no-store/>`` or
``<no-permanent-store/>``, and chat states or receipts alone.

Preferences (§6.2): a default (``always``, ``roster`` or ``never``) and two lists
of bare JIDs that are always or never archived; the lists win over the default,
``never`` over ``always``. Stored per account as JSON under keyval ``mam``/``prefs``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

HINTS = "urn:xmpp:hints"
RETRACT = "urn:xmpp:message-retract:1"
CARBONS = "urn:xmpp:carbons:2"

# Payloads that make a message worth keeping although it has no body.
_STORABLE = frozenset(
    {
        "{eu.siacs.conversations.axolotl}encrypted",  # OMEMO (legacy)
        "{urn:xmpp:omemo:2}encrypted",  # OMEMO 0.8+
        "{urn:xmpp:openpgp:0}openpgp",  # XEP-0373
        "{jabber:x:encrypted}x",  # XEP-0027
        f"{{{RETRACT}}}retract",
        f"{{{HINTS}}}store",
    }
)
_NEVER = frozenset(
    {
        f"{{{HINTS}}}no-store",
        f"{{{HINTS}}}no-permanent-store",
        f"{{{CARBONS}}}sent",
        f"{{{CARBONS}}}received",
    }
)


def archivable(stanza: ET.Element) -> bool:
    """Whether a message is worth archiving at all (before preferences)."""
    if stanza.get("type", "normal") not in ("chat", "normal"):
        return False
    keep = False
    for child in stanza:
        tag = child.tag
        if tag in _NEVER:
            return False
        if tag == "body" or tag in _STORABLE:
            keep = True
    return keep


@dataclass(frozen=True, slots=True)
class Prefs:
    default: str
    always: frozenset[str] = field(default_factory=frozenset)
    never: frozenset[str] = field(default_factory=frozenset)

    def decide(self, contact: str, in_roster: bool | None) -> bool | None:
        """Archive a message exchanged with ``contact`` (bare JID)? None: it depends
        on the roster and ``in_roster`` was not given."""
        if contact in self.never:
            return False
        if contact in self.always:
            return True
        if self.default == "roster":
            return in_roster
        return self.default == "always"

    def to_json(self) -> str:
        return json.dumps(
            {"default": self.default, "always": sorted(self.always), "never": sorted(self.never)}
        )

    @classmethod
    def from_json(cls, text: str, fallback: str) -> Prefs:
        try:
            data = json.loads(text)
            default = data.get("default", fallback)
            if default not in ("always", "roster", "never"):
                default = fallback
            return cls(default, frozenset(data.get("always", ())), frozenset(data.get("never", ())))
        except (ValueError, AttributeError, TypeError):
            return cls(fallback)
