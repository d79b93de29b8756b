"""The invitation landing page (XEP-0401 §5.2, XEP-0379 §3.3) at ``/invite/TOKEN``.

``GET`` shows who invited (if anyone), which apps to install, the ``xmpp:`` link as a
button, and a form to pick a name and password; ``POST`` (the same URL) makes the
account through the domain's invites module and shows its address. Server-rendered
HTML, every value escaped, no script at all.

Answers: an unknown token (or one of a domain without invitations) 404, a used or
expired one 410, a request from another origin or without this form's ``csrf`` value
403, a name taken 409 and a name or password refused 400 (the form again, with a
message), past ``registration.per_ip_per_hour`` 429. The token in the URL is the
secret; the ``csrf`` field adds an HMAC of the token and the time the form was shown
(valid ``FORM_LIFETIME``, under a key this process drew at start), and a browser's
``Origin`` (else ``Referer``) must be this server. Headers: a CSP with no sources but
the page's own inline style (a nonce) and forms to itself, no framing, ``no-store``,
``Referrer-Policy: same-origin`` (links out do not carry the token).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from html import escape
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from descant.features.invites import links
from descant.features.invites.module import InviteError, InviteModule
from descant.features.register import AccountError, RegisterModule
from descant.storage.api import Invite

if TYPE_CHECKING:
    from descant.server import Server

log = logging.getLogger("descant.invites")

FORM_LIFETIME = 2 * 3600.0
MAX_FIELD = 1024

APPS = (
    ("Android", "Conversations", "https://conversations.im/"),
    ("iPhone and iPad", "Monal", "https://monal-im.org/"),
    ("iPhone and iPad", "Siskin IM", "https://siskin.im/"),
    ("Windows and Linux", "Gajim", "https://gajim.org/"),
    ("Linux", "Dino", "https://dino.im/"),
)

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 36rem; margin: 2rem auto;
  padding: 0 1rem; line-height: 1.5; color: #222; }
h1 { font-size: 1.5rem; }
.button { display: inline-block; padding: .6rem 1.2rem; background: #2a6ebb; color: #fff;
  border-radius: .4rem; text-decoration: none; border: 0; font-size: 1rem; cursor: pointer; }
label { display: block; margin-top: .8rem; }
input[type=text], input[type=password] { width: 100%; padding: .4rem; font-size: 1rem;
  box-sizing: border-box; }
.error { background: #fde8e8; border: 1px solid #e0a0a0; padding: .5rem .8rem; }
.muted { color: #666; font-size: .9rem; }
code { background: #f2f2f2; padding: 0 .2rem; }
"""

TITLES = {
    404: (
        "Unknown invitation",
        "This invitation link is not valid. Check that you copied all of it, or ask for a new one.",
    ),
    410: (
        "Invitation no longer valid",
        "This invitation was used already or has expired. "
        "Ask the person who sent it for a new one.",
    ),
    403: (
        "Refused",
        "This form was not sent from this page, or it is too old. Reload the "
        "invitation page and try again.",
    ),
}


class InvitePages:
    def __init__(self, server: Server) -> None:
        self.server = server
        self._key = secrets.token_bytes(32)

    def install(self) -> None:
        http = self.server.http
        http.add_route("GET", "/invite/{token}", self.get)
        http.add_route("POST", "/invite/{token}", self.post)

    # -- requests ---------------------------------------------------------------------------

    async def get(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        found = await self._invite(token)
        if isinstance(found, int):
            return self._message(found)
        invite, _ = found
        return self._form(request, invite)

    async def post(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        if not self._same_origin(request):
            return self._message(403)
        data = await request.post()
        fields = {
            k: str(data.get(k, ""))[: MAX_FIELD + 1]
            for k in ("username", "password", "password2", "csrf")
        }
        if not self._csrf_ok(token, fields["csrf"]):
            return self._message(403)
        found = await self._invite(token)
        if isinstance(found, int):
            return self._message(found)
        invite, module = found
        username = fields["username"].strip(" \t\r\n")
        password = fields["password"]
        if not username:
            return self._form(request, invite, "Choose a username.", username, 400)
        if password != fields["password2"]:
            return self._form(request, invite, "The two passwords differ.", username, 400)
        register = module.require(RegisterModule)
        ip = self.server.http.client(request).ip
        if not register.window.allowed(ip):
            log.info("%s: invitation sign-up refused, over registration.per_ip_per_hour", ip)
            msg = "Too many accounts were made from your address. Try again in an hour."
            return self._form(request, invite, msg, username, 429)
        try:
            user = await module.redeem(token, username, password)
        except InviteError as exc:
            return self._message(404 if exc.reason == "unknown" else 410)
        except AccountError as exc:
            if exc.condition == "conflict":
                register.window.count(ip)  # as in band: probing names is limited too
                msg = f"The name {username} is taken: choose another."
                return self._form(request, invite, msg, username, 409)
            if exc.condition == "resource-constraint":
                msg = "The server is busy. Try again in a minute."
                return self._form(request, invite, msg, username, 503)
            msg = _account_message(exc)
            return self._form(request, invite, msg, username, 400)
        register.window.count(ip)
        return self._done(request, invite, f"{user}@{invite.host}")

    # -- checks -----------------------------------------------------------------------------

    async def _invite(self, token: str) -> tuple[Invite, InviteModule] | int:
        """The invitation and its domain's module, or the status to answer."""
        invite = await self.server.storage.invites.get(token) if len(token) <= 64 else None
        host = self.server.hosts.get(invite.host) if invite is not None else None
        module = host.modules.get(InviteModule.name) if host is not None else None
        if invite is None or not isinstance(module, InviteModule) or not module.cfg.enabled:
            return 404
        try:
            await module.valid(token)
        except InviteError as exc:
            return 404 if exc.reason == "unknown" else 410
        return invite, module

    def _csrf(self, token: str, issued: int | None = None) -> str:
        issued = int(time.time()) if issued is None else issued
        mac = hmac.new(self._key, f"{token}|{issued}".encode(), hashlib.sha256).hexdigest()
        return f"{issued}.{mac}"

    def _csrf_ok(self, token: str, value: str) -> bool:
        issued_s, _, _ = value.partition(".")
        if not (issued_s.isascii() and issued_s.isdigit()) or len(issued_s) > 12:
            return False
        issued = int(issued_s)
        if not 0 <= time.time() - issued <= FORM_LIFETIME:
            return False
        return hmac.compare_digest(self._csrf(token, issued), value)

    def _same_origin(self, request: web.Request) -> bool:
        """A browser's POST must come from a page of this server: its Origin (else
        Referer) names our host. Requests without either are not from a page."""
        origin = request.headers.get("Origin")
        if origin is None:
            referer = request.headers.get("Referer")
            if referer is None:
                return True
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        netloc = urlsplit(origin).netloc.lower()
        if not netloc:
            return False  # "null": a sandboxed or opaque origin
        if netloc == request.host.lower():
            return True
        external = self.server.config.http.external_url
        return bool(external) and netloc == urlsplit(external).netloc.lower()

    # -- pages ------------------------------------------------------------------------------

    def _page(self, title: str, body: str, status: int = 200) -> web.Response:
        nonce = secrets.token_urlsafe(16)
        text = (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<meta name='robots' content='noindex'><title>{escape(title)}</title>"
            f"<style nonce='{nonce}'>{STYLE}</style></head><body>"
            f"<h1>{escape(title)}</h1>{body}</body></html>\n"
        )
        headers = {
            "Content-Security-Policy": (
                f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; "
                "base-uri 'none'; frame-ancestors 'none'"
            ),
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "same-origin",
            "Cache-Control": "no-store",
        }
        return web.Response(
            text=text, status=status, content_type="text/html", charset="utf-8", headers=headers
        )

    def _message(self, status: int) -> web.Response:
        title, text = TITLES[status]
        return self._page(title, f"<p>{escape(text)}</p>", status)

    def _form(
        self,
        request: web.Request,
        invite: Invite,
        error: str = "",
        username: str = "",
        status: int = 200,
    ) -> web.Response:
        domain = escape(invite.host)
        who = (
            f"<strong>{escape(invite.creator)}@{domain}</strong> invited you to chat on "
            f"<strong>{domain}</strong>. Once you have an account you are each other's "
            "contacts."
            if invite.creator
            else f"You are invited to make an account on <strong>{domain}</strong>."
        )
        apps = "".join(
            f"<li>{escape(where)}: <a href='{escape(url)}' rel='noreferrer'>{escape(name)}</a></li>"
            for where, name, url in APPS
        )
        web_client = ""
        if self.server.config.http.web_client:
            web_client = (
                "<p>Or chat in this browser: create your account below, then open "
                "<a href='/'>the web client</a>.</p>"
            )
        uri = escape(links.xmpp_uri(invite))
        expires = ""
        if invite.expires is not None:
            expires = f" It is valid until {escape(invite.expires.strftime('%Y-%m-%d %H:%M UTC'))}."
        error_html = f"<p class='error' role='alert'>{escape(error)}</p>" if error else ""
        action = escape(f"/invite/{invite.token}")
        body = f"""<p>{who}</p>
<h2>1. Install an app</h2>
<ul>{apps}</ul>
{web_client}
<h2>2. Open the invitation in the app</h2>
<p><a class='button' href='{uri}'>Open in your app</a></p>
<p class='muted'>The app then lets you choose a name and password.{expires}</p>
<h2>Or create your account here</h2>
{error_html}
<form method='post' action='{action}'>
<input type='hidden' name='csrf' value='{escape(self._csrf(invite.token))}'>
<label for='username'>Username (your address will be <em>name</em>@{domain})</label>
<input type='text' id='username' name='username' value='{escape(username)}' required
 autocomplete='username' autocapitalize='none' spellcheck='false' maxlength='1023'>
<label for='password'>Password</label>
<input type='password' id='password' name='password' required autocomplete='new-password'
 maxlength='1024'>
<label for='password2'>Password again</label>
<input type='password' id='password2' name='password2' required
 autocomplete='new-password' maxlength='1024'>
<p><button class='button' type='submit'>Create my account</button></p>
</form>"""
        return self._page("You are invited", body, status)

    def _done(self, request: web.Request, invite: Invite, jid: str) -> web.Response:
        contact = ""
        if invite.creator:
            contact = (
                f"<p><strong>{escape(invite.creator)}@{escape(invite.host)}</strong> is "
                "already in your contacts.</p>"
            )
        web_client = ""
        if self.server.config.http.web_client:
            web_client = "<p><a class='button' href='/'>Open the web client</a></p>"
        body = f"""<p>Your address is <strong>{escape(jid)}</strong>. Log in with it and
your password in any of the apps the invitation named.</p>
{contact}{web_client}"""
        return self._page("Your account is ready", body)


def _account_message(exc: AccountError) -> str:
    text = exc.text
    if text.startswith("not a valid username"):
        return "That username cannot be used: choose one without spaces or symbols like @ / :"
    return f"That did not work: {text}."


def install(server: Server) -> None:
    """Serve the landing page (before the HTTP listener starts)."""
    cfg = server.config
    if cfg.invites.enabled and (cfg.http.listen or cfg.http.tls_listen):
        InvitePages(server).install()
