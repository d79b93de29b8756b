"""XMPP over BOSH (XEP-0124, XEP-0206) against a real server, from a third-party client.

strophe.js in Node (driven by tests/js/strophe_bosh_client.mjs over JSON lines, its
XMLHttpRequest from xhr2) logs in at /http-bind and chats with a slixmpp user on TCP;
survives a dropped BOSH session through stream management (XEP-0198), resumed on a new
BOSH session once the old one has ended of inactivity; and resends a request whose HTTP
exchange failed (XEP-0124 §14.3) without losing or repeating a stanza. strophe sends
the legacy session <iq/> after binding whenever <session/> is offered, even
<optional/>; one test shows what Descant makes of that, the others skip it, as clients
written for RFC 6121 do. These tests skip with the reason when ``node`` or
tests/js/node_modules is missing (``make js`` installs it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.badinput.raw import SASL
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
    connect_slixmpp,
    disconnect,
    presence_types_from,
    wait_for_http,
)

# A body with markup, an ampersand, quotes and non-ASCII, escaped both ways.
AWKWARD = "<b>Grüße</b> & 'quotes' \"too\" — 🎶 </body>"

pytestmark = needs_node("strophe.js 5", (20,), ("strophe.js", "xhr2", "@xmldom/xmldom"))


def bosh_url(srv: LiveServer) -> str:
    return f"http://127.0.0.1:{srv.http_port}/http-bind"


class StropheBosh(NodeDriver):
    """tests/js/strophe_bosh_client.mjs: strophe.js over BOSH, with every BOSH request
    and response reported."""

    @classmethod
    async def start(
        cls,
        srv: LiveServer,
        jid: str,
        password: str,
        resource: str,
        *,
        wait: int = 10,
        optional_session: str = "skip",
    ) -> StropheBosh:
        env = {
            "XMPP_SERVICE": bosh_url(srv),
            "XMPP_JID": jid,
            "XMPP_PASSWORD": password,
            "XMPP_RESOURCE": resource,
            "XMPP_BOSH_WAIT": str(wait),
            "XMPP_OPTIONAL_SESSION": optional_session,
        }
        script = JS_DIR / "strophe_bosh_client.mjs"
        return await cls.spawn(script, "strophe", env, lifetime=100, command_timeout=20)

    def requests(self, since: int = 0) -> list[dict[str, Any]]:
        return self.of("request", since)

    def sent(self, name: str, since: int = 0) -> list[dict[str, Any]]:
        """Elements called ``name`` in the requests posted (first sends only)."""
        return [
            child
            for req in self.requests(since)
            if req["sends"] == 1
            for child in req["children"]
            if child["name"] == name
        ]

    def assert_no_trouble(self) -> None:
        assert not self.of("error"), self.describe()
        bad = {"CONNFAIL", "AUTHFAIL", "CONNTIMEOUT", "ERROR"}
        assert not [e for e in self.of("status") if e["status"] in bad], self.describe()


async def quiet_messages(c: Client, seconds: float = 1.0) -> list[str]:
    """Bodies of what reaches ``c`` within ``seconds``."""
    out: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            out.append((await c.next_message(left))["body"])
        except TimeoutError:
            break
    return out


# -- tests --------------------------------------------------------------------------------


async def test_strophe_logs_in_over_bosh_and_chats_with_slixmpp(server: LiveServer) -> None:
    """strophe.js creates a BOSH session, authenticates (SCRAM), restarts, binds, and
    chats with a slixmpp user on TCP: bodies with markup, '&', quotes and non-ASCII;
    from and to checked both ways."""
    await wait_for_http(server)
    a_jid, a_pw = await server.make_user("strophe")
    b_jid, b_pw = await server.make_user("slixbosh")
    bob = await connect_slixmpp(server, b_jid, b_pw)
    js = await StropheBosh.start(server, a_jid, a_pw, "bosh")
    try:
        full = (await js.wait_for("online"))["jid"]
        assert full == f"{a_jid}/bosh", js.describe()
        requests = js.requests()
        assert requests[0]["children"] == [], requests[0]  # the session creation request
        (auth,) = js.sent("auth")
        assert auth["xmlns"] == SASL and auth["attrs"]["mechanism"].startswith("SCRAM-"), auth
        binds = [c for c in js.sent("iq") if c["attrs"].get("id") == "_bind_auth_2"]
        assert len(binds) == 1, js.describe()
        await js.command("presence")

        await js.command("send", to=b_jid, body=AWKWARD, id="m1")
        got = await bob.next_message(10)
        assert got["body"] == AWKWARD
        assert got["from"].full == full  # stamped by the server (RFC 6120 §8.1.2.1)
        assert got["to"].full == b_jid and got["type"] == "chat" and got["id"] == "m1"

        await message_to_js(bob, js, full, "to your full JID")
        ev = await message_to_js(bob, js, a_jid, AWKWARD)
        assert not ev["delay"]
        await asyncio.sleep(0.5)
        assert js.bodies() == ["to your full JID", AWKWARD], js.describe()
        assert await quiet_messages(bob, 0.3) == []
        js.assert_no_trouble()
    finally:
        await js.close()
        await disconnect(bob)


async def test_strophe_logs_in_with_legacy_session_establishment(server: LiveServer) -> None:
    """strophe.js as it comes: after binding it sends <iq type='set'><session
    xmlns='urn:ietf:params:xml:ns:xmpp-session'/></iq> since the features offer
    <session/>, and comes online when the answer is a result."""
    await wait_for_http(server)
    a_jid, a_pw = await server.make_user("strophesess")
    js = await StropheBosh.start(server, a_jid, a_pw, "legacy", optional_session="send")
    try:
        online = await js.wait_for("online")
        assert online["jid"] == f"{a_jid}/legacy"
        sessions = [c for c in js.sent("iq") if c["attrs"].get("id") == "_session_auth_2"]
        assert len(sessions) == 1, js.describe()
        js.assert_no_trouble()
    finally:
        await js.close()


async def wait_for_log(srv: LiveServer, needle: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while needle not in (text := srv.log()):
        assert time.monotonic() < deadline, f"{needle!r} not in the server log in {timeout} s"
        await asyncio.sleep(0.2)
    return text


async def test_strophe_resumes_on_a_new_bosh_session(
    make_server: Callable[..., LiveServer],
) -> None:
    """Stream management with resumption, driven by hand over strophe's BOSH. The BOSH
    session is abandoned (its requests aborted, no terminate); its inactivity period
    ends it and the XMPP session hibernates. strophe then resumes it on a new BOSH
    session: <resumed/> counts every stanza strophe had sent, the three messages sent
    meanwhile arrive once each, in order, and the contact never sees the user go away."""
    srv = make_server(http={"bosh_inactivity": 5})
    await wait_for_http(srv)
    a_jid, a_pw = await srv.make_user("strophesm")
    b_jid, b_pw = await srv.make_user("slixsm")
    bob = await connect_slixmpp(srv, b_jid, b_pw)
    js = await StropheBosh.start(srv, a_jid, a_pw, "laptop", wait=5)
    try:
        full = (await js.wait_for("online"))["jid"]
        await js.command("enable")
        enabled = await js.wait_for("enabled")
        assert enabled["resume"] in ("true", "1"), enabled
        sm_id = enabled["id"]
        assert sm_id
        await js.command("presence")
        await subscribe(bob, js, a_jid, full)
        bob.send_message(mto=full, mbody="before", mtype="chat")
        assert (await js.wait_for("message"))["body"] == "before"
        await asyncio.sleep(0.5)  # any answer strophe owes goes out

        mark = len(js.events)
        await js.command("drop")
        dropped = await js.wait_for("dropped")
        assert dropped["previd"] == sm_id
        assert dropped["sent"] == 2, dropped  # since <enable/>: its presence, the approval
        for n in range(3):
            bob.send_message(mto=a_jid, mbody=f"gap {n}", mtype="chat")
        # The request strophe left open is answered into its closed connection (with the
        # first of them, or after 'wait'); 5 s without a request then end the BOSH
        # session, and the XMPP session hibernates.
        await wait_for_log(srv, f"{full} hibernating (", timeout=40)
        assert not js.requests(mark), js.describe()  # nothing more reached the server

        mark = len(js.events)
        await js.command("resume", previd=sm_id, h=dropped["h"])
        resumed = await js.wait_for("resumed")
        assert resumed["previd"] == sm_id
        assert resumed["h"] == "2", (resumed, dropped)
        got = [(await js.wait_for("message", timeout=10))["body"] for _ in range(3)]
        assert got == ["gap 0", "gap 1", "gap 2"], js.describe()
        # A new BOSH session (a creation request), authenticated again, not bound again.
        after = js.requests(mark)
        assert after and after[0]["children"] == [], after[:1]
        assert len(js.sent("auth", mark)) == 1
        (resume,) = js.sent("resume", mark)
        assert resume["attrs"]["previd"] == sm_id
        assert not [c for c in js.sent("iq", mark) if c["attrs"].get("id") == "_bind_auth_2"]
        assert not js.of("online", mark)

        # The session goes on, both ways.
        await chat_both_ways(js, bob, full, "back again", "welcome back")
        await asyncio.sleep(1.0)
        assert js.bodies() == ["before", "gap 0", "gap 1", "gap 2", "welcome back"], js.describe()
        assert "unavailable" not in presence_types_from(bob, a_jid)
        assert not js.of("error"), js.describe()
    finally:
        await js.close()
        await disconnect(bob)


@pytest.mark.parametrize("mode", ["cut", "lose"])
async def test_strophe_resends_a_failed_request(server: LiveServer, mode: str) -> None:
    """XEP-0124 §14.3 from a real client. The request carrying a message from strophe
    fails once: 'cut' closes its TCP connection while the server holds it (strophe
    learns of it a second later); 'lose' throws the server's answer away. Either way
    strophe sends the same rid, with the same payload, again. Meanwhile the contact
    answers. Every message arrives exactly once, in order, and the session goes on."""
    await wait_for_http(server)
    a_jid, a_pw = await server.make_user(f"stropherid{mode}")
    b_jid, b_pw = await server.make_user(f"slixrid{mode}")
    bob = await connect_slixmpp(server, b_jid, b_pw)
    js = await StropheBosh.start(server, a_jid, a_pw, "tab")
    try:
        full = (await js.wait_for("online"))["jid"]
        await js.command("presence")
        await chat_both_ways(js, bob, full, "hello", "hello back")
        await asyncio.sleep(0.5)

        mark = len(js.events)
        await js.command("fail", mode=mode, delay=300, notify=1000)
        await js.command("send", to=b_jid, body=f"across {AWKWARD}")
        got = await bob.next_message(10)
        assert got["body"] == f"across {AWKWARD}" and got["from"].full == full
        if mode == "cut":
            fault = await js.wait_for("fault")
        bob.send_message(mto=full, mbody="during", mtype="chat")
        if mode == "lose":
            fault = await js.wait_for("fault")
        assert fault["mode"] == mode
        assert (await js.wait_for("message"))["body"] == "during"

        # The failed request went again: same rid, same payload.
        copies = [r for r in js.requests(mark) if r["rid"] == fault["rid"]]
        assert [r["sends"] for r in copies] == [1, 2], js.describe()
        assert copies[0]["children"] == copies[1]["children"]
        (message,) = copies[0]["children"]
        assert message["name"] == "message" and message["attrs"]["to"] == b_jid
        # One answer reached strophe for that rid: the one carrying "during" (kept by
        # the server for a resend, or held until it came).
        answers = [r for r in js.of("response", mark) if r["rid"] == fault["rid"]]
        assert [(a["status"], a["type"], a["children"]) for a in answers] == [
            (200, None, ["message"])
        ], js.describe()

        for n in range(3):
            bob.send_message(mto=full, mbody=f"after {n}", mtype="chat")
        await js.command("send", to=b_jid, body="still here")
        assert (await bob.next_message(10))["body"] == "still here"
        got_after = [(await js.wait_for("message", timeout=10))["body"] for _ in range(3)]
        assert got_after == ["after 0", "after 1", "after 2"], js.describe()
        await asyncio.sleep(1.0)
        assert js.bodies() == ["hello back", "during", "after 0", "after 1", "after 2"]
        assert await quiet_messages(bob, 0.5) == [], "a message reached the contact twice"
        js.assert_no_trouble()
    finally:
        await js.close()
        await disconnect(bob)
