"""The Node scripts in tests/js, driven from pytest over JSON lines.

A script (tests/js/driver.mjs is its side) reads commands on stdin, one JSON object a
line (``{"cmd": "send", ...}``), answers each with an ``ok`` or ``error`` event, and
reports what happens as events on stdout, one JSON object a line (``{"event": ...}``).
:class:`NodeDriver` runs one in a subprocess; :func:`needs_node` skips the tests when
``node`` or a package in tests/js/node_modules is missing (``make js`` installs them)
or Node is too old.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import pytest

from tests.live import Client

JS_DIR = Path(__file__).resolve().parent / "js"


def js_missing(library: str, node_version: tuple[int, ...], packages: Iterable[str]) -> str | None:
    """Why ``library`` cannot run here, or None: ``node`` must be installed, at
    ``node_version`` or later, and each of ``packages`` be in tests/js/node_modules."""
    node = shutil.which("node")
    if node is None:
        return "node is not installed (make test installs tests/js when node and npm are there)"
    for package in packages:
        if not (JS_DIR / "node_modules" / package).is_dir():
            return f"tests/js/node_modules/{package} is missing: run `make js`"
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=20)
        parts = out.stdout.strip().lstrip("v").split(".")[: len(node_version)]
        found = tuple(int(x) for x in parts)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return f"`node --version` failed: {exc}"
    if found < node_version:
        wanted = ".".join(str(n) for n in node_version)
        return f"{library} needs Node.js {wanted} or later, found {out.stdout.strip()}"
    return None


def needs_node(
    library: str, node_version: tuple[int, ...], packages: Iterable[str]
) -> pytest.MarkDecorator:
    """A mark that skips a test, with the reason, when :func:`js_missing` says why."""
    missing = js_missing(library, node_version, packages)
    return pytest.mark.skipif(missing is not None, reason=missing or "")


class NodeDriver:
    """A script of tests/js in a subprocess: commands in, events (JSON lines) out.

    Every event is kept in ``events``; :meth:`wait_for` consumes them kind by kind, in
    order, so waiting for one kind never loses another. ``label`` names the client in
    failure messages, which show the last ``shown`` events and the end of stderr."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        label: str,
        *,
        command_timeout: float = 15,
        shown: int = 50,
    ) -> None:
        self.proc = proc
        self.label = label
        self.command_timeout = command_timeout
        self.shown = shown
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
    async def spawn(
        cls,
        script: Path,
        label: str,
        env: Mapping[str, str],
        *,
        step_timeout: float = 15,
        lifetime: float = 120,
        command_timeout: float = 15,
        shown: int = 50,
    ) -> Self:
        """Start ``script`` with ``env`` added to this environment. Each of its steps
        may take ``step_timeout`` s (XMPP_TIMEOUT), and it exits after ``lifetime`` s
        whatever happens (XMPP_LIFETIME); :meth:`command` waits ``command_timeout`` s
        by default."""
        node = shutil.which("node")
        assert node is not None
        proc = await asyncio.create_subprocess_exec(
            node,
            str(script),
            cwd=str(script.parent),
            env={
                **os.environ,
                **env,
                "XMPP_TIMEOUT": str(round(step_timeout * 1000)),
                "XMPP_LIFETIME": str(round(lifetime * 1000)),
            },
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc, label, command_timeout=command_timeout, shown=shown)

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
        recent = "\n".join(json.dumps(e) for e in self.events[-self.shown :])
        return f"last events:\n{recent}\nstderr:\n{self.stderr.decode('utf-8', 'replace')[-2000:]}"

    def of(self, kind: str, since: int = 0) -> list[dict[str, Any]]:
        """The events of ``kind`` from ``events[since]`` on."""
        return [e for e in self.events[since:] if e.get("event") == kind]

    def bodies(self) -> list[str]:
        """The bodies of the messages received, in order."""
        return [e["body"] for e in self.of("message")]

    async def _next_change(self, deadline: float, exited: str, late: str) -> None:
        """Wait for the next event until ``deadline``. Fails once the script has exited
        (``exited``: before what) or the deadline has passed (``late``: what is not
        done)."""
        if self._eof:
            raise AssertionError(f"{self.label} exited {exited}\n{self.describe()}")
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{late}\n{self.describe()}")
        try:
            await asyncio.wait_for(self._changed.wait(), left)
        except TimeoutError:
            pass

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
            await self._next_change(
                deadline, f"before a {kind!r} event", f"no {kind!r} event within {timeout} s"
            )

    async def command(self, cmd: str, timeout: float | None = None, **fields: Any) -> None:
        """Run one command; wait until the script says it is done (``timeout``: by
        default ``command_timeout``)."""
        if timeout is None:
            timeout = self.command_timeout
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
            await self._next_change(deadline, f"during {cmd}", f"{cmd} not done within {timeout} s")

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


async def subscribe(contact: Client, js: NodeDriver, jid: str, full: str) -> None:
    """``contact`` subscribes to the presence of the script's user (bare ``jid``, online
    as ``full``) and is approved (requests reach only available resources, RFC 6121
    §3.1.3), then sees it available."""
    contact_jid = contact.boundjid.bare
    contact.send_presence_subscription(pto=jid)
    await js.wait_for("presence", lambda e: e["type"] == "subscribe" and e["from"] == contact_jid)
    await js.command("presence", to=contact_jid, type="subscribed")
    await contact.next_presence(lambda p: p["from"].full == full and p["type"] == "available", 10)


async def message_to_js(contact: Client, js: NodeDriver, to: str, body: str) -> dict[str, Any]:
    """``contact`` sends a chat message to ``to``, the script's user (bare or full JID);
    the next message the script gets is that one, from the contact's full JID. Returns
    its event."""
    contact.send_message(mto=to, mbody=body, mtype="chat")
    ev = await js.wait_for("message")
    sender = contact.boundjid.full
    assert (ev["body"], ev["from"], ev["to"], ev["type"]) == (body, sender, to, "chat"), ev
    return ev


async def chat_both_ways(js: NodeDriver, contact: Client, full: str, out: str, back: str) -> None:
    """The script's user, online as ``full``, sends ``out`` to ``contact``, who gets it
    from that full JID; ``contact`` answers ``back`` to that full JID, and the script
    gets it."""
    await js.command("send", to=contact.boundjid.bare, body=out)
    got = await contact.next_message(10)
    assert got["body"] == out and got["from"].full == full
    await message_to_js(contact, js, full, back)
