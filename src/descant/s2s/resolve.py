"""Where to connect for a remote domain (RFC 6120 §3.2, XEP-0368).

Order: a static route from ``[s2s.routes]``; then DNS SRV records
``_xmpps-server._tcp`` (direct TLS) and ``_xmpp-server._tcp`` merged by
priority (RFC 2782; ``.`` as the only target means "no service"); with no SRV
records at all, the domain itself on port 5269 (its A/AAAA records, resolved
when connecting).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from descant.config import parse_listen

log = logging.getLogger(__name__)

DEFAULT_PORT = 5269


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    direct_tls: bool = False


class NoService(Exception):
    """The domain says it offers no XMPP server service (SRV target '.')."""


def _is_ip(domain: str) -> bool:
    try:
        ipaddress.ip_address(domain.strip("[]"))
    except ValueError:
        return False
    return True


async def _srv(name: str, direct_tls: bool, lifetime: float) -> list[tuple[int, int, Target]]:
    try:
        answer = await dns.asyncresolver.resolve(name, "SRV", lifetime=lifetime)
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
        return []
    except dns.exception.Timeout:
        log.info("SRV lookup for %s timed out", name)
        return []
    out = []
    for rr in answer:
        target = rr.target.to_text(omit_final_dot=True)
        if not target or target == ".":
            if len(answer) == 1:
                raise NoService(name)
            continue
        out.append((rr.priority, -rr.weight, Target(target, rr.port, direct_tls)))
    return out


async def resolve(domain: str, routes: dict[str, str], lifetime: float = 5.0) -> list[Target]:
    """Targets to try in order for ``domain``; raises NoService if it has none."""
    route = routes.get(domain)
    if route is not None:
        host, port = parse_listen(route)
        return [Target(host, port)]
    if _is_ip(domain):
        return [Target(domain.strip("[]"), DEFAULT_PORT)]
    records = await _srv(f"_xmpps-server._tcp.{domain}", True, lifetime)
    records += await _srv(f"_xmpp-server._tcp.{domain}", False, lifetime)
    if not records:
        return [Target(domain, DEFAULT_PORT)]
    # Direct TLS first among equals (XEP-0368 §3): it saves a round trip.
    records.sort(key=lambda r: (r[0], r[1], not r[2].direct_tls))
    return [t for _, _, t in records]
