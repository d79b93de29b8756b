"""Multi-user chat (XEP-0045), served at ``<muc.domain_prefix>.<domain>``.

:func:`add_services` gives each served domain its MUC service: a Host of its own
loaded with :data:`MUC_MODULES` (not the user-session modules), registered in
``server.hosts`` so the router delivers room stanzas to it, and listed in the
domain's disco#items. See service.py for how the pieces fit, docs/muc.md for use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from descant.features.muc.service import MUCService
from descant.modules import Module

if TYPE_CHECKING:
    from descant.host import Host
    from descant.server import Server

MUC_MODULES: list[type[Module]] = [MUCService]


def add_services(server: Server) -> list[Host]:
    """Create (not start) the MUC host of every served domain; return them."""
    from descant.features.disco import add_service_hosts

    cfg = server.config.muc
    if not cfg.enabled:
        return []
    return add_service_hosts(server, cfg.domain_prefix, MUC_MODULES, "Chatrooms")


__all__ = ["MUC_MODULES", "MUCService", "add_services"]
