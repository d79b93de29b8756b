"""The server's federation manager: outgoing sessions, the s2s listener, policy.

It hooks ``route/remote`` on the server bus: a stanza for a domain not served
here goes to the outgoing session for its (from-domain, to-domain) pair,
created on demand; the session queues until its stream is authenticated and
bounces the queue if it cannot be (never a silent loss). Incoming streams are
accepted on ``[s2s] listen``; their dialback keys are checked through the
outgoing session to the claimed domain (XEP-0220 §2.1.2).

Policies (``[s2s] policy``, per domain in ``[s2s.policies]``):
``verify`` — the peer's certificate must verify for its domain (PKIX, RFC 6125),
then SASL EXTERNAL or dialback over that verified stream; ``dialback`` — TLS
without certificate checks, identity proven by dialback (the default);
``insecure`` — TLS optional (test rigs only).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import ssl
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

from descant.errors import StanzaError
from descant.jid import JID
from descant.net import tls
from descant.net.limits import PerAddress
from descant.net.tcp import TCPTransport
from descant.s2s.outgoing import OutgoingSession
from descant.s2s.session import IncomingSession
from descant.tasks import TaskGroup

if TYPE_CHECKING:
    from descant.server import Server

log = logging.getLogger(__name__)


class DialBudget:
    """New remote domains each account made the server connect to in the last hour,
    bounded per account (``limit``) and in accounts tracked (least recent dropped)."""

    window = 3600.0
    max_accounts = 10_000

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._by_account: OrderedDict[str, dict[str, float]] = OrderedDict()

    def _recent(self, account: str) -> dict[str, float]:
        dials = self._by_account.get(account)
        if dials is None:
            return {}
        now = time.monotonic()
        for domain in [d for d, t in dials.items() if now - t > self.window]:
            del dials[domain]
        return dials

    def seen(self, account: str, domain: str) -> bool:
        return domain in self._recent(account)

    def allow(self, account: str, domain: str) -> bool:
        dials = self._recent(account)
        if len(dials) >= self.limit:
            return False
        self._by_account[account] = dials
        self._by_account.move_to_end(account)
        dials[domain] = time.monotonic()
        while len(self._by_account) > self.max_accounts:
            self._by_account.popitem(last=False)
        return True


class S2SManager:
    def __init__(self, server: Server) -> None:
        self.server = server
        cfg = server.config.s2s
        self.secret = (cfg.dialback_secret or secrets.token_hex(32)).encode()
        self.outgoing: dict[tuple[str, str], OutgoingSession] = {}
        self.incoming: set[IncomingSession] = set()
        self._add_tls_kinds()
        self._listeners: list[asyncio.Server] = []
        # Bounces of undeliverable stanzas, owned and bounded (past it, logged and dropped).
        self._bounces = TaskGroup("s2s bounces", limit=1000)
        self.stopping = False
        # One task per incoming connection, bounded by the per-address limit.
        self._conns = TaskGroup("s2s connections", limit=1 << 30)
        self.per_ip = PerAddress(server.config.limits.max_connections_per_ip)
        self.dials = DialBudget(server.config.limits.max_remote_domains_per_hour)

    # -- life cycle --------------------------------------------------------------------

    async def start(self) -> None:
        server = self.server
        server.events.hook("route/remote", self._route_remote)
        for addr in server.config.s2s.listen:
            self._listeners.append(
                await server.listen("s2s", addr, lambda: TCPTransport(self._made))
            )

    async def stop(self) -> None:
        self.stopping = True
        self.server.events.unhook("route/remote", self._route_remote)
        for srv in self._listeners:
            srv.close()
        for out in list(self.outgoing.values()):
            await out.close()
        for inc in list(self.incoming):
            await inc.close("system-shutdown")
        for srv in self._listeners:
            await srv.wait_closed()
        await self._bounces.close(1.0)
        await self._conns.close(1.0)

    def _made(self, transport: TCPTransport) -> None:
        # The session (which receives the bytes) exists before any data arrives.
        self._conns.spawn(self._accept(IncomingSession(self, transport)))

    async def _accept(self, session: IncomingSession) -> None:
        ip = session.transport.ip
        if not self.per_ip.admit(ip):
            log.warning("refusing s2s connection from %s: too many connections", ip)
            session.write(session.header(self.server.default_domain, None))
            await session.close("policy-violation", "too many connections from your address")
            return
        self.incoming.add(session)
        try:
            await session.run()
        finally:
            self.incoming.discard(session)
            self.per_ip.release(ip)

    # -- routing -----------------------------------------------------------------------

    async def _route_remote(self, args: tuple[ET.Element, JID, JID]) -> bool | None:
        stanza, frm, to = args
        if self.stopping or not self.is_local(frm.domain) or not to.domain:
            return None
        if (
            (frm.domain, to.domain) not in self.outgoing
            and frm.local
            and not await self._may_dial(frm, to.domain)
        ):
            await self.server.router.bounce(
                stanza, StanzaError("policy-violation", "too many new remote domains")
            )
            return True
        self.session_for(frm.domain, to.domain).send(stanza)
        return True

    async def _may_dial(self, account: JID, domain: str) -> bool:
        """Whether an account's stanza may make the server connect to a domain it has no
        stream to: always for its contacts' domains, else within
        ``limits.max_remote_domains_per_hour`` new domains (each costs a DNS lookup and
        connection attempts)."""
        bare = str(account.bare)
        if self.dials.seen(bare, domain):
            return True
        host = self.server.hosts.get(account.domain)
        roster = host.modules.get("roster") if host is not None else None
        if roster is not None and any(
            jid.partition("@")[2].partition("/")[0] == domain
            for jid in await roster.get_roster(account.local)  # type: ignore[attr-defined]
        ):
            return True
        if self.dials.allow(bare, domain):
            return True
        log.info("%s: no new connection to %s, too many new domains this hour", bare, domain)
        return False

    def session_for(self, local: str, remote: str) -> OutgoingSession:
        session = self.outgoing.get((local, remote))
        if session is None:
            session = OutgoingSession(self, local, remote)
            self.outgoing[(local, remote)] = session
            session.start()
        return session

    def forget(self, session: OutgoingSession) -> None:
        if self.outgoing.get((session.local, session.remote)) is session:
            del self.outgoing[(session.local, session.remote)]

    def bounce(self, stanzas: list[ET.Element], err: StanzaError) -> None:
        """Answer undeliverable stanzas (in a task: callers may be mid-teardown)."""

        async def run() -> None:
            for stanza in stanzas:
                try:
                    await self.server.router.bounce(stanza, err)
                except Exception:
                    log.exception("bouncing a stanza failed")

        self._bounces.spawn(run())

    # -- identity and policy ---------------------------------------------------------------

    def is_local(self, domain: str) -> bool:
        """A domain served here: a host, or a component's domain."""
        if domain in self.server.hosts:
            return True
        components = getattr(self.server, "components", None)
        return components is not None and components.serves(domain)

    def policy(self, remote: str) -> str:
        cfg = self.server.config.s2s
        return cfg.policies.get(remote, cfg.policy)

    async def verify_dialback(self, local: str, remote: str, stream_id: str, key: str) -> bool:
        """XEP-0220 §2.1.2: ask ``remote``'s Authoritative Server about ``key``."""
        if not key:
            return False
        session = self.session_for(local, remote)
        timeout = self.server.config.s2s.connect_timeout * 3
        return await session.verify(stream_id, key, timeout)

    # -- TLS ------------------------------------------------------------------------------

    def _add_tls_kinds(self) -> None:
        """The s2s kinds of TLS context, per certificate (net/certs.py): incoming with
        and without asking for a client certificate, outgoing with and without
        verifying the peer's. Outgoing ones present our certificate for SASL EXTERNAL
        (XEP-0178)."""
        ca_file = self.server.config.s2s.ca_file

        def incoming(cert: str, key: str) -> ssl.SSLContext:
            return tls.server_context(cert, key, ["xmpp-server"])

        def incoming_verify(cert: str, key: str) -> ssl.SSLContext:
            ctx = tls.server_context(cert, key, ["xmpp-server"])
            ctx.verify_mode = ssl.CERT_OPTIONAL
            ctx.load_default_certs(ssl.Purpose.CLIENT_AUTH)
            if ca_file:
                ctx.load_verify_locations(ca_file)
            return ctx

        def outgoing(verify: bool) -> Callable[[str, str], ssl.SSLContext]:
            def make(cert: str, key: str) -> ssl.SSLContext:
                ctx = tls.client_context(verify, ca_file)
                ctx.set_alpn_protocols(["xmpp-server"])  # XEP-0368 direct TLS
                ctx.load_cert_chain(cert, key)
                return ctx

            return make

        certs = self.server.certs
        certs.add_kind("s2s", incoming)
        certs.add_kind("s2s-verify", incoming_verify)
        certs.add_kind("s2s-out", outgoing(False))
        certs.add_kind("s2s-out-verify", outgoing(True))

    @property
    def tls_server(self) -> ssl.SSLContext | None:
        """The default incoming context (None before the certificates are loaded)."""
        certs = self.server.certs
        return certs.context("s2s", self.server.default_domain) if certs.current else None

    def server_context(self, local: str, verify: bool) -> ssl.SSLContext:
        """TLS for an incoming stream to ``local``: its certificate (unless the peer's
        SNI names another domain of ours); asking for the peer's under "verify"."""
        return self.server.certs.context("s2s-verify" if verify else "s2s", local)

    def client_context(self, policy: str, local: str) -> ssl.SSLContext:
        """TLS for outgoing streams from ``local``, presenting its certificate:
        verifying the peer's under "verify", else encryption only."""
        kind = "s2s-out-verify" if policy == "verify" else "s2s-out"
        return self.server.certs.context(kind, local)
