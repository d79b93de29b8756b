"""A per-host event bus: named chains of async handlers in priority order.

``fire`` awaits handlers from highest priority down and stops at the first one
that returns something other than None (Prosody's convention), returning it.
Event names follow one grammar (docs/ARCHITECTURE.md):
``<kind>/<to>`` and ``iq-<type>/<to>/<ns>:<tag>`` for stanzas, where ``<to>``
is ``self``, ``host``, ``bare`` or ``full``; plain words for lifecycle events
(``session-bound``, ``user-deleted``, …).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[Any], Awaitable[Any]]


class EventBus:
    def __init__(self) -> None:
        self._chains: dict[str, list[tuple[int, int, Handler]]] = {}
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        self._seq = 0

    def hook(self, name: str, handler: Handler, priority: int = 0) -> None:
        self._seq += 1
        chain = self._chains.setdefault(name, [])
        chain.append((-priority, self._seq, handler))
        chain.sort(key=lambda t: (t[0], t[1]))
        self._handlers[name] = tuple(h for _, _, h in chain)

    def unhook(self, name: str, handler: Handler) -> None:
        chain = [t for t in self._chains.get(name, []) if t[2] is not handler]
        self._chains[name] = chain
        self._handlers[name] = tuple(h for _, _, h in chain)

    def has(self, name: str) -> bool:
        return bool(self._handlers.get(name))

    async def fire(self, name: str, event: Any) -> Any:
        for handler in self._handlers.get(name, ()):
            result = await handler(event)
            if result is not None:
                return result
        return None
