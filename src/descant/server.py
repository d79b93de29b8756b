"""The Server: configuration, storage, hosts, router, listeners and signals."""

from __future__ import annotations

import asyncio
import collections
import logging
import signal
import ssl
import time
from collections.abc import Callable

from descant.c2s.manager import ClientManager
from descant.component import ComponentService
from descant.config import Config, parse_listen
from descant.events import EventBus
from descant.host import Host
from descant.http.server import HTTPService
from descant.metrics import Metrics
from descant.net import tls
from descant.net.certs import CertStore
from descant.routing.router import Router
from descant.s2s.manager import S2SManager
from descant.storage import open_storage
from descant.storage.api import Storage

log = logging.getLogger(__name__)

# Addresses whose recent login failures are remembered (limits.max_auth_failures).
AUTH_FAILURE_ADDRESSES = 10_000


class Server:
    def __init__(self, config: Config, storage: Storage | None = None) -> None:
        self.config = config
        # First: the router, the managers and storage keep references to its counters.
        self.metrics = Metrics(self)
        self.storage: Storage = storage or open_storage(
            config.storage.url, config.server.data_dir, self.metrics.storage_observer
        )
        self.events = EventBus()
        self.router = Router(self)
        self.hosts: dict[str, Host] = {}
        self.default_domain = config.server.domains[0]
        # Certificates and TLS contexts by kind of connection and domain (net/certs.py);
        # the s2s manager adds its kinds.
        self.certs = CertStore(config.tls)
        self.certs.add_kind("c2s", lambda c, k: tls.server_context(c, k, ["xmpp-client"]))
        self.certs.add_kind("https", lambda c, k: tls.server_context(c, k, ["http/1.1"]))
        self._auth_failures: dict[str, collections.deque[float]] = {}
        self.bound_ports: dict[str, list[int]] = {}
        self.c2s = ClientManager(self)
        self.http = HTTPService(self)
        self.s2s = S2SManager(self)
        self.components = ComponentService(self)
        # Set by request_stop() (the admin shutdown and restart commands) or a signal.
        self._stop_requested = asyncio.Event()
        self.restart_requested = False

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
        self.certs.load(cert, key)
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
        from descant.features.pubsub import add_services as add_pubsub

        add_pubsub(self)  # a pubsub host per domain (XEP-0060; features/pubsub)
        from descant.features.upload import add_services as add_upload

        add_upload(self)  # an upload host per domain, HTTP routes (XEP-0363; features/upload)
        from descant.features.invites import install as install_invites

        install_invites(self)  # the invitation landing page (XEP-0401; features/invites)
        for host in self.hosts.values():
            await host.start()
        # Before c2s: once clients are accepted, federation and components are up.
        await self.components.start()
        await self.s2s.start()
        await self.http.start()
        # Last: a client that can connect finds every other service up.
        await self.c2s.start()
        self.certs.watch(cfg.tls.watch_interval)
        log.info("Descant serving %s", ", ".join(cfg.server.domains))

    def reload_certificates(self) -> bool:
        """SIGHUP: new TLS connections get the certificates as the files are now;
        established ones keep theirs. A bad file changes nothing (logged)."""
        return self.certs.reload("SIGHUP")

    async def listen(
        self,
        kind: str,
        addr: str,
        factory: Callable[[], asyncio.Protocol],
        ctx: ssl.SSLContext | None = None,
    ) -> asyncio.Server:
        """A listener on ``host:port`` for c2s, s2s or components; ports are
        recorded in ``bound_ports`` (port 0 picks a free one)."""
        host, port = parse_listen(addr)
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(factory, host, port, ssl=ctx)
        ports = [s.getsockname()[1] for s in srv.sockets]
        self.bound_ports.setdefault(kind, []).extend(ports)
        log.info("%s listening on %s (port %s)", kind, addr, ports[0] if ports else port)
        return srv

    async def stop(self) -> None:
        """End every client stream and session with <system-shutdown/>, then
        federation and components, then flush storage."""
        await self.certs.close()
        await self.c2s.stop()
        await self.http.stop()
        await self.s2s.stop()
        await self.components.stop()
        for host in self.hosts.values():
            await host.stop()
        await self.storage.close()

    async def serve_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then shut down cleanly; SIGHUP reloads the
        certificates."""
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
        stop = self._stop_requested
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_certificates)
        await stop.wait()
        log.info("restarting" if self.restart_requested else "shutting down")
        await self.stop()

    def request_stop(self, restart: bool = False) -> None:
        """Stop as SIGTERM does; with ``restart``, ``descant serve`` then starts the
        same command again in this process (cli.py)."""
        self.restart_requested = self.restart_requested or restart
        self._stop_requested.set()

    # -- protection ---------------------------------------------------------------------

    def auth_failed(self, ip: str) -> None:
        q = self._auth_failures.pop(ip, None) or collections.deque(maxlen=64)
        q.append(time.monotonic())
        self._auth_failures[ip] = q  # most recent last: the oldest go first below
        if len(self._auth_failures) > AUTH_FAILURE_ADDRESSES:
            self._prune_auth_failures()

    def _prune_auth_failures(self) -> None:
        """Forget addresses whose failures are all older than the window; if that is
        not enough, the least recently failing (the table stays bounded whoever
        comes back)."""
        window = self.config.limits.auth_failure_window
        now = time.monotonic()
        for ip in [ip for ip, q in self._auth_failures.items() if now - q[-1] > window]:
            del self._auth_failures[ip]
        while len(self._auth_failures) > AUTH_FAILURE_ADDRESSES:
            del self._auth_failures[next(iter(self._auth_failures))]

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
