"""Invitations without a running server: making one, its links, its state.

The command line (``descant invite``) and the invites module share these. A token is
``secrets.token_urlsafe(24)``: 32 characters, 192 random bits, safe in a URI query and
a URL path as it is. Links (XEP-0401 §4.1, XEP-0445 §2):

- an invitation with an inviter: ``xmpp:inviter@domain?roster;preauth=TOKEN;ibr=y``
  (XEP-0379: whoever follows it becomes the inviter's contact; ``ibr=y``: the token
  also registers an account);
- one without (the operator's): ``xmpp:domain?register;preauth=TOKEN``;
- the landing page: ``<base>/invite/TOKEN`` on the HTTP listener, where ``<base>`` is
  ``http.external_url``, else the first HTTPS, else HTTP listener (as upload URLs).
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from descant.config import Config, parse_duration
from descant.http.urls import public_base
from descant.storage.api import Invite, Storage

TOKEN_BYTES = 24
# Invitations are kept this long after they expire, so their page says "expired"
# (410) rather than "unknown" (404); then they go, a batch at each new invitation.
KEEP_EXPIRED = timedelta(days=30)
EXPIRE_BATCH = 100


def expiry(cfg: Config, now: datetime, expire_after: str | None = None) -> datetime | None:
    """When an invitation made ``now`` expires (``invites.expire_after`` unless given);
    None: never. ValueError for a duration that is not one."""
    seconds = parse_duration(cfg.invites.expire_after if expire_after is None else expire_after)
    return None if seconds is None else now + timedelta(seconds=seconds)


async def create(
    storage: Storage, host: str, creator: str, now: datetime, expires: datetime | None
) -> Invite:
    """Store a new invitation to register on ``host``; ``creator`` is the inviting
    account's username there, "" for none."""
    invite = Invite(secrets.token_urlsafe(TOKEN_BYTES), host, creator, now, expires)
    await storage.invites.add(invite)
    return invite


def xmpp_uri(invite: Invite) -> str:
    """The XEP-0401 / XEP-0445 URI a client follows."""
    if invite.creator:
        return f"xmpp:{invite.creator}@{invite.host}?roster;preauth={invite.token};ibr=y"
    return f"xmpp:{invite.host}?register;preauth={invite.token}"


def http_base(cfg: Config, domain: str) -> str:
    """The public base URL of the HTTP listener for ``domain``'s people (http/urls.py)."""
    return public_base(cfg, domain)


def landing_url(cfg: Config, invite: Invite) -> str:
    """The landing page's URL, or "" without an HTTP listener."""
    base = http_base(cfg, invite.host)
    return f"{base}/invite/{invite.token}" if base else ""


def state(invite: Invite, now: datetime) -> str:
    """``valid``, ``used`` or ``expired``."""
    if invite.used:
        return "used"
    if invite.expires is not None and invite.expires <= now:
        return "expired"
    return "valid"


__all__ = ["create", "expiry", "http_base", "landing_url", "state", "xmpp_uri"]
