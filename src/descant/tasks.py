"""Owned, bounded groups of background tasks.

Work that must not run inside a stream's ordered task (closing another stream,
a push notification, an expiry) goes to a :class:`TaskGroup` owned by the
object it belongs to (a module, the client manager, …). The group keeps a
reference to every task (an unreferenced task can be collected mid-flight),
logs a task's exception instead of losing it, refuses new work past its bound
(``limit``) rather than growing without one, and cancels what is left when its
owner stops.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger(__name__)


class TaskGroup:
    def __init__(self, name: str, limit: int = 10000) -> None:
        self.name = name
        self.limit = limit
        self._tasks: set[asyncio.Task[Any]] = set()
        self.refused = 0  # work refused at the bound, for the logs and metrics
        self.closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> bool:
        """Run ``coro`` in the background; False (and the coroutine dropped) when
        the group is full or closed."""
        if self.closed or len(self._tasks) >= self.limit:
            coro.close()
            self.refused += 1
            if self.refused == 1 or self.refused % 1000 == 0:
                log.warning("%s: background work refused (%d so far)", self.name, self.refused)
            return False
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return True

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: background task failed", self.name, exc_info=task.exception())

    async def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the running tasks to finish."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    async def close(self, timeout: float = 0.0) -> None:
        """Refuse new work, let running tasks finish for ``timeout`` s, cancel the rest."""
        self.closed = True
        await self.wait(timeout)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
