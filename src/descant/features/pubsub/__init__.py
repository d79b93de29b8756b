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
    from descant.features.disco import add_service_hosts

    cfg = server.config.pubsub
    if not cfg.enabled:
        return []
    return add_service_hosts(server, cfg.domain_prefix, [PubSubServiceModule], "Publish-Subscribe")


__all__ = ["PEPModule", "PubSubServiceModule", "add_services"]
