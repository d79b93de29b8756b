"""The TCP transport: one socket (plain, STARTTLS or direct TLS) as an asyncio Protocol.

Received bytes go straight into the owner's stream (parsed when the owner asks
for the next event); the owner's task waits in :meth:`TCPTransport.wait_input`.
Reading pauses while more than ``BACKLOG`` bytes wait unparsed (the owner's
handlers are slower than the peer) and, for clients, while the peer is over
its byte rate (``limits.c2s_rate``); data is never dropped, the peer is only
made to wait.

STARTTLS: :meth:`start_tls` stops reading before the switch, so no plaintext
that followed ``<starttls/>`` reaches the stream after it; the owner discards
what the stream already holds (``XMLStream.restart``, see stream/protocol.py).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, cast

from descant.net import keepalive
from descant.stream.protocol import XMLStream

# Unparsed bytes held for a busy owner before reading pauses.
BACKLOG = 65536


class TCPTransport(asyncio.Protocol):
    __slots__ = (
        "_budget_bytes",
        "_budget_start",
        "_ended",
        "_made",
        "_paused",
        "_t",
        "_waiter",
        "can_starttls",
        "ip",
        "keepalive_idle",
        "port",
        "rate",
        "secure",
        "stream",
        "tls_here",
    )

    def __init__(
        self,
        on_made: Callable[[TCPTransport], None],
        *,
        direct_tls: bool = False,
        rate: int = 0,
        keepalive_idle: int = 0,
    ) -> None:
        self._made = on_made
        self._t: asyncio.Transport | None = None
        self.stream: XMLStream | None = None
        self.ip = "?"
        self.port = 0
        self.secure = direct_tls
        self.tls_here = direct_tls
        self.can_starttls = not direct_tls
        self.rate = rate
        self._budget_start = time.monotonic()
        self._budget_bytes = 0
        self._paused: set[str] = set()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self.keepalive_idle = keepalive_idle

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's: no isinstance check.
        self._t = cast(asyncio.Transport, transport)
        idle = self.keepalive_idle
        peer = transport.get_extra_info("peername")
        if peer:
            self.ip, self.port = peer[0], peer[1]
        sock = transport.get_extra_info("socket")
        if idle and sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            keepalive.enable(sock, idle)
        self._made(self)

    def data_received(self, data: bytes) -> None:
        stream = self.stream
        assert stream is not None, "on_made must give the transport its stream"
        stream.receive_data(data)
        if self.rate:
            # Floods: past `rate` bytes per second, stop reading until the rate is back.
            now = time.monotonic()
            self._budget_bytes += len(data)
            elapsed = now - self._budget_start
            if elapsed >= 1.0:
                self._budget_start, self._budget_bytes = now, len(data)
            elif self._budget_bytes > self.rate:
                self._pause("rate")
                delay = self._budget_bytes / self.rate - elapsed
                asyncio.get_running_loop().call_later(delay, self._unpause, "rate")
        if stream.buffered > BACKLOG:
            self._pause("backlog")
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        # Keep our side open to write our own close; TLS ignores this answer.
        return not self.secure

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._wake()

    # -- reading -------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _pause(self, reason: str) -> None:
        if not self._paused and self._t is not None:
            self._t.pause_reading()
        self._paused.add(reason)

    def _unpause(self, reason: str) -> None:
        self._paused.discard(reason)
        if not self._paused and self._t is not None and not self._t.is_closing():
            self._t.resume_reading()

    async def wait_input(self) -> bool:
        if self._ended:
            return False
        if "backlog" in self._paused:
            self._unpause("backlog")  # the owner took everything it was given
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None
        return True

    # -- writing and closing -----------------------------------------------------------------

    def write(self, parts: list[str]) -> None:
        t = self._t
        if t is not None and not t.is_closing():
            t.write("".join(parts).encode("utf-8"))

    def write_buffer_size(self) -> int:
        return self._t.get_write_buffer_size() if self._t is not None else 0

    async def start_tls(
        self, ctx: ssl.SSLContext, server_side: bool = True, server_hostname: str | None = None
    ) -> None:
        t = self._t
        assert t is not None
        # Nothing more is read in plaintext: what follows on the wire belongs to TLS.
        t.pause_reading()
        loop = asyncio.get_running_loop()
        new = await loop.start_tls(
            t, self, ctx, server_side=server_side, server_hostname=server_hostname
        )
        if new is None:
            raise ConnectionError("connection closed during the TLS handshake")
        self._t = new
        self.secure = self.tls_here = True
        self.can_starttls = False

    def close(self) -> None:
        if self._t is not None:
            self._t.close()
        self._ended = True
        self._wake()

    def abort(self) -> None:
        if self._t is not None:
            self._t.abort()
        self._ended = True
        self._wake()

    def is_closing(self) -> bool:
        return self._t is None or self._t.is_closing()

    def get_extra_info(self, name: str) -> Any:
        return self._t.get_extra_info(name) if self._t is not None else None
