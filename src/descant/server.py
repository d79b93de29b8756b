"""The Server: configuration, storage, hosts, router, listeners and signals."""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable

from descant.c2s.session import C2SSession
from descant.component import ComponentService
from descant.config import Config, parse_listen
from descant.events import EventBus
from descant.host import Host
from descant.net import keepalive, tls
from descant.routing.router import Router
from descant.s2s.manager import S2SManager
from descant.storage import open_storage
from descant.storage.api import Storage

log = logging.getLogger(__name__)


class Server:
    def __init__(self, config: Config, storage: Storage | None = None) -> None:
        self.config = config
        self.storage: Storage = storage or open_storage(config.storage.url, config.server.data_dir)
        self.events = EventBus()
        self.router = Router(self)
        self.hosts: dict[str, Host] = {}
        self.default_domain = config.server.domains[0]
        self.tls_context: ssl.SSLContext | None = None
        self.cb_data = b""
        self.sessions: set[C2SSession] = set()
        self._listeners: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._auth_failures: dict[str, collections.deque[float]] = {}
        self._per_ip: collections.Counter[str] = collections.Counter()
        self._stopped = asyncio.Event()
        self.bound_ports: dict[str, list[int]] = {}
        self.tls_files: tuple[str, str] = ("", "")
        self.s2s = S2SManager(self)
        self.components = ComponentService(self)

    def host_for(self, domain: str) -> Host | None:
        host = self.hosts.get(domain)
        if host is None:
            try:
                from descant.jid import prep_domain

                host = self.hosts.get(prep_domain(domain))
            except ValueError:
                return None
        return host

    # -- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        from descant.features import DEFAULT_MODULES
        from descant.modules import import_module_class

        cfg = self.config
        await self.storage.open()
        cert, key = tls.ensure_certificate(
            cfg.server.domains, cfg.server.data_dir, cfg.tls.cert, cfg.tls.key
        )
        self.tls_context = tls.server_context(cert, key)
        self.cb_data = tls.end_point_binding(cert)
        self.tls_files = (cert, key)
        if cfg.c2s.allow_plain_without_tls:
            log.warning(
                "c2s.allow_plain_without_tls is on: passwords may cross the network in clear"
            )
        extra_modules = [import_module_class(spec) for spec in cfg.modules.extra]
        for domain in cfg.server.domains:
            host = Host(self, domain)
            host.load(DEFAULT_MODULES + extra_modules)
            self.hosts[domain] = host
        from descant.features.muc import add_services

        add_services(self)  # a MUC host per domain (XEP-0045; features/muc)
        for host in self.hosts.values():
            await host.start()
        # Before c2s: once clients are accepted, federation and components are up.
        await self.components.start()
        await self.s2s.start()
        for addr in cfg.c2s.listen:
            await self._listen("c2s", addr, None)
        for addr in cfg.c2s.tls_listen:
            await self._listen("c2s_tls", addr, self.tls_context)
        log.info("Descant serving %s", ", ".join(cfg.server.domains))

    async def listen(
        self,
        kind: str,
        addr: str,
        handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
        ctx: ssl.SSLContext | None = None,
    ) -> asyncio.Server:
        """A listener on ``host:port`` for c2s, s2s or components; ports are
        recorded in ``bound_ports`` (port 0 picks a free one)."""
        host, port = parse_listen(addr)
        srv = await asyncio.start_server(handler, host, port, ssl=ctx, limit=1 << 20)
        ports = [s.getsockname()[1] for s in srv.sockets]
        self.bound_ports.setdefault(kind, []).extend(ports)
        log.info("%s listening on %s (port %s)", kind, addr, ports[0] if ports else port)
        return srv

    async def _listen(self, kind: str, addr: str, ctx: ssl.SSLContext | None) -> None:
        direct_tls = ctx is not None
        handler = lambda r, w: self._accept(r, w, direct_tls)  # noqa: E731
        self._listeners.append(await self.listen(kind, addr, handler, ctx))

    async def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, direct_tls: bool
    ) -> None:
        peer = writer.get_extra_info("peername")
        ip = peer[0] if peer else "?"
        if self._per_ip[ip] >= self.config.limits.max_connections_per_ip:
            log.warning("refusing connection from %s: too many connections", ip)
            # Say why (RFC 6120 §4.9.3.17) rather than drop the connection silently.
            refused = C2SSession(self, reader, writer, direct_tls)
            await refused.close("policy-violation", "too many connections from your address")
            return
        self._per_ip[ip] += 1
        sock = writer.get_extra_info("socket")
        if sock is not None and self.config.c2s.tcp_keepalive:
            keepalive.enable(sock, self.config.c2s.tcp_keepalive)
        session = C2SSession(self, reader, writer, direct_tls)
        self.sessions.add(session)
        try:
            await session.run()
        finally:
            self.sessions.discard(session)
            self._per_ip[ip] -= 1
            if self._per_ip[ip] <= 0:
                del self._per_ip[ip]

    async def stop(self) -> None:
        """Close listeners, end every stream with <system-shutdown/>, flush storage."""
        for srv in self._listeners:
            srv.close()
        for session in list(self.sessions):
            await session.close("system-shutdown")
        # A TLS peer that does not answer close_notify keeps its session's task
        # reading; left to asyncio.run it is cancelled with a logged traceback.
        # Give the sessions a moment to end, then cut what is left.
        await self._sessions_ended(2.0)
        for session in list(self.sessions):
            session.writer.transport.abort()
        await self._sessions_ended(1.0)
        for srv in self._listeners:
            await srv.wait_closed()
        await self.s2s.stop()
        await self.components.stop()
        for host in self.hosts.values():
            await host.stop()
        await self.storage.close()
        self._stopped.set()

    async def _sessions_ended(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down cleanly."""
        try:
            await self.start()
        except BaseException:
            # Release what did start (listeners, the storage thread), or the
            # process lingers after reporting the error.
            try:
                await self.stop()
            except Exception:
                log.debug("cleanup after a failed start", exc_info=True)
            raise
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
        await self.stop()

    # -- protection ---------------------------------------------------------------------

    def auth_failed(self, ip: str) -> None:
        q = self._auth_failures.setdefault(ip, collections.deque(maxlen=64))
        q.append(time.monotonic())

    def auth_throttled(self, ip: str) -> bool:
        q = self._auth_failures.get(ip)
        if not q:
            return False
        window = self.config.limits.auth_failure_window
        now = time.monotonic()
        while q and now - q[0] > window:
            q.popleft()
        if not q:
            del self._auth_failures[ip]
            return False
        return len(q) >= self.config.limits.max_auth_failures
