"""Push Notifications (XEP-0357) against a real server: a slixmpp component plays the
app server (the XMPP Push Service) and records the publishes it gets.

The user speaks raw XML (stream management, then TCP cut to hibernate, or a plain
close to go offline); the sender is a slixmpp client.
"""

from __future__ import annotations

import asyncio
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import slixmpp
from slixmpp import ComponentXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from tests.badinput.raw import BIND, CLIENT, MakeServer, authenticate, close_quietly, next_stanza
from tests.live import Client, LiveServer, RawClient, connect_slixmpp, disconnect, free_port

APP = "push.localhost"
SECRET = "s3cret"
NS = "urn:xmpp:push:0"
PUBSUB = "http://jabber.org/protocol/pubsub"
DATA = "jabber:x:data"
SM = "urn:xmpp:sm:3"
PUBLISH_OPTIONS = "http://jabber.org/protocol/pubsub#publish-options"


class AppServer(ComponentXMPP):  # type: ignore[misc]
    """Answers every pubsub publish with a result, or with an error when ``failing``."""

    def __init__(self, port: int) -> None:
        super().__init__(APP, SECRET, "127.0.0.1", port)
        self.started = asyncio.Event()
        self.gone = asyncio.Event()
        self.failing = False
        self.publishes: asyncio.Queue[ET.Element] = asyncio.Queue()
        self.add_event_handler("session_start", lambda _: self.started.set())
        self.add_event_handler("disconnected", lambda _: self.gone.set())
        self.register_handler(
            Callback(
                "push publish",
                MatchXPath(f"{{{self.default_ns}}}iq/{{{PUBSUB}}}pubsub"),
                self._publish,
            )
        )

    def _publish(self, iq: slixmpp.Iq) -> None:
        self.publishes.put_nowait(ET.fromstring(str(iq)))
        reply = iq.reply()
        if self.failing:
            reply["type"] = "error"
            reply["error"]["type"] = "cancel"
            reply["error"]["condition"] = "item-not-found"
        reply.send()

    async def next_publish(self, timeout: float = 10) -> ET.Element:
        return await asyncio.wait_for(self.publishes.get(), timeout)


@pytest.fixture
async def app_server(make_server: MakeServer) -> AsyncIterator[tuple[LiveServer, AppServer]]:
    """A server with the app server connected as its component."""
    port = free_port()
    srv = make_server(components={"listen": [f"127.0.0.1:{port}"], "secrets": {APP: SECRET}})
    app = AppServer(port)
    app.connect()
    await asyncio.wait_for(app.started.wait(), 10)
    yield srv, app
    app.disconnect()
    await asyncio.wait_for(app.gone.wait(), 10)


@asynccontextmanager
async def sender(srv: LiveServer) -> AsyncIterator[Client]:
    jid, password = await srv.make_user("sender")
    bob = await connect_slixmpp(srv, jid, password)
    try:
        yield bob
    finally:
        await disconnect(bob)


async def answer_to(c: RawClient, ident: str) -> ET.Element:
    while True:
        el = await next_stanza(c)
        if el.tag == f"{{{CLIENT}}}iq" and el.get("id") == ident:
            return el


async def push_user(srv: LiveServer, node: str, stream_management: bool) -> tuple[RawClient, str]:
    """A fresh account logged in raw, available, with push enabled to the app
    server (node and a publish-options secret): (client, bare JID)."""
    jid, password = await srv.make_user("pushed")
    c = await authenticate(srv, jid, password)
    await c.send(
        f"<iq type='set' id='b'><bind xmlns='{BIND}'><resource>phone</resource></bind></iq>"
    )
    assert (await answer_to(c, "b")).get("type") == "result"
    if stream_management:
        await c.send(f"<enable xmlns='{SM}' resume='true'/>")
        await c.read_until("<enabled")
    await c.send("<presence/>")
    await c.send(
        f"<iq type='set' id='push'><enable xmlns='{NS}' jid='{APP}' node='{node}'>"
        f"<x xmlns='{DATA}' type='submit'>"
        f"<field var='FORM_TYPE'><value>{PUBLISH_OPTIONS}</value></field>"
        f"<field var='secret'><value>{SECRET}-{node}</value></field></x></enable></iq>"
    )
    reply = await answer_to(c, "push")
    assert reply.get("type") == "result", ET.tostring(reply)
    return c, jid


def fields(x: ET.Element | None) -> dict[str, str]:
    assert x is not None
    return {f.get("var", ""): f.findtext(f"{{{DATA}}}value", "") for f in x}


async def test_hibernated_user_gets_a_publish_with_summary_and_secret_xep0357_7(
    app_server: tuple[LiveServer, AppServer],
) -> None:
    """§5 enable with publish-options; §7 a message while the only session is hibernated
    is published to the node: the count, the sender, the secret, never the body (§9)."""
    srv, app = app_server
    c, alice = await push_user(srv, "node-a", stream_management=True)
    async with sender(srv) as bob:
        c.writer.transport.abort()  # lost, not closed: the session hibernates
        await asyncio.sleep(0.3)
        for n in (1, 2):
            bob.send_message(mto=alice, mbody=f"private words {n}", mtype="chat")
            iq = await app.next_publish()
            assert iq.get("from") == alice and iq.get("type") == "set"
            publish = iq.find(f".//{{{PUBSUB}}}publish")
            assert publish is not None and publish.get("node") == "node-a"
            summary = fields(publish.find(f".//{{{NS}}}notification/{{{DATA}}}x"))
            assert summary == {
                "FORM_TYPE": "urn:xmpp:push:summary",
                "message-count": str(n),
                "last-message-sender": bob.boundjid.full,
            }
            options = fields(iq.find(f".//{{{PUBSUB}}}publish-options/{{{DATA}}}x"))
            assert options == {"FORM_TYPE": PUBLISH_OPTIONS, "secret": f"{SECRET}-node-a"}
            assert "private words" not in ET.tostring(iq, encoding="unicode")
        assert app.publishes.empty()


async def test_registration_removed_after_three_error_answers_xep0357_7_1(
    app_server: tuple[LiveServer, AppServer],
) -> None:
    """§7.1: an app server answering errors is disabled after push.max_errors (3)
    in a row; the next message for the offline user is published nowhere."""
    srv, app = app_server
    app.failing = True
    c, carol = await push_user(srv, "node-c", stream_management=False)
    await close_quietly(c)  # no stream management: the session ends, carol is offline
    async with sender(srv) as bob:
        await asyncio.sleep(0.3)
        for n in range(3):
            bob.send_message(mto=carol, mbody=f"m{n}", mtype="chat")
            await app.next_publish()
        deadline = time.monotonic() + 10
        while f"{carol}: push disabled to {APP}" not in srv.log():
            assert time.monotonic() < deadline, srv.log()[-3000:]
            await asyncio.sleep(0.05)
        bob.send_message(mto=carol, mbody="m3", mtype="chat")
        try:
            iq = await app.next_publish(timeout=1.5)
            raise AssertionError(f"published after disabling: {ET.tostring(iq)!r}")
        except TimeoutError:
            pass


async def test_unacknowledged_messages_are_pushed_when_the_connection_drops_xep0357_7(
    app_server: tuple[LiveServer, AppServer],
) -> None:
    """A phone dropping off the network silently: messages were written to a
    connection that looked alive and never acknowledged (XEP-0198). When the session
    hibernates with no live session left, one notification counts them."""
    srv, app = app_server
    c, dave = await push_user(srv, "node-d", stream_management=True)
    async with sender(srv) as bob:
        for n in range(2):
            bob.send_message(mto=dave, mbody=f"unread {n}", mtype="chat")
        for _ in range(2):  # written to dave's connection, which never acknowledges
            while (await next_stanza(c)).tag != f"{{{CLIENT}}}message":
                pass
        assert app.publishes.empty()  # delivered to a live session: no push
        c.writer.transport.abort()
        iq = await app.next_publish()
        publish = iq.find(f".//{{{PUBSUB}}}publish")
        assert publish is not None and publish.get("node") == "node-d"
        summary = fields(publish.find(f".//{{{NS}}}notification/{{{DATA}}}x"))
        assert summary["message-count"] == "2"
        assert summary["last-message-sender"] == bob.boundjid.full
        await asyncio.sleep(0.3)
        assert app.publishes.empty()
