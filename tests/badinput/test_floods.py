"""Floods and connection limits: one noisy client never takes others down."""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
import time

from tests.badinput.raw import (
    MakeServer,
    close_quietly,
    expect_stream_error,
    header,
    login,
    next_stanza,
    ping,
    stanza_error,
)
from tests.live import LiveServer, RawClient, free_port

BURST = 2000


async def test_message_burst_to_self(server: LiveServer, witness: RawClient) -> None:
    """2,000 small messages in one write: all delivered in order, the server and a
    second session keep answering."""
    c, jid = await login(server, "burst")
    data = "".join(
        f"<message to='{jid}' id='b{i}' type='chat'><body>{i}</body></message>"
        for i in range(BURST)
    )
    await c.send(data)
    # The witness is served while the burst is processed.
    started = time.monotonic()
    await ping(witness, "during-burst", timeout=10)
    assert time.monotonic() - started < 10
    for i in range(BURST):
        el = await next_stanza(c, timeout=20)
        assert el.get("id") == f"b{i}", el.attrib
    await ping(c, timeout=10)
    await close_quietly(c)


async def test_burst_of_bad_connections(server: LiveServer, witness: RawClient) -> None:
    """Fifty connections sending garbage at once each get their own stream error."""

    async def one(i: int) -> None:
        c = await RawClient.open(server.port)
        await c.send(header() + f"<message><x{i}></message>")
        await expect_stream_error(c, "not-well-formed", header=True, timeout=10)
        await close_quietly(c)

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(50))), 30)


async def test_iq_burst_with_errors(server: LiveServer, witness: RawClient) -> None:
    """A burst of iqs nobody handles: one error each, in order, and the stream lives."""
    c, _ = await login(server, "iqburst")
    n = 300
    await c.send(
        "".join(
            f"<iq type='get' id='q{i}' to='localhost'><q xmlns='urn:example:none'/></iq>"
            for i in range(n)
        )
    )
    for i in range(n):
        el = await next_stanza(c, timeout=10)
        assert el.get("id") == f"q{i}" and el.get("type") == "error"
    await ping(c)
    await close_quietly(c)


async def open_accepted(port: int, timeout: float = 5) -> RawClient:
    """A connection whose stream the server opened (retrying while the count of the
    start-up probe connection is still held)."""
    deadline = time.monotonic() + timeout
    while True:
        c = await RawClient.open(port)
        try:
            await c.open_stream()
            return c
        except AssertionError:
            await close_quietly(c)
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_max_connections_per_ip(make_server: MakeServer) -> None:
    srv = make_server(limits={"max_connections_per_ip": 3})
    clients = [await open_accepted(srv.port) for _ in range(3)]
    # The fourth is told why and closed, without a stream to negotiate on. (It sends
    # nothing: bytes the server never reads could turn the close into a reset.)
    fourth = await RawClient.open(srv.port)
    out = await expect_stream_error(fourth, "policy-violation", header=True)
    assert "<stream:features" not in out, out
    await close_quietly(fourth)
    # The three are unaffected: they still negotiate.
    for c in clients:
        await c.starttls()
    # Closing one frees a slot.
    await close_quietly(clients.pop())
    clients.append(await open_accepted(srv.port))
    await close_quietly(*clients)


async def test_flood_does_not_starve_others_on_one_server(make_server: MakeServer) -> None:
    """A client past c2s_rate is slowed down, not dropped, and others keep their latency."""
    srv = make_server(limits={"c2s_rate": 65536})
    flooder, jid = await login(srv, "flood")
    calm, _ = await login(srv, "calm")
    body = "x" * 200
    n = 500
    data = "".join(
        f"<message to='{jid}' id='f{i}'><body>{body}</body></message>" for i in range(n)
    )  # ~125 KB: about two seconds at 64 KB/s
    sending = asyncio.create_task(flooder.send(data))
    started = time.monotonic()
    await ping(calm, "calm", timeout=5)
    assert time.monotonic() - started < 2
    seen = 0
    while seen < n:
        el = await next_stanza(flooder, timeout=15)
        if el.get("id", "").startswith("f"):
            seen += 1
    await sending
    await ping(flooder)
    await close_quietly(flooder, calm)


async def test_a_client_that_stops_reading_is_cut_off(make_server: MakeServer) -> None:
    """Output is bounded: a client that never reads what it is sent is disconnected once
    16 MiB wait for it, even with stream management resumption on (it gets no second
    chance), and the sender is not slowed down."""
    srv = make_server(limits={"c2s_rate": 1 << 30})
    # A small receive buffer: the kernel must not absorb the flood for the sink.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", srv.port))
    sock.setblocking(False)
    sink = RawClient(*await asyncio.open_connection(sock=sock))
    user, password = await srv.make_user("sink")
    sink_jid = await sink.login(user, password)
    await sink.send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
    await sink.read_until("<enabled")
    sink.writer.transport.pause_reading()  # never reads again
    sender, _ = await login(srv, "firehose")
    body = "y" * 200_000
    for i in range(150):  # about 30 MB
        await sender.send(f"<message to='{sink_jid}' id='h{i}'><body>{body}</body></message>")
    deadline = time.monotonic() + 30
    while "output buffer full" not in srv.log() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert "output buffer full" in srv.log()
    await asyncio.sleep(0.3)
    # The session ended (it did not hibernate): an iq to it is answered by the server.
    await sender.send(
        f"<iq type='get' id='gone' to='{sink_jid}'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    while True:
        el = await next_stanza(sender, timeout=10)
        if el.get("id") == "gone":
            break
    assert stanza_error(el) == "service-unavailable"
    await close_quietly(sender, sink)
    assert "hibernating" not in srv.log()


async def _flood(srv: LiveServer, to: str, mb: int = 30) -> RawClient:
    """A local user sends ``mb`` megabytes of messages to ``to``."""
    sender, _ = await login(srv, "firehose")
    body = "y" * 200_000
    for i in range(mb * 5):
        await sender.send(f"<message to='{to}' id='h{i}'><body>{body}</body></message>")
    return sender


async def _wait_for_log(srv: LiveServer, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in srv.log() and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert text in srv.log(), srv.log()[-3000:]


def _small_receive_buffer() -> socket.socket:
    # The kernel must not absorb the flood for a peer that stops reading.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    return sock


async def test_a_component_that_stops_reading_is_cut_off(make_server: MakeServer) -> None:
    """XEP-0114 components have the same output bound as clients: past 16 MiB waiting,
    the component's stream is cut, and its domain then answers as disconnected."""
    port = free_port()
    srv = make_server(
        limits={"c2s_rate": 1 << 30},
        components={"listen": [f"127.0.0.1:{port}"], "secrets": {"sink.localhost": "k"}},
    )
    sock = _small_receive_buffer()
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    comp = RawClient(*await asyncio.open_connection(sock=sock))
    await comp.send(
        "<stream:stream xmlns='jabber:component:accept' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='sink.localhost'>"
    )
    head = await comp.read_until(">", timeout=5)
    head += await comp.read_until(">", timeout=5) if "<stream:stream" not in head else ""
    m = re.search(r"id='([^']+)'", head + comp.buffer)
    assert m, head
    await comp.send(
        f"<handshake>{hashlib.sha1((m.group(1) + 'k').encode()).hexdigest()}</handshake>"
    )
    await comp.read_until("<handshake")
    comp.writer.transport.pause_reading()  # never reads again
    sender = await _flood(srv, "bot@sink.localhost")
    await _wait_for_log(srv, "output buffer full")
    await asyncio.sleep(0.3)
    await sender.send(
        "<iq type='get' id='gone' to='sink.localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    while True:
        el = await next_stanza(sender, timeout=10)
        if el.get("id") == "gone":
            break
    assert el.get("type") == "error"
    await close_quietly(sender, comp)


async def test_a_federated_peer_that_stops_reading_is_cut_off(make_server: MakeServer) -> None:
    """Outgoing s2s streams are bounded too: a peer that authenticates and then stops
    reading has its stream cut past 16 MiB; the server itself is unharmed."""
    accepted: asyncio.Queue[asyncio.StreamWriter] = asyncio.Queue()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen = b""
        while b"</db:result>" not in seen:
            chunk = await reader.read(65536)
            if not chunk:
                return
            if b"<stream:stream" in chunk and b"<stream:stream" not in seen:
                writer.write(
                    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                    b"xmlns:db='jabber:server:dialback' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' id='sink-1' "
                    b"from='sink.test' to='localhost' version='1.0'>"
                    b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                    b"</stream:features>"
                )
            seen += chunk
        writer.write(b"<db:result from='sink.test' to='localhost' type='valid'/>")
        await writer.drain()
        writer.transport.pause_reading()  # never reads again
        accepted.put_nowait(writer)
        await asyncio.sleep(60)

    listener = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    srv = make_server(
        limits={"c2s_rate": 1 << 30},
        s2s={"routes": {"sink.test": f"127.0.0.1:{port}"}, "policies": {"sink.test": "insecure"}},
    )
    try:
        sender = await _flood(srv, "someone@sink.test")
        writer = await asyncio.wait_for(accepted.get(), 10)
        await _wait_for_log(srv, "output buffer full")
        await ping(sender)
        await close_quietly(sender)
        writer.close()
    finally:
        listener.close()
