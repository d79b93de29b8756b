"""Who is on the other end of an HTTP transport (docs/web.md): encryption, channel
binding, trusted proxies, and the per-address limits applied to the real client."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import aiohttp

from tests.live import LiveServer, client_tls_context

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
STREAMS_ERR = "urn:ietf:params:xml:ns:xmpp-streams"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"


async def _open(url: str, headers: dict[str, str] | None = None, **kw: Any) -> list[ET.Element]:
    """Open a WebSocket stream; return what the server sends until features, an error, or close."""
    out: list[ET.Element] = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, protocols=("xmpp",), headers=headers or {}, **kw) as ws,
    ):
        await ws.send_str(OPEN)
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type is not aiohttp.WSMsgType.TEXT:
                return out
            el = ET.fromstring(msg.data)
            out.append(el)
            if el.tag.endswith("}features") or el.tag == f"{{{FRAMING}}}close":
                return out


def mechanisms(els: list[ET.Element]) -> list[str]:
    feats = [e for e in els if e.tag.endswith("}features")]
    assert feats, [ET.tostring(e) for e in els]
    return [m.text or "" for m in feats[0].iter(f"{{{SASL}}}mechanism")]


def stream_error(els: list[ET.Element]) -> str | None:
    for el in els:
        if el.tag == "{http://etherx.jabber.org/streams}error":
            for c in el:
                if c.tag.startswith(f"{{{STREAMS_ERR}}}") and not c.tag.endswith("}text"):
                    return c.tag.partition("}")[2]
    return None


async def test_scram_plus_only_where_tls_ends_here(server: LiveServer) -> None:
    """SCRAM-PLUS binds to the TLS channel, so it is offered over https on our own
    listener (with XEP-0440's channel-binding types) and never over plain loopback."""
    ctx = client_tls_context()
    tls = await _open(f"https://127.0.0.1:{server.https_port}/xmpp-websocket", ssl=ctx)
    mechs = mechanisms(tls)
    assert "SCRAM-SHA-256-PLUS" in mechs and "PLAIN" in mechs
    assert any(
        e.tag.endswith("}features")
        and e.find("{urn:xmpp:sasl-cb:0}sasl-channel-binding") is not None
        for e in tls
    )
    plain = mechanisms(await _open(f"http://127.0.0.1:{server.http_port}/xmpp-websocket"))
    assert "PLAIN" in plain and not any(m.endswith("-PLUS") for m in plain)


async def test_proxy_reporting_plain_http_means_no_login_with_require_tls(
    server: LiveServer,
) -> None:
    """A trusted proxy saying the client came over plain http: with c2s.require_tls
    the stream is refused (RFC 6120 §5.3.1: TLS is mandatory-to-negotiate)."""
    url = f"http://127.0.0.1:{server.http_port}/xmpp-websocket"
    els = await _open(url, {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "http"})
    assert stream_error(els) == "policy-violation"
    els = await _open(url, {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"})
    assert "PLAIN" in mechanisms(els)


async def test_limits_count_the_real_client_behind_a_trusted_proxy(make_server: Any) -> None:
    srv: LiveServer = make_server(limits={"max_connections_per_ip": 1})
    url = f"http://127.0.0.1:{srv.http_port}/xmpp-websocket"

    def via_proxy(client: str) -> dict[str, str]:
        return {"X-Forwarded-For": f"203.0.113.9, {client}", "X-Forwarded-Proto": "https"}

    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, protocols=("xmpp",), headers=via_proxy("198.51.100.1")) as first,
    ):
        await first.send_str(OPEN)
        await first.receive(timeout=5)
        # The same client again: over its limit.
        again = await _open(url, via_proxy("198.51.100.1"))
        assert stream_error(again) == "policy-violation"
        # Another client through the same proxy is not.
        other = await _open(url, via_proxy("198.51.100.2"))
        assert stream_error(other) is None and mechanisms(other)


async def test_forwarding_headers_from_untrusted_peers_are_ignored(make_server: Any) -> None:
    """With no trusted proxy, X-Forwarded-For cannot make one client look like many."""
    srv: LiveServer = make_server(
        limits={"max_connections_per_ip": 1}, http={"trusted_proxies": []}
    )
    url = f"http://127.0.0.1:{srv.http_port}/xmpp-websocket"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, protocols=("xmpp",), headers={"X-Forwarded-For": "10.0.0.1"}) as ws,
    ):
        await ws.send_str(OPEN)
        await ws.receive(timeout=5)
        again = await _open(url, {"X-Forwarded-For": "10.0.0.2", "X-Forwarded-Proto": "https"})
        assert stream_error(again) == "policy-violation"
