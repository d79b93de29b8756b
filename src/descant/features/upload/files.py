"""The files of HTTP upload (XEP-0363) on disk, under ``data_dir/uploads/``.

A file's name is its slot id and nothing else: ids are made here
(:func:`new_slot_id`, random) and every path is built by :meth:`FileStore.path`,
which refuses anything that is not such an id. Names clients give never reach
the file system, so no request can name a file outside this directory.

- ``uploads/<id>``: a complete file;
- ``uploads/tmp/<id>.part``: a PUT in progress, created with ``O_EXCL`` (so two
  PUTs of one slot, even from two processes sharing the directory, cannot both
  write) and renamed into place only when every byte has arrived.

All file system calls run on the store's own small thread pool, never on the
event loop; its size bounds the disk work uploads can have going at once.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, TypeVar

T = TypeVar("T")

# secrets.token_urlsafe(18): 144 random bits in 24 URL-safe characters.
SLOT_ID = re.compile(r"[A-Za-z0-9_-]{24}")
IO_THREADS = 4


def new_slot_id() -> str:
    return secrets.token_urlsafe(18)


class FileStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.tmp = os.path.join(root, "tmp")
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="upload-io")
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def start(self) -> None:
        await self.run(os.makedirs, self.tmp, 0o700, True)

    def close(self) -> None:
        """Stop the thread pool (idempotent); writes already queued still finish."""
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=False)

    def path(self, slot_id: str) -> str:
        if not SLOT_ID.fullmatch(slot_id):
            raise ValueError(f"not a slot id: {slot_id!r}")
        return os.path.join(self.root, slot_id)

    def part_path(self, slot_id: str) -> str:
        self.path(slot_id)  # the same check
        return os.path.join(self.tmp, slot_id + ".part")

    # -- one upload --------------------------------------------------------------------

    async def create(self, slot_id: str) -> BinaryIO:
        """Open the slot's temporary file for writing; FileExistsError when another PUT
        of the slot is under way."""
        path = self.part_path(slot_id)

        def create() -> BinaryIO:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            return os.fdopen(fd, "wb", buffering=0)

        return await self.run(create)

    async def write(self, f: BinaryIO, data: bytes) -> None:
        await self.run(f.write, data)

    async def commit(self, f: BinaryIO, slot_id: str) -> None:
        """Close the temporary file and move it into place."""

        def commit() -> None:
            f.close()
            os.replace(self.part_path(slot_id), self.path(slot_id))

        await self.run(commit)

    async def discard(self, f: BinaryIO, slot_id: str) -> None:
        """Close and delete an upload that did not complete."""

        def discard() -> None:
            f.close()
            _unlink(self.part_path(slot_id))

        await self.run(discard)

    # -- removal -------------------------------------------------------------------------

    async def remove(self, slot_ids: list[str]) -> None:
        """Delete these slots' files, complete or not; missing ones are no error."""

        def remove() -> None:
            for slot_id in slot_ids:
                if SLOT_ID.fullmatch(slot_id):
                    _unlink(self.path(slot_id))
                    _unlink(self.part_path(slot_id))

        await self.run(remove)

    async def older_than(self, age: float, batch: int) -> AsyncIterator[list[str]]:
        """Slot ids of files (complete or partial) not modified for ``age`` seconds, in
        batches: the sweep for files whose row is gone (a deleted account, a crash
        between the rename and the row's update). One directory entry list at a time is
        read on the pool, so a large directory never sits in memory whole."""
        cutoff = time.time() - age
        for directory, suffix in ((self.root, ""), (self.tmp, ".part")):
            entries: Iterator[os.DirEntry[str]] | None = None
            try:
                scan = await self.run(os.scandir, directory)
            except FileNotFoundError:
                continue
            entries = iter(scan)

            def take(it: Iterator[os.DirEntry[str]] = entries, suffix: str = suffix) -> list[str]:
                out: list[str] = []
                for entry in it:
                    name = entry.name.removesuffix(suffix) if suffix else entry.name
                    if (
                        entry.name.endswith(suffix)
                        and SLOT_ID.fullmatch(name)
                        and entry.is_file(follow_symlinks=False)
                        and entry.stat(follow_symlinks=False).st_mtime < cutoff
                    ):
                        out.append(name)
                        if len(out) >= batch:
                            break
                return out

            try:
                while ids := await self.run(take):
                    yield ids
            finally:
                await self.run(scan.close)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
