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
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.live import Client, LiveServer, connect_slixmpp, disconnect

SM = "urn:xmpp:sm:3"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"

JS_DIR = Path(__file__).resolve().parents[1] / "js"
DRIVER = JS_DIR / "strophe_bosh_client.mjs"
# A body with markup, an ampersand, quotes and non-ASCII, escaped both ways.
AWKWARD = "<b>Grüße</b> & 'quotes' \"too\" — 🎶 </body>"


def _js_missing() -> str | None:
    """Why the strophe.js tests cannot run here, or None."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (make test installs tests/js when node and npm are there)"
    for package in ("strophe.js", "xhr2", "@xmldom/xmldom"):
        if not (JS_DIR / "node_modules" / package).is_dir():
            return f"tests/js/node_modules/{package} is missing: run `make js`"
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=20)
        major = int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return f"`node --version` failed: {exc}"
    if major < 20:
        return f"strophe.js 5 needs Node.js 20 or later, found {out.stdout.strip()}"
    return None


JS_MISSING = _js_missing()
pytestmark = pytest.mark.skipif(JS_MISSING is not None, reason=JS_MISSING or "")


async def wait_for_http(srv: LiveServer, timeout: float = 15) -> None:
    """LiveServer.start() waits for the c2s port; the HTTP listener opens just after it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", srv.http_port)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"HTTP port {srv.http_port} not open in {timeout} s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return


def bosh_url(srv: LiveServer) -> str:
    return f"http://127.0.0.1:{srv.http_port}/http-bind"


class StropheBosh:
    """tests/js/strophe_bosh_client.mjs in a subprocess: commands in, events (JSON
    lines) out.

    Every event is kept in ``events``; :meth:`wait_for` consumes them kind by kind, in
    order, so waiting for one kind never loses another."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self.stderr = b""
        self._cursor: dict[str, int] = {}
        self._changed = asyncio.Event()
        self._eof = False
        self._tasks = [
            asyncio.ensure_future(self._read_stdout()),
            asyncio.ensure_future(self._read_stderr()),
        ]

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
        node = shutil.which("node")
        assert node is not None
        env = {
            **os.environ,
            "XMPP_SERVICE": bosh_url(srv),
            "XMPP_JID": jid,
            "XMPP_PASSWORD": password,
            "XMPP_RESOURCE": resource,
            "XMPP_BOSH_WAIT": str(wait),
            "XMPP_OPTIONAL_SESSION": optional_session,
            "XMPP_TIMEOUT": "15000",
            "XMPP_LIFETIME": "100000",
        }
        proc = await asyncio.create_subprocess_exec(
            node,
            str(DRIVER),
            cwd=str(JS_DIR),
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    self.events.append({"event": "junk", "line": line.decode("utf-8", "replace")})
                self._changed.set()
        finally:
            self._eof = True
            self._changed.set()

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self.stderr += chunk

    def describe(self) -> str:
        recent = "\n".join(json.dumps(e) for e in self.events[-50:])
        return f"last events:\n{recent}\nstderr:\n{self.stderr.decode('utf-8', 'replace')[-2000:]}"

    def of(self, kind: str, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events[since:] if e.get("event") == kind]

    async def wait_for(
        self,
        kind: str,
        match: Callable[[dict[str, Any]], bool] = lambda e: True,
        timeout: float = 15,
    ) -> dict[str, Any]:
        """The next event of ``kind`` (after the last one returned) that matches."""
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            start = self._cursor.get(kind, 0)
            for i in range(start, len(self.events)):
                ev = self.events[i]
                if ev.get("event") == kind:
                    self._cursor[kind] = i + 1
                    if match(ev):
                        return ev
            if self._eof:
                raise AssertionError(f"strophe exited before a {kind!r} event\n{self.describe()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind!r} event within {timeout} s\n{self.describe()}")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

    async def command(self, cmd: str, timeout: float = 20, **fields: Any) -> None:
        """Run one command; wait until the script says it is done."""
        assert self.proc.stdin is not None
        seen = len(self.events)
        self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
        await self.proc.stdin.drain()
        deadline = time.monotonic() + timeout
        while True:
            self._changed.clear()
            for ev in self.events[seen:]:
                if ev.get("event") in ("ok", "error") and ev.get("cmd") == cmd:
                    assert ev["event"] == "ok", f"{cmd} failed: {ev}\n{self.describe()}"
                    return
            if self._eof:
                raise AssertionError(f"strophe exited during {cmd}\n{self.describe()}")
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{cmd} not done within {timeout} s\n{self.describe()}")
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                pass

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

    def bodies(self) -> list[str]:
        return [e["body"] for e in self.of("message")]

    def assert_no_trouble(self) -> None:
        assert not self.of("error"), self.describe()
        bad = {"CONNFAIL", "AUTHFAIL", "CONNTIMEOUT", "ERROR"}
        assert not [e for e in self.of("status") if e["status"] in bad], self.describe()

    async def close(self) -> None:
        """Log out cleanly if that is quick; the process is killed in any case."""
        proc = self.proc
        try:
            if proc.returncode is None and proc.stdin is not None and not self._eof:
                proc.stdin.write(b'{"cmd":"stop"}\n')
                await proc.stdin.drain()
                await asyncio.wait_for(proc.wait(), 5)
        except (OSError, TimeoutError):
            pass
        finally:
            if proc.returncode is None:
                proc.kill()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                pass
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)


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


def presence_types_from(c: Client, bare: str) -> list[str]:
    seen: list[str] = []
    while not c.presences.empty():
        p = c.presences.get_nowait()
        if p["from"].bare == bare:
            seen.append(p["type"])
    return seen


async def subscribe(bob: Client, js: StropheBosh, a_jid: str, full: str) -> None:
    """Bob subscribes to the strophe user's presence and is approved (requests reach
    only available resources, RFC 6121 §3.1.3), then sees it available."""
    b_jid = bob.boundjid.bare
    bob.send_presence_subscription(pto=a_jid)
    await js.wait_for("presence", lambda e: e["type"] == "subscribe" and e["from"] == b_jid)
    await js.command("presence", to=b_jid, type="subscribed")
    await bob.next_presence(lambda p: p["from"].full == full and p["type"] == "available", 10)


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

        bob.send_message(mto=full, mbody="to your full JID", mtype="chat")
        ev = await js.wait_for("message")
        assert (ev["body"], ev["from"], ev["to"], ev["type"]) == (
            "to your full JID",
            bob.boundjid.full,
            full,
            "chat",
        )
        bob.send_message(mto=a_jid, mbody=AWKWARD, mtype="chat")
        ev = await js.wait_for("message")
        assert (ev["body"], ev["from"], ev["to"], ev["type"]) == (
            AWKWARD,
            bob.boundjid.full,
            a_jid,
            "chat",
        )
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
        await js.command("send", to=b_jid, body="back again")
        got_back = await bob.next_message(10)
        assert got_back["body"] == "back again" and got_back["from"].full == full
        bob.send_message(mto=full, mbody="welcome back", mtype="chat")
        assert (await js.wait_for("message"))["body"] == "welcome back"
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
        await js.command("send", to=b_jid, body="hello")
        assert (await bob.next_message(10))["body"] == "hello"
        bob.send_message(mto=full, mbody="hello back", mtype="chat")
        assert (await js.wait_for("message"))["body"] == "hello back"
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
