"""The handlers of the admin pages: login and logout, then one GET per page and one
POST per action. See the package docstring for the security model."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from descant.accounts import derive_account, password_matches
from descant.features.register import MAX_PASSWORD, AccountError, RegisterModule
from descant.http.admin import views
from descant.http.admin.auth import (
    COOKIE,
    LOGIN_COOKIE,
    AdminSession,
    SessionTable,
    clear_cookie,
    set_cookie,
    token_ok,
)
from descant.jid import JID, InvalidJID, parse
from descant.storage.api import Account

if TYPE_CHECKING:
    from descant.http.server import HTTPService

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
CSS = (HERE / "static" / "admin.css").read_bytes()
CSP = (
    "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
PAGE_SIZE = 100  # accounts per page
MAX_REASON = 1000

Page = Callable[[web.Request, AdminSession], Awaitable[web.StreamResponse]]
Action = Callable[[web.Request, AdminSession, dict[str, str]], Awaitable[str]]


class Refused(Exception):
    """A request answered with an error page (status, message)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class AdminPages:
    def __init__(self, service: HTTPService) -> None:
        self.http = service
        self.server = server = service.server
        self.table = SessionTable(server.config.http.admin_session_timeout)
        self.admins = frozenset(parse(a).bare for a in server.config.server.admins)
        self.started = time.time()
        self._decoy: Account | None = None
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["duration"] = views.duration
        self.env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
        self.env.filters["q"] = lambda s: quote(str(s), safe="@")

    def install(self) -> None:
        add = self.http.add_route
        add("GET", "/admin/admin.css", self.css)
        add("GET", "/admin/login", self.login_page)
        add("POST", "/admin/login", self.login)
        add("POST", "/admin/logout", self.action(self.logout))
        add("GET", "/admin", self.page(self.overview))
        add("GET", "/admin/", self.page(self.overview))
        add("GET", "/admin/sessions", self.page(self.sessions))
        add("POST", "/admin/sessions/kick", self.action(self.kick))
        add("GET", "/admin/accounts", self.page(self.accounts))
        add("POST", "/admin/accounts/create", self.action(self.create_account))
        add("GET", "/admin/accounts/delete", self.page(self.confirm_delete))
        add("POST", "/admin/accounts/delete", self.action(self.delete_account))
        add("GET", "/admin/accounts/password", self.page(self.password_page))
        add("POST", "/admin/accounts/password", self.action(self.reset_password))
        add("GET", "/admin/rooms", self.page(self.rooms))
        add("POST", "/admin/rooms/destroy", self.action(self.destroy_room))
        add("GET", "/admin/federation", self.page(self.federation))

    # -- rendering --------------------------------------------------------------------------

    def render(
        self,
        template: str,
        session: AdminSession | None,
        status: int = 200,
        **ctx: Any,
    ) -> web.Response:
        html = self.env.get_template(template).render(
            me=session, flash=session.take_flash() if session else [], **ctx
        )
        return web.Response(text=html, status=status, content_type="text/html", headers=HEADERS)

    def refused(self, err: Refused, session: AdminSession | None = None) -> web.Response:
        return self.render("message.html", session, err.status, message=err.text)

    async def css(self, request: web.Request) -> web.Response:
        headers = {"Cache-Control": "max-age=3600", "X-Content-Type-Options": "nosniff"}
        return web.Response(body=CSS, content_type="text/css", charset="utf-8", headers=headers)

    # -- who is asking ----------------------------------------------------------------------

    def _secure(self, request: web.Request) -> bool:
        return self.http.client(request).secure

    def _same_origin(self, request: web.Request) -> bool:
        """A browser's POST names the page it came from; it must be one of ours. Clients
        that send no Origin rely on the CSRF token alone."""
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        ours = {f"{self.http.client(request).scheme}://{request.host}".lower()}
        external = self.server.config.http.external_url
        if external:
            parts = urlsplit(external)
            ours.add(f"{parts.scheme}://{parts.netloc}".lower())
        return origin.lower() in ours

    def _session(self, request: web.Request) -> AdminSession | None:
        if not self._secure(request):
            return None  # not even a cookie that leaked is accepted over plain text
        return self.table.get(request.cookies.get(COOKIE))

    def page(self, handler: Page) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def get(request: web.Request) -> web.StreamResponse:
            session = self._session(request)
            if session is None:
                raise web.HTTPSeeOther("/admin/login", headers=HEADERS)
            try:
                return await handler(request, session)
            except Refused as err:
                return self.refused(err, session)

        return get

    def action(self, handler: Action) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A POST: same origin, a live session, its CSRF token; then the handler, whose
        answer is where to go next (303, the outcome shown there)."""

        async def post(request: web.Request) -> web.StreamResponse:
            if not self._same_origin(request):
                return self.refused(Refused(403, "This form was sent from another site."))
            session = self._session(request)
            if session is None:
                return self.refused(Refused(403, "Your login has expired; log in again."))
            form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
            if not token_ok(session, form.get("csrf", "")):
                log.warning("admin page: a form without its CSRF token, from %s", session.jid)
                return self.refused(Refused(403, "This form is stale; reload the page."), session)
            try:
                location = await handler(request, session, form)
            except Refused as err:
                return self.refused(err, session)
            resp = web.HTTPSeeOther(location, headers=HEADERS)
            if location == "/admin/login":
                clear_cookie(resp, COOKIE)
            raise resp

        return post

    # -- login and logout -------------------------------------------------------------------

    def _login_form(
        self, request: web.Request, status: int = 200, error: str = "", jid: str = ""
    ) -> web.Response:
        nonce = secrets.token_urlsafe(24)
        secure = self._secure(request)
        resp = self.render(
            "login.html",
            None,
            status,
            error=error,
            jid=jid,
            csrf=self.table.login_token(nonce),
            plain=not secure,
        )
        https = self.http.client(request).scheme == "https"
        set_cookie(resp, LOGIN_COOKIE, nonce, https)
        return resp

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        if self._session(request) is not None:
            raise web.HTTPSeeOther("/admin", headers=HEADERS)
        return self._login_form(request)

    async def login(self, request: web.Request) -> web.StreamResponse:
        client = self.http.client(request)
        if not self._same_origin(request):
            return self.refused(Refused(403, "This form was sent from another site."))
        if not client.secure:
            return self._login_form(
                request, 403, "Log in over HTTPS: this connection is not encrypted."
            )
        form = await request.post()
        jid_text, password, token = (str(form.get(k, "")) for k in ("jid", "password", "csrf"))
        if not self.table.login_token_ok(request.cookies.get(LOGIN_COOKIE), token):
            return self._login_form(request, 403, "The form was stale; try again.", jid_text)
        if self.server.auth_throttled(client.ip):
            msg = "Too many failed logins from your address; wait a minute."
            return self._login_form(request, 429, msg, jid_text)
        account = await self._admin_account(jid_text)
        decoy = self._decoy or await derive_account("decoy.invalid", "nobody", secrets.token_hex())
        self._decoy = decoy
        ok = None
        if decoy is not None and len(password) <= MAX_PASSWORD:
            ok = await password_matches(account or decoy, password)
        elif decoy is not None:
            ok = False
        if ok is None:
            return self._login_form(request, 503, "The server is busy; try again.", jid_text)
        if not ok or account is None:
            self.server.auth_failed(client.ip)
            log.info("admin page: failed login from %s", client.ip)
            msg = "Wrong address or password, or not an administrator."
            return self._login_form(request, 403, msg, jid_text)
        jid = JID(account.username, account.host, "")
        session = self.table.create(jid, replaces=request.cookies.get(COOKIE))
        session.note("info", f"Logged in as {jid}.")
        log.info("admin page: %s logged in from %s", jid, client.ip)
        resp = web.HTTPSeeOther("/admin", headers=HEADERS)
        set_cookie(resp, COOKIE, session.id, client.scheme == "https")
        clear_cookie(resp, LOGIN_COOKIE)
        raise resp

    async def _admin_account(self, text: str) -> Account | None:
        """The stored account for a JID in ``server.admins``; None for anything else."""
        try:
            jid = parse(text.strip())
        except InvalidJID:
            return None
        if not jid.local or jid.resource or jid.bare not in self.admins:
            return None
        return await self.server.storage.accounts.get(jid.domain, jid.local)

    async def logout(
        self, request: web.Request, session: AdminSession, form: dict[str, str]
    ) -> str:
        self.table.end(session.id)
        log.info("admin page: %s logged out", session.jid)
        return "/admin/login"

    # -- pages ----------------------------------------------------------------------------

    async def overview(self, request: web.Request, session: AdminSession) -> web.StreamResponse:
        data = await views.overview(self.server, self.started)
        return self.render("overview.html", session, nav="overview", o=data)

    async def sessions(self, request: web.Request, session: AdminSession) -> web.StreamResponse:
        rows = views.sessions(self.server)
        return self.render("sessions.html", session, nav="sessions", rows=rows, now=time.time())

    async def kick(self, request: web.Request, session: AdminSession, form: dict[str, str]) -> str:
        jid = _jid(form.get("jid", ""))
        if not jid.resource:
            raise Refused(400, "Name a session (user@domain/resource).")
        if await views.kick(self.server, str(jid.bare), jid.resource):
            log.info("admin page: %s ended the session %s", session.jid, jid)
            session.note("info", f"Ended the session {jid}.")
        else:
            session.note("error", f"No session {jid}.")
        return "/admin/sessions"

    def _domain(self, domain: str) -> str:
        domains = self.server.config.server.domains
        if not domain:
            return domains[0]
        if domain not in domains:
            raise Refused(404, f"{domain} is not served here.")
        return domain

    async def accounts(self, request: web.Request, session: AdminSession) -> web.StreamResponse:
        domain = self._domain(request.query.get("domain", ""))
        prefix = request.query.get("q", "").strip().lower()
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            page = 1
        names = sorted(u for _, u in await self.server.storage.accounts.list(domain))
        if prefix:
            names = [u for u in names if u.startswith(prefix)]
        pages = max(1, -(-len(names) // PAGE_SIZE))
        page = min(page, pages)
        online = set(self.server.hosts[domain].sessions.users())
        shown = names[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        return self.render(
            "accounts.html",
            session,
            nav="accounts",
            domain=domain,
            domains=self.server.config.server.domains,
            names=shown,
            total=len(names),
            online=online,
            page=page,
            pages=pages,
            prefix=prefix,
            admins={str(a) for a in self.admins},
        )

    def _register(self, domain: str) -> RegisterModule:
        mod = views.register(self.server, self._domain(domain))
        if mod is None:
            raise Refused(503, "Accounts cannot be changed on this domain.")
        return mod

    def _account_jid(self, text: str) -> JID:
        jid = _jid(text)
        if not jid.local or jid.resource:
            raise Refused(400, f"{text} is not an account (user@domain).")
        self._domain(jid.domain)
        return jid

    async def create_account(
        self, request: web.Request, session: AdminSession, form: dict[str, str]
    ) -> str:
        domain = form.get("domain", "")
        back = f"/admin/accounts?domain={quote(domain)}"
        password = form.get("password", "")
        if password != form.get("password2", ""):
            session.note("error", "The passwords differ.")
            return back
        try:
            user = await self._register(domain).create_account(form.get("user", ""), password)
        except AccountError as exc:
            session.note("error", f"Not created: {exc.text}.")
            return back
        log.info("admin page: %s created %s@%s", session.jid, user, domain)
        session.note("info", f"Created {user}@{domain}.")
        return back

    async def confirm_delete(self, request: web.Request, session: AdminSession) -> web.Response:
        jid = self._account_jid(request.query.get("jid", ""))
        return self.render("delete.html", session, nav="accounts", jid=str(jid))

    async def delete_account(
        self, request: web.Request, session: AdminSession, form: dict[str, str]
    ) -> str:
        jid = self._account_jid(form.get("jid", ""))
        removed = await self._register(jid.domain).remove_account(
            jid.local, "the account was deleted"
        )
        if removed:
            log.info("admin page: %s deleted %s", session.jid, jid)
            session.note("info", f"Deleted {jid} and all its data.")
        else:
            session.note("error", f"No account {jid}.")
        return f"/admin/accounts?domain={quote(jid.domain)}"

    async def password_page(self, request: web.Request, session: AdminSession) -> web.Response:
        jid = self._account_jid(request.query.get("jid", ""))
        return self.render("password.html", session, nav="accounts", jid=str(jid))

    async def reset_password(
        self, request: web.Request, session: AdminSession, form: dict[str, str]
    ) -> str:
        jid = self._account_jid(form.get("jid", ""))
        password = form.get("password", "")
        if password != form.get("password2", ""):
            session.note("error", "The passwords differ.")
            return f"/admin/accounts/password?jid={quote(str(jid), safe='@')}"
        try:
            await self._register(jid.domain).change_password(jid.local, password)
        except AccountError as exc:
            session.note("error", f"Not changed: {exc.text}.")
            return f"/admin/accounts/password?jid={quote(str(jid), safe='@')}"
        log.info("admin page: %s changed the password of %s", session.jid, jid)
        session.note("info", f"New password set for {jid}; its sessions stay.")
        return f"/admin/accounts?domain={quote(jid.domain)}"

    async def rooms(self, request: web.Request, session: AdminSession) -> web.Response:
        services = [(s.host.domain, views.rooms(s)) for s in views.muc_services(self.server)]
        return self.render("rooms.html", session, nav="rooms", services=services)

    async def destroy_room(
        self, request: web.Request, session: AdminSession, form: dict[str, str]
    ) -> str:
        jid = form.get("jid", "")
        reason = form.get("reason", "").strip()[:MAX_REASON]
        found = views.find_room(self.server, jid)
        if found is None:
            session.note("error", f"No room {jid}.")
            return "/admin/rooms"
        service, room = found
        await service.destroy(room, reason or "destroyed by an administrator")
        log.info("admin page: %s destroyed the room %s", session.jid, room.jid)
        session.note("info", f"Destroyed {room.jid}.")
        return "/admin/rooms"

    async def federation(self, request: web.Request, session: AdminSession) -> web.Response:
        rows = views.links(self.server)
        return self.render("federation.html", session, nav="federation", rows=rows)


def _jid(text: str) -> JID:
    try:
        return parse(text.strip())
    except InvalidJID:
        raise Refused(400, f"{text!r} is not a JID.") from None
