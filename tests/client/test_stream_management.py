"""Stream management (XEP-0198 v1.6) against a real server: acknowledgements,
hibernation when TCP is cut (aborted, never closed), resumption, and what
happens to unacknowledged stanzas when a session is not resumed.

Raw XML on sockets drives the exact sequences; slixmpp's own xep_0198 plugin
shows a real client surviving a dropped connection.
"""

from __future__ import annotations

import asyncio
import datetime
import time
import xml.etree.ElementTree as ET

from tests.badinput.raw import (
    BIND,
    CLIENT,
    STREAM,
    STREAMS_ERR,
    authenticate,
    close_quietly,
    elements,
    expect_stream_error,
    login,
    messages,
    next_stanza,
    quiet,
    stanza_error,
)
from tests.live import Client, LiveServer, RawClient, connect_slixmpp, disconnect

SM = "urn:xmpp:sm:3"
DELAY = "urn:xmpp:delay"


def tag(local: str, ns: str = SM) -> str:
    return "{%s}%s" % (ns, local)


async def expect(c: RawClient, local: str, ns: str = SM, timeout: float = 5) -> ET.Element:
    """The next top-level element that is not a stanza or an ack request, which
    must be ``local`` in ``ns``."""
    while True:
        el = await next_stanza(c, timeout)
        if el.tag.startswith("{%s}" % CLIENT) or el.tag == tag("r"):
            continue
        assert el.tag == tag(local, ns), ET.tostring(el)
        return el


async def enable(c: RawClient, attrs: str = "resume='true'") -> ET.Element:
    await c.send(f"<enable xmlns='{SM}' {attrs}/>")
    return await expect(c, "enabled")


async def bind(c: RawClient, resource: str) -> str:
    await c.send(
        f"<iq type='set' id='bind'><bind xmlns='{BIND}'><resource>{resource}</resource></bind></iq>"
    )
    el = await next_stanza(c)
    assert el.get("type") == "result", ET.tostring(el)
    return el.findtext(f".//{{{BIND}}}jid", "")


def message(to: str, body: str) -> str:
    return f"<message to='{to}' type='chat'><body>{body}</body></message>"


def bodies(els: list[ET.Element]) -> list[str]:
    return [el.findtext("{%s}body" % CLIENT, "") for el in els if el.tag.endswith("}message")]


async def sm_session(
    server: LiveServer, prefix: str, resource: str = "phone", attrs: str = "resume='true'"
) -> tuple[RawClient, str, str, ET.Element]:
    """A fresh account logged in with SM enabled: (client, full JID, password, <enabled/>)."""
    jid, password = await server.make_user(prefix)
    c = await authenticate(server, jid, password)
    full = await bind(c, resource)
    enabled = await enable(c, attrs)
    await c.send("<presence/>")
    return c, full, password, enabled


async def resume(
    server: LiveServer, full: str, password: str, previd: str, h: int
) -> tuple[RawClient, ET.Element]:
    c = await authenticate(server, full.partition("/")[0], password)
    await c.send(f"<resume xmlns='{SM}' previd='{previd}' h='{h}'/>")
    return c, await next_stanza(c)


# -- enabling and acknowledging (§3, §4, §6) --------------------------------------------------


async def test_enable_before_bind_fails_xep0198_3(server: LiveServer) -> None:
    jid, password = await server.make_user("early")
    c = await authenticate(server, jid, password)
    await c.send(f"<enable xmlns='{SM}'/>")
    failed = await expect(c, "failed")
    assert failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}unexpected-request") is not None
    await bind(c, "later")  # the stream goes on
    await close_quietly(c)


async def test_enabled_with_resumption_and_second_enable_fails_xep0198_3(
    server: LiveServer,
) -> None:
    c, _, _, enabled = await sm_session(server, "twice")
    assert enabled.get("resume") == "true"
    assert enabled.get("max") == "300"  # c2s.resume_timeout
    assert len(enabled.get("id", "")) >= 24
    await c.send(f"<enable xmlns='{SM}' resume='true'/>")
    assert (await expect(c, "failed")).find(
        "{urn:ietf:params:xml:ns:xmpp-stanzas}unexpected-request"
    ) is not None
    await close_quietly(c)


async def test_enable_without_resume_has_no_id_and_max_is_honoured(server: LiveServer) -> None:
    c, _, _, enabled = await sm_session(server, "plain", attrs="")
    assert "id" not in enabled.attrib and "resume" not in enabled.attrib
    await close_quietly(c)
    c, _, _, enabled = await sm_session(server, "short", attrs="resume='1' max='7'")
    assert enabled.get("max") == "7"
    await close_quietly(c)


async def test_r_is_answered_with_handled_count_xep0198_4(server: LiveServer) -> None:
    c, _full, _, _ = await sm_session(server, "counter")
    # <presence/> (sent after <enable/>) counts, and so do these two iqs.
    for n in range(2):
        await c.send(f"<iq type='get' id='p{n}'><ping xmlns='urn:xmpp:ping'/></iq>")
    await c.send(f"<r xmlns='{SM}'/>")
    got = await quiet(c, 1.0)
    acks = [el for el in got if el.tag == tag("a")]
    assert acks and acks[-1].get("h") == "3", [ET.tostring(e) for e in got]
    await close_quietly(c)


async def test_server_requests_acks_and_accepts_them_xep0198_4(server: LiveServer) -> None:
    """One unacknowledged stanza (the own presence): the server asks after a delay
    (2 s), not at once; five or more: at once. One request is out at a time."""
    c, _full, _, _ = await sm_session(server, "acker")
    early = await quiet(c, 1.0)
    assert not any(el.tag == tag("r") for el in early), [ET.tostring(e) for e in early]
    got = early + await quiet(c, 2.0)
    assert sum(1 for el in got if el.tag == tag("r")) == 1, [ET.tostring(e) for e in got]
    sent = sum(1 for el in got if el.tag.startswith("{%s}" % CLIENT))
    await c.send(f"<a xmlns='{SM}' h='{sent}'/>")
    for n in range(6):
        await c.send(f"<iq type='get' id='p{n}'><ping xmlns='urn:xmpp:ping'/></iq>")
    burst = await quiet(c, 0.8)
    assert [el.get("id") for el in burst if el.tag.endswith("}iq")] == [f"p{n}" for n in range(6)]
    assert sum(1 for el in burst if el.tag == tag("r")) == 1, [ET.tostring(e) for e in burst]
    await close_quietly(c)


async def test_handled_count_too_high_ends_the_stream_xep0198_6(server: LiveServer) -> None:
    c, _, _, _ = await sm_session(server, "toohigh")
    await quiet(c, 0.5)
    await c.send(f"<a xmlns='{SM}' h='1000'/>")
    out = await expect_stream_error(c, "undefined-condition")
    (err,) = [e for e in elements(out) if e.tag == "{%s}error" % STREAM]
    app = err.find(tag("handled-count-too-high"))
    assert app is not None and app.get("h") == "1000", out
    assert int(app.get("send-count", "-1")) < 1000
    assert "You acknowledged 1000 stanzas" in err.findtext("{%s}text" % STREAMS_ERR, "")


async def test_invalid_h_is_bad_format(server: LiveServer) -> None:
    c, _, _, _ = await sm_session(server, "badh")
    await c.send(f"<a xmlns='{SM}' h='-3'/>")
    await expect_stream_error(c, "bad-format")


# -- hibernation and resumption (§5) ----------------------------------------------------------


async def test_cut_tcp_then_resume_gets_unacknowledged_stanzas_in_order(
    server: LiveServer,
) -> None:
    """TCP is aborted (no close): the session hibernates, its contact sees no
    unavailable presence, messages keep arriving; resuming on a new connection
    with the client's h re-sends exactly what it did not handle, in order."""
    alice, a_full, a_pw, enabled = await sm_session(server, "alice")
    bob, _b_full = await login(server, "bob")
    a_bare = a_full.partition("/")[0]
    await quiet(alice, 0.3)
    await bob.send(message(a_bare, "one"))
    await bob.send(message(a_bare, "two"))
    got = await messages(alice, 2)
    assert bodies(got) == ["one", "two"]
    # Alice has handled presence + "one" but not "two" when her connection dies.
    alice.writer.transport.abort()
    await asyncio.sleep(0.3)
    await bob.send(message(a_full, "three"))
    await bob.send(message(a_bare, "four"))
    await asyncio.sleep(0.3)
    new, resumed = await resume(server, a_full, a_pw, enabled.get("id", ""), h=2)
    assert resumed.tag == tag("resumed"), ET.tostring(resumed)
    assert resumed.get("previd") == enabled.get("id")
    assert resumed.get("h") == "1"  # her <presence/>
    again = await messages(new, 3)
    assert bodies(again) == ["two", "three", "four"]
    assert bodies(await quiet(new, 0.5)) == []  # nothing twice
    # The session carries on: the same full JID, still bound.
    await bob.send(message(a_full, "five"))
    assert bodies(await messages(new, 1)) == ["five"]
    await close_quietly(new, bob)


async def test_hibernated_session_stays_available_to_contacts(server: LiveServer) -> None:
    """§5: the server keeps the session (and its presence) while it waits."""
    jid, password = await server.make_user("hib")
    contact_jid, contact_pw = await server.make_user("watcher")
    alice = await connect_slixmpp(server, jid, password)
    watcher = await connect_slixmpp(server, contact_jid, contact_pw)
    try:
        for a, b in ((alice, contact_jid), (watcher, jid)):
            a.send_presence_subscription(pto=b)
            a.send_presence(pto=b, ptype="subscribed")
        await asyncio.sleep(0.5)
        c = await authenticate(server, jid, password)
        full = await bind(c, "mobile")
        await enable(c)
        await c.send("<presence><status>on the move</status></presence>")
        await watcher.next_presence(lambda p: p["from"].full == full and p["type"] != "unavailable")
        c.writer.transport.abort()
        try:
            p = await watcher.next_presence(lambda p: p["from"].full == full, timeout=1.5)
            raise AssertionError(f"the contact saw {p}")
        except TimeoutError:
            pass
    finally:
        await disconnect(alice, watcher)


async def test_resume_attempts_by_others_or_guesses_fail_xep0198_5(server: LiveServer) -> None:
    alice, a_full, a_pw, enabled = await sm_session(server, "victim")
    sm_id = enabled.get("id", "")
    alice.writer.transport.abort()
    await asyncio.sleep(0.2)
    # Another account that somehow learnt the id.
    mallory_jid, mallory_pw = await server.make_user("mallory")
    c, failed = await resume(server, mallory_jid + "/x", mallory_pw, sm_id, h=0)
    assert (
        failed.tag == tag("failed")
        and failed.find("{urn:ietf:params:xml:ns:xmpp-stanzas}item-not-found") is not None
    )
    assert "h" not in failed.attrib
    await bind(c, "own")  # §5: the stream goes on to bind instead
    await close_quietly(c)
    # A guessed id, by the right account.
    c, failed = await resume(server, a_full, a_pw, sm_id[:-2] + "xx", h=0)
    assert failed.tag == tag("failed")
    await close_quietly(c)
    # The owner still resumes afterwards.
    c, resumed = await resume(server, a_full, a_pw, sm_id, h=0)
    assert resumed.tag == tag("resumed")
    await close_quietly(c)


async def test_resume_while_old_stream_open_closes_it_with_conflict_xep0198_5(
    server: LiveServer,
) -> None:
    old, full, password, enabled = await sm_session(server, "twostreams")
    await quiet(old, 0.3)
    new, resumed = await resume(server, full, password, enabled.get("id", ""), h=1)
    assert resumed.tag == tag("resumed")
    await expect_stream_error(old, "conflict")
    await new.send("<iq type='get' id='alive'><ping xmlns='urn:xmpp:ping'/></iq>")
    got = await quiet(new, 1.0)
    assert any(el.get("id") == "alive" for el in got)
    await close_quietly(new)


async def test_resume_before_auth_or_after_bind_is_refused(server: LiveServer) -> None:
    c, _, _, enabled = await sm_session(server, "order")
    await c.send(f"<resume xmlns='{SM}' previd='{enabled.get('id')}' h='0'/>")
    assert (await expect(c, "failed")).find(
        "{urn:ietf:params:xml:ns:xmpp-stanzas}unexpected-request"
    ) is not None
    await close_quietly(c)
    raw = await RawClient.open(server.port)
    await raw.open_stream()
    await raw.send(f"<resume xmlns='{SM}' previd='x' h='0'/>")
    await expect_stream_error(raw, "policy-violation")  # STARTTLS first


async def test_clean_close_ends_the_session_at_once_xep0198_7(server: LiveServer) -> None:
    """A </stream:stream> is a logout even with resumption on: contacts see it."""
    c, full, password, enabled = await sm_session(server, "leaver")
    await c.send("</stream:stream>")
    await c.read_to_eof()
    new, failed = await resume(server, full, password, enabled.get("id", ""), h=0)
    assert failed.tag == tag("failed")
    assert failed.get("h") == "1"  # remembered: the session handled its presence
    await close_quietly(new)


# -- sessions that are not resumed ------------------------------------------------------------


async def test_expiry_stores_messages_offline_with_original_stamp_and_errors_iqs(
    server: LiveServer,
) -> None:
    """§4: when the wait ('max', here 1 s) ends, unacknowledged messages go to offline
    storage with a delay stamp of when they were first sent; an iq gets an error."""
    alice, a_full, a_pw, enabled = await sm_session(
        server, "expiring", attrs="resume='true' max='1'"
    )
    bob, _b_full = await login(server, "sender")
    await quiet(alice, 0.3)
    alice.writer.transport.abort()
    await asyncio.sleep(0.1)
    before = time.time()
    await bob.send(message(a_full, "while you were away"))
    await bob.send(f"<iq type='get' id='v1' to='{a_full}'><query xmlns='jabber:iq:version'/></iq>")
    answer = await next_stanza(bob, timeout=5)
    assert answer.get("id") == "v1" and stanza_error(answer) == "service-unavailable"
    await asyncio.sleep(0.3)
    # The session is gone; a fresh one gets the message from offline storage.
    c = await authenticate(server, a_full.partition("/")[0], a_pw)
    await bind(c, "desk")
    await c.send("<presence/>")
    (got,) = await messages(c, 1)
    assert bodies([got]) == ["while you were away"]
    delay = got.find("{%s}delay" % DELAY)
    assert delay is not None
    stamp = datetime.datetime.fromisoformat(delay.get("stamp", "").replace("Z", "+00:00"))
    assert abs(stamp.timestamp() - before) < 1.0  # when it was sent, not when stored
    new, failed = await resume(server, a_full, a_pw, enabled.get("id", ""), h=0)
    assert failed.tag == tag("failed") and failed.get("h") is not None
    await close_quietly(c, bob, new)


async def test_bind_replaces_a_hibernated_session(server: LiveServer) -> None:
    """§5 / RFC 6120 §7.7.2.2: binding the same resource replaces the waiting session;
    what it held is not lost (offline storage, delivered on initial presence)."""
    alice, a_full, a_pw, enabled = await sm_session(server, "rebind")
    bob, _ = await login(server, "nudger")
    await quiet(alice, 0.3)
    alice.writer.transport.abort()
    await asyncio.sleep(0.2)
    await bob.send(message(a_full, "kept"))
    await asyncio.sleep(0.2)
    c = await authenticate(server, a_full.partition("/")[0], a_pw)
    assert await bind(c, a_full.partition("/")[2]) == a_full
    await c.send("<presence/>")
    assert bodies(await messages(c, 1)) == ["kept"]
    new, failed = await resume(server, a_full, a_pw, enabled.get("id", ""), h=0)
    assert failed.tag == tag("failed")
    await close_quietly(c, bob, new)


async def test_unacknowledged_queue_is_bounded(make_server) -> None:  # type: ignore[no-untyped-def]
    """A client that never acknowledges cannot make the server hold its traffic
    forever: past c2s.max_unacked the stream ends with <resource-constraint/>."""
    srv = make_server(c2s={"max_unacked": 10})
    alice, a_full, _, _ = await sm_session(srv, "hoarder")
    bob, _ = await login(srv, "flooder")
    for n in range(15):
        await bob.send(message(a_full, f"m{n}"))
    out = await alice.read_to_eof(timeout=10)
    assert "<resource-constraint" in out, out[-500:]
    await close_quietly(bob)


# -- a real client ---------------------------------------------------------------------------


class SMClient(Client):
    def __init__(self, jid: str, password: str) -> None:
        super().__init__(jid, password)
        self.register_plugin("xep_0198")
        self.sm_enabled = asyncio.Event()
        self.resumed = asyncio.Event()
        self.add_event_handler("sm_enabled", lambda _: self.sm_enabled.set())
        self.add_event_handler("session_resumed", lambda _: self.resumed.set())


async def test_slixmpp_survives_a_dropped_connection(server: LiveServer) -> None:
    """slixmpp's xep_0198 plugin: TCP aborted mid-stream, messages sent meanwhile,
    reconnect; the session is resumed (no new bind, no new presence) and every
    message arrives once, in order."""
    a_jid, a_pw = await server.make_user("slixsm")
    b_jid, b_pw = await server.make_user("slixpeer")
    alice = SMClient(a_jid, a_pw)
    alice.connect("127.0.0.1", server.port)
    await asyncio.wait_for(alice.started.wait(), 20)
    await asyncio.wait_for(alice.sm_enabled.wait(), 5)
    alice.send_presence()
    bob = await connect_slixmpp(server, b_jid, b_pw)
    try:
        full = alice.boundjid.full
        bob.send_message(mto=full, mbody="before", mtype="chat")
        assert (await alice.next_message(10))["body"] == "before"
        assert alice.transport is not None
        alice.transport.abort()
        await asyncio.sleep(0.3)
        for n in range(3):
            bob.send_message(mto=a_jid, mbody=f"gap {n}", mtype="chat")
        await asyncio.sleep(0.3)
        alice.connect("127.0.0.1", server.port)
        await asyncio.wait_for(alice.resumed.wait(), 20)
        assert alice.boundjid.full == full
        got = [(await alice.next_message(10))["body"] for _ in range(3)]
        assert got == ["gap 0", "gap 1", "gap 2"]
        try:
            extra = await alice.next_message(1.0)
            raise AssertionError(f"delivered twice: {extra['body']}")
        except TimeoutError:
            pass
        alice.send_message(mto=b_jid, mbody="back", mtype="chat")
        assert (await bob.next_message(10))["body"] == "back"
    finally:
        await disconnect(alice, bob)
