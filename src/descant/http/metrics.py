"""``/metrics`` (Prometheus text format) and ``/health`` (for load balancers).

``/metrics`` reveals how the server is used (sessions, traffic, failed logins), so
only ``http.metrics_allow`` may read it: addresses or networks, judged on the client
as :meth:`HTTPService.client` resolves it (behind a trusted proxy, the address the
proxy forwarded for, so a public proxy does not open it to everyone). Empty (the
default): loopback, and the trusted proxies' own requests. Others get 403.

``/health`` is for anyone (a load balancer's probe): 200 with
``{"status": "ok", "uptime_s": …}`` while the listeners are up and storage answers
a trivial query within :data:`HEALTH_TIMEOUT`, else 503 with the reason
(``"storage"``, ``"stopping"``). It says nothing a stranger could use. At most one
storage check runs at a time: probes that arrive meanwhile wait for the same one, so a
stuck database does not collect a query per probe.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from typing import TYPE_CHECKING

from aiohttp import web

from descant.metrics import CONTENT_TYPE

if TYPE_CHECKING:
    from descant.http.server import HTTPService, IPNetwork

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0


class MetricsEndpoints:
    def __init__(self, http: HTTPService) -> None:
        self.http = http
        self.server = http.server
        cfg = self.server.config.http
        self.allow: list[IPNetwork] = [
            ipaddress.ip_network(a, strict=False) for a in cfg.metrics_allow
        ]
        self._check: asyncio.Task[None] | None = None

    def allowed(self, ip: str) -> bool:
        """Whether a client at ``ip`` may read /metrics (see the module docstring)."""
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if self.allow:
            return any(addr in net for net in self.allow)
        return addr.is_loopback or any(addr in net for net in self.http.proxies)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        if not self.allowed(self.http.client(request).ip):
            raise web.HTTPForbidden(text="metrics are not readable from this address\n")
        # Rendering walks every client stream once (sessions by transport): some
        # milliseconds at tens of thousands of sessions, once per scrape.
        body = self.server.metrics.render()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    async def health(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        status, reason = 200, None
        if server.c2s.stopping or not server.bound_ports.get("c2s"):
            status, reason = 503, "stopping" if server.c2s.stopping else "listeners"
        else:
            try:
                await asyncio.wait_for(asyncio.shield(self._storage_check()), HEALTH_TIMEOUT)
            except Exception as exc:  # a timeout or the storage's own error
                log.warning("health check: storage did not answer: %r", exc)
                status, reason = 503, "storage"
        body: dict[str, object] = {
            "status": "ok" if status == 200 else "unavailable",
            "uptime_s": round(time.time() - server.metrics.started, 1),
        }
        if reason is not None:
            body["reason"] = reason
        return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})

    def _storage_check(self) -> asyncio.Task[None]:
        """The storage check in flight, or a new one: never more than one at a time."""
        task = self._check
        if task is None or task.done():
            task = self._check = asyncio.get_running_loop().create_task(self.server.storage.ping())
            # A check nobody waits for any more (timed out) must not log "never retrieved".
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        return task

    async def close(self) -> None:
        task, self._check = self._check, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except BaseException:
                pass


def install(http: HTTPService) -> MetricsEndpoints:
    endpoints = MetricsEndpoints(http)
    if http.server.config.http.metrics:
        http.add_route("GET", "/metrics", endpoints.metrics)
    http.add_route("GET", "/health", endpoints.health)
    return endpoints
