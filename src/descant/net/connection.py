"""One XML stream over an asyncio stream pair: the read loop, output and close.

Client (c2s), component and server-to-server streams share this shape; each
subclass supplies its state machine in :meth:`StreamConnection._handle` and may
refine reading (:meth:`_read`, e.g. rate limits), output, and what closing
releases (:meth:`_teardown`). Outgoing s2s streams use the output, reading and
close only: their negotiation waits for specific elements (s2s/outgoing.py).
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.errors import StreamError
from descant.stream.protocol import CLOSE, XMLStream

if TYPE_CHECKING:
    from descant.server import Server

log = logging.getLogger(__name__)

READ_SIZE = 65536


class StreamConnection:
    __slots__ = ("closing", "reader", "server", "stream", "writer")

    def __init__(
        self,
        server: Server,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        content_ns: str,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.stream = XMLStream(content_ns, server.config.limits.max_stanza_size)
        self.closing = False

    # -- to be refined ---------------------------------------------------------------

    async def _handle(self, ev: object) -> None:
        """Act on one stream event (header, element, close); may raise StreamError."""
        raise NotImplementedError

    def _our_name(self) -> str:
        """The ``from`` of a header sent only to carry an error."""
        return self.server.default_domain

    def _label(self) -> str:
        """Who this stream is, for log lines."""
        peer = self.writer.get_extra_info("peername")
        return f"{peer[0]}:{peer[1]}" if peer else "?"

    async def _teardown(self) -> None:
        """Release what the stream holds; the transport closes here."""
        try:
            self.writer.close()
        except Exception:
            pass

    async def _read(self) -> bytes:
        try:
            return await self.reader.read(READ_SIZE)
        except (ConnectionError, OSError):
            return b""

    # -- output ---------------------------------------------------------------------

    def write(self, text: str) -> None:
        if not self.writer.is_closing():
            self.writer.write(text.encode("utf-8"))

    def send(self, stanza: ET.Element) -> None:
        self.write(self.stream.element(stanza))

    async def close(self, condition: str | None = None, text: str | None = None) -> None:
        """Close the stream, with a stream error when a condition is given; our
        header goes first if none was sent yet (RFC 6120 §4.9.1.1)."""
        if self.closing:
            return
        self.closing = True
        try:
            if not self.stream.header_sent:
                self.write(self.stream.header(self._our_name()))
            if condition:
                self.write(self.stream.error(StreamError(condition, text)))
            else:
                self.write(CLOSE)
        finally:
            await self._teardown()

    # -- the task ---------------------------------------------------------------------

    async def run(self) -> None:
        """Read, parse and handle until the stream ends; one ordered task."""
        try:
            while not self.closing:
                data = await self._read()
                if not data:
                    break
                try:
                    for ev in self.stream.feed(data):
                        await self._handle(ev)
                        if self.closing:
                            break
                except StreamError as err:
                    log.info("%s: stream error %s", self._label(), err)
                    await self._handle_completed(err.completed)
                    await self.close(err.condition, err.text)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: internal error", self._label())
            await self.close("internal-server-error")
        finally:
            if not self.closing:
                self.closing = True
                await self._teardown()

    async def _handle_completed(self, events: list[object]) -> None:
        """Handle what was whole before a parse error in the same chunk, so the
        outcome does not depend on how the bytes were split in transit."""
        for ev in events:
            if self.closing:
                return
            try:
                await self._handle(ev)
            except StreamError:
                return
