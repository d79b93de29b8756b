"""The registry of a host's bound client sessions, and who gets a bare-JID message.

RFC 6121 §8.5.2: messages to a bare JID go to the available resources with
non-negative priority; "chat" and "normal" to the highest priority (all of
them on a tie), "headline" to all, "error" and "groupchat" to none. Sessions
that bound a resource but have not sent initial presence are not available.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from descant.host import Host
    from descant.jid import JID


class Session(Protocol):
    """What routing and features need of a bound session (c2s, WebSocket, …)."""

    jid: JID
    priority: int
    presence: ET.Element | None
    interested: bool
    directed: set[JID]
    data: dict[str, object]  # per-session state owned by feature modules

    @property
    def host(self) -> Host: ...

    @property
    def hibernated(self) -> bool:
        """Bound, but waiting for its client to resume (XEP-0198): no transport."""

    def send(self, stanza: ET.Element) -> None: ...

    def hold(self) -> None:
        """Keep what is sent until ``release``; ``send_ahead`` goes before it."""

    def send_ahead(self, stanza: ET.Element) -> None: ...

    def release(self) -> None: ...

    async def close(self, condition: str | None = None, text: str | None = None) -> None: ...


class SessionRegistry:
    def __init__(self) -> None:
        self._users: dict[str, dict[str, Session]] = {}

    def add(self, session: Session) -> Session | None:
        """Register a bound session; return the one it replaces (same resource)."""
        res = self._users.setdefault(session.jid.local, {})
        old = res.get(session.jid.resource)
        res[session.jid.resource] = session
        return old if old is not session else None

    def remove(self, session: Session) -> bool:
        """Unregister; True if it was the current holder of its resource."""
        res = self._users.get(session.jid.local)
        if res is None or res.get(session.jid.resource) is not session:
            return False
        del res[session.jid.resource]
        if not res:
            del self._users[session.jid.local]
        return True

    def get(self, user: str, resource: str) -> Session | None:
        res = self._users.get(user)
        return res.get(resource) if res else None

    def of_user(self, user: str) -> list[Session]:
        res = self._users.get(user)
        return list(res.values()) if res else []

    def available(self, user: str) -> list[Session]:
        res = self._users.get(user)
        if not res:
            return []
        return [s for s in res.values() if s.presence is not None]

    def message_targets(self, user: str, type_: str) -> list[Session]:
        """Sessions that receive a message of this type sent to the bare JID."""
        if type_ in ("error", "groupchat"):
            # §8.5.2.1.1: an error is silently ignored, a groupchat bounced; neither
            # is delivered to any resource.
            return []
        candidates = [s for s in self.available(user) if s.priority >= 0]
        if not candidates or type_ == "headline":
            return candidates
        top = max(s.priority for s in candidates)
        return [s for s in candidates if s.priority == top]

    def users(self) -> list[str]:
        return list(self._users)

    def all(self) -> list[Session]:
        return [s for res in self._users.values() for s in res.values()]

    def __len__(self) -> int:
        return sum(len(r) for r in self._users.values())
