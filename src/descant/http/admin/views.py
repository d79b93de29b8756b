"""What the admin pages show, read from the running server, and what they change.

Reading is plain attribute access on the server's own tables (sessions per host,
rooms per MUC service, s2s links); changes go through the same operations the
XEP-0133 ad-hoc commands use (features/admin.py → features/register.py): keys
derived off the event loop, a removed account's data and sessions gone.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from descant import __version__
from descant.c2s.session import ClientSession
from descant.features.muc.room import Room
from descant.features.muc.service import MUCService
from descant.features.register import RegisterModule

if TYPE_CHECKING:
    from descant.host import Host
    from descant.server import Server

# Why a kicked session ends (RFC 6120 §4.9.3.14): a local policy — the operator's
# decision — ended it. <reset/> would invite the client to reconnect at once and
# <not-authorized/> is what account removal sends.
KICK_CONDITION = "policy-violation"
KICK_TEXT = "the session was ended by an administrator"


@dataclass(frozen=True, slots=True)
class SessionRow:
    jid: str
    account: str
    resource: str
    transport: str  # tcp, websocket, bosh, or "hibernated" (XEP-0198, no connection)
    address: str
    secure: bool
    since: float
    available: bool


@dataclass(frozen=True, slots=True)
class RoomRow:
    jid: str
    name: str
    occupants: int
    persistent: bool
    public: bool


@dataclass(frozen=True, slots=True)
class LinkRow:
    direction: str  # "out" or "in"
    local: str
    remote: str
    state: str
    peer: str
    secure: bool


def user_hosts(server: Server) -> list[Host]:
    return [server.hosts[d] for d in server.config.server.domains if d in server.hosts]


def register(server: Server, domain: str) -> RegisterModule | None:
    host = server.hosts.get(domain)
    mod = host.modules.get("register") if host is not None else None
    return mod if isinstance(mod, RegisterModule) else None


# -- sessions -----------------------------------------------------------------------------


def sessions(server: Server) -> list[SessionRow]:
    rows = []
    for host in user_hosts(server):
        for s in host.sessions.all():
            if not isinstance(s, ClientSession):
                continue
            stream = s.stream
            rows.append(
                SessionRow(
                    s.jid_str,
                    str(s.jid.bare),
                    s.jid.resource,
                    stream.stream.framing if stream is not None else "hibernated",
                    stream.ip if stream is not None else "",
                    stream.secure if stream is not None else False,
                    s.since,
                    s.presence is not None,
                )
            )
    rows.sort(key=lambda r: (r.account, r.resource))
    return rows


def find_session(server: Server, account: str, resource: str) -> ClientSession | None:
    local, _, domain = account.partition("@")
    host = server.hosts.get(domain)
    if host is None or domain not in server.config.server.domains:
        return None
    s = host.sessions.get(local, resource)
    return s if isinstance(s, ClientSession) else None


async def kick(server: Server, account: str, resource: str) -> bool:
    session = find_session(server, account, resource)
    if session is None:
        return False
    await session.close(KICK_CONDITION, KICK_TEXT)
    return True


# -- rooms --------------------------------------------------------------------------------


def muc_services(server: Server) -> list[MUCService]:
    if not server.config.muc.enabled:
        return []
    out = []
    for domain in server.config.server.domains:
        host = server.hosts.get(f"{server.config.muc.domain_prefix}.{domain}")
        mod = host.modules.get("muc") if host is not None else None
        if isinstance(mod, MUCService):
            out.append(mod)
    return out


def rooms(service: MUCService) -> list[RoomRow]:
    return [
        RoomRow(str(r.jid), r.config.name, len(r.occupants), r.config.persistent, r.config.public)
        for r in sorted(service.rooms.values(), key=lambda r: r.jid.local)
    ]


def find_room(server: Server, jid: str) -> tuple[MUCService, Room] | None:
    local, _, domain = jid.partition("@")
    for service in muc_services(server):
        if service.host.domain == domain and local in service.rooms:
            return service, service.rooms[local]
    return None


# -- federation ---------------------------------------------------------------------------


def links(server: Server) -> list[LinkRow]:
    rows = []
    for out in server.s2s.outgoing.values():
        conn = out.conn
        state = out.state.value if out.state.value != "connecting" else out.stage
        rows.append(
            LinkRow(
                "out",
                out.local,
                out.remote,
                state,
                conn.peer if conn is not None else "",
                conn.secure if conn is not None else False,
            )
        )
    for inc in server.s2s.incoming:
        authed = sorted({remote for _, remote in inc.authed})
        rows.append(
            LinkRow(
                "in",
                inc.local,
                ", ".join(authed) or inc.peer_domain,
                "authenticated" if authed else "authenticating",
                inc.peer,
                inc.secure,
            )
        )
    rows.sort(key=lambda r: (r.direction == "in", r.local, r.remote))
    return rows


# -- overview ------------------------------------------------------------------------------


async def overview(server: Server, started: float) -> dict[str, object]:
    by_transport: dict[str, int] = {}
    for row in sessions(server):
        by_transport[row.transport] = by_transport.get(row.transport, 0) + 1
    accounts = {d: len(await server.storage.accounts.list(d)) for d in server.config.server.domains}
    services = muc_services(server)
    return {
        "version": __version__,
        "uptime": time.time() - started,
        "started": started,
        "domains": list(server.config.server.domains),
        "sessions": sum(by_transport.values()),
        "by_transport": sorted(by_transport.items()),
        "online_accounts": sum(len(h.sessions.users()) for h in user_hosts(server)),
        "accounts": accounts,
        "rooms": sum(len(s.rooms) for s in services),
        "occupants": sum(len(r.occupants) for s in services for r in s.rooms.values()),
        "s2s_out": len(server.s2s.outgoing),
        "s2s_in": len(server.s2s.incoming),
        "stanzas": server.metrics.stanza_totals(),  # None when metrics are off
    }


def duration(seconds: float) -> str:
    """3d 4h, 5h 6m, 7m 8s."""
    s = int(seconds)
    d, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    if d:
        return f"{d}d {h}h"
    if h:
        return f"{h}h {m}m"
    return f"{m}m {s}s"
