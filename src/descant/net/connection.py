"""One XML stream over one transport: the read loop, output and close.

Client (c2s), component and server-to-server streams share this shape; each
subclass supplies its state machine in :meth:`StreamConnection._handle` and
may refine what closing releases (:meth:`_teardown`). The transport (TCP,
WebSocket, BOSH; net/transport.py) only moves bytes: the loop takes one event
at a time from the sans-I/O stream (stream/protocol.py) and handles it before
taking the next, so input is processed in order (RFC 6120 §10.1) and nothing
received before a layer switch is handled after it.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING

from descant.errors import StreamError
from descant.net.transport import Transport
from descant.stream.protocol import TCP, StreamFault, XMLStream

if TYPE_CHECKING:
    from descant.server import Server

log = logging.getLogger(__name__)

# Beyond this much unsent output the peer is not reading: close rather than
# buffer without bound.
MAX_WRITE_BUFFER = 16 * 1024 * 1024


class StreamConnection:
    __slots__ = ("closing", "overflowed", "server", "stream", "transport")

    def __init__(
        self, server: Server, transport: Transport, content_ns: str, framing: str = TCP
    ) -> None:
        self.server = server
        self.transport = transport
        self.stream = XMLStream(content_ns, server.config.limits.max_stanza_size, framing)
        transport.stream = self.stream
        self.closing = False
        self.overflowed = False  # the peer stopped reading; the transport was cut

    @property
    def secure(self) -> bool:
        """The hop to the peer is encrypted (TLS here, or at a trusted proxy)."""
        return self.transport.secure

    # -- to be refined ---------------------------------------------------------------

    async def _handle(self, ev: object) -> None:
        """Act on one stream event (header, element, close); may raise StreamError."""
        raise NotImplementedError

    def _our_name(self) -> str:
        """The ``from`` of a header sent only to carry an error."""
        return self.server.default_domain

    def _label(self) -> str:
        """Who this stream is, for log lines."""
        return self.transport.ip

    async def _teardown(self) -> None:
        """Release what the stream holds; the transport closes here."""
        self.transport.close()

    async def _input_ended(self) -> None:
        """The transport ended without a close of the stream (EOF, reset)."""
        await self._teardown()

    # -- output ---------------------------------------------------------------------

    def write(self, text: str) -> None:
        self.write_parts([text])

    def write_parts(self, parts: list[str]) -> None:
        transport = self.transport
        if transport.is_closing():
            return
        transport.write(parts)
        if transport.write_buffer_size() > MAX_WRITE_BUFFER and not self.overflowed:
            # Nothing more can reach this peer: cut the transport; the loop then
            # sees its input end and releases the stream (_input_ended).
            log.warning("%s: output buffer full, closing", self._label())
            self.overflowed = True
            transport.abort()

    def send(self, stanza: ET.Element) -> None:
        self.write(self.stream.element(stanza))

    async def close(
        self, condition: str | None = None, text: str | None = None, app: ET.Element | None = None
    ) -> None:
        """Close the stream, with a stream error when a condition is given; our
        header goes first if none was sent yet (RFC 6120 §4.9.1.1)."""
        if self.closing:
            return
        self.closing = True
        try:
            parts = []
            if not self.stream.header_sent:
                parts.append(self.stream.header(self._our_name()))
            if condition:
                parts.append(self.stream.error(StreamError(condition, text, app)))
            parts.append(self.stream.close())
            self.write_parts([p for p in parts if p])
        finally:
            await self._teardown()

    # -- the task ---------------------------------------------------------------------

    async def run(self) -> None:
        """Take and handle events until the stream ends; one ordered task."""
        stream = self.stream
        try:
            while not self.closing and not self.overflowed:
                ev = stream.next_event()
                if ev is None:
                    if not await self.transport.wait_input():
                        break
                    continue
                if isinstance(ev, StreamFault):
                    err = ev.error
                    log.info("%s: stream error %s", self._label(), err)
                    await self.close(err.condition, err.text)
                    break
                try:
                    await self._handle(ev)
                except StreamError as err:
                    log.info("%s: stream error %s", self._label(), err)
                    await self.close(err.condition, err.text, err.app)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: internal error", self._label())
            await self.close("internal-server-error")
        finally:
            if not self.closing:
                self.closing = True
                await self._input_ended()
