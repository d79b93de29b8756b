"""Two Descant servers federating with each other (RFC 6120 s2s, XEP-0220 dialback)."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slixmpp.exceptions import IqError

from descant.s2s.dialback import make_key
from tests.live import LiveServer, RawClient, connect_slixmpp, disconnect, free_port

SECRET_B = "b-dialback-secret"


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveServer, LiveServer]]:
    root = Path(tmp_path_factory.mktemp("pair"))
    pa, pb = free_port(), free_port()
    a = LiveServer(
        root / "a",
        server={"domains": ["a.test"]},
        s2s={
            "listen": [f"127.0.0.1:{pa}"],
            "routes": {"b.test": f"127.0.0.1:{pb}", "c.test": f"127.0.0.1:{pb}"},
        },
    )
    b = LiveServer(
        root / "b",
        server={"domains": ["b.test", "c.test"]},
        s2s={
            "listen": [f"127.0.0.1:{pb}"],
            "dialback_secret": SECRET_B,
            "routes": {
                "a.test": f"127.0.0.1:{pa}",
                "conference.a.test": f"127.0.0.1:{pa}",
                "down.test": f"127.0.0.1:{free_port()}",
            },
        },
    )
    a.s2s_port, b.s2s_port = pa, pb
    a.start()
    b.start()
    yield a, b
    assert b.stop() == 0, b.log()[-3000:]
    assert a.stop() == 0, a.log()[-3000:]


async def _online_pair(a: LiveServer, b: LiveServer) -> tuple[Any, Any, str, str]:
    """Alice on server A (a.test) and Bob on server B (b.test), both online."""
    a_jid, a_pw = await a.make_user("alice", "a.test")
    b_jid, b_pw = await b.make_user("bob", "b.test")
    return (
        await connect_slixmpp(a, a_jid, a_pw),
        await connect_slixmpp(b, b_jid, b_pw),
        a_jid,
        b_jid,
    )


async def test_message_and_subscription_both_ways(pair: tuple[LiveServer, LiveServer]) -> None:
    """RFC 6121 §3 subscription handshake and §5 messages across a dialback-authenticated link."""
    a, b = pair
    alice, bob, a_jid, b_jid = await _online_pair(a, b)
    try:
        alice.send_message(mto=b_jid, mbody="hello bob", mtype="chat")
        msg = await bob.next_message(timeout=15)
        assert msg["body"] == "hello bob"
        assert msg["from"].bare == a_jid
        bob.send_message(mto=alice.boundjid.full, mbody="hi alice", mtype="chat")
        msg = await alice.next_message(timeout=10)
        assert msg["body"] == "hi alice"

        alice.send_presence_subscription(pto=b_jid)
        deadline = time.monotonic() + 15
        while not (
            b_jid in alice.client_roster
            and alice.client_roster[b_jid]["subscription"] == "both"
            and a_jid in bob.client_roster
            and bob.client_roster[a_jid]["subscription"] == "both"
        ):
            assert time.monotonic() < deadline, "subscription did not complete"
            await asyncio.sleep(0.1)
        bob.send_presence(pstatus="remote hello")
        p = await alice.next_presence(
            lambda p: p["from"].bare == b_jid and p["status"] == "remote hello", timeout=10
        )
        assert p["from"].full == bob.boundjid.full
    finally:
        await disconnect(alice, bob)


async def test_iq_ping_and_disco_both_ways(pair: tuple[LiveServer, LiveServer]) -> None:
    """XEP-0199 ping and XEP-0030 disco#info to the remote server."""
    a, b = pair
    alice, bob, _a_jid, _b_jid = await _online_pair(a, b)
    try:
        await alice.plugin["xep_0199"].send_ping("b.test", timeout=10)
        await bob.plugin["xep_0199"].send_ping("a.test", timeout=10)
        info = await alice.plugin["xep_0030"].get_info(jid="b.test", timeout=10)
        assert "urn:xmpp:ping" in info["disco_info"]["features"]
    finally:
        await disconnect(alice, bob)


async def test_vcard_of_a_remote_user(pair: tuple[LiveServer, LiveServer]) -> None:
    """XEP-0054 across servers: a user's vCard is read through federation."""
    a, b = pair
    alice, bob, _a_jid, b_jid = await _online_pair(a, b)
    try:
        for client in (alice, bob):
            client.register_plugin("xep_0054")
        card = bob.plugin["xep_0054"].make_vcard()
        card["FN"] = "Bob of B"
        await bob.plugin["xep_0054"].publish_vcard(card, timeout=10)
        got = await alice.plugin["xep_0054"].get_vcard(b_jid, cached=False, timeout=10)
        assert got["vcard_temp"]["FN"] == "Bob of B"
    finally:
        await disconnect(alice, bob)


async def test_unreachable_peer_bounces(pair: tuple[LiveServer, LiveServer]) -> None:
    """RFC 6120 §8.3.3.14: nothing listens for down.test → remote-server-not-found, quickly."""
    _, b = pair
    b_jid, b_pw = await b.make_user("bob", "b.test")
    bob = await connect_slixmpp(b, b_jid, b_pw)
    try:
        started = time.monotonic()
        bob.send_message(mto="nobody@down.test", mbody="anyone?", mtype="chat")
        msg = await bob.next_message(timeout=10)
        assert msg["type"] == "error"
        assert msg["error"]["condition"] in ("remote-server-not-found", "remote-server-timeout")
        assert time.monotonic() - started < 10
        with pytest.raises(IqError) as exc:
            await bob.plugin["xep_0199"].send_ping("down.test", timeout=10)
        assert exc.value.iq["error"]["condition"] == "remote-server-not-found"
    finally:
        await disconnect(bob)


async def _raw_s2s(server: LiveServer, frm: str, to: str) -> tuple[RawClient, str]:
    """A raw incoming s2s stream after STARTTLS; returns it and its stream id."""
    raw = await RawClient.open(server.s2s_port)
    header = (
        "<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' "
        f"xmlns:stream='http://etherx.jabber.org/streams' from='{frm}' to='{to}' version='1.0'>"
    )
    await raw.send(header)
    await raw.read_until("</stream:features>")
    await raw.starttls()
    await raw.send(header)
    out = await raw.read_until("</stream:features>")
    m = re.search(r"<stream:stream [^>]*id='([^']+)'", out)
    assert m, out
    return raw, m.group(1)


async def test_piggybacking_and_spoofed_from(pair: tuple[LiveServer, LiveServer]) -> None:
    """XEP-0220 §2.4 piggybacking: b.test and c.test are authenticated on one stream
    (each verified by B, their Authoritative Server); any other from domain is refused
    with <invalid-from/> (RFC 6120 §4.9.3.9)."""
    a, _ = pair
    a_jid, a_pw = await a.make_user("alice", "a.test")
    alice = await connect_slixmpp(a, a_jid, a_pw)
    raw, sid = await _raw_s2s(a, "b.test", "a.test")
    try:
        for dom in ("b.test", "c.test"):
            key = make_key(SECRET_B.encode(), "a.test", dom, sid)
            await raw.send(f"<db:result from='{dom}' to='a.test'>{key}</db:result>")
            out = await raw.read_until("/>", timeout=15)
            assert "from='a.test'" in out and f"to='{dom}'" in out and "valid" in out, out
            assert "invalid" not in out
        for dom in ("b.test", "c.test"):
            await raw.send(
                f"<message from='x@{dom}' to='{a_jid}' type='chat'><body>via {dom}</body></message>"
            )
            msg = await alice.next_message(timeout=10)
            assert msg["body"] == f"via {dom}"
            assert msg["from"].bare == f"x@{dom}"
        await raw.send(f"<message from='x@evil.test' to='{a_jid}'><body>spoof</body></message>")
        out = await raw.read_to_eof()
        assert "<invalid-from" in out
    finally:
        raw.close()
        await disconnect(alice)


async def test_wrong_dialback_key_refused(pair: tuple[LiveServer, LiveServer]) -> None:
    """XEP-0220 §2.1.2: B does not confirm a forged key, so A answers type='invalid'
    and stanzas from b.test stay refused on that stream."""
    a, _ = pair
    raw, _sid = await _raw_s2s(a, "b.test", "a.test")
    try:
        await raw.send("<db:result from='b.test' to='a.test'>0123456789abcdef</db:result>")
        out = await raw.read_until("/>", timeout=15)
        assert "type='invalid'" in out, out
        await raw.send("<message from='x@b.test' to='someone@a.test'><body>x</body></message>")
        assert "<invalid-from" in await raw.read_to_eof()
    finally:
        raw.close()


async def test_authoritative_server_answers_verify(pair: tuple[LiveServer, LiveServer]) -> None:
    """XEP-0220 §2.3: as Authoritative Server, B checks a key against its XEP-0185 secret."""
    _, b = pair
    raw, _sid = await _raw_s2s(b, "a.test", "b.test")
    try:
        good = make_key(SECRET_B.encode(), "a.test", "b.test", "stream-1")
        await raw.send(f"<db:verify from='a.test' to='b.test' id='stream-1'>{good}</db:verify>")
        out = await raw.read_until("/>")
        assert "type='valid'" in out and "id='stream-1'" in out, out
        await raw.send("<db:verify from='a.test' to='b.test' id='stream-2'>f00</db:verify>")
        out = await raw.read_until("/>")
        assert "type='invalid'" in out, out
    finally:
        raw.close()


async def test_idle_stream_closed(make_server: Any) -> None:
    """``s2s.idle_timeout``: a stream that carries no stanzas is closed; whitespace
    keepalives (RFC 6120 §4.6.1) are sent meanwhile."""
    srv: LiveServer = make_server(s2s={"idle_timeout": 2, "keepalive": 1})
    raw, _sid = await _raw_s2s(srv, "b.test", "localhost")
    try:
        started = time.monotonic()
        out = await raw.read_to_eof(timeout=10)
        assert out.startswith(" ")
        assert out.rstrip().endswith("</stream:stream>")
        assert 1.5 < time.monotonic() - started < 8
    finally:
        raw.close()


@pytest.fixture(scope="module")
def verified_pair(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LiveServer, LiveServer]]:
    """Two servers with certificates from one CA, each requiring verified certificates."""
    from tests.interop.prosody import ScratchCA

    root = Path(tmp_path_factory.mktemp("verified"))
    ca = ScratchCA(root)
    ports = {"v1.test": free_port(), "v2.test": free_port()}
    servers = []
    for dom, other in (("v1.test", "v2.test"), ("v2.test", "v1.test")):
        ca.issue(dom, root / f"{dom}.crt", root / f"{dom}.key")
        srv = LiveServer(
            root / dom,
            server={"domains": [dom]},
            tls={"cert": str(root / f"{dom}.crt"), "key": str(root / f"{dom}.key")},
            s2s={
                "listen": [f"127.0.0.1:{ports[dom]}"],
                "routes": {other: f"127.0.0.1:{ports[other]}"},
                "policy": "verify",
                "ca_file": str(ca.path),
            },
        )
        srv.start()
        servers.append(srv)
    yield servers[0], servers[1]
    for srv in servers:
        assert srv.stop() == 0, srv.log()[-3000:]


async def test_sasl_external_with_verified_certificates(
    verified_pair: tuple[LiveServer, LiveServer],
) -> None:
    """RFC 6120 §6.4 / XEP-0178: with certificates valid for both domains (RFC 6125),
    each server authenticates to the other by SASL EXTERNAL, no dialback."""
    a, b = verified_pair
    a_jid, a_pw = await a.make_user("alice", "v1.test")
    b_jid, b_pw = await b.make_user("bob", "v2.test")
    alice = await connect_slixmpp(a, a_jid, a_pw)
    bob = await connect_slixmpp(b, b_jid, b_pw)
    try:
        alice.send_message(mto=b_jid, mbody="verified hello", mtype="chat")
        assert (await bob.next_message(timeout=15))["body"] == "verified hello"
        bob.send_message(mto=a_jid, mbody="verified reply", mtype="chat")
        assert (await alice.next_message(timeout=15))["body"] == "verified reply"
    finally:
        await disconnect(alice, bob)
    for srv in (a, b):
        log = srv.log()
        assert "authenticated by certificate (EXTERNAL)" in log
        assert "dialback for" not in log


async def test_remote_muc_occupant(pair: tuple[LiveServer, LiveServer]) -> None:
    """XEP-0045 across servers: bob@b.test enters a room on conference.a.test (a MUC
    host of A, a domain dialback-authenticated on its own) and gets its messages."""
    a, b = pair
    alice, bob, _a_jid, _b_jid = await _online_pair(a, b)
    room = f"fed{int(time.monotonic() * 1000)}@conference.a.test"
    try:
        for c in (alice, bob):
            c.register_plugin("xep_0045")
        muc_a, muc_b = alice.plugin["xep_0045"], bob.plugin["xep_0045"]
        await muc_a.join_muc_wait(room, "alice", timeout=10)
        await muc_a.set_room_config(room, await muc_a.get_room_config(room))
        pres, _, occupants, _ = await muc_b.join_muc_wait(room, "bob", timeout=15)
        assert pres["from"].full == f"{room}/bob"
        assert "alice" in [p["from"].resource for p in occupants]
        alice.send_message(mto=room, mbody="hello federation", mtype="groupchat")
        deadline = time.monotonic() + 10
        while True:
            msg = await bob.next_message(timeout=max(0.1, deadline - time.monotonic()))
            if msg["body"] == "hello federation":
                break
        assert msg["from"].full == f"{room}/alice"
        bob.send_message(mto=room, mbody="hello from b", mtype="groupchat")
        while True:
            msg = await alice.next_message(timeout=10)
            if msg["body"] == "hello from b":
                break
        assert msg["from"].full == f"{room}/bob"
    finally:
        await disconnect(alice, bob)


async def test_silent_peer_times_out(make_server: Any) -> None:
    """A peer that accepts TCP and never answers: the stanza bounces with
    remote-server-timeout once set-up exceeds 3 × s2s.connect_timeout."""
    accepted: list[asyncio.StreamWriter] = []

    async def hold(_r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    srv: LiveServer = make_server(
        s2s={"connect_timeout": 0.5, "routes": {"silent.test": f"127.0.0.1:{port}"}}
    )
    jid, pw = await srv.make_user("bob")
    bob = await connect_slixmpp(srv, jid, pw)
    try:
        started = time.monotonic()
        bob.send_message(mto="x@silent.test", mbody="hello?", mtype="chat")
        msg = await bob.next_message(timeout=10)
        assert msg["type"] == "error"
        assert msg["error"]["condition"] == "remote-server-timeout"
        assert 1.0 < time.monotonic() - started < 5
        assert accepted, "the server never connected"
    finally:
        await disconnect(bob)
        for w in accepted:
            w.close()
        silent.close()


async def test_pep_notifications_and_items_across_servers(
    pair: tuple[LiveServer, LiveServer],
) -> None:
    """XEP-0163 across federation: alice's server learns bob's caps (a disco#info query
    over s2s) from the presence his server sends, notifies him over s2s, and answers his
    items request; a stranger on bob's server is refused (presence access)."""
    from tests.client.pep_util import befriend, connect_with, events, from_node, next_event, note

    a, b = pair
    a_jid, a_pw = await a.make_user("alice", "a.test")
    b_jid, b_pw = await b.make_user("bob", "b.test")
    e_jid, e_pw = await b.make_user("eve", "b.test")
    node = "http://jabber.org/protocol/tune"
    alice = await connect_with(a, a_jid, a_pw)
    bob = await connect_with(b, b_jid, b_pw, interests=[node])
    eve = await connect_with(b, e_jid, e_pw)
    published = events(bob, "pubsub_publish")
    try:
        await befriend(alice, bob, timeout=20)
        await asyncio.sleep(0.5)  # the caps query over s2s and its answer
        await alice.plugin["xep_0060"].publish(a_jid, node, id="current", payload=note("song"))
        msg = await next_event(published, from_node(node), timeout=15)
        assert msg["from"].bare == a_jid
        items = await bob.plugin["xep_0060"].get_items(a_jid, node, timeout=15)
        assert [str(i["id"]) for i in items["pubsub"]["items"]] == ["current"]
        with pytest.raises(IqError) as err:
            await eve.plugin["xep_0060"].get_items(a_jid, node, timeout=15)
        assert err.value.condition == "not-authorized"
    finally:
        await disconnect(alice, bob, eve)


async def test_outgoing_stream_speaks_dialback_as_xep0220_says(make_server: Any) -> None:
    """What a strict peer (ejabberd matches on the prefix) needs of the initiating side:
    no 'id' on our stream header (RFC 6120 §4.7.3), dialback elements with the db:
    prefix the header declares (XEP-0220 §2); and a set-up the peer leaves hanging
    times out with a log line saying where it was."""
    received: asyncio.Queue[bytes] = asyncio.Queue()

    async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            received.put_nowait(chunk)
            if b"<stream:stream" in chunk:
                writer.write(
                    b"<?xml version='1.0'?><stream:stream xmlns='jabber:server' "
                    b"xmlns:db='jabber:server:dialback' "
                    b"xmlns:stream='http://etherx.jabber.org/streams' id='peer-stream-1' "
                    b"from='fake.test' to='localhost' version='1.0'>"
                    b"<stream:features><dialback xmlns='urn:xmpp:features:dialback'/>"
                    b"</stream:features>"
                )
        writer.close()

    listener = await asyncio.start_server(peer, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    srv: LiveServer = make_server(
        s2s={
            "routes": {"fake.test": f"127.0.0.1:{port}"},
            "policies": {"fake.test": "insecure"},
            "connect_timeout": 0.5,
        }
    )
    a_jid, a_pw = await srv.make_user("alice")
    alice = await connect_slixmpp(srv, a_jid, a_pw)
    try:
        alice.send_message(mto="someone@fake.test", mbody="hi", mtype="chat")
        seen = b""
        deadline = time.monotonic() + 10
        while b"</db:result>" not in seen:
            seen += await asyncio.wait_for(received.get(), max(0.1, deadline - time.monotonic()))
        text = seen.decode()
        header = re.search(r"<stream:stream[^>]*>", text)
        assert header is not None
        assert " id=" not in header.group(0)
        assert "xmlns:db='jabber:server:dialback'" in header.group(0)
        assert re.search(r"<db:result from='localhost' to='fake.test'>[0-9a-f]+</db:result>", text)
        assert "<result xmlns=" not in text
        deadline = time.monotonic() + 10
        while "set-up timed out" not in srv.log() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert "fake.test: set-up timed out after 1.5 s while authenticating" in srv.log()
    finally:
        await disconnect(alice)
        listener.close()


async def _authenticated_raw_s2s(a: LiveServer) -> RawClient:
    """A raw stream into A on which b.test is verified by dialback (B confirms)."""
    raw, sid = await _raw_s2s(a, "b.test", "a.test")
    key = make_key(SECRET_B.encode(), "a.test", "b.test", sid)
    await raw.send(f"<db:result from='b.test' to='a.test'>{key}</db:result>")
    out = await raw.read_until("/>", timeout=15)
    assert "type='valid'" in out, out
    return raw


@pytest.mark.parametrize(
    "stanza, condition",
    [
        # No from at all, or one only in a namespace: the stream's domains are not claimed.
        ("<message to='{to}'><body>x</body></message>", "invalid-from"),
        ("<message xmlns:x='jabber:server' x:from='boss@a.test' to='{to}'/>", "invalid-from"),
        # A domain this stream did not authenticate, even one of A's own.
        ("<message from='boss@a.test' to='{to}'><body>x</body></message>", "invalid-from"),
        # A second stream header inside the stream.
        (
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams'"
            " from='a.test' to='a.test' version='1.0'>",
            "invalid-xml",
        ),
        # Characters and bytes XML forbids, and prefix tricks.
        ("<message from='x@b.test\x00' to='{to}'><body>x</body></message>", "not-well-formed"),
        ("<message from='x@b.test' to='{to}'><body>\xff\xfe</body></message>", "not-well-formed"),
        (
            "<message from='x@b.test' to='{to}' xmlns:xml='urn:evil'><body>x</body></message>",
            "not-well-formed",
        ),
        (
            "<?xml version='1.0' encoding='UTF-16'?><message from='x@b.test' to='{to}'/>",
            "not-well-formed",
        ),
    ],
)
async def test_a_federated_peer_cannot_spoof(
    pair: tuple[LiveServer, LiveServer], stanza: str, condition: str
) -> None:
    """RFC 6120 §8.1.2.2 and §13.8 over s2s: a peer sends only from the domains it
    authenticated; whatever else it tries ends its stream with an error, and the
    local user receives nothing of it."""
    a, _ = pair
    a_jid, a_pw = await a.make_user("alice", "a.test")
    alice = await connect_slixmpp(a, a_jid, a_pw)
    raw = await _authenticated_raw_s2s(a)
    got: list[Any] = []
    alice.add_event_handler("message", got.append)
    try:
        data = stanza.format(to=a_jid)
        await raw.send(data.encode("latin-1") if "\xff" in data else data)
        out = await raw.read_to_eof(timeout=10)
        assert "<stream:error>" in out, out
        assert f"<{condition} " in out, out
        await asyncio.sleep(0.3)
        assert got == []
    finally:
        raw.close()
        await disconnect(alice)


async def test_qualified_from_dropped_over_s2s(pair: tuple[LiveServer, LiveServer]) -> None:
    """A namespaced ``from`` next to the real one reaches nobody: the local user sees
    the authenticated sender only."""
    a, _ = pair
    a_jid, a_pw = await a.make_user("alice", "a.test")
    alice = await connect_slixmpp(a, a_jid, a_pw)
    raw = await _authenticated_raw_s2s(a)
    try:
        await raw.send(
            f"<message from='x@b.test' to='{a_jid}' type='chat' xmlns:e='urn:evil'"
            " e:from='boss@a.test'><body>hello</body></message>"
        )
        msg = await alice.next_message(timeout=10)
        assert msg["body"] == "hello"
        assert msg["from"].bare == "x@b.test"
        assert "boss@a.test" not in str(msg)
    finally:
        raw.close()
        await disconnect(alice)
