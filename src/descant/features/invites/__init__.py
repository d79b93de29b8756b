"""Account invitations (XEP-0401 0.5, XEP-0445 0.2, XEP-0379 0.3; docs/accounts.md).

links.py makes invitations and their links (shared with ``descant invite``); module.py
is the per-domain module: the ad-hoc commands, the in-band preauth before
registration, redeeming and befriending; page.py the landing page on the HTTP
listener, installed by :func:`install` for every domain at once.
"""

from __future__ import annotations

from descant.features.invites.module import InviteModule
from descant.features.invites.page import install

__all__ = ["InviteModule", "install"]
