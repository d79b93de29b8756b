"""Connection life cycle under bad behaviour: silence before authentication, and
server shutdown with clients connected (RFC 6120 §4.9.3.4, §4.9.3.21)."""

from __future__ import annotations

import asyncio
import time

from tests.badinput.raw import (
    MakeServer,
    close_quietly,
    expect_stream_error,
    login,
    next_stanza,
    ping,
)
from tests.live import LiveServer, RawClient


async def test_silent_client_times_out(make_server: MakeServer) -> None:
    """A client that never authenticates is cut off with <connection-timeout/>."""
    srv = make_server(c2s={"auth_timeout": 1})
    idle = await RawClient.open(srv.port)
    await idle.open_stream()
    mute = await RawClient.open(srv.port)  # never even sends a header
    await expect_stream_error(idle, "connection-timeout", timeout=5)
    await expect_stream_error(mute, "connection-timeout", header=True, timeout=5)
    # A bound session is not subject to the authentication timeout.
    c, _ = await login(srv, "patient")
    await asyncio.sleep(1.5)
    await ping(c)
    await close_quietly(idle, mute, c)


async def test_shutdown_sends_system_shutdown(make_server: MakeServer) -> None:
    """SIGTERM: every connected client gets <system-shutdown/> and EOF; exit status 0."""
    srv = make_server()
    bound, _ = await login(srv, "bye")
    unauth = await RawClient.open(srv.port)
    await unauth.open_stream()
    code = await asyncio.to_thread(srv.stop)
    assert code == 0, srv.log()[-3000:]
    assert "Traceback" not in srv.log(), srv.log()[-3000:]
    await expect_stream_error(bound, "system-shutdown")
    await expect_stream_error(unauth, "system-shutdown")
    await close_quietly(bound, unauth)


async def test_shutdown_with_a_client_that_does_not_answer(make_server: MakeServer) -> None:
    """A TLS client that never answers close_notify (here: its loop is blocked while the
    server stops) delays shutdown by a bounded grace period, without tracebacks."""
    srv = make_server()
    stuck, _ = await login(srv, "stuck")
    started = time.monotonic()
    code = srv.stop()  # blocking on purpose: the client cannot read meanwhile
    assert code == 0 and time.monotonic() - started < 10, srv.log()[-3000:]
    assert "Traceback" not in srv.log(), srv.log()[-3000:]
    await expect_stream_error(stuck, "system-shutdown")
    await close_quietly(stuck)


async def test_stored_data_survives_a_killed_stream(server: LiveServer, witness: RawClient) -> None:
    """A roster item saved before the client's stream died of bad XML is still there."""
    jid, password = await server.make_user("keeper")
    c = await RawClient.open(server.port)
    await c.login(jid, password, "one")
    await c.send(
        "<iq type='set' id='rs'><query xmlns='jabber:iq:roster'>"
        "<item jid='friend@example.org' name='Friend'/></query></iq>"
    )
    while (el := await next_stanza(c)).get("id") != "rs":
        pass
    assert el.get("type") == "result"
    await c.send(b"<message><body>\xff</body></message>")
    await expect_stream_error(c, "not-well-formed")
    await close_quietly(c)
    c = await RawClient.open(server.port)
    await c.login(jid, password, "two")
    await c.send("<iq type='get' id='rg'><query xmlns='jabber:iq:roster'/></iq>")
    while (el := await next_stanza(c)).get("id") != "rg":
        pass
    items = el.findall(".//{jabber:iq:roster}item")
    assert [(i.get("jid"), i.get("name")) for i in items] == [("friend@example.org", "Friend")]
    await close_quietly(c)
