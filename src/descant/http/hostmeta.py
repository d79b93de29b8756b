"""Discovering the web endpoints (XEP-0156): ``/.well-known/host-meta`` (XRD, RFC 6415)
and ``/.well-known/host-meta.json``, listing the WebSocket and BOSH endpoints.

The URLs use ``http.external_url`` when set, else the scheme and host the client
used (behind a trusted proxy: the scheme it reports). Both documents may be read
from any origin (CORS), since web clients on other hosts look them up.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from aiohttp import web

from descant.xml.serialize import escape_attr

if TYPE_CHECKING:
    from descant.http.server import HTTPService

WEBSOCKET_REL = "urn:xmpp:alt-connections:websocket"
BOSH_REL = "urn:xmpp:alt-connections:xbosh"
CORS = {"Access-Control-Allow-Origin": "*"}


def links(service: HTTPService, request: web.Request) -> list[tuple[str, str]]:
    base = service.base_url(request)
    ws_base = "wss" + base[5:] if base.startswith("https") else "ws" + base[4:]
    return [(BOSH_REL, f"{base}/http-bind"), (WEBSOCKET_REL, f"{ws_base}/xmpp-websocket")]


def install(service: HTTPService) -> None:
    async def xrd(request: web.Request) -> web.Response:
        body = "".join(
            f"<Link rel='{rel}' href='{escape_attr(href)}'/>"
            for rel, href in links(service, request)
        )
        text = (
            "<?xml version='1.0' encoding='utf-8'?>"
            f"<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'>{body}</XRD>"
        )
        return web.Response(text=text, content_type="application/xrd+xml", headers=CORS)

    async def jrd(request: web.Request) -> web.Response:
        doc = {"links": [{"rel": rel, "href": href} for rel, href in links(service, request)]}
        return web.Response(text=json.dumps(doc), content_type="application/json", headers=CORS)

    service.add_route("GET", "/.well-known/host-meta", xrd)
    service.add_route("GET", "/.well-known/host-meta.json", jrd)
