"""Stream management state of one client session (XEP-0198 v1.6), without I/O.

Two counters and a queue, kept on the session so they outlive its transport:

- ``handled``: stanzas received from the client and handled (its ``h``), counted
  from ``<enable/>``; sent back in ``<a h=…/>`` and ``<resumed h=…/>``.
- the queue (``pending()``): stanzas sent to the client and not yet acknowledged,
  oldest first, each as the text written for the client (whether framed for
  WebSocket/BOSH, or as on TCP) and the time it was first sent (for the
  XEP-0203 delay stamp should it end up in offline storage). Text rather than
  elements: one small object per stanza, cheap to keep and to drop, and what
  resumption writes again and offline storage stores. ``acked`` is the client's
  last ``h``; the number sent is ``acked + unacked``.

Counters wrap at 2^32 (§4). An ``h`` acknowledging more than was sent is the
handled-count-too-high error (§6). The queue is bounded (``limit``): a client
that never acknowledges cannot make the server hold its traffic forever.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

from descant.xml.parser import parse_element

NS = "urn:xmpp:sm:3"
# A stanza written and not yet acknowledged: its text, when it was first sent, and
# whether the text is framed (standalone, for WebSocket or BOSH) or as on TCP.
Sent = tuple[str, float, bool]
MASK = 0xFFFFFFFF
REQUEST = f"<r xmlns='{NS}'/>"


class HandledCountTooHigh(Exception):
    def __init__(self, h: int, sent: int) -> None:
        super().__init__(f"You acknowledged {h} stanzas, but I only sent you {sent} so far.")
        self.h = h
        self.sent = sent

    def element(self) -> ET.Element:
        return ET.Element(
            f"{{{NS}}}handled-count-too-high", {"h": str(self.h), "send-count": str(self.sent)}
        )


def parse_h(value: str | None) -> int | None:
    """An ``h`` attribute (xs:unsignedInt), or None when missing or invalid."""
    if value is None or not value.isascii() or not value.isdigit():
        return None
    h = int(value)
    return h if h <= MASK else None


class StreamManagement:
    __slots__ = (
        "acked",
        "awaiting",
        "handled",
        "head",
        "id",
        "items",
        "limit",
        "max",
        "resumable",
    )

    def __init__(self, limit: int, resumable: bool = False, id: str = "", max: int = 0) -> None:
        self.limit = limit
        self.resumable = resumable
        self.id = id
        self.max = max  # seconds a hibernated session waits for resumption
        self.handled = 0
        self.acked = 0
        self.awaiting = False  # an <r/> of ours is unanswered
        # The unacknowledged queue is items[head:]: an ack moves the head, and the
        # acknowledged front is cut off in one step once it is half the list (acks
        # come often and cover many stanzas; popping them one by one cost more).
        self.items: list[Sent] = []
        self.head = 0

    @property
    def unacked(self) -> int:
        return len(self.items) - self.head

    @property
    def sent(self) -> int:
        return (self.acked + self.unacked) & MASK

    def pending(self) -> list[Sent]:
        """The unacknowledged stanzas, oldest first: (text, when sent, framed)."""
        return self.items[self.head :]

    def track(self, text: str, framed: bool = False) -> bool:
        """Record a stanza written to the client; False once the queue is over its
        bound."""
        items = self.items
        items.append((text, time.time(), framed))
        return len(items) - self.head <= self.limit

    def count_handled(self) -> None:
        self.handled = (self.handled + 1) & MASK

    def ack(self, h: int) -> None:
        """The client has handled ``h`` stanzas: drop them from the queue."""
        n = (h - self.acked) & MASK
        if n > self.unacked:
            raise HandledCountTooHigh(h, self.sent)
        head = self.head + n
        items = self.items
        if head * 2 >= len(items):
            del items[:head]
            head = 0
        self.head = head
        self.acked = h
        self.awaiting = False

    def take_unacked(self) -> list[tuple[ET.Element, float]]:
        """Empty the queue; its stanzas as elements again, with when each was sent."""
        out = [(parse_element(text), stamp) for text, stamp, _ in self.pending()]
        self.items = []
        self.head = 0
        return out

    def answer(self) -> str:
        return f"<a xmlns='{NS}' h='{self.handled}'/>"
