"""External components (XEP-0114) against a real server, through slixmpp's ComponentXMPP."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import slixmpp
from slixmpp import ComponentXMPP

from tests.live import LiveServer, RawClient, connect_slixmpp, disconnect, free_port

DOMAIN = "bridge.localhost"
SECRET = "s3cret"


@pytest.fixture(scope="module")
def comp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    port = free_port()
    srv = LiveServer(
        Path(tmp_path_factory.mktemp("components")),
        components={
            "listen": [f"127.0.0.1:{port}"],
            "secrets": {DOMAIN: SECRET, "raw.localhost": "x"},
        },
    )
    srv.component_port = port  # type: ignore[attr-defined]
    srv.start()
    yield srv
    assert srv.stop() == 0, srv.log()[-3000:]


class Bridge(ComponentXMPP):  # type: ignore[misc]
    def __init__(self, secret: str, port: int) -> None:
        super().__init__(DOMAIN, secret, "127.0.0.1", port)
        self.started = asyncio.Event()
        self.gone = asyncio.Event()
        self.messages: asyncio.Queue[slixmpp.Message] = asyncio.Queue()
        self.add_event_handler("session_start", lambda _: self.started.set())
        self.add_event_handler("disconnected", lambda _: self.gone.set())
        self.add_event_handler("message", self.messages.put_nowait)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")


async def _bridge(server: LiveServer, secret: str = SECRET) -> Bridge:
    bridge = Bridge(secret, server.component_port)  # type: ignore[attr-defined]
    bridge.connect()
    await asyncio.wait(
        [asyncio.ensure_future(bridge.started.wait()), asyncio.ensure_future(bridge.gone.wait())],
        timeout=10,
        return_when=asyncio.FIRST_COMPLETED,
    )
    return bridge


async def test_handshake_and_stanzas_both_ways(comp_server: LiveServer) -> None:
    """XEP-0114 §3 handshake; everything to the component's domain reaches it, its
    stanzas reach local users."""
    bridge = await _bridge(comp_server)
    assert bridge.started.is_set()
    jid, pw = await comp_server.make_user("alice")
    alice = await connect_slixmpp(comp_server, jid, pw)
    try:
        alice.send_message(mto=f"someone@{DOMAIN}", mbody="to the bridge", mtype="chat")
        msg = await asyncio.wait_for(bridge.messages.get(), 10)
        assert msg["body"] == "to the bridge"
        assert msg["from"].full == alice.boundjid.full
        bridge.send_message(
            mto=alice.boundjid.bare, mfrom=f"someone@{DOMAIN}", mbody="from the bridge"
        )
        msg = await alice.next_message()
        assert msg["body"] == "from the bridge"
        assert msg["from"].bare == f"someone@{DOMAIN}"
        await alice.plugin["xep_0199"].send_ping(DOMAIN, timeout=10)
    finally:
        bridge.disconnect()
        await asyncio.wait_for(bridge.gone.wait(), 10)
    try:
        # XEP-0114: with the component gone, its domain answers service-unavailable.
        alice.send_message(mto=f"someone@{DOMAIN}", mbody="anyone?", mtype="chat")
        msg = await alice.next_message()
        assert msg["type"] == "error"
        assert msg["error"]["condition"] == "service-unavailable"
    finally:
        await disconnect(alice)


async def test_wrong_secret_refused(comp_server: LiveServer) -> None:
    """XEP-0114 §3: a wrong handshake digest gets <not-authorized/> and the stream closes."""
    bridge = await _bridge(comp_server, "wrong")
    try:
        assert not bridge.started.is_set()
        await asyncio.wait_for(bridge.gone.wait(), 10)
    finally:
        bridge.disconnect()
    raw = await _raw_open(comp_server, "raw.localhost")
    await raw[0].send("<handshake>0000</handshake>")
    out = await raw[0].read_to_eof()
    assert "<not-authorized" in out


async def _raw_open(server: LiveServer, domain: str) -> tuple[RawClient, str]:
    raw = await RawClient.open(server.component_port)  # type: ignore[attr-defined]
    await raw.send(
        "<stream:stream xmlns='jabber:component:accept' "
        f"xmlns:stream='http://etherx.jabber.org/streams' to='{domain}'>"
    )
    await raw.read_until("<stream:stream")
    header = await raw.read_until(">")
    m = re.search(r"id='([^']+)'", header)
    return raw, m.group(1) if m else ""


async def test_spoofed_from_refused(comp_server: LiveServer) -> None:
    """A component may only send from its own domain: else <invalid-from/>."""
    raw, stream_id = await _raw_open(comp_server, "raw.localhost")
    digest = hashlib.sha1((stream_id + "x").encode()).hexdigest()
    await raw.send(f"<handshake>{digest}</handshake>")
    await raw.read_until("<handshake")
    await raw.send(
        "<message from='admin@localhost' to='someone@localhost'><body>x</body></message>"
    )
    out = await raw.read_to_eof()
    assert "<invalid-from" in out


async def test_unknown_component_domain(comp_server: LiveServer) -> None:
    raw, _ = await _raw_open(comp_server, "nope.localhost")
    out = await raw.read_to_eof()
    assert "<host-unknown" in out


async def _raw_component(server: LiveServer) -> RawClient:
    raw, stream_id = await _raw_open(server, "raw.localhost")
    digest = hashlib.sha1((stream_id + "x").encode()).hexdigest()
    await raw.send(f"<handshake>{digest}</handshake>")
    await raw.read_until("<handshake")
    return raw


@pytest.mark.parametrize(
    "stanza, condition",
    [
        ("<message to='{to}'><body>x</body></message>", "invalid-from"),
        (
            "<message xmlns:x='jabber:component:accept' x:from='a@raw.localhost' to='{to}'/>",
            "invalid-from",
        ),
        ("<message from='raw.localhost.evil' to='{to}'><body>x</body></message>", "invalid-from"),
        ("<message from='x@localhost' to='{to}'><body>x</body></message>", "invalid-from"),
        (
            "<stream:stream xmlns='jabber:component:accept' "
            "xmlns:stream='http://etherx.jabber.org/streams' to='localhost'>",
            "invalid-xml",
        ),
        ("<message from='a@raw.localhost\x01' to='{to}'/>", "not-well-formed"),
        (
            "<message from='a@raw.localhost' to='{to}'><body>\xc0\xbc</body></message>",
            "not-well-formed",
        ),
        ("<message from='a@raw.localhost' to='{to}' xmlns:xml='urn:evil'/>", "not-well-formed"),
    ],
)
async def test_a_component_cannot_spoof(
    comp_server: LiveServer, stanza: str, condition: str
) -> None:
    """XEP-0114 with RFC 6120 §8.1.2.2: a component sends only from its own domain,
    and anything else it tries ends its stream; the local user receives nothing."""
    jid, pw = await comp_server.make_user("alice")
    alice = await connect_slixmpp(comp_server, jid, pw)
    got: list[slixmpp.Message] = []
    alice.add_event_handler("message", got.append)
    raw = await _raw_component(comp_server)
    try:
        data = stanza.format(to=jid)
        await raw.send(data.encode("latin-1") if "\xc0" in data else data)
        out = await raw.read_to_eof()
        assert f"<{condition} " in out, out
        await asyncio.sleep(0.3)
        assert got == []
    finally:
        raw.close()
        await disconnect(alice)


async def test_qualified_from_dropped_from_a_component(comp_server: LiveServer) -> None:
    jid, pw = await comp_server.make_user("alice")
    alice = await connect_slixmpp(comp_server, jid, pw)
    raw = await _raw_component(comp_server)
    try:
        await raw.send(
            f"<message from='bot@raw.localhost' to='{jid}' type='chat' xmlns:e='urn:evil'"
            " e:from='admin@localhost'><body>hello</body></message>"
        )
        msg = await alice.next_message()
        assert msg["from"].full == "bot@raw.localhost"
        assert "admin@localhost" not in str(msg)
    finally:
        raw.close()
        await disconnect(alice)
