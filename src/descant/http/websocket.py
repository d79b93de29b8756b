"""XMPP over WebSocket (RFC 7395) at ``/xmpp-websocket``.

The handshake must offer the ``xmpp`` subprotocol (else 400) and, from a
browser, come from an allowed origin (``http.allowed_origins``; by default
the page's origin must be the endpoint's own host; else 403). Each WebSocket
text message then carries one whole XML element — ``<open/>``, a stanza, a
nonza, ``<close/>`` — and the client stream (c2s/stream.py) runs exactly as on
TCP, with the RFC 7395 framing of the stream protocol. Messages larger than a
stanza end the stream with <policy-violation/> (far larger ones are
refused by the WebSocket layer, close code 1009); binary messages with
<bad-format/>. Pings are answered; a connection silent for
``http.websocket_ping`` seconds gets a ping, and one silent for twice that
(no pong, nothing else) is dropped.

Output: each piece the stream writes is one text frame; the frames of one
event-loop turn go out in one write (one system call), as on TCP.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from typing import TYPE_CHECKING, Any, cast

from aiohttp import WSMsgType, web

from descant.c2s.stream import ClientStream
from descant.errors import StreamError
from descant.stream.protocol import WEBSOCKET, StreamFault, XMLStream

if TYPE_CHECKING:
    from descant.http.server import Client, HTTPService

log = logging.getLogger(__name__)

PATH = "/xmpp-websocket"
# A frame this much larger than a stanza still reaches the parser, which refuses
# it with an XMPP stream error; beyond it the WebSocket layer closes (1009).
FRAME_SLACK = 65536
# Bytes of already-received messages handed to the stream in one go, at most.
BATCH = 65536
TEXT = WSMsgType.TEXT
PING = b"\x89\x00"  # an empty, final ping frame (RFC 6455 §5.5.2), unmasked


_SHORT = [struct.pack("!BB", 0x81, n) for n in range(126)]  # headers of short frames
_MEDIUM = struct.Struct("!BBH").pack


def frame_header(n: int) -> bytes:
    if n < 126:
        return _SHORT[n]
    if n < 65536:
        return _MEDIUM(0x81, 126, n)
    return struct.pack("!BBQ", 0x81, 127, n)


class WebSocketTransport:
    """One WebSocket connection as the transport of a client stream."""

    __slots__ = (
        "_closer",
        "_closing",
        "_keepalive",
        "_pinged",
        "_seen",
        "_transport",
        "_ws",
        "can_starttls",
        "ip",
        "secure",
        "stream",
        "tls_here",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.BaseTransport,
        client: Client,
        ping: float = 0.0,
    ) -> None:
        self._ws = ws
        # The connection itself: our frames and aiohttp's own (pings, close) go to it
        # whole, one write each, so they never interleave within a frame.
        self._transport = cast(asyncio.Transport, transport)
        self.ip = client.ip
        self.secure = client.secure
        self.tls_here = client.tls_here
        self.can_starttls = False  # RFC 7395 §3.9: TLS belongs to the WebSocket layer
        self.stream: XMLStream | None = None
        self._closing = False
        self._closer: asyncio.Task[Any] | None = None
        # Keepalive: a client silent for a whole period is pinged; silent (no pong,
        # nothing) for another, it is gone. One timer per period, however busy the
        # connection (aiohttp's own heartbeat re-arms a timer per chunk received).
        self._seen = True
        self._pinged = False
        self._keepalive: asyncio.TimerHandle | None = None
        if ping:
            self._keepalive = asyncio.get_running_loop().call_later(ping, self._tick, ping)

    def _tick(self, period: float) -> None:
        if self._closing or self._ws.closed:
            return
        if self._seen:
            self._seen = self._pinged = False
        elif not self._pinged:
            self._pinged = True
            self._transport.write(PING)
        else:
            log.info("%s: no answer to a WebSocket ping, dropping the connection", self.ip)
            self.abort()
            return
        self._keepalive = asyncio.get_running_loop().call_later(period, self._tick, period)

    async def wait_input(self) -> bool:
        stream = self.stream
        assert stream is not None
        while True:
            if self._closing:
                return False
            msg = await self._ws.receive()
            self._seen = True
            if msg.type is WSMsgType.TEXT:
                stream.receive_data(msg.data)
                # Text messages aiohttp has already read are taken now, straight from
                # its queue (they are there: reading returns at once), so the stream
                # handles them in one pass rather than one wake-up of its loop and
                # one receive() each. Anything else (a ping, a close) is left to
                # receive(), which answers it. aiohttp is pinned (pyproject.toml):
                # the queue's layout is checked by the WebSocket tests.
                reader = self._ws._reader
                queued = getattr(reader, "_buffer", None)
                while queued and stream.buffered < BATCH and queued[0][0].type is TEXT:
                    assert reader is not None
                    text = await reader.read()
                    stream.receive_data(text.data)
                return True
            if msg.type is WSMsgType.PING:
                await self._ws.pong(msg.data)
                continue
            if msg.type is WSMsgType.PONG:
                continue
            if msg.type is WSMsgType.BINARY:
                err = StreamError("bad-format", "XMPP over WebSocket uses text messages")
                stream.receive_events([StreamFault(err)])
                return True
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return False
            if msg.type is WSMsgType.ERROR:
                log.info("%s: WebSocket error: %s", self.ip, msg.data)
                return False

    def write(self, parts: list[str]) -> None:
        transport = self._transport
        if transport.is_closing() or self._closing:
            return
        out: list[bytes] = []
        for part in parts:
            data = part.encode("utf-8")
            out.append(frame_header(len(data)))
            out.append(data)
        transport.write(b"".join(out))

    def write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    async def start_tls(
        self, ctx: ssl.SSLContext, server_side: bool = True, server_hostname: str | None = None
    ) -> None:
        raise OSError("STARTTLS is not available on WebSocket")

    def close(self) -> None:
        """Close the WebSocket (a close frame); the handler's receive loop ends."""
        if self._closing:
            return
        self._closing = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        if not self._ws.closed:
            self._closer = asyncio.get_running_loop().create_task(self._ws.close())

    def abort(self) -> None:
        self._closing = True
        if self._keepalive is not None:
            self._keepalive.cancel()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._closing or self._ws.closed

    def get_extra_info(self, name: str) -> Any:
        return self._transport.get_extra_info(name)


def install(service: HTTPService) -> None:
    server = service.server
    cfg = server.config

    async def handler(request: web.Request) -> web.StreamResponse:
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
        if request.headers.get("Upgrade", "").lower() != "websocket":
            return web.Response(
                status=426, text="XMPP over WebSocket (RFC 7395): connect with a WebSocket client"
            )
        if "xmpp" not in offered:
            return web.Response(status=400, text="the 'xmpp' WebSocket subprotocol is required")
        if not service.origin_allowed(request):
            return web.Response(status=403, text="this origin may not connect")
        ws = web.WebSocketResponse(
            protocols=("xmpp",),
            max_msg_size=cfg.limits.max_stanza_size + FRAME_SLACK,
            autoping=False,  # pings and pongs are answered and watched below
            compress=False,  # per-frame deflate costs CPU on every stanza
        )
        await ws.prepare(request)
        assert request.transport is not None
        transport = WebSocketTransport(
            ws, request.transport, service.client(request), cfg.http.websocket_ping
        )
        stream = ClientStream(server, transport, WEBSOCKET)
        try:
            await server.c2s.serve(stream)
        finally:
            if not ws.closed:
                await ws.close()
        return ws

    service.add_route("GET", PATH, handler)
