"""The bundled web client: Converse.js at ``/`` (src/descant/http/webclient).

Over plain HTTP: the page is made for the request (the endpoints as the client
reached the server, behind a trusted proxy too), carries a Content-Security-Policy
and is never cached; the vendored assets are served with their content types,
``nosniff``, a year's caching, gzip where a compressed copy exists, and nothing
else; ``http.web_client = false`` turns all of it off.

In headless Chromium (the Debian package at /usr/bin/chromium, driven by
Playwright's Python package; ``make browser`` installs it, and these tests skip
with the reason without it): alice logs in through Converse's form, adds bob (a
slixmpp client) as a contact, sends him a message he receives, and sees his
reply; then, with the WebSocket endpoint unreachable, Converse falls back to BOSH.
As after ``make run`` (slot URLs on http://127.0.0.1:<port>/upload, the page opened at
http://localhost:<port>/), alice shares a PNG through Converse's file upload (XEP-0363):
bob gets its URL and downloads the same bytes, and the picture shows in alice's page.
Every page load must violate no CSP rule and fetch nothing from another origin than
the page's and the upload service's.
Screenshots of each step go to build/test-artifacts/web-client/.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.live import LiveServer, connect_slixmpp, disconnect, free_port, wait_for_http

CHROMIUM = os.environ.get("DESCANT_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts" / "web-client"
VERSION = (
    (Path(__file__).resolve().parents[2] / "src/descant/http/webclient/converse/VERSION")
    .read_text()
    .strip()
)
ASSETS = f"/webclient/converse-{VERSION}"
STEP = 20_000  # ms: the longest any one step in the browser may take


def browser_missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM} (`make browser` installs the Debian package)"
    return None


needs_browser = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")


@pytest.fixture(autouse=True)
async def http_ready(server: LiveServer) -> None:
    await wait_for_http(server)


def base(server: LiveServer) -> str:
    return f"http://127.0.0.1:{server.http_port}"


def page_settings(html: str) -> dict[str, Any]:
    m = re.search(
        r'<script type="application/json" id="descant-converse-settings">(.*?)</script>', html
    )
    assert m, html
    settings: dict[str, Any] = json.loads(m.group(1))
    return settings


# -- over plain HTTP ---------------------------------------------------------------------------


async def test_page_is_preconfigured_for_this_server(server: LiveServer) -> None:
    async with aiohttp.ClientSession() as http, http.get(base(server) + "/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        html = await resp.text()
        headers = resp.headers
    settings = page_settings(html)
    port = server.http_port
    assert settings["websocket_url"] == f"ws://127.0.0.1:{port}/xmpp-websocket"
    assert settings["bosh_service_url"] == f"http://127.0.0.1:{port}/http-bind"
    assert settings["default_domain"] == "localhost"  # the first of server.domains
    assert settings["assets_path"] == ASSETS
    assert settings["authentication"] == "login"
    assert settings["auto_login"] is False
    assert settings["discover_connection_methods"] is False
    assert settings["view_mode"] == "fullscreen"
    # Every script and style the page names is ours, on this origin.
    for src in re.findall(r'(?:src|href)="([^"]+)"', html):
        assert src.startswith("/webclient/"), src
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Frame-Options"] == "DENY"
    policy = headers["Content-Security-Policy"].split("; ")
    csp = {name: value for name, _, value in (d.partition(" ") for d in policy)}
    assert csp["default-src"] == "'self'"
    assert csp["script-src"] == "'self' 'wasm-unsafe-eval'"  # no inline scripts, no eval
    # The upload service's slot URLs are on the first HTTPS listener here (docs/upload.md).
    uploads = f"https://127.0.0.1:{server.https_port}"
    assert csp["connect-src"] == (
        f"'self' ws://127.0.0.1:{port}/xmpp-websocket http://127.0.0.1:{port}/http-bind {uploads}"
    )
    assert csp["img-src"] == f"'self' data: blob: https: {uploads}"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["object-src"] == "'none'"


async def test_page_behind_a_tls_proxy_names_secure_endpoints(server: LiveServer) -> None:
    # Loopback is a trusted proxy by default: its X-Forwarded-Proto is believed, as
    # host-meta believes it (docs/web.md, "Behind nginx").
    headers = {"Host": "chat.example.org", "X-Forwarded-Proto": "https"}
    async with aiohttp.ClientSession() as http, http.get(base(server), headers=headers) as resp:
        settings = page_settings(await resp.text())
        csp = resp.headers["Content-Security-Policy"]
    assert settings["websocket_url"] == "wss://chat.example.org/xmpp-websocket"
    assert settings["bosh_service_url"] == "https://chat.example.org/http-bind"
    assert "wss://chat.example.org/xmpp-websocket" in csp


async def test_a_host_that_would_add_csp_directives_is_refused(server: LiveServer) -> None:
    headers = {"Host": "evil.example; script-src *"}
    async with aiohttp.ClientSession() as http, http.get(base(server), headers=headers) as resp:
        assert resp.status == 400
        assert "Content-Security-Policy" not in resp.headers


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("converse.min.js", "text/javascript"),
        ("converse.min.css", "text/css"),
        ("emoji.json", "application/json"),
        ("curve25519_compiled.wasm", "application/wasm"),
        ("webfonts/muli.ttf", "font/ttf"),
        ("sounds/msg_received.ogg", "audio/ogg"),
        ("images/favicon.ico", "image/vnd.microsoft.icon"),
        ("LICENSE", "text/plain"),
    ],
)
async def test_assets_have_their_types_and_are_cached_for_a_year(
    server: LiveServer, path: str, content_type: str
) -> None:
    url = f"{base(server)}{ASSETS}/{path}"
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        assert resp.content_type == content_type
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert await resp.read()


async def test_large_assets_go_gzipped_to_clients_that_accept_it(server: LiveServer) -> None:
    url = f"{base(server)}{ASSETS}/converse.min.js"
    plain_size = (
        (
            Path(__file__).resolve().parents[2]
            / "src/descant/http/webclient/converse/converse.min.js"
        )
        .stat()
        .st_size
    )
    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with http.get(url, headers={"Accept-Encoding": "gzip"}) as resp:
            assert resp.headers["Content-Encoding"] == "gzip"
            assert resp.content_type == "text/javascript"
            assert len(await resp.read()) < plain_size / 2
        async with http.get(url, headers={"Accept-Encoding": "identity"}) as resp:
            assert "Content-Encoding" not in resp.headers
            assert len(await resp.read()) == plain_size


async def test_head_requests_are_answered(server: LiveServer) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/", f"{ASSETS}/converse.min.css"):
            async with http.head(base(server) + path) as resp:
                assert resp.status == 200, path
                assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_only_listed_assets_are_served(server: LiveServer) -> None:
    async with aiohttp.ClientSession() as http:
        for path in (
            f"{ASSETS}/VERSION",  # vendoring notes, not for browsers
            f"{ASSETS}/converse.min.js.map",
            f"{ASSETS}/../../webclient/__init__.py",
            f"{ASSETS}/%2e%2e/%2e%2e/__init__.py",
            "/webclient/converse-0.0.1/converse.min.js",
            "/webclient/descant.js",
        ):
            async with http.get(base(server) + path) as resp:
                assert resp.status == 404, path


async def test_web_client_off_serves_nothing(make_server: Any) -> None:
    srv: LiveServer = make_server(http={"web_client": False})
    await wait_for_http(srv)
    async with aiohttp.ClientSession() as http:
        for path in ("/", f"{ASSETS}/converse.min.js"):
            async with http.get(base(srv) + path) as resp:
                assert resp.status == 404, path
        # The XMPP endpoints stay.
        async with http.get(base(srv) + "/.well-known/host-meta") as resp:
            assert resp.status == 200


# -- in the browser ----------------------------------------------------------------------------


@dataclass
class Watch:
    """What a page did that it should not: CSP violations, script errors, and requests
    to any origin but the server's."""

    origin: str
    also: tuple[str, ...] = ()  # other origins the page may reach (the upload service)
    csp: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    shots: list[Path] = field(default_factory=list)

    def check(self) -> None:
        assert not self.csp, f"CSP violations: {self.csp}"
        assert not self.errors, f"script errors: {self.errors}"
        assert not self.foreign, f"requests to other origins: {self.foreign}"


REPORT_CSP = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    missing = browser_missing()
    if missing:
        pytest.skip(missing)
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def open_page(
    browser: Any, server: LiveServer, name: str, origin: str = "", also: tuple[str, ...] = ()
) -> tuple[Any, Watch]:
    context = await browser.new_context(viewport={"width": 1100, "height": 640}, locale="en-US")
    context.set_default_timeout(STEP)
    await context.add_init_script(REPORT_CSP)
    page = await context.new_page()
    watch = Watch(origin or base(server), also)
    page.on("pageerror", lambda exc: watch.errors.append(str(exc)))

    def console(msg: Any) -> None:
        if "Content Security Policy" in msg.text:
            watch.csp.append(msg.text)

    def request(req: Any) -> None:
        allowed = (watch.origin + "/", *(o + "/" for o in watch.also), "data:", "blob:")
        if not req.url.startswith(allowed):
            watch.foreign.append(req.url)

    page.on("console", console)
    page.on("request", request)
    (ARTIFACTS / name).mkdir(parents=True, exist_ok=True)
    return page, watch


async def shot(page: Any, watch: Watch, name: str) -> None:
    path = ARTIFACTS / name
    await page.screenshot(path=str(path))
    watch.shots.append(path)


async def finish(page: Any, watch: Watch) -> None:
    watch.csp += await page.evaluate("window.__cspViolations")
    await page.context.close()
    watch.check()


async def log_in(page: Any, watch: Watch, jid: str, password: str, folder: str) -> None:
    await page.goto(watch.origin + "/")
    await page.wait_for_selector("#converse-login-jid")
    await shot(page, watch, f"{folder}/01-login.png")
    # The default domain (the server's first) completes a bare user name.
    await page.fill("#converse-login-jid", jid.removesuffix("@localhost"))
    await page.fill("#converse-login-password", password)
    await page.click("#converse-login button[type=submit]")
    await page.wait_for_selector("converse-roster")
    await page.locator("converse-user-profile, .controlbox").get_by_text(jid).first.wait_for()


async def open_chat_with(page: Any, watch: Watch, jid: str, name: str, screenshot: str) -> None:
    """Add a contact through the contacts menu, as a person would, and open the chat."""
    from playwright.async_api import expect

    await page.click(".dropdown--contacts button.dropdown-toggle")
    await page.click("a.add-contact")
    modal = page.locator("converse-add-contact-modal")
    await modal.locator("input[name=jid]").fill(jid)
    await modal.locator("input[name=name]").fill(name)
    # (wait_for_function would evaluate a string in the page, which its CSP forbids)
    await expect(modal).to_have_css("opacity", "1")  # faded in
    await shot(page, watch, screenshot)
    await modal.locator("button[type=submit]").click()
    contact = page.locator("converse-roster").get_by_text(name, exact=True)
    await contact.wait_for()
    await contact.click()


@needs_browser
async def test_alice_in_the_browser_chats_with_bob(server: LiveServer, browser: Any) -> None:
    alice, alice_pw = await server.make_user("alice")
    bob_jid, bob_pw = await server.make_user("bob")
    bob = await connect_slixmpp(server, bob_jid, bob_pw)  # accepts subscription requests
    page, watch = await open_page(browser, server, "chat")
    try:
        await log_in(page, watch, alice, alice_pw, "chat")
        await shot(page, watch, "chat/02-logged-in.png")
        await open_chat_with(page, watch, bob_jid, "Bob", "chat/03-add-contact.png")

        text = "Hello Bob, this is Alice in a browser"
        textarea = page.locator("converse-chat textarea.chat-textarea")
        await textarea.fill(text)
        await textarea.press("Enter")
        while True:
            msg = await bob.next_message(timeout=STEP / 1000)
            if msg["body"]:
                break
        assert msg["body"] == text
        assert msg["from"].bare == alice
        assert msg["type"] == "chat"
        await shot(page, watch, "chat/04-sent.png")

        reply = "Hi Alice, bob here on slixmpp"
        bob.send_message(mto=msg["from"], mbody=reply, mtype="chat")
        await page.locator("converse-chat .chat-msg__text").get_by_text(reply).wait_for()
        await shot(page, watch, "chat/05-reply.png")
    finally:
        await disconnect(bob)
        await finish(page, watch)


@needs_browser
async def test_converse_falls_back_to_bosh_without_websocket(
    server: LiveServer, browser: Any
) -> None:
    alice, alice_pw = await server.make_user("alice")
    page, watch = await open_page(browser, server, "bosh")
    # The page names a WebSocket endpoint nothing answers at (as behind a proxy that
    # passes no upgrades): the page's script finds that out and Converse logs in over BOSH.
    ours = f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"
    dead = f"ws://127.0.0.1:{free_port()}/xmpp-websocket"

    async def dead_websocket(route: Any) -> None:
        resp = await route.fetch()
        headers = dict(resp.headers)
        headers["content-security-policy"] = headers["content-security-policy"].replace(ours, dead)
        body = (await resp.text()).replace(ours, dead)
        assert dead in body
        await route.fulfill(response=resp, body=body, headers=headers)

    await page.route(watch.origin + "/", dead_websocket)
    sockets: list[str] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    bosh: list[str] = []
    page.on("request", lambda r: bosh.append(r.url) if r.url.endswith("/http-bind") else None)
    try:
        await log_in(page, watch, alice, alice_pw, "bosh")
        await shot(page, watch, "bosh/02-logged-in.png")
        assert bosh, "no BOSH request"
        assert sockets == [dead]  # tried once, then never again
    finally:
        await finish(page, watch)


def png(width: int, height: int) -> bytes:
    """A small valid PNG (RGB stripes), made here so the test needs no image file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    colours = [(0xD0, 0x40, 0x30), (0x30, 0x90, 0xD0), (0xF0, 0xC0, 0x20)]
    rows = b"".join(b"\x00" + bytes(colours[y * 3 // height]) * width for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@needs_browser
async def test_alice_shares_a_picture_from_the_browser(
    make_server: Any, browser: Any, tmp_path: Path
) -> None:
    # As after `make run`: one plain HTTP listener and no upload.url_base or
    # http.external_url, so slot URLs are http://127.0.0.1:<port>/upload/…; and the page is
    # opened as http://localhost:<port>/, as docs/web.md says: another origin than the
    # upload service's, which the page's CSP and the upload's CORS must both allow.
    srv: LiveServer = make_server(http={"tls_listen": []})
    await wait_for_http(srv)
    alice, alice_pw = await srv.make_user("alice")
    bob_jid, bob_pw = await srv.make_user("bob")
    picture = png(120, 90)
    path = tmp_path / "stripes.png"
    path.write_bytes(picture)
    uploads = f"http://127.0.0.1:{srv.http_port}"
    bob = await connect_slixmpp(srv, bob_jid, bob_pw)
    page, watch = await open_page(
        browser, srv, "upload", origin=f"http://localhost:{srv.http_port}", also=(uploads,)
    )
    puts: list[str] = []
    page.on("request", lambda r: puts.append(r.url) if r.method == "PUT" else None)
    try:
        await log_in(page, watch, alice, alice_pw, "upload")
        await shot(page, watch, "upload/02-logged-in.png")
        await open_chat_with(page, watch, bob_jid, "Bob", "upload/03-add-contact.png")

        # Converse shows its paperclip once it has found the upload service (disco); the
        # button opens this hidden file input.
        toolbar = page.locator("converse-chat converse-chat-toolbar")
        await toolbar.locator("button[title='Choose a file to send']").wait_for()
        await shot(page, watch, "upload/04-chat-open.png")
        await toolbar.locator("input[type=file]").set_input_files(str(path))

        while True:
            msg = await bob.next_message(timeout=STEP / 1000)
            if msg["body"]:
                break
        url = msg["body"]
        assert msg["from"].bare == alice
        assert url.startswith(f"{uploads}/upload/"), url
        assert url.endswith("/stripes.png"), url
        assert puts and puts[0].startswith(f"{uploads}/upload/"), puts

        # bob downloads it as any client would.
        async with aiohttp.ClientSession() as http, http.get(url) as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "image/png"
            assert await resp.read() == picture

        # alice's page shows the picture it sent.
        img = page.locator(f'converse-chat img[src="{url}"]')
        await img.wait_for()
        await img.scroll_into_view_if_needed()
        from playwright.async_api import expect

        await expect(img).to_have_js_property("complete", True)
        assert await img.evaluate("el => el.naturalWidth") == 120
        await shot(page, watch, "upload/05-picture-sent.png")
    finally:
        await disconnect(bob)
        await finish(page, watch)
