"""The admin pages at /admin (src/descant/http/admin; docs/admin.md), against a live server.

With aiohttp's client and its cookie jar, as a browser without scripts would use them:
only ``server.admins`` log in, and a non-admin, a wrong password and an unknown account
get the same page; cookie flags; every page shows the server's real state (a slixmpp
session, an account made on the page that then logs in over XMPP, a room a slixmpp user
made), and the actions take effect (kick, create, reset password, delete, destroy).
Every POST needs its session's CSRF token and, when there is an Origin, our own; logout
and expiry end the session; logins over a plain-text hop are refused; failures count
against the address. One headless-Chromium run logs in and takes the screenshot in
docs/images/admin.png.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from descant.accounts import make_account
from descant.storage import open_storage
from tests.live import (
    Client,
    LiveServer,
    connect_slixmpp,
    disconnect,
    free_port,
    wait_for_http,
)

ADMIN = "boss@localhost"
ADMIN_PW = "boss-secret-1"
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
CHROMIUM = os.environ.get("DESCANT_TEST_CHROMIUM", "/usr/bin/chromium")
ROOT = Path(__file__).resolve().parents[2]


async def create_account(srv: LiveServer, jid: str, password: str) -> None:
    user, _, domain = jid.partition("@")
    storage = open_storage(srv.storage_url, str(srv.data_dir))
    await storage.open()
    try:
        await storage.accounts.create(make_account(domain, user, password))
    finally:
        await storage.close()


@pytest.fixture(scope="module")
def peer_port() -> int:
    """The s2s port of peer.test, a second server the federation test starts."""
    return free_port()


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory: pytest.TempPathFactory, peer_port: int) -> Iterator[LiveServer]:
    srv = LiveServer(
        tmp_path_factory.mktemp("admin"),
        server={"admins": [ADMIN]},
        s2s={"routes": {"peer.test": f"127.0.0.1:{peer_port}"}},
    )
    srv.start()
    asyncio.run(create_account(srv, ADMIN, ADMIN_PW))
    yield srv
    assert srv.stop() == 0, srv.log()[-4000:]


class Web:
    """An aiohttp client session with cookies, speaking to one listener."""

    def __init__(self, http: aiohttp.ClientSession, base: str) -> None:
        self.http = http
        self.base = base
        self.last = ""

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        async with self.http.get(self.base + path, ssl=False, **kw) as resp:
            self.last = await resp.text()
            return resp.status, self.last

    async def post(self, path: str, data: dict[str, str], **kw: Any) -> aiohttp.ClientResponse:
        async with self.http.post(
            self.base + path, data=data, ssl=False, allow_redirects=False, **kw
        ) as resp:
            self.last = await resp.text()
            return resp

    def csrf(self) -> str:
        m = CSRF.search(self.last)
        assert m, self.last
        return m.group(1)

    async def login(self, jid: str, password: str, **kw: Any) -> aiohttp.ClientResponse:
        status, _ = await self.get("/admin/login", **kw)
        assert status == 200
        data = {"jid": jid, "password": password, "csrf": self.csrf()}
        return await self.post("/admin/login", data, **kw)

    async def act(self, path: str, data: dict[str, str], page: str) -> str:
        """Open ``page``, post its form to ``path`` with the page's token, follow on."""
        status, _ = await self.get(page)
        assert status == 200, self.last
        resp = await self.post(path, {**data, "csrf": self.csrf()})
        assert resp.status == 303, self.last
        status, html = await self.get(resp.headers["Location"])
        assert status == 200
        return html

    def cookie(self) -> str | None:
        for c in self.http.cookie_jar:
            if c.key == "descant_admin":
                return c.value
        return None


@pytest.fixture
async def web(admin_server: LiveServer) -> AsyncIterator[Web]:
    await wait_for_http(admin_server)
    jar = aiohttp.CookieJar(unsafe=True)  # cookies from 127.0.0.1
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        yield Web(http, f"http://127.0.0.1:{admin_server.http_port}")


@pytest.fixture
async def admin(web: Web) -> Web:
    resp = await web.login(ADMIN, ADMIN_PW)
    assert resp.status == 303 and resp.headers["Location"] == "/admin"
    return web


def error_of(html: str) -> str:
    m = re.search(r'<p class="flash error" role="alert">(.*?)</p>', html)
    assert m, html
    return m.group(1)


# -- logging in --------------------------------------------------------------------------------


async def test_only_admins_log_in_and_failures_look_alike(
    admin_server: LiveServer, web: Web
) -> None:
    user, user_pw = await admin_server.make_user("plain")
    answers = []
    for jid, pw in [
        (user, user_pw),  # a real account and its password, but not an admin
        (ADMIN, "wrong"),  # the admin with a wrong password
        ("nobody@localhost", "x"),  # no such account
        ("not a jid@", "x"),
    ]:
        resp = await web.login(jid, pw)
        assert resp.status == 403
        assert "Set-Cookie" not in resp.headers or "descant_admin=" not in "".join(
            resp.headers.getall("Set-Cookie")
        )
        answers.append(error_of(web.last))
        assert web.cookie() is None
        status, _ = await web.get("/admin/sessions", allow_redirects=False)
        assert status == 303  # to the login page
    assert len(set(answers)) == 1, answers
    assert "not an administrator" in answers[0]


async def test_admin_logs_in_sees_the_overview_and_every_page(admin: Web) -> None:
    status, html = await admin.get("/admin")
    assert status == 200
    assert "Descant 0.1.0" in html
    assert "localhost, example.org" in html
    assert re.search(r"\d+ received · \d+ sent", html)  # stanza totals from the metrics
    assert f"Logged in as {ADMIN}." in html  # once
    for path, title in [
        ("/admin/sessions", "Sessions"),
        ("/admin/accounts", "Accounts on localhost"),
        ("/admin/accounts?domain=example.org", "Accounts on example.org"),
        ("/admin/rooms", "conference.localhost"),
        ("/admin/federation", "Federation"),
    ]:
        status, html = await admin.get(path)
        assert status == 200, path
        assert title in html, path
    status, html = await admin.get("/admin")
    assert "Logged in as" not in html


async def test_security_headers_and_stylesheet(admin: Web) -> None:
    async with admin.http.get(admin.base + "/admin/sessions") as resp:
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp
        assert "style-src 'self'" in csp
        assert "form-action 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert resp.headers["Cache-Control"] == "no-store"
        assert resp.headers["X-Frame-Options"] == "DENY"
        html = await resp.text()
    assert "<script" not in html
    async with admin.http.get(admin.base + "/admin/admin.css") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/css"


async def test_cookie_flags_and_rotation(web: Web, admin_server: LiveServer) -> None:
    resp = await web.login(ADMIN, ADMIN_PW)
    cookie = next(c for c in resp.headers.getall("Set-Cookie") if c.startswith("descant_admin="))
    flags = {f.strip().split("=")[0].lower(): f for f in cookie.split(";")}
    assert "httponly" in flags
    assert flags["samesite"].strip() == "SameSite=Strict"
    assert flags["path"].strip() == "Path=/admin"
    assert "secure" not in flags  # plain HTTP on loopback: a Secure cookie would not come back
    first = web.cookie()
    assert first
    # A login from a browser that holds a session gets a new id and ends the old one
    # (so that an id planted before login is never the one logged in).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as raw:
        async with raw.get(web.base + "/admin/login") as resp:
            nonce = resp.cookies["descant_admin_login"].value
            token = CSRF.findall(await resp.text())[0]
        cookies = {"descant_admin": first, "descant_admin_login": nonce}
        data = {"jid": ADMIN, "password": ADMIN_PW, "csrf": token}
        async with raw.post(
            web.base + "/admin/login", data=data, cookies=cookies, allow_redirects=False
        ) as resp:
            assert resp.status == 303
            second = resp.cookies["descant_admin"].value
        assert second != first
        for sid, expected in [(first, 303), (second, 200)]:
            async with raw.get(
                web.base + "/admin", cookies={"descant_admin": sid}, allow_redirects=False
            ) as resp:
                assert resp.status == expected

    # Over HTTPS (the server's own TLS listener) the cookie is Secure.
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as http:
        tls = Web(http, f"https://127.0.0.1:{admin_server.https_port}")
        resp = await tls.login(ADMIN, ADMIN_PW)
        assert resp.status == 303
        cookie = next(
            c for c in resp.headers.getall("Set-Cookie") if c.startswith("descant_admin=")
        )
        assert "Secure" in cookie
        status, html = await tls.get("/admin/sessions")
        assert status == 200 and "Sessions" in html


async def test_login_refused_over_a_plain_text_hop(web: Web) -> None:
    # Loopback is a trusted proxy: its X-Forwarded-Proto says the browser's hop is plain.
    plain = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "http"}
    status, html = await web.get("/admin/login", headers=plain)
    assert status == 200 and "not encrypted" in html
    resp = await web.login(ADMIN, ADMIN_PW, headers=plain)
    assert resp.status == 403
    assert "Log in over HTTPS" in web.last
    assert web.cookie() is None
    # The same proxy saying https: fine (the cookies are Secure then, so they are
    # handed back by hand: this client sees the plain hop behind the proxy).
    secure = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
    async with web.http.get(web.base + "/admin/login", headers=secure) as resp:
        nonce = resp.cookies["descant_admin_login"]
        assert nonce["secure"]
        token = CSRF.findall(await resp.text())[0]
    data = {"jid": ADMIN, "password": ADMIN_PW, "csrf": token}
    cookies = {"descant_admin_login": nonce.value}
    async with web.http.post(
        web.base + "/admin/login", data=data, headers=secure, cookies=cookies, allow_redirects=False
    ) as resp:
        assert resp.status == 303
        assert resp.cookies["descant_admin"]["secure"]


async def test_logout_ends_the_session(admin: Web) -> None:
    sid = admin.cookie()
    await admin.get("/admin")
    resp = await admin.post("/admin/logout", {"csrf": admin.csrf()})
    assert resp.status == 303 and resp.headers["Location"] == "/admin/login"
    status, _ = await admin.get(
        "/admin", cookies={"descant_admin": sid or ""}, allow_redirects=False
    )
    assert status == 303


# -- forms and their tokens ----------------------------------------------------------------------


async def test_posts_need_the_sessions_token_and_our_origin(
    admin_server: LiveServer, admin: Web
) -> None:
    jid, pw = await admin_server.make_user("victim")
    victim = await connect_slixmpp(admin_server, jid, pw)
    try:
        target = {"jid": str(victim.boundjid)}
        await admin.get("/admin/sessions")
        token = admin.csrf()
        assert (await admin.post("/admin/sessions/kick", target)).status == 403
        assert (
            await admin.post("/admin/sessions/kick", {**target, "csrf": "x" + token})
        ).status == 403
        evil = {"Origin": "https://evil.example"}
        resp = await admin.post("/admin/sessions/kick", {**target, "csrf": token}, headers=evil)
        assert resp.status == 403
        assert "another site" in admin.last
        await asyncio.sleep(0.2)
        assert victim.is_connected()
        _, html = await admin.get("/admin/sessions")
        assert str(victim.boundjid) in html
        # With the token and our own origin, it works.
        ours = {"Origin": admin.base}
        resp = await admin.post("/admin/sessions/kick", {**target, "csrf": token}, headers=ours)
        assert resp.status == 303
    finally:
        await disconnect(victim)


async def test_the_login_form_needs_its_token(web: Web) -> None:
    await web.get("/admin/login")
    resp = await web.post("/admin/login", {"jid": ADMIN, "password": ADMIN_PW})
    assert resp.status == 403
    resp = await web.post("/admin/login", {"jid": ADMIN, "password": ADMIN_PW, "csrf": "f" * 64})
    assert resp.status == 403
    assert web.cookie() is None


# -- the pages at work ---------------------------------------------------------------------------


async def test_sessions_page_lists_and_kicks(admin_server: LiveServer, admin: Web) -> None:
    jid, pw = await admin_server.make_user("online")
    client = await connect_slixmpp(admin_server, jid, pw)
    try:
        full = str(client.boundjid)
        _, html = await admin.get("/admin/sessions")
        assert jid in html and client.boundjid.resource in html
        row = html[html.index(full) - 2000 : html.index(full)]
        assert "tcp" in row and "127.0.0.1" in row
        ended = asyncio.ensure_future(client.disconnected)
        html = await admin.act("/admin/sessions/kick", {"jid": full}, "/admin/sessions")
        assert f"Ended the session {full}." in html
        await asyncio.wait_for(ended, 5)
        assert any("policy-violation" in str(e) for e in client.stream_errors), client.stream_errors
        _, html = await admin.get("/admin/sessions")
        assert full not in html
    finally:
        await disconnect(client)


async def test_accounts_create_reset_password_delete(admin_server: LiveServer, admin: Web) -> None:
    name = f"made{os.getpid()}"
    jid = f"{name}@localhost"
    html = await admin.act(
        "/admin/accounts/create",
        {"domain": "localhost", "user": name, "password": "first-pw", "password2": "first-pw"},
        "/admin/accounts",
    )
    assert f"Created {jid}." in html
    assert jid in html
    client = await connect_slixmpp(admin_server, jid, "first-pw")
    await disconnect(client)

    # Taken, and passwords that differ: said so, nothing changes.
    html = await admin.act(
        "/admin/accounts/create",
        {"domain": "localhost", "user": name, "password": "a", "password2": "a"},
        "/admin/accounts",
    )
    assert "Not created: the username is taken." in html

    html = await admin.act(
        "/admin/accounts/password",
        {"jid": jid, "password": "second-pw", "password2": "second-pw"},
        f"/admin/accounts/password?jid={jid}",
    )
    assert f"New password set for {jid}" in html
    with pytest.raises(AssertionError, match="could not log in"):
        await connect_slixmpp(admin_server, jid, "first-pw", timeout=5)
    client = await connect_slixmpp(admin_server, jid, "second-pw")

    status, html = await admin.get(f"/admin/accounts/delete?jid={jid}")
    assert status == 200 and f"Delete {jid}?" in html
    ended = asyncio.ensure_future(client.disconnected)
    html = await admin.act(
        "/admin/accounts/delete", {"jid": jid}, f"/admin/accounts/delete?jid={jid}"
    )
    assert f"Deleted {jid}" in html
    await asyncio.wait_for(ended, 5)  # its session ended (not-authorized)
    _, html = await admin.get(f"/admin/accounts?q={name}")
    assert jid not in html
    with pytest.raises(AssertionError, match="could not log in"):
        await connect_slixmpp(admin_server, jid, "second-pw", timeout=5)


async def test_accounts_page_pages_and_filters(admin_server: LiveServer, admin: Web) -> None:
    storage = open_storage(admin_server.storage_url, str(admin_server.data_dir))
    await storage.open()
    try:
        for i in range(105):
            await storage.accounts.create(make_account("example.org", f"many{i:03d}", "pw"))
    finally:
        await storage.close()
    _, html = await admin.get("/admin/accounts?domain=example.org&q=many")
    assert "(105)" in html and "page 1 of 2" in html
    assert "many000@example.org" in html and "many100@example.org" not in html
    _, html = await admin.get("/admin/accounts?domain=example.org&q=many&page=2")
    assert "many104@example.org" in html and "many000@example.org" not in html
    status, _ = await admin.get("/admin/accounts?domain=elsewhere.example")
    assert status == 404


async def test_rooms_listed_and_destroyed(admin_server: LiveServer, admin: Web) -> None:
    jid, pw = await admin_server.make_user("roomy")
    client: Client = await connect_slixmpp(
        admin_server, jid, pw, setup=lambda c: c.register_plugin("xep_0045")
    )
    room = f"lounge{os.getpid()}@conference.localhost"
    try:
        await client.plugin["xep_0045"].join_muc_wait(slixmpp.JID(room), "roomy", timeout=5)
        _, html = await admin.get("/admin/rooms")
        assert room in html
        row = html[html.index(room) :]
        assert re.search(r"<td>1</td>", row[:400]), row[:400]  # one occupant
        # (slixmpp's own presence events skip this one: read it off the stream)
        gone = asyncio.get_running_loop().create_future()

        def unavailable(p: slixmpp.Presence) -> None:
            if p["type"] == "unavailable" and p["from"].bare == room and not gone.done():
                gone.set_result(str(p))

        client.register_handler(
            Callback("destroyed", MatchXPath("{jabber:client}presence"), unavailable)
        )
        html = await admin.act(
            "/admin/rooms/destroy", {"jid": room, "reason": "closing time"}, "/admin/rooms"
        )
        assert f"Destroyed {room}." in html
        assert f"<td>{room}</td>" not in html
        told = await asyncio.wait_for(gone, 5)
        assert "<destroy><reason>closing time</reason></destroy>" in told
    finally:
        await disconnect(client)


async def test_federation_page_shows_links_both_ways(
    admin_server: LiveServer, admin: Web, make_server: Any, peer_port: int
) -> None:
    _, html = await admin.get("/admin/federation")
    assert "No server-to-server links." in html
    peer: LiveServer = make_server(
        server={"domains": ["peer.test"]},
        s2s={
            "listen": [f"127.0.0.1:{peer_port}"],
            "routes": {"localhost": f"127.0.0.1:{admin_server.s2s_port}"},
        },
    )
    jid, pw = await admin_server.make_user("fed")
    pjid, ppw = await peer.make_user("remote", "peer.test")
    here = await connect_slixmpp(admin_server, jid, pw)
    there = await connect_slixmpp(peer, pjid, ppw)
    try:
        here.send_message(mto=pjid, mbody="hello peer", mtype="chat")
        msg = await there.next_message(timeout=15)
        assert msg["body"] == "hello peer"
        there.send_message(mto=jid, mbody="hello back", mtype="chat")
        assert (await here.next_message(timeout=15))["body"] == "hello back"
        _, html = await admin.get("/admin/federation")
        rows = re.findall(r"<tr>(.*?)</tr>", html, re.S)
        cells = [re.findall(r"<td>(.*?)</td>", r, re.S) for r in rows]
        out = [c for c in cells if c and c[0] == "outgoing" and c[2] == "peer.test"]
        inc = [c for c in cells if c and c[0] == "incoming" and c[2] == "peer.test"]
        assert out and out[0][1] == "localhost" and out[0][3] == "ready", cells
        assert out[0][4] == f"127.0.0.1:{peer_port}" and out[0][5] == "yes"
        assert inc and inc[0][3] == "authenticated" and inc[0][4].startswith("127.0.0.1:"), cells
        _, html = await admin.get("/admin")
        assert "1 outgoing" in html
    finally:
        await disconnect(here, there)


# -- configuration -------------------------------------------------------------------------------


async def test_expiry_and_the_login_throttle(make_server: Any) -> None:
    srv: LiveServer = make_server(
        server={"admins": [ADMIN]},
        http={"admin_session_timeout": 1},
        limits={"max_auth_failures": 3},
    )
    await wait_for_http(srv)
    await create_account(srv, ADMIN, ADMIN_PW)
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        web = Web(http, f"http://127.0.0.1:{srv.http_port}")
        assert (await web.login(ADMIN, ADMIN_PW)).status == 303
        status, _ = await web.get("/admin", allow_redirects=False)
        assert status == 200
        await asyncio.sleep(1.3)
        status, _ = await web.get("/admin", allow_redirects=False)
        assert status == 303  # unused for longer than http.admin_session_timeout
        for _ in range(3):
            assert (await web.login(ADMIN, "wrong")).status == 403
        resp = await web.login(ADMIN, ADMIN_PW)
        assert resp.status == 429  # the address's failures (limits.max_auth_failures)
        assert "Too many failed logins" in web.last


async def test_admin_page_off(make_server: Any) -> None:
    srv: LiveServer = make_server(server={"admins": [ADMIN]}, http={"admin_page": False})
    await wait_for_http(srv)
    async with aiohttp.ClientSession() as http:
        for path in ("/admin", "/admin/login", "/admin/admin.css"):
            async with http.get(f"http://127.0.0.1:{srv.http_port}{path}") as resp:
                assert resp.status == 404, path


# -- in the browser ------------------------------------------------------------------------------


def browser_missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (`make browser` installs the Debian package)"
    return None


@pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")
async def test_admin_logs_in_with_chromium(admin_server: LiveServer) -> None:
    from playwright.async_api import async_playwright

    jid, pw = await admin_server.make_user("alice")
    alice = await connect_slixmpp(admin_server, jid, pw)
    base = f"http://127.0.0.1:{admin_server.http_port}"
    violations: list[str] = []
    try:
        async with async_playwright() as pw_:
            browser = await pw_.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                context = await browser.new_context(
                    viewport={"width": 960, "height": 540}, locale="en-US"
                )
                page = await context.new_page()
                page.on(
                    "console",
                    lambda m: (
                        violations.append(m.text) if "Content Security Policy" in m.text else None
                    ),
                )
                await page.goto(base + "/admin")
                await page.fill("input[name=jid]", ADMIN)
                await page.fill("input[name=password]", ADMIN_PW)
                await page.click("button[type=submit]")
                await page.wait_for_selector("text=Logged in as")
                await page.click("nav >> text=Sessions")
                await page.wait_for_selector(f"text={jid}")
                shots = ROOT / "build" / "test-artifacts" / "admin"
                shots.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(shots / "sessions.png"))
                for name in ("Accounts", "Rooms", "Federation"):
                    await page.click(f"nav >> text={name}")
                    await page.wait_for_selector("h1")
                    await page.screenshot(path=str(shots / f"{name.lower()}.png"))
                await page.click("nav >> text=Accounts")
                await page.click(f"tr:has-text('{jid}') >> text=Delete…")
                await page.wait_for_selector(f"text=Delete {jid}?")
                await page.screenshot(path=str(shots / "delete.png"))
                await page.click("text=Cancel")
                await page.click("nav >> text=Overview")
                await page.wait_for_selector(".cards")
                await page.screenshot(path=str(shots / "overview.png"))
                await page.click("text=Log out")
                await page.wait_for_selector("input[name=password]")
            finally:
                await browser.close()
    finally:
        await disconnect(alice)
    assert not violations, violations
