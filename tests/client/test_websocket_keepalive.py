"""WebSocket keepalive (RFC 6455 §5.5.2, RFC 7395 §3.8): the server pings, and a client
that stops answering is gone — its session, with stream management, hibernates and
can be resumed over another transport (here TCP)."""

from __future__ import annotations

import asyncio
import base64
import time
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp

from tests.badinput.raw import authenticate, close_quietly, next_stanza
from tests.live import LiveServer

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SM = "urn:xmpp:sm:3"
OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"


async def _frames_until(ws: aiohttp.ClientWebSocketResponse, needle: str) -> str:
    while True:
        msg = await ws.receive(timeout=5)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        if needle in msg.data:
            return str(msg.data)


async def test_silent_websocket_client_is_dropped_and_resumed_over_tcp(make_server: Any) -> None:
    srv: LiveServer = make_server(http={"websocket_ping": 1})
    jid, password = await srv.make_user("wsping")
    user = jid.partition("@")[0]
    url = f"http://127.0.0.1:{srv.http_port}/xmpp-websocket"
    async with (
        aiohttp.ClientSession() as http,
        # autoping off: this client never answers the server's pings.
        http.ws_connect(url, protocols=("xmpp",), autoping=False) as ws,
    ):
        await ws.send_str(OPEN)
        await _frames_until(ws, "</stream:features>")
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        await ws.send_str(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>"
        )
        await _frames_until(ws, "<success")
        await ws.send_str(OPEN)
        await _frames_until(ws, "</stream:features>")
        await ws.send_str(
            "<iq xmlns='jabber:client' type='set' id='b'>"
            "<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>web</resource></bind></iq>"
        )
        await _frames_until(ws, "</iq>")
        await ws.send_str(f"<enable xmlns='{SM}' resume='true'/>")
        enabled = ET.fromstring(await _frames_until(ws, "<enabled"))
        sm_id = enabled.get("id")
        started = time.monotonic()
        # The server pings (heartbeat 1 s) and, without a pong, drops the connection.
        closed = False
        while time.monotonic() - started < 10:
            msg = await ws.receive(timeout=10)
            if msg.type in (
                aiohttp.WSMsgType.CLOSE,
                aiohttp.WSMsgType.CLOSED,
                aiohttp.WSMsgType.CLOSING,
                aiohttp.WSMsgType.ERROR,
            ):
                closed = True
                break
        assert closed, "the server kept a client that never answered its pings"
        assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while "hibernating" not in srv.log() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert f"{jid}/web hibernating" in srv.log()
    # Resumed over TCP: the session moves to another kind of transport.
    c = await authenticate(srv, jid, password)
    await c.send(f"<resume xmlns='{SM}' previd='{sm_id}' h='0'/>")
    resumed = await next_stanza(c)
    assert resumed.tag == f"{{{SM}}}resumed", ET.tostring(resumed)
    await c.send("<iq type='get' id='who'><ping xmlns='urn:xmpp:ping'/></iq>")
    while (el := await next_stanza(c)).get("id") != "who":
        pass
    assert el.get("to") == f"{jid}/web"
    await close_quietly(c)


async def test_a_client_that_answers_pings_stays(make_server: Any) -> None:
    """The server's pings are answered by a live client (aiohttp answers them): the
    connection outlives several ping periods, and the client's own pings get pongs."""
    srv: LiveServer = make_server(http={"websocket_ping": 1})
    url = f"http://127.0.0.1:{srv.http_port}/xmpp-websocket"
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, protocols=("xmpp",), autoping=False) as ws,
    ):
        await ws.send_str(OPEN)
        await _frames_until(ws, "</stream:features>")
        pings = 0
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            try:
                msg = await ws.receive(timeout=deadline - time.monotonic())
            except TimeoutError:
                break
            if msg.type is aiohttp.WSMsgType.PING:
                pings += 1
                await ws.pong(msg.data)
            else:
                assert msg.type is aiohttp.WSMsgType.TEXT, msg
        assert pings >= 1 and not ws.closed
        await ws.ping(b"x")
        pong = await ws.receive(timeout=5)
        assert pong.type is aiohttp.WSMsgType.PONG and pong.data == b"x"
