"""The administration pages at ``/admin`` (``http.admin_page``; docs/admin.md).

Server-rendered HTML (Jinja2, autoescaped) and one small stylesheet; no script.
Only the accounts in ``server.admins`` may log in, with their XMPP password,
checked against the stored SCRAM keys on the key-derivation pool
(accounts.py). The security model:

- **Who.** An unknown account, a wrong password and an account that is not an
  administrator get the same answer after the same work (a decoy account's keys
  are derived for the first two), and count as one failure against the address
  in the server's login throttle (``limits.max_auth_failures``), the one XMPP
  logins use.
- **Where.** A login is refused over a plain-text hop that is not loopback
  (:meth:`HTTPService.client`): the password would cross the network in clear,
  as ``c2s.require_tls`` refuses for XMPP. Use ``http.tls_listen`` or a TLS proxy.
- **Sessions.** auth.py: a random id in an ``HttpOnly; SameSite=Strict`` cookie
  scoped to ``/admin`` (``Secure`` over HTTPS), a new one at every login,
  server-side expiry, logout.
- **Forms.** Every POST carries its session's CSRF token (constant-time check)
  and, when the browser sends an ``Origin``, it must be this service's own.
- **Browsers.** ``Content-Security-Policy: default-src 'none'; style-src 'self';
  form-action 'self'; frame-ancestors 'none'; base-uri 'none'``, no caching,
  ``nosniff``, no framing, referrers only to this origin.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from descant.http.server import HTTPService


def install(service: HTTPService) -> None:
    """Serve the admin pages, when ``http.admin_page`` is on."""
    if not service.server.config.http.admin_page:
        return
    from descant.http.admin.pages import AdminPages

    AdminPages(service).install()


__all__ = ["install"]
