"""XMPP over WebSocket (RFC 7395) against a real server, from third-party clients.

- xmpp.js (``@xmpp/client`` in Node, driven by tests/js/xmppjs_client.mjs over JSON
  lines) logs in over WebSocket, chats with a slixmpp user on TCP, and survives a
  dropped connection through its own reconnect and stream management plugins.
  These tests skip with the reason when ``node`` or tests/js/node_modules is
  missing (``make js`` installs it).
- aiohttp's WebSocket client sends raw frames for the edge cases of the framing
  (RFC 7395 §3) and of the stream (RFC 6120 §4.9): each one ends with the exact
  error, and a witness session on TCP still answers a ping afterwards.
- host-meta (XEP-0156) lists the endpoints, also behind a trusted proxy.

Every frame the server sends is parsed on its own: RFC 7395 §3.3.3 wants each to
be a complete, namespace-declaring XML element.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest
from aiohttp import WSMsgType
from slixmpp import JID

from tests.badinput.raw import (
    BIND,
    CLIENT,
    PING,
    SASL,
    STREAM,
    STREAMS_ERR,
    authenticate,
    close_quietly,
    messages,
    next_stanza,
    plain,
    quiet,
)
from tests.jsdriver import (
    JS_DIR,
    NodeDriver,
    chat_both_ways,
    message_to_js,
    needs_node,
    subscribe,
)
from tests.live import (
    Client,
    LiveServer,
    RawClient,
    connect_slixmpp,
    disconnect,
    presence_types_from,
    wait_for_http,
)

FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
SM = "urn:xmpp:sm:3"
XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
WEBSOCKET_REL = "urn:xmpp:alt-connections:websocket"
BOSH_REL = "urn:xmpp:alt-connections:xbosh"
MAX_STANZA = 262144  # limits.max_stanza_size (default)
FRAME_SLACK = 65536  # how much larger a frame may be and still reach the XML parser

needs_js = needs_node("@xmpp/client 0.14", (20, 10), ("@xmpp/client",))


@pytest.fixture(autouse=True)
async def http_ready(server: LiveServer) -> None:
    await wait_for_http(server)


def ws_url(server: LiveServer) -> str:
    return f"ws://127.0.0.1:{server.http_port}/xmpp-websocket"


def tag(local: str, ns: str) -> str:
    return "{%s}%s" % (ns, local)


# -- xmpp.js in Node ----------------------------------------------------------------------------


class XmppJs(NodeDriver):
    """tests/js/xmppjs_client.mjs: xmpp.js over WebSocket, with every element it sends
    reported."""

    @classmethod
    async def start(
        cls,
        server: LiveServer,
        jid: str,
        password: str,
        resource: str,
        *,
        reconnect_delay_ms: int = 1000,
    ) -> XmppJs:
        username, _, domain = jid.partition("@")
        env = {
            "XMPP_SERVICE": ws_url(server),
            "XMPP_DOMAIN": domain,
            "XMPP_USERNAME": username,
            "XMPP_PASSWORD": password,
            "XMPP_RESOURCE": resource,
            "XMPP_RECONNECT_DELAY": str(reconnect_delay_ms),
        }
        script = JS_DIR / "xmppjs_client.mjs"
        return await cls.spawn(script, "xmpp.js", env, lifetime=90, shown=40)


def sent_binds(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e for e in events if e.get("event") == "sent" and tag("bind", BIND) in e.get("children", [])
    ]


@needs_js
async def test_xmppjs_chats_with_slixmpp_over_websocket(server: LiveServer) -> None:
    """xmpp.js logs in over WebSocket (SCRAM, bind, stream management) and chats with a
    slixmpp user on TCP: bodies (markup and non-ASCII included), from and to checked."""
    a_jid, a_pw = await server.make_user("xmppjs")
    b_jid, b_pw = await server.make_user("slixmate")
    bob = await connect_slixmpp(server, b_jid, b_pw)
    js = await XmppJs.start(server, a_jid, a_pw, "node")
    try:
        online = await js.wait_for("online")
        full = online["jid"]
        assert full == f"{a_jid}/node", js.describe()
        (auth,) = [e for e in js.of("sent") if e["name"] == "auth"]
        assert auth["attrs"]["mechanism"].startswith("SCRAM-"), auth
        assert len(sent_binds(js.events)) == 1
        enabled = await js.wait_for("nonza", lambda e: e["name"] == "enabled")
        assert enabled["xmlns"] == SM and enabled["attrs"].get("resume") == "true"
        await js.command("presence")

        text = "<b>Grüße</b> & 'quotes' \"too\" — 🎶"
        await js.command("send", to=b_jid, body=text)
        got = await bob.next_message(10)
        assert got["body"] == text
        assert got["from"].full == full  # stamped by the server (RFC 6120 §8.1.2.1)
        assert got["to"].full == b_jid and got["type"] == "chat"

        await message_to_js(bob, js, full, "reply to your full JID")
        await message_to_js(bob, js, a_jid, text)
        assert not js.of("error"), js.describe()
    finally:
        await js.close()
        await disconnect(bob)


@needs_js
async def test_xmppjs_resumes_after_a_dropped_connection(server: LiveServer) -> None:
    """The TCP connection under xmpp.js's WebSocket is destroyed (no close frame, no
    <close/>). Its reconnect plugin connects again and its stream management plugin
    resumes: the same full JID, no new bind, no new 'online'; the three messages sent
    meanwhile arrive once each, in order, and the contact never sees it go away."""
    a_jid, a_pw = await server.make_user("xjsdrop")
    b_jid, b_pw = await server.make_user("slixwatch")
    bob = await connect_slixmpp(server, b_jid, b_pw)
    js = await XmppJs.start(server, a_jid, a_pw, "phone", reconnect_delay_ms=1500)
    try:
        full = (await js.wait_for("online"))["jid"]
        enabled = await js.wait_for("nonza", lambda e: e["name"] == "enabled")
        sm_id = enabled["attrs"]["id"]
        # The xmpp.js user comes online; Bob subscribes to it and is approved.
        await js.command("presence")
        await subscribe(bob, js, a_jid, full)
        bob.send_message(mto=full, mbody="before", mtype="chat")
        assert (await js.wait_for("message"))["body"] == "before"

        mark = len(js.events)
        await js.command("drop")
        await js.wait_for("status", lambda e: e["status"] == "disconnect", timeout=5)
        for n in range(3):
            bob.send_message(mto=a_jid, mbody=f"gap {n}", mtype="chat")
        resumed = await js.wait_for("resumed", timeout=20)
        assert resumed["jid"] == full
        got = [(await js.wait_for("message", timeout=10))["body"] for _ in range(3)]
        assert got == ["gap 0", "gap 1", "gap 2"], js.describe()

        after = js.events[mark:]
        (resume,) = [e for e in after if e["event"] == "sent" and e["name"] == "resume"]
        assert resume["attrs"]["previd"] == sm_id
        (answer,) = [e for e in after if e["event"] == "nonza" and e["name"] == "resumed"]
        assert answer["attrs"]["previd"] == sm_id
        assert sent_binds(after) == [], "bound again instead of resuming"
        assert [e for e in after if e["event"] == "online"] == []

        # The session goes on, both ways.
        await chat_both_ways(js, bob, full, "back again", "welcome back")
        await asyncio.sleep(1.0)
        bodies = js.bodies()
        assert bodies == ["before", "gap 0", "gap 1", "gap 2", "welcome back"], bodies
        seen = presence_types_from(bob, a_jid)
        assert "unavailable" not in seen, seen
        assert not js.of("error"), js.describe()
    finally:
        await js.close()
        await disconnect(bob)


# -- raw frames (aiohttp) -----------------------------------------------------------------------

OPEN = f"<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
CLOSE = f"<close xmlns='{FRAMING}'/>"


class WSClient:
    """Raw RFC 7395 frames over aiohttp's WebSocket client."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.frames: list[str] = []  # every text frame received, in order

    async def send(self, text: str) -> None:
        await self.ws.send_str(text)

    async def frame(self, timeout: float = 5) -> str:
        """The next text frame; fails on anything else (close, binary)."""
        msg = await self.ws.receive(timeout)
        assert msg.type is WSMsgType.TEXT, (
            f"expected a text frame, got {msg}; before: {self.frames}"
        )
        self.frames.append(msg.data)
        return str(msg.data)

    async def element(self, timeout: float = 5) -> ET.Element:
        """The next frame as an element: each must be a standalone XML document."""
        return ET.fromstring(await self.frame(timeout))

    async def open(self, to: str = "localhost") -> tuple[ET.Element, ET.Element, str]:
        """Send <open/>; return the server's <open/>, its features and the features' text."""
        await self.send(f"<open xmlns='{FRAMING}' to='{to}' version='1.0'/>")
        opened = await self.element()
        assert opened.tag == tag("open", FRAMING), ET.tostring(opened)
        text = await self.frame()
        features = ET.fromstring(text)
        assert features.tag == tag("features", STREAM), text
        return opened, features, text

    async def until_closed(self, timeout: float = 5) -> tuple[list[str], int | None]:
        """Text frames until the WebSocket closes; and the close code (None: no close frame)."""
        texts: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                msg = await self.ws.receive(left)
            except TimeoutError:
                raise AssertionError(
                    f"WebSocket not closed within {timeout} s; got {texts}"
                ) from None
            if msg.type is WSMsgType.TEXT:
                texts.append(msg.data)
                self.frames.append(msg.data)
            elif msg.type is WSMsgType.CLOSE:
                return texts, int(msg.data)
            elif msg.type in (WSMsgType.CLOSED, WSMsgType.CLOSING, WSMsgType.ERROR):
                return texts, None
            else:
                raise AssertionError(f"unexpected {msg}")

    async def quiet(self, seconds: float = 0.5) -> list[ET.Element]:
        """Every frame that arrives within ``seconds``."""
        out: list[ET.Element] = []
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(await self.element(left))
            except TimeoutError:
                break
        return out

    async def messages(self, n: int, timeout: float = 5) -> list[ET.Element]:
        out: list[ET.Element] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            el = await self.element(max(0.1, deadline - time.monotonic()))
            if el.tag == tag("message", CLIENT):
                out.append(el)
        return out

    def abort(self) -> None:
        """Lose the connection: the TCP transport goes, no close frame, no <close/>."""
        conn = self.ws._response.connection  # aiohttp keeps the connection here
        assert conn is not None and conn.transport is not None
        conn.transport.abort()


@asynccontextmanager
async def ws_connect(
    server: LiveServer, url: str | None = None, **kwargs: Any
) -> AsyncIterator[WSClient]:
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            url or ws_url(server),
            protocols=("xmpp",),
            timeout=aiohttp.ClientWSTimeout(10),
            **kwargs,
        )
        try:
            assert ws.protocol == "xmpp"
            yield WSClient(ws)
        finally:
            await ws.close()


async def ws_login(c: WSClient, jid: str, password: str, resource: str) -> str:
    """Open, SASL PLAIN (offered: loopback counts as encrypted), reopen, bind: the full JID."""
    _, features, _ = await c.open(jid.partition("@")[2])
    mechs = [m.text for m in features.iter(tag("mechanism", SASL))]
    assert "PLAIN" in mechs and "SCRAM-SHA-256" in mechs, mechs
    # No STARTTLS on WebSocket: TLS belongs to the WebSocket layer (RFC 7395 §3.9).
    assert features.find(tag("starttls", "urn:ietf:params:xml:ns:xmpp-tls")) is None
    await c.send(plain(jid, password))
    assert (await c.element()).tag == tag("success", SASL)
    _, features, _ = await c.open(jid.partition("@")[2])
    assert features.find(tag("bind", BIND)) is not None
    assert features.find(tag("sm", SM)) is not None
    await c.send(
        f"<iq type='set' id='bind' xmlns='{CLIENT}'><bind xmlns='{BIND}'>"
        f"<resource>{resource}</resource></bind></iq>"
    )
    el = await c.element()
    assert el.get("type") == "result", ET.tostring(el)
    return el.findtext(f".//{{{BIND}}}jid", "")


def stream_error_condition(frame: str) -> str:
    el = ET.fromstring(frame)  # a standalone element, prefix declared (RFC 7395 §3.3.3)
    assert el.tag == tag("error", STREAM), frame
    conds = [c.tag for c in el if c.tag != tag("text", STREAMS_ERR)]
    assert len(conds) == 1 and conds[0].startswith("{%s}" % STREAMS_ERR), frame
    return conds[0].partition("}")[2]


async def expect_ws_stream_error(c: WSClient, condition: str, timeout: float = 5) -> list[str]:
    """RFC 7395 §3.5, §3.6: the <stream:error/>, then <close/>, then the WebSocket closes."""
    texts, code = await c.until_closed(timeout)
    assert len(texts) >= 2, texts
    assert stream_error_condition(texts[-2]) == condition, texts
    assert ET.fromstring(texts[-1]).tag == tag("close", FRAMING), texts
    errors = [t for t in texts if ET.fromstring(t).tag == tag("error", STREAM)]
    assert errors == [texts[-2]], texts  # one error, right before the close
    assert code is not None, f"no WebSocket close frame after {texts}"
    return texts


async def expect_refusal(c: WSClient, condition: str, timeout: float = 5) -> list[str]:
    """RFC 6120 §4.9.1.1: a stream refused at its start. The server opens its side
    first, then the error and <close/>."""
    texts, code = await c.until_closed(timeout)
    assert len(texts) == 3, texts
    assert ET.fromstring(texts[0]).tag == tag("open", FRAMING), texts
    assert stream_error_condition(texts[1]) == condition
    assert ET.fromstring(texts[2]).tag == tag("close", FRAMING)
    assert code is not None
    return texts


@pytest.fixture
async def witness(server: LiveServer) -> AsyncIterator[Client]:
    jid, password = await server.make_user("witness")
    client = await connect_slixmpp(server, jid, password)
    yield client
    await disconnect(client)


async def still_alive(witness: Client) -> None:
    """The server still serves its other users: the witness pings the server and itself."""
    await witness.plugin["xep_0199"].send_ping(JID(witness.boundjid.domain), timeout=5)
    await witness.plugin["xep_0199"].send_ping(witness.boundjid, timeout=5)


# The handshake (RFC 7395 §3.1, RFC 6455 §4) ------------------------------------------------


async def test_no_xmpp_subprotocol_is_refused_with_400(server: LiveServer, witness: Client) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await session.ws_connect(ws_url(server), timeout=aiohttp.ClientWSTimeout(10))
        assert exc.value.status == 400
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await session.ws_connect(
                ws_url(server), protocols=("chat",), timeout=aiohttp.ClientWSTimeout(10)
            )
        assert exc.value.status == 400
        # A plain GET is not a WebSocket at all.
        async with session.get(ws_url(server).replace("ws:", "http:", 1)) as resp:
            assert resp.status == 426
    await still_alive(witness)


async def test_disallowed_origin_is_refused_with_403(server: LiveServer, witness: Client) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as exc:
            await session.ws_connect(
                ws_url(server),
                protocols=("xmpp",),
                origin="http://evil.example",
                timeout=aiohttp.ClientWSTimeout(10),
            )
        assert exc.value.status == 403
    # A page served by the endpoint's own host may connect (the default policy).
    async with ws_connect(server, origin=f"http://127.0.0.1:{server.http_port}") as c:
        opened, _, _ = await c.open()
        assert opened.get("from") == "localhost"
    await still_alive(witness)


# Framing (RFC 7395 §3.3, §3.4) and stream errors (RFC 6120 §4.9) ------------------------------


async def test_open_reply_has_from_id_and_version(server: LiveServer, witness: Client) -> None:
    async with ws_connect(server) as c:
        opened, features, text = await c.open()
        assert opened.get("from") == "localhost"
        assert len(opened.get("id", "")) >= 16
        assert opened.get("version") == "1.0"
        assert opened.get("{http://www.w3.org/XML/1998/namespace}lang") == "en"
        # The features are their own frame and declare the stream prefix themselves.
        assert text.startswith("<stream:features")
        assert f"xmlns:stream='{STREAM}'" in text or f'xmlns:stream="{STREAM}"' in text, text
        assert features.find(tag("mechanisms", SASL)) is not None
        # Each stream gets its own id.
        async with ws_connect(server) as other:
            again, _, _ = await other.open()
            assert again.get("id") != opened.get("id")
    await still_alive(witness)


async def test_features_frames_declare_the_stream_prefix_at_every_stage(
    server: LiveServer, witness: Client
) -> None:
    jid, password = await server.make_user("wsfeat")
    async with ws_connect(server) as c:
        await ws_login(c, jid, password, "feat")
        features = [f for f in c.frames if f.startswith("<stream:features")]
        assert len(features) == 2, c.frames
        for text in features:
            assert f"xmlns:stream='{STREAM}'" in text or f'xmlns:stream="{STREAM}"' in text
            ET.fromstring(text)
    await still_alive(witness)


async def test_client_close_is_answered_with_close_then_websocket_close(
    server: LiveServer, witness: Client
) -> None:
    jid, password = await server.make_user("wsclose")
    async with ws_connect(server) as c:
        await ws_login(c, jid, password, "closer")
        await c.send(CLOSE)
        texts, code = await c.until_closed()
        assert [ET.fromstring(t).tag for t in texts][-1:] == [tag("close", FRAMING)], texts
        assert all("<stream:error" not in t for t in texts), texts
        assert code == 1000
    await still_alive(witness)


async def test_two_elements_in_one_message_is_bad_format(
    server: LiveServer, witness: Client
) -> None:
    jid, password = await server.make_user("wstwo")
    async with ws_connect(server) as c:
        await ws_login(c, jid, password, "two")
        await c.quiet(0.3)
        await c.send(
            f"<iq type='get' id='p1' xmlns='{CLIENT}'><ping xmlns='{PING}'/></iq>"
            f"<iq type='get' id='p2' xmlns='{CLIENT}'><ping xmlns='{PING}'/></iq>"
        )
        texts = await expect_ws_stream_error(c, "bad-format")
        assert not any("id='p1'" in t or "id='p2'" in t for t in texts), texts  # neither handled
    await still_alive(witness)


@pytest.mark.parametrize(
    ("payload", "condition"),
    [
        (f"<iq type='get' id='half' xmlns='{CLIENT}'><ping xmlns='{PING}'/>", "bad-format"),
        ("hello", "bad-format"),
        (f"<message xmlns='{CLIENT}'><body>hi</message>", "not-well-formed"),
        (f"<presence xmlns='{CLIENT}'/>".encode(), "bad-format"),
    ],
    ids=["half-an-element", "text-outside-an-element", "not-well-formed", "binary-message"],
)
async def test_bad_frame_is_a_stream_error(
    server: LiveServer, witness: Client, payload: str | bytes, condition: str
) -> None:
    """Each message is one complete, well-formed element in a text frame (RFC 7395 §3.3);
    ``bytes`` go in a binary frame."""
    async with ws_connect(server) as c:
        await c.open()
        if isinstance(payload, bytes):
            await c.ws.send_bytes(payload)
        else:
            await c.send(payload)
        await expect_ws_stream_error(c, condition)
    await still_alive(witness)


async def test_message_over_the_stanza_limit_is_policy_violation(
    server: LiveServer, witness: Client
) -> None:
    jid, password = await server.make_user("wsbig")
    async with ws_connect(server) as c:
        await ws_login(c, jid, password, "big")
        body = "a" * (MAX_STANZA + 1000)
        stanza = f"<message to='{jid}' xmlns='{CLIENT}'><body>{body}</body></message>"
        assert MAX_STANZA < len(stanza) < MAX_STANZA + FRAME_SLACK
        await c.send(stanza)
        await expect_ws_stream_error(c, "policy-violation")
    await still_alive(witness)


async def test_message_far_over_the_limit_is_closed_by_the_websocket_layer(
    server: LiveServer, witness: Client
) -> None:
    """Beyond the slack the frame never reaches XML: close code 1009 (RFC 6455 §7.4.1)."""
    async with ws_connect(server) as c:
        await c.open()
        await c.send("<message><body>" + "a" * (MAX_STANZA + FRAME_SLACK) + "</body></message>")
        texts, code = await c.until_closed()
        assert code == 1009, (texts, code)
    await still_alive(witness)


@pytest.mark.parametrize(
    ("first", "condition"),
    [
        (
            f"<message to='someone@localhost' xmlns='{CLIENT}'><body>hi</body></message>",
            "not-authorized",
        ),
        (f"<open xmlns='{FRAMING}' to='nowhere.example' version='1.0'/>", "host-unknown"),
    ],
    ids=["stanza-before-open", "open-to-an-unknown-domain"],
)
async def test_refused_first_frame_is_answered_with_open_error_close(
    server: LiveServer, witness: Client, first: str, condition: str
) -> None:
    async with ws_connect(server) as c:
        await c.send(first)
        texts = await expect_refusal(c, condition)
        assert ET.fromstring(texts[0]).get("from") == "localhost", texts
    await still_alive(witness)


async def test_xml_declaration_in_a_frame_is_accepted(server: LiveServer, witness: Client) -> None:
    """RFC 7395 §3.3.3: frames are standalone XML documents; a declaration is only
    NOT RECOMMENDED."""
    async with ws_connect(server) as c:
        await c.send("<?xml version='1.0'?>" + OPEN)
        opened = await c.element()
        assert opened.tag == tag("open", FRAMING), c.frames
        assert ET.fromstring(await c.frame()).tag == tag("features", STREAM), c.frames
    await still_alive(witness)


async def test_stanza_after_sasl_without_reopening_is_refused(
    server: LiveServer, witness: Client
) -> None:
    """RFC 6120 §6.4.6, RFC 7395 §3.7: after SASL success the client opens a new
    stream; an element before that <open/> ends the stream, as before the first one."""
    jid, password = await server.make_user("wsnoreopen")
    async with ws_connect(server) as c:
        await c.open()
        await c.send(plain(jid, password))
        assert (await c.element()).tag == tag("success", SASL)
        await c.send(
            f"<iq type='set' id='early' xmlns='{CLIENT}'><bind xmlns='{BIND}'>"
            "<resource>early</resource></bind></iq>"
        )
        texts = await expect_refusal(c, "not-authorized", timeout=2)
        assert not any("id='early'" in t for t in texts), texts  # not bound
    await still_alive(witness)


async def test_open_again_without_a_restart_ends_the_stream(
    server: LiveServer, witness: Client
) -> None:
    """An <open/> on an open stream (no restart was due) is a stream error."""
    jid, password = await server.make_user("wsreopen")
    async with ws_connect(server) as c:
        await ws_login(c, jid, password, "again")
        await c.quiet(0.3)
        await c.send(OPEN)
        texts, _ = await c.until_closed(timeout=2)
        assert not any(ET.fromstring(t).tag == tag("features", STREAM) for t in texts), texts
        assert len(texts) >= 2 and ET.fromstring(texts[-1]).tag == tag("close", FRAMING), texts
        assert ET.fromstring(texts[-2]).tag == tag("error", STREAM), texts
    await still_alive(witness)


# Stream management over WebSocket (XEP-0198) -------------------------------------------------


def bodies(els: list[ET.Element]) -> list[str]:
    return [el.findtext(tag("body", CLIENT), "") for el in els if el.tag == tag("message", CLIENT)]


def chat(to: str, body: str, framed: bool = False) -> str:
    xmlns = f" xmlns='{CLIENT}'" if framed else ""
    return f"<message to='{to}' type='chat'{xmlns}><body>{body}</body></message>"


@pytest.mark.parametrize("again_over", ["websocket", "tcp"])
async def test_websocket_session_dropped_then_resumed(
    server: LiveServer, witness: Client, again_over: str
) -> None:
    """SM with resumption over WebSocket; the TCP connection under it is aborted (no
    close frame, no <close/>); the session hibernates and is resumed on a new WebSocket
    or over TCP, which gets exactly what the client had not handled, in order."""
    a_jid, a_pw = await server.make_user("wssm")
    b_jid, b_pw = await server.make_user("wssmpeer")
    bob = RawClient(*(await asyncio.open_connection("127.0.0.1", server.port)))
    b_full = await bob.login(b_jid, b_pw, "desk")
    async with ws_connect(server) as alice:
        a_full = await ws_login(alice, a_jid, a_pw, "tab")
        await alice.send(f"<enable xmlns='{SM}' resume='true'/>")
        enabled = await alice.element()
        assert enabled.tag == tag("enabled", SM) and enabled.get("resume") == "true"
        sm_id = enabled.get("id", "")
        await alice.send(f"<presence xmlns='{CLIENT}'/>")
        await alice.quiet(0.3)  # her own presence (handled: 1)
        await bob.send(chat(a_jid, "one"))
        await bob.send(chat(a_jid, "two"))
        assert bodies(await alice.messages(2)) == ["one", "two"]
        # "one" handled, "two" not, when the connection dies.
        alice.abort()
    await asyncio.sleep(0.3)
    await bob.send(chat(a_full, "three"))
    await bob.send(chat(a_jid, "four"))
    await asyncio.sleep(0.3)
    resume = f"<resume xmlns='{SM}' previd='{sm_id}' h='2'/>"
    if again_over == "websocket":
        async with ws_connect(server) as new:
            await new.open()
            await new.send(plain(a_jid, a_pw))
            assert (await new.element()).tag == tag("success", SASL)
            await new.open()
            await new.send(resume)
            resumed = await new.element()
            assert resumed.tag == tag("resumed", SM), ET.tostring(resumed)
            assert resumed.get("previd") == sm_id and resumed.get("h") == "1"
            assert bodies(await new.messages(3)) == ["two", "three", "four"]
            assert bodies(await new.quiet(0.5)) == []  # nothing twice
            await bob.send(chat(a_full, "five"))
            assert bodies(await new.messages(1)) == ["five"]
            await new.send(chat(b_full, "from the same session", framed=True))
            (back,) = await messages(bob, 1)
            assert back.get("from") == a_full
            await new.send(CLOSE)
            await new.until_closed()
    else:
        new_tcp = await authenticate(server, a_jid, a_pw)
        await new_tcp.send(resume)
        resumed = await next_stanza(new_tcp)
        assert resumed.tag == tag("resumed", SM), ET.tostring(resumed)
        assert resumed.get("previd") == sm_id and resumed.get("h") == "1"
        assert bodies(await messages(new_tcp, 3)) == ["two", "three", "four"]
        assert bodies(await quiet(new_tcp, 0.5)) == []
        await bob.send(chat(a_full, "five"))
        assert bodies(await messages(new_tcp, 1)) == ["five"]
        await close_quietly(new_tcp)
    await close_quietly(bob)
    await still_alive(witness)


# host-meta (XEP-0156) ------------------------------------------------------------------------


def xrd_links(text: str) -> dict[str, str]:
    root = ET.fromstring(text)
    assert root.tag == tag("XRD", XRD), text
    return {link.get("rel", ""): link.get("href", "") for link in root.iter(tag("Link", XRD))}


async def host_meta(
    port: int, headers: dict[str, str] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """(XRD links, JSON links), after checking both documents' types and CORS."""
    base = f"http://127.0.0.1:{port}/.well-known"
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        async with session.get(f"{base}/host-meta", headers=headers) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/xrd+xml"
            assert resp.headers.get("Access-Control-Allow-Origin") == "*"
            xrd = xrd_links(await resp.text())
        async with session.get(f"{base}/host-meta.json", headers=headers) as resp:
            assert resp.status == 200
            assert resp.content_type == "application/json"
            assert resp.headers.get("Access-Control-Allow-Origin") == "*"
            doc = await resp.json()
            jrd = {link["rel"]: link["href"] for link in doc["links"]}
    return xrd, jrd


async def test_host_meta_lists_websocket_and_bosh(server: LiveServer, witness: Client) -> None:
    xrd, jrd = await host_meta(server.http_port)
    here = f"127.0.0.1:{server.http_port}"
    expected = {WEBSOCKET_REL: f"ws://{here}/xmpp-websocket", BOSH_REL: f"http://{here}/http-bind"}
    assert xrd == expected
    assert jrd == expected
    # What it advertises works.
    async with ws_connect(server, url=xrd[WEBSOCKET_REL]) as c:
        opened, _, _ = await c.open()
        assert opened.get("from") == "localhost"
    await still_alive(witness)


async def test_host_meta_behind_a_trusted_proxy_is_https(server: LiveServer) -> None:
    """Loopback is a trusted proxy by default: its X-Forwarded-Proto decides the scheme."""
    headers = {
        "Host": "chat.example.org",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-For": "203.0.113.7",
    }
    xrd, jrd = await host_meta(server.http_port, headers)
    expected = {
        WEBSOCKET_REL: "wss://chat.example.org/xmpp-websocket",
        BOSH_REL: "https://chat.example.org/http-bind",
    }
    assert xrd == expected
    assert jrd == expected


async def test_host_meta_ignores_forwarding_headers_from_untrusted_peers(
    make_server: Callable[..., LiveServer],
) -> None:
    srv = make_server(http={"trusted_proxies": []})
    await wait_for_http(srv)
    headers = {"Host": "chat.example.org", "X-Forwarded-Proto": "https"}
    xrd, jrd = await host_meta(srv.http_port, headers)
    expected = {
        WEBSOCKET_REL: "ws://chat.example.org/xmpp-websocket",
        BOSH_REL: "http://chat.example.org/http-bind",
    }
    assert xrd == expected
    assert jrd == expected
