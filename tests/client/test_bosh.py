"""XMPP over BOSH (XEP-0124, XEP-0206) at /http-bind against a real server: login and
messaging with a TCP user, hold and wait, request ids (order, retransmission, window),
termination, inactivity, the error conditions, and stream management across transports."""

from __future__ import annotations

import asyncio
import random
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest

from tests.badinput.raw import BIND, CLIENT, SASL, STREAM, STREAMS_ERR, MakeServer, plain
from tests.live import Client, LiveServer, RawClient, connect_slixmpp, disconnect

HTTPBIND = "http://jabber.org/protocol/httpbind"
XBOSH = "urn:xmpp:xbosh"
SM = "urn:xmpp:sm:3"
CREATE = "to='localhost' wait='2' hold='1' ver='1.11' xmpp:version='1.0' xml:lang='en'"


class Bosh:
    """One BOSH session from the client's side: raw bodies, counted request ids."""

    def __init__(self, http: aiohttp.ClientSession, server: LiveServer) -> None:
        self.http = http
        self.url = f"http://127.0.0.1:{server.http_port}/http-bind"
        self.rid = random.randint(1 << 30, 1 << 40)
        self.sid = ""

    def body(self, payload: str = "", attrs: str = "", rid: int | None = None) -> str:
        sid = f" sid='{self.sid}'" if self.sid else ""
        return (
            f"<body xmlns='{HTTPBIND}' xmlns:xmpp='{XBOSH}' rid='{rid or self.rid}'{sid}"
            f" {attrs}>{payload}</body>"
        )

    async def post(self, data: str | bytes, **kw: object) -> tuple[int, str]:
        async with self.http.post(self.url, data=data, **kw) as resp:  # type: ignore[arg-type]
            return resp.status, await resp.text()

    async def request(self, payload: str = "", attrs: str = "") -> ET.Element:
        self.rid += 1
        status, text = await self.post(self.body(payload, attrs))
        assert status == 200, text
        return ET.fromstring(text)

    async def create(self, attrs: str = CREATE) -> ET.Element:
        el = await self.request("", attrs)
        self.sid = el.get("sid", "")
        return el

    async def collect(
        self, done: Callable[[list[ET.Element]], bool], timeout: float = 10
    ) -> list[ET.Element]:
        """Payloads of empty requests until ``done`` says enough arrived."""
        out: list[ET.Element] = []
        deadline = time.monotonic() + timeout
        while not done(out):
            assert time.monotonic() < deadline, [ET.tostring(e) for e in out]
            el = await self.request()
            assert el.get("type") is None, ET.tostring(el)
            out.extend(el)
        return out

    async def login(self, jid: str, password: str, resource: str = "web") -> str:
        """Session creation, SASL PLAIN, restart and bind; returns the full JID."""
        created = await self.create()
        assert "PLAIN" in mechanisms(created)
        got = await self.request(plain(jid, password))
        assert got.find(f"{{{SASL}}}success") is not None, ET.tostring(got)
        restarted = await self.request("", "xmpp:restart='true' to='localhost' xml:lang='en'")
        assert restarted.find(f"{{{STREAM}}}features/{{{BIND}}}bind") is not None
        got = await self.request(
            f"<iq xmlns='{CLIENT}' type='set' id='bind'><bind xmlns='{BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        return got.findtext(f".//{{{BIND}}}jid", "")


def mechanisms(el: ET.Element) -> list[str]:
    return [m.text or "" for m in el.iter(f"{{{SASL}}}mechanism")]


def terminated(el: ET.Element) -> str | None:
    """The condition of a terminate body ('' for none); None when not a terminate."""
    if el.get("type") != "terminate":
        return None
    return el.get("condition", "")


def bodies(els: list[ET.Element]) -> list[str]:
    return [el.findtext(f"{{{CLIENT}}}body", "") for el in els if el.tag == f"{{{CLIENT}}}message"]


def ping(ident: str) -> str:
    return (
        f"<iq xmlns='{CLIENT}' type='get' id='{ident}' to='localhost'>"
        "<ping xmlns='urn:xmpp:ping'/></iq>"
    )


@asynccontextmanager
async def tcp_user(srv: LiveServer, name: str) -> AsyncIterator[tuple[str, Client]]:
    """A new user online over TCP for the block: (bare JID, client)."""
    jid, password = await srv.make_user(name)
    client = await connect_slixmpp(srv, jid, password)
    try:
        yield jid, client
    finally:
        await disconnect(client)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# -- a session (XEP-0124 §7, XEP-0206 §3-5) --------------------------------------------------


async def test_login_over_bosh_and_chat_with_a_tcp_user_xep0206(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    jid, password = await server.make_user("boshy")
    bosh = Bosh(http, server)
    created = await bosh.create()
    # §7.2 and XEP-0206 §4: the creation response, with the stream features.
    attrs = created.attrib
    assert len(attrs["sid"]) >= 24
    assert (attrs["wait"], attrs["hold"], attrs["requests"]) == ("2", "1", "2")
    assert (attrs["polling"], attrs["maxpause"], attrs["inactivity"]) == ("2", "120", "60")
    assert attrs["ver"] == "1.11" and attrs["from"] == "localhost" and attrs["authid"]
    assert attrs[f"{{{XBOSH}}}version"] == "1.0"
    assert attrs[f"{{{XBOSH}}}restartlogic"] == "true"
    assert "PLAIN" in mechanisms(created)  # loopback counts as encrypted
    assert created.find(f"{{{STREAM}}}features/{{urn:ietf:params:xml:ns:xmpp-tls}}starttls") is None
    # SASL, restart, bind.
    got = await bosh.request(plain(jid, password))
    assert got.find(f"{{{SASL}}}success") is not None, ET.tostring(got)
    got = await bosh.request("", "xmpp:restart='true' to='localhost' xml:lang='en'")
    assert got.find(f"{{{STREAM}}}features/{{{BIND}}}bind") is not None, ET.tostring(got)
    got = await bosh.request(
        f"<iq xmlns='{CLIENT}' type='set' id='b1'><bind xmlns='{BIND}'>"
        "<resource>browser</resource></bind></iq>"
    )
    full = got.findtext(f".//{{{BIND}}}jid", "")
    assert full == f"{jid}/browser"
    await bosh.request(f"<presence xmlns='{CLIENT}'/>")
    async with tcp_user(server, "tcpfriend") as (friend_jid, friend):
        await bosh.request(
            f"<message xmlns='{CLIENT}' to='{friend_jid}' type='chat'><body>from the web</body>"
            "</message>"
        )
        msg = await friend.next_message()
        assert msg["body"] == "from the web" and msg["from"].full == full
        friend.send_message(mto=full, mbody="from tcp", mtype="chat")
        got_els = await bosh.collect(lambda els: "from tcp" in bodies(els))
        (back,) = [e for e in got_els if e.tag == f"{{{CLIENT}}}message"]
        assert back.get("from", "").startswith(friend_jid)


async def test_held_request_is_answered_empty_after_wait_xep0124_8(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    bosh = Bosh(http, server)
    created = await bosh.create(CREATE.replace("wait='2'", "wait='1'"))
    assert created.get("wait") == "1"
    start = time.monotonic()
    empty = await bosh.request()
    elapsed = time.monotonic() - start
    assert len(empty) == 0 and empty.get("type") is None, ET.tostring(empty)
    assert 0.8 < elapsed < 4, elapsed
    # §7.2: never longer than the server allows (http.bosh_max_wait).
    other = await Bosh(http, server).create(CREATE.replace("wait='2'", "wait='3600'"))
    assert other.get("wait") == "60"


async def test_unknown_domain_is_host_unknown_xep0124_17_2(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    el = await Bosh(http, server).create(CREATE.replace("'localhost'", "'nowhere.example'"))
    assert terminated(el) == "host-unknown", ET.tostring(el)


# -- request ids (§14) -----------------------------------------------------------------------


async def test_requests_sent_out_of_order_are_processed_in_rid_order_xep0124_14_2(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    jid, password = await server.make_user("order")
    bosh = Bosh(http, server)
    await bosh.login(jid, password)
    first, second = bosh.rid + 1, bosh.rid + 2
    later = asyncio.ensure_future(bosh.post(bosh.body(ping("second"), rid=second)))
    await asyncio.sleep(0.3)  # the later rid arrives first and waits for the gap
    assert not later.done()
    earlier = await bosh.post(bosh.body(ping("first"), rid=first))
    bosh.rid = second
    els = list(ET.fromstring(earlier[1])) + list(ET.fromstring((await later)[1]))
    ids = lambda es: [e.get("id") for e in es if e.tag == f"{{{CLIENT}}}iq"]  # noqa: E731
    if "second" not in ids(els):
        els += await bosh.collect(lambda more: "second" in ids(more))
    assert ids(els) == ["first", "second"]


async def test_retransmitted_rid_is_answered_again_identically_xep0124_14_3(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    jid, password = await server.make_user("resend")
    bosh = Bosh(http, server)
    await bosh.login(jid, password)
    bosh.rid += 1
    data = bosh.body(ping("once"))
    status, text = await bosh.post(data)
    assert status == 200 and "id='once'" in text
    assert await bosh.post(data) == (200, text)  # the same bytes, not processed twice
    # §14.3: a rid sent again while its first copy is open: that copy gets the
    # recoverable error and the reply goes to the new one.
    bosh.rid += 1
    data = bosh.body()
    first = asyncio.ensure_future(bosh.post(data))
    await asyncio.sleep(0.3)
    again = asyncio.ensure_future(bosh.post(data))
    status, text = await first
    assert ET.fromstring(text).get("type") == "error", text
    status, text = await again
    assert status == 200 and ET.fromstring(text).get("type") is None, text
    assert (await bosh.request(ping("after"))).find(f"{{{CLIENT}}}iq") is not None


async def test_unknown_sid_is_item_not_found_xep0124_17_2(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    bosh = Bosh(http, server)
    bosh.sid = "no-such-session"
    el = await bosh.request()
    assert terminated(el) == "item-not-found"


async def test_rid_beyond_the_window_terminates_the_session_xep0124_14_2(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    bosh = Bosh(http, server)
    created = await bosh.create()
    assert created.get("requests") == "2"
    bosh.rid += 2
    el = await bosh.request()  # rid + 3: outside a window of 2
    assert terminated(el) == "item-not-found", ET.tostring(el)
    bosh.rid -= 3
    assert terminated(await bosh.request()) == "item-not-found"  # the session is gone


# -- the end of a session (§13, §10) ---------------------------------------------------------


async def test_terminate_logs_out_and_the_contact_sees_unavailable_xep0124_13(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    jid, password = await server.make_user("leaver")
    async with tcp_user(server, "watcher") as (contact_jid, contact):
        bosh = Bosh(http, server)
        full = await bosh.login(jid, password)
        # Directed presence (RFC 6121 §4.6): unavailable follows when the session ends.
        await bosh.request(f"<presence xmlns='{CLIENT}' to='{contact_jid}'/>")
        await contact.next_presence(lambda p: p["from"].full == full and p["type"] != "unavailable")
        el = await bosh.request("", "type='terminate'")
        assert terminated(el) == "", ET.tostring(el)
        await contact.next_presence(lambda p: p["from"].full == full and p["type"] == "unavailable")
        assert terminated(await bosh.request()) == "item-not-found"


async def test_inactivity_ends_the_session_xep0124_10(make_server: MakeServer) -> None:
    srv = make_server(http={"bosh_inactivity": 5, "bosh_max_wait": 1})
    jid, password = await srv.make_user("idle")
    async with (
        tcp_user(srv, "observer") as (contact_jid, contact),
        aiohttp.ClientSession() as http,
    ):
        bosh = Bosh(http, srv)
        full = await bosh.login(jid, password)
        await bosh.request(f"<presence xmlns='{CLIENT}' to='{contact_jid}'/>")
        await contact.next_presence(lambda p: p["from"].full == full)
        start = time.monotonic()
        # No more requests: after 5 s the session ends as a lost connection does.
        await contact.next_presence(
            lambda p: p["from"].full == full and p["type"] == "unavailable", timeout=10
        )
        assert time.monotonic() - start > 3
        assert terminated(await bosh.request()) == "item-not-found"
        # A pause (at most maxpause) stretches the inactivity period once.
        paused = Bosh(http, srv)
        await paused.create()
        el = await paused.request("", "pause='10'")
        assert len(el) == 0 and terminated(el) is None
        await asyncio.sleep(7)
        assert terminated(await paused.request()) is None


async def test_resumption_after_the_bosh_session_expired_xep0198_5(
    make_server: MakeServer,
) -> None:
    """A BOSH session that stops polling hibernates (stream management, resumption on);
    resuming on a new BOSH session gets what was sent meanwhile, in order."""
    srv = make_server(http={"bosh_inactivity": 5, "bosh_max_wait": 1})
    jid, password = await srv.make_user("mobile")
    async with tcp_user(srv, "sender") as (_, friend), aiohttp.ClientSession() as http:
        bosh = Bosh(http, srv)
        full = await bosh.login(jid, password)
        got = await bosh.request(f"<enable xmlns='{SM}' resume='true'/>")
        enabled = got.find(f"{{{SM}}}enabled")
        assert enabled is not None and enabled.get("resume") == "true", ET.tostring(got)
        await bosh.request(f"<presence xmlns='{CLIENT}'/>")
        # Written to the session and never fetched...
        friend.send_message(mto=full, mbody="one", mtype="chat")
        await asyncio.sleep(6.5)
        # ... and sent once it hibernated.
        friend.send_message(mto=full, mbody="two", mtype="chat")
        await asyncio.sleep(0.3)
        assert terminated(await bosh.request()) == "item-not-found"
        again = Bosh(http, srv)
        await again.create()
        await again.request(plain(jid, password))
        await again.request("", "xmpp:restart='true' to='localhost'")
        got = await again.request(f"<resume xmlns='{SM}' previd='{enabled.get('id')}' h='0'/>")
        els = list(got)
        assert els and els[0].tag == f"{{{SM}}}resumed", ET.tostring(got)
        if bodies(els) != ["one", "two"]:
            els += await again.collect(lambda more: len(bodies(els + more)) >= 2, timeout=5)
        assert bodies(els) == ["one", "two"]


async def test_refused_stream_comes_back_as_a_terminate_body(make_server: MakeServer) -> None:
    """c2s.serve's per-address limit: the stream error arrives as remote-stream-error
    with the <stream:error/> inside (XEP-0124 §17.2, XEP-0206 §6)."""
    srv = make_server(limits={"max_connections_per_ip": 1})
    tcp = await RawClient.open(srv.port)
    try:
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as http:
            el = await Bosh(http, srv).create()
        assert terminated(el) == "remote-stream-error", ET.tostring(el)
        err = el.find(f"{{{STREAM}}}error")
        assert err is not None and err.find(f"{{{STREAMS_ERR}}}policy-violation") is not None
    finally:
        tcp.close()


# -- binding errors (§17, §12) -----------------------------------------------------------------


async def test_body_over_the_size_limit_is_refused_xep0124_17_2(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    bosh = Bosh(http, server)
    await bosh.create()
    big = f"<message xmlns='{CLIENT}' to='x@localhost'><body>{'a' * 300_000}</body></message>"
    el = await bosh.request(big)
    assert terminated(el) == "policy-violation"


@pytest.mark.parametrize(
    "data",
    [
        "not xml at all",
        f"<body xmlns='{HTTPBIND}' rid='1' to='localhost'><message></body>",
        "<body xmlns='urn:wrong' rid='1' to='localhost'/>",
        f"<body xmlns='{HTTPBIND}' to='localhost' ver='1.11'/>",  # no rid (§6)
        f"<body xmlns='{HTTPBIND}' rid='x' to='localhost' ver='1.11'/>",
    ],
)
async def test_malformed_requests_are_bad_request_xep0124_17_2(
    server: LiveServer, http: aiohttp.ClientSession, data: str
) -> None:
    status, text = await Bosh(http, server).post(data)
    assert status == 200 and terminated(ET.fromstring(text)) == "bad-request", text


@pytest.mark.parametrize(
    "payload",
    [
        "<!DOCTYPE body [<!ENTITY big 'aaaaaaaaaaaaaaaa'>]>",
        "<?pi data?>",
        "<!-- a comment -->",
    ],
)
async def test_dtd_comment_and_pi_are_refused_xep0124_6(
    server: LiveServer, http: aiohttp.ClientSession, payload: str
) -> None:
    bosh = Bosh(http, server)
    await bosh.create()
    bosh.rid += 1
    body = bosh.body()
    data = (
        payload + body
        if payload.startswith("<!DOCTYPE")
        else body.replace("></body>", f">{payload}</body>")
    )
    status, text = await bosh.post(data)
    assert status == 200 and terminated(ET.fromstring(text)) == "bad-request", text


async def test_legacy_client_gets_http_error_codes_xep0124_17_1(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    """Without 'ver' in the creation request the client is legacy: HTTP 400, not a
    terminal binding condition in a 200."""
    bosh = Bosh(http, server)
    status, _ = await bosh.post(bosh.body("", "to='localhost' wait='x' hold='1'"))
    assert status == 400
    status, text = await bosh.post(bosh.body("", "to='localhost' wait='x' hold='1' ver='1.6'"))
    assert status == 200 and terminated(ET.fromstring(text)) == "bad-request"


async def test_polling_too_often_is_a_policy_violation_xep0124_12(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    bosh = Bosh(http, server)
    created = await bosh.create(CREATE.replace("hold='1'", "hold='0'"))
    assert (created.get("hold"), created.get("requests")) == ("0", "1")
    assert created.find(f"{{{STREAM}}}features") is not None
    start = time.monotonic()
    first = await bosh.request()  # a poll is answered at once
    assert time.monotonic() - start < 1 and terminated(first) is None and len(first) == 0
    second = await bosh.request()
    assert terminated(second) == "policy-violation", ET.tostring(second)


async def test_pause_answers_every_held_request_at_once_xep0124_10(
    server: LiveServer, http: aiohttp.ClientSession
) -> None:
    bosh = Bosh(http, server)
    await bosh.create()  # wait 2 s
    bosh.rid += 1
    held = asyncio.ensure_future(bosh.post(bosh.body()))
    await asyncio.sleep(0.3)
    start = time.monotonic()
    el = await bosh.request("", "pause='30'")
    assert time.monotonic() - start < 1 and len(el) == 0 and terminated(el) is None
    status, text = await held
    assert status == 200 and terminated(ET.fromstring(text)) is None
    assert time.monotonic() - start < 1


# -- browsers ----------------------------------------------------------------------------------


async def test_cors_preflight_and_origins(server: LiveServer, http: aiohttp.ClientSession) -> None:
    bosh = Bosh(http, server)
    own = f"http://127.0.0.1:{server.http_port}"
    headers = {"Origin": own, "Access-Control-Request-Method": "POST"}
    async with http.options(bosh.url, headers=headers) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == own
        assert "Content-Type" in resp.headers["Access-Control-Allow-Headers"]
    async with http.options(bosh.url, headers={"Origin": "https://evil.example"}) as resp:
        assert resp.status == 403
    bosh.sid = "unknown"
    async with http.post(bosh.url, data=bosh.body(), headers={"Origin": own}) as resp:
        assert resp.headers["Access-Control-Allow-Origin"] == own
        assert resp.headers["Content-Type"] == "text/xml; charset=utf-8"
    async with http.post(
        bosh.url, data=bosh.body(), headers={"Origin": "https://evil.example"}
    ) as resp:
        assert resp.status == 403
    async with http.get(bosh.url) as resp:
        assert resp.status == 200 and "BOSH" in await resp.text()
