"""The HTTP listener (aiohttp): WebSocket, BOSH, host-meta, the web client, metrics and
health, and routes modules add.

``server.http`` serves ``[http] listen`` (plain) and ``[http] tls_listen``
(HTTPS with the server's certificate). Who is on the other end of a request
(:meth:`HTTPService.client`) decides the per-address limits and whether the
hop is encrypted:

- on a TLS listener the client's hop is TLS that ends here (channel binding,
  so SCRAM-PLUS, works);
- from a trusted proxy (``http.trusted_proxies``) the client is the last
  untrusted address of ``X-Forwarded-For``, and the hop is encrypted when
  ``X-Forwarded-Proto`` says https;
- from a loopback address without forwarding headers the client is on this
  machine, and its traffic never left it: treated as encrypted;
- anything else is a plain-text hop, where ``c2s.require_tls`` refuses to log in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

if TYPE_CHECKING:
    from descant.http.metrics import MetricsEndpoints
    from descant.server import Server

log = logging.getLogger(__name__)


class _ClientErrorsQuiet(logging.Filter):
    """aiohttp logs a malformed request (bad request line, huge headers) at ERROR
    with a traceback: anyone could fill the operator's log that way. Such a request
    is the client's fault and gets its 4xx; it is logged here at DEBUG, one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            log.debug("bad HTTP request: %s", exc)
            return False
        return True


logging.getLogger("aiohttp.server").addFilter(_ClientErrorsQuiet())

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Client:
    """Who sent a request, as far as the listener and trusted proxies tell."""

    ip: str
    secure: bool  # the client's own hop is encrypted
    tls_here: bool  # … by TLS this process terminates
    scheme: str  # "https" or "http", as the client sees the service


class HTTPService:
    def __init__(self, server: Server) -> None:
        self.server = server
        cfg = server.config.http
        self.app = web.Application(client_max_size=server.config.limits.max_stanza_size * 4)
        self.proxies: list[IPNetwork] = [
            ipaddress.ip_network(p, strict=False) for p in cfg.trusted_proxies
        ]
        self._runner: web.AppRunner | None = None
        self._listeners: list[asyncio.Server] = []
        self._tls_sockets: set[tuple[str, int]] = set()
        self._metrics: MetricsEndpoints | None = None

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``path`` (before :meth:`start`): how modules add HTTP endpoints."""
        self.app.router.add_route(method, path, handler)

    async def start(self) -> None:
        from descant.http import admin, bosh, hostmeta, metrics, webclient, websocket

        cfg = self.server.config.http
        if not (cfg.listen or cfg.tls_listen):
            return
        websocket.install(self)
        bosh.install(self)
        hostmeta.install(self)
        webclient.install(self)
        self._metrics = metrics.install(self)  # /metrics (unless off) and /health
        admin.install(self)
        # No access log: it would name every client and every request at INFO.
        self._runner = runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await runner.setup()
        factory = runner.server
        assert factory is not None
        for addr in cfg.listen:
            self._listeners.append(await self.server.listen("http", addr, factory))
        for addr in cfg.tls_listen:
            # Each handshake switches to the certificate it should get (net/certs.py).
            ctx = self.server.certs.listener_context("https")
            srv = await self.server.listen("https", addr, factory, ctx)
            self._listeners.append(srv)
            for sock in srv.sockets:
                self._tls_sockets.add(sock.getsockname()[:2])

    async def stop(self) -> None:
        for srv in self._listeners:
            srv.close()
        if self._metrics is not None:
            await self._metrics.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- who is asking ---------------------------------------------------------------------

    def _trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(addr in net for net in self.proxies)

    def client(self, request: web.Request) -> Client:
        transport = request.transport
        peer = transport.get_extra_info("peername") if transport is not None else None
        ip = peer[0] if peer else "?"
        sock = transport.get_extra_info("sockname") if transport is not None else None
        tls_here = sock is not None and tuple(sock[:2]) in self._tls_sockets
        if tls_here:
            return Client(ip, True, True, "https")
        forwarded = request.headers.get("X-Forwarded-For")
        proto = request.headers.get("X-Forwarded-Proto")
        if self._trusted(ip) and (forwarded or proto):
            if forwarded:
                # The last address no trusted proxy added is the client's.
                for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
                    ip = hop
                    if not self._trusted(hop):
                        break
            https = (proto or "").split(",")[0].strip().lower() == "https"
            return Client(ip, https, False, "https" if https else "http")
        try:
            local = ipaddress.ip_address(ip).is_loopback
        except ValueError:
            local = False
        return Client(ip, local, False, "http")

    def origin_allowed(self, request: web.Request) -> bool:
        """Whether the page that made a browser's request may use our endpoints
        (``http.allowed_origins``; by default only pages of the same host)."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not from a browser page: origins protect browsers' users only
        allowed = self.server.config.http.allowed_origins
        if "*" in allowed or origin in allowed:
            return True
        if allowed:
            return False
        return urlsplit(origin).netloc.lower() == request.host.lower()

    def base_url(self, request: web.Request) -> str:
        """The service's public base URL (``http.external_url``, or from the request)."""
        url = self.server.config.http.external_url
        if url:
            return url.rstrip("/")
        return f"{self.client(request).scheme}://{request.host}"
