"""The archive's background writer: inserts batched off the message path.

Archiving a message costs the message path one append to a queue; a task of the
writer's own takes what has accumulated and stores it with one ``MamStore.add``
(one transaction), at once when ``BATCH`` messages wait and at the latest
``DELAY`` seconds after the first of a batch arrived. The queue is bounded
(``LIMIT``): when storage falls behind, ``put`` waits, which slows the sender's
stream down (backpressure) instead of letting memory grow.

A query first waits for what was queued before it (``flush``), so a client always
finds the messages it just exchanged. On shutdown the queue is written out. A
SIGKILL loses at most what was queued and not yet written: at most ``LIMIT``
messages, normally those of the last ``DELAY`` seconds (docs/SECURITY.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from descant.storage.api import MamEntry, MamStore

log = logging.getLogger(__name__)

BATCH = 256
DELAY = 0.05
LIMIT = 4096

Row = tuple[str, str, MamEntry]


class ArchiveWriter:
    def __init__(self, store: MamStore) -> None:
        self.store = store
        self._queue: deque[Row] = deque()
        self._wake = asyncio.Event()  # something was queued
        self._room = asyncio.Event()  # the queue has room again
        self._room.set()
        self._written = 0  # rows written (or given up on) since start
        self._queued = 0  # rows ever queued
        self._flushed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._hurry = False  # a flush waits: write what is there without waiting for more

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def put(self, host: str, owner: str, entry: MamEntry) -> None:
        """Queue one message; waits while the queue is full."""
        while len(self._queue) >= LIMIT and not self._closing:
            self._room.clear()
            await self._room.wait()
        queue = self._queue
        queue.append((host, owner, entry))
        self._queued += 1
        if len(queue) == 1 or len(queue) >= BATCH:  # not on every message: one wake-up a batch
            self._wake.set()

    async def flush(self) -> None:
        """Wait until everything queued so far is written."""
        target = self._queued
        if self._written >= target or self._task is None:
            return
        self._hurry = True
        self._wake.set()
        async with self._flushed:
            await self._flushed.wait_for(lambda: self._written >= target or self._task is None)

    async def close(self) -> None:
        """Write out what is queued, then stop."""
        self._closing = True
        self._wake.set()
        self._room.set()
        if self._task is not None:
            await self._task
            self._task = None
        async with self._flushed:
            self._flushed.notify_all()

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(queue) < BATCH and not (self._closing or self._hurry):
                # Let a batch build up, but never hold the first message longer than DELAY.
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), DELAY)
                except TimeoutError:
                    pass
            self._hurry = False
            batch = [queue.popleft() for _ in range(min(BATCH, len(queue)))]
            self._room.set()
            try:
                await self.store.add(batch)
            except Exception:
                log.exception("archive: %d messages could not be stored", len(batch))
            self._written += len(batch)
            async with self._flushed:
                self._flushed.notify_all()
