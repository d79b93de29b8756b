"""The web client: Converse.js at ``/`` (``http.web_client``; docs/web.md).

``GET /`` is a small page made per request: it loads the vendored Converse.js
(``converse/``, refreshed by ``tools/vendor-converse.sh``) and ``descant.js``,
which starts it with settings the page carries as JSON — the WebSocket and BOSH
endpoints as the client reaches this server (``http.external_url``, else the
request's scheme and host, as host-meta does), the first served domain as the
default one. Nothing comes from elsewhere at run time.

When the upload service (XEP-0363, docs/upload.md) is on, the origins its slot
URLs point at are added to the page's ``connect-src`` (Converse PUTs the file
there) and ``img-src``/``media-src`` (it shows what was shared): after ``make
run`` those are ``http://127.0.0.1:5280``, another origin than a page opened as
``http://localhost:5280/``. Only those origins, computed from the configuration.

Assets are served from ``/webclient/``, under paths that change whenever their
content does (``converse-<version>/``, ``descant-<hash>.js``), so browsers may
keep them for a year. The page itself is never cached and carries a
Content-Security-Policy that allows scripts, styles, fonts and connections from
this origin, the two XMPP endpoints and the upload service only, no inline
scripts, no framing.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from descant.features.upload.service import default_url_base
from descant.http import hostmeta

if TYPE_CHECKING:
    from descant.config import Config
    from descant.http.server import HTTPService

HERE = Path(__file__).parent
CONVERSE = HERE / "converse"
PREFIX = "/webclient/"

CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".wasm": "application/wasm",
    ".ttf": "font/ttf",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".ogg": "audio/ogg",
    ".mp3": "audio/mpeg",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".ico": "image/vnd.microsoft.icon",
    # Served with the code: the MPL-2.0 text, and the credit for the notification sound.
    "LICENSE": "text/plain; charset=utf-8",
    "README": "text/plain; charset=utf-8",
}
NOSNIFF = {"X-Content-Type-Options": "nosniff"}
# What an endpoint URL built from a request's Host may hold: it goes into a CSP header.
PLAIN_URL = re.compile(r"[A-Za-z0-9:/._\[\]-]+")
IMMUTABLE = {**NOSNIFF, "Cache-Control": "public, max-age=31536000, immutable"}
# An origin that may go into the CSP: scheme, host name or bracketed IPv6 address, port.
ORIGIN = re.compile(r"https?://(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def converse_version() -> str:
    return (CONVERSE / "VERSION").read_text().strip()


def assets() -> dict[str, tuple[Path, str]]:
    """URL path (under :data:`PREFIX`) → file and content type, for every servable file.

    Only files listed here are served: no path from a request reaches the file system.
    """
    found: dict[str, tuple[Path, str]] = {}
    base = f"converse-{converse_version()}/"
    for path in sorted(CONVERSE.rglob("*")):
        ctype = CONTENT_TYPES.get(path.suffix) or CONTENT_TYPES.get(path.name)
        if path.is_file() and ctype:
            found[base + path.relative_to(CONVERSE).as_posix()] = (path, ctype)
    init = HERE / "descant.js"
    digest = hashlib.sha256(init.read_bytes()).hexdigest()[:12]
    found[f"descant-{digest}.js"] = (init, CONTENT_TYPES[".js"])
    return found


def settings(service: HTTPService, request: web.Request, assets_path: str) -> dict[str, object]:
    """What ``converse.initialize()`` gets (https://conversejs.org/docs/html/configuration.html)."""
    urls = dict(hostmeta.links(service, request))
    return {
        "assets_path": assets_path,
        "websocket_url": urls[hostmeta.WEBSOCKET_REL],
        "bosh_service_url": urls[hostmeta.BOSH_REL],  # used when WebSocket fails
        "discover_connection_methods": False,
        "default_domain": service.server.config.server.domains[0],
        "authentication": "login",
        "auto_login": False,
        "view_mode": "fullscreen",
        # No in-band registration (XEP-0077) here: accounts come from `descant user add`.
        "allow_registration": False,
        # Nothing from other hosts: the system's emoji font rather than Twemoji's CDN,
        # no XMPP provider lists from data.xmpp.net.
        "use_system_emojis": True,
        "autocomplete_providers_url": "",
        "xmpp_providers_url": "",
        "notification_icon": f"{assets_path}/images/logo/conversejs-filled.svg",
        "loglevel": "warn",
    }


def upload_origins(cfg: Config) -> list[str]:
    """The origins the upload services' slot URLs point at (one per served domain at
    most, usually one in all): the page PUTs files there and shows what it gets back.

    An origin that could not go into a CSP header as it is (a ``url_base`` with
    spaces, quotes, semicolons, a user name) is left out: uploads to it are blocked.
    """
    if not cfg.upload.enabled:
        return []
    found: list[str] = []
    for domain in cfg.server.domains:
        base = default_url_base(cfg, domain)
        parts = urlsplit(base)
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        if base and ORIGIN.fullmatch(origin) and origin not in found:
            found.append(origin)
    return found


def csp(ws_url: str, bosh_url: str, uploads: Sequence[str] = ()) -> str:
    up = "".join(" " + origin for origin in uploads)
    return "; ".join(
        [
            "default-src 'self'",
            # OMEMO's curve25519 is WebAssembly; no inline or eval'd JavaScript.
            "script-src 'self' 'wasm-unsafe-eval'",
            # Converse's templates set style attributes.
            "style-src 'self' 'unsafe-inline'",
            # Avatars are data: URLs; images and media linked in messages are shown
            # inline: from any HTTPS host, and from the upload service (plain HTTP
            # after `make run`).
            f"img-src 'self' data: blob: https:{up}",
            f"media-src 'self' data: blob: https:{up}",
            # The XMPP endpoints, and the upload service Converse PUTs files to.
            f"connect-src 'self' {ws_url} {bosh_url}{up}",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def page(
    service: HTTPService, request: web.Request, files: dict[str, str], uploads: Sequence[str]
) -> web.Response:
    assets_path = PREFIX + files["converse"]
    conf = settings(service, request, assets_path)
    ws_url, bosh_url = str(conf["websocket_url"]), str(conf["bosh_service_url"])
    if not (PLAIN_URL.fullmatch(ws_url) and PLAIN_URL.fullmatch(bosh_url)):
        # A Host header with spaces or semicolons would add directives to the CSP.
        raise web.HTTPBadRequest(text="bad Host header", headers=NOSNIFF)
    # JSON inside <script>: "<" escaped so that no "</script>" can end the element early.
    data = json.dumps(conf, separators=(",", ":")).replace("<", "\\u003c")
    title = html.escape(f"Chat — {service.server.config.server.domains[0]}")
    text = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="{assets_path}/images/favicon.ico">
<link rel="stylesheet" href="{assets_path}/converse.min.css">
<script type="application/json" id="descant-converse-settings">{data}</script>
<script type="module" src="{assets_path}/converse.min.js"></script>
<script type="module" src="{PREFIX}{files["init"]}"></script>
</head>
<body class="converse-fullscreen">
<noscript>This chat client needs JavaScript.</noscript>
</body>
</html>
"""
    policy = csp(ws_url, bosh_url, uploads)
    headers = {
        **NOSNIFF,
        "Cache-Control": "no-cache",
        "Content-Security-Policy": policy,
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin",
    }
    return web.Response(text=text, content_type="text/html", headers=headers)


def install(service: HTTPService) -> None:
    """Serve the web client, when ``http.web_client`` is on."""
    if not service.server.config.http.web_client:
        return
    table = assets()
    files = {
        "converse": f"converse-{converse_version()}",
        "init": next(name for name in table if name.startswith("descant-")),
    }

    uploads = upload_origins(service.server.config)

    async def index(request: web.Request) -> web.Response:
        return page(service, request, files, uploads)

    async def asset(request: web.Request) -> web.StreamResponse:
        found = table.get(request.match_info["path"])
        if found is None:
            raise web.HTTPNotFound(headers=NOSNIFF)
        path, ctype = found
        # FileResponse answers conditional and range requests, and sends a gzip
        # sibling (converse.min.js.gz) to clients that accept it.
        return web.FileResponse(path, headers={**IMMUTABLE, "Content-Type": ctype})

    for method in ("GET", "HEAD"):
        service.add_route(method, "/", index)
        service.add_route(method, PREFIX + "{path:.+}", asset)
