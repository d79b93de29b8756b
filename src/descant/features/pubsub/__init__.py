"""Publish-subscribe (XEP-0060): PEP on every account (XEP-0163, pep.py) and a
pubsub service at ``<pubsub.domain_prefix>.<domain>`` (domain.py), on one core
(service.py: nodes and rules; protocol.py: the requests and notifications).

:func:`add_services` gives each served domain its pubsub service, the way MUC
services are added: a Host of its own, listed in the domain's disco#items.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from descant.features.pubsub.domain import PubSubServiceModule
from descant.features.pubsub.pep import PEPModule

if TYPE_CHECKING:
    from descant.host import Host
    from descant.server import Server


def add_services(server: Server) -> list[Host]:
    """Create (not start) the pubsub host of every served domain; return them."""
    from descant.features.disco import DiscoModule
    from descant.host import Host

    cfg = server.config.pubsub
    if not cfg.enabled:
        return []
    added = []
    for domain in server.config.server.domains:
        service = f"{cfg.domain_prefix}.{domain}"
        if service in server.hosts:
            continue
        host = Host(server, service)
        host.load([PubSubServiceModule])
        server.hosts[service] = host
        added.append(host)
        user_host = server.hosts.get(domain)
        disco = user_host.modules.get("disco") if user_host is not None else None
        if isinstance(disco, DiscoModule):
            disco.items.append((service, "Publish-Subscribe"))
    return added


__all__ = ["PEPModule", "PubSubServiceModule", "add_services"]
