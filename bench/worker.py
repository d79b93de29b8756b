"""A load-generator process: uvloop, many connections, driven by the parent over a pipe.

The parent sends commands (tuples) to every worker and waits for all the answers,
so the phases of a scenario start together. Each command is bounded in time.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import multiprocessing.connection as mpc
import time
from typing import Any

from bench.client import Conn, Login
from bench.proc import cpu_seconds, raise_nofile


class Worker:
    def __init__(self, pipe: mpc.Connection, host: str, port: int, domain: str, pw: str) -> None:
        self.pipe = pipe
        self.login = Login(host, port, domain, pw)
        self.domain = domain
        self.conns: dict[str, Conn] = {}
        self.progress = asyncio.Event()
        self._pending_close: list[Conn] = []

    async def serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            cmd = await loop.run_in_executor(None, self.pipe.recv)
            name, args = cmd[0], cmd[1:]
            if name == "quit":
                self._close_all()
                await asyncio.sleep(0.2)
                self.pipe.send(None)
                return
            try:
                result = await getattr(self, "cmd_" + name)(*args)
            except Exception as exc:  # reported to the parent, which stops the run
                result = {"error": f"{type(exc).__name__}: {exc}"}
            self.pipe.send(result)

    def _close_all(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()

    async def cmd_close(self) -> dict[str, Any]:
        n = len(self.conns)
        self._close_all()
        await asyncio.sleep(0.5)
        return {"closed": n}

    async def cmd_login(
        self, users: list[str], mode: str, concurrency: int, presence: bool, keep: bool
    ) -> dict[str, Any]:
        """Log users in, ``concurrency`` at a time. PLAIN sessions stay open (available
        if ``presence``); SCRAM ones too if ``keep``, else until ``close_pending``."""
        sem = asyncio.Semaphore(concurrency)
        failures: list[str] = []
        pres = b"<presence/>" if presence else None

        async def one(user: str) -> None:
            async with sem:
                try:
                    if mode == "plain":
                        conn = await self.login.plain(user, "bench", pres, self.progress)
                    else:
                        conn = await self.login.scram(user, "bench")
                except Exception as exc:
                    failures.append(f"{user}: {type(exc).__name__} {exc}")
                    return
                if mode == "plain" or keep:
                    self.conns[user] = conn
                else:
                    self._pending_close.append(conn)

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(one(u) for u in users)), 600)
        elapsed = time.perf_counter() - t0
        return {
            "ok": len(users) - len(failures),
            "failed": failures[:5],
            "n_failed": len(failures),
            "elapsed": elapsed,
        }

    async def cmd_close_pending(self) -> dict[str, Any]:
        """Close the sessions a login run did not keep (closed after measuring)."""
        for conn in self._pending_close:
            conn.close()
        self._pending_close = []
        await asyncio.sleep(0.3)
        return {}

    async def cmd_quiet(self, quiet_for: float, limit: float) -> dict[str, Any]:
        """Wait until nothing has arrived for ``quiet_for`` seconds (at most ``limit``)."""
        deadline = time.monotonic() + limit
        quiet = False
        while time.monotonic() < deadline:
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), quiet_for)
            except TimeoutError:
                quiet = True
                break
        for conn in self.conns.values():
            conn.drop_input()
        return {"quiet": quiet}

    # -- chat ---------------------------------------------------------------------------

    def _pairs(self, pairs: list[tuple[str, str]]) -> list[tuple[Conn, Conn, bytes]]:
        """(sender, receiver, pre-serialised message) for both directions of each pair."""
        dirs = []
        body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod."
        for a, b in pairs:
            for frm, to in ((a, b), (b, a)):
                msg = (
                    f"<message to='{to}@{self.domain}' type='chat' id='m'>"
                    f"<body>{body}</body></message>"
                ).encode()
                dirs.append((self.conns[frm], self.conns[to], msg))
        return dirs

    async def cmd_chat_saturate(
        self, pairs: list[tuple[str, str]], duration: float, window: int
    ) -> dict[str, Any]:
        """Closed loop: each direction keeps ``window`` messages in flight."""
        dirs = self._pairs(pairs)
        for _, rx, _ in dirs:
            rx.start_counting(b"</message>")
        sent = [0] * len(dirs)
        t0 = time.monotonic()
        end = t0 + duration
        while time.monotonic() < end:
            for i, (tx, rx, msg) in enumerate(dirs):
                room = window - (sent[i] - rx.count)
                if room > window // 2:
                    tx.write(msg * room)
                    sent[i] += room
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), 0.2)
            except TimeoutError:
                pass
        received_at_end = sum(rx.count for _, rx, _ in dirs)
        elapsed = time.monotonic() - t0
        # Drain what is in flight, so the next phase starts clean.
        await self._drain(lambda: sum(rx.count for _, rx, _ in dirs) >= sum(sent), 10)
        return {
            "sent": sum(sent),
            "received": sum(rx.count for _, rx, _ in dirs),
            "received_in_window": received_at_end,
            "elapsed": elapsed,
        }

    async def cmd_chat_rate(
        self, pairs: list[tuple[str, str]], rate: float, duration: float
    ) -> dict[str, Any]:
        """Open loop at a fixed rate; each body carries its send time (ns)."""
        dirs = []
        for a, b in pairs:
            for frm, to in ((a, b), (b, a)):
                dirs.append((self.conns[frm], self.conns[to], f"{to}@{self.domain}".encode()))
        for _, rx, _ in dirs:
            rx.start_counting(b"</message>", timing=True)
        sent = 0
        t0 = time.monotonic()
        nxt = 0
        while True:
            now = time.monotonic()
            if now - t0 >= duration:
                break
            due = int(rate * (now - t0)) - sent
            for _ in range(due):
                tx, _, to_b = dirs[nxt]
                nxt = (nxt + 1) % len(dirs)
                tx.write(
                    b"<message to='%s' type='chat' id='m'><body>%d</body></message>"
                    % (to_b, time.perf_counter_ns())
                )
            sent += max(due, 0)
            await asyncio.sleep(0.002)
        await self._drain(lambda: sum(rx.count for _, rx, _ in dirs) >= sent, 10)
        lat: list[int] = []
        for _, rx, _ in dirs:
            lat.extend(rx.latencies)
        return {"sent": sent, "received": sum(rx.count for _, rx, _ in dirs), "latencies": lat}

    async def _drain(self, done: Any, limit: float) -> None:
        deadline = time.monotonic() + limit
        while not done() and time.monotonic() < deadline:
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), 0.5)
            except TimeoutError:
                pass

    # -- fan-out: presence broadcasts, groupchat -----------------------------------------

    async def cmd_fanout(
        self,
        users: list[str],
        stanzas: list[bytes],
        marker: bytes,
        fanout: int,
        duration: float,
        window: int,
    ) -> dict[str, Any]:
        """Users send ``stanzas`` in turn (cycling), each delivered to about ``fanout``
        recipients, keeping about ``window`` deliveries in flight; counts ``marker``."""
        conns = [self.conns[u] for u in users]
        for c in conns:
            c.start_counting(marker)

        def received() -> int:
            return sum(c.count for c in conns)

        sent = 0
        t0 = time.monotonic()
        end = t0 + duration
        while time.monotonic() < end:
            room = (window - (sent * fanout - received())) // fanout
            for _ in range(max(room, 0)):
                conns[sent % len(conns)].write(stanzas[(sent // len(conns)) % len(stanzas)])
                sent += 1
            self.progress.clear()
            try:
                await asyncio.wait_for(self.progress.wait(), 0.2)
            except TimeoutError:
                pass
        elapsed = time.monotonic() - t0
        # Wait until deliveries stop arriving.
        last = -1
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and received() != last:
            last = received()
            await asyncio.sleep(0.5)
        return {"sent": sent, "received": received(), "elapsed": elapsed}

    async def cmd_muc_join(self, users: list[str], room: str, create: bool) -> dict[str, Any]:
        """Join ``room`` (XEP-0045 §7.2) one user at a time; the first one, if ``create``,
        makes it an instant room (§10.1.2). A ping after each join is the barrier."""
        for i, user in enumerate(users):
            conn = self.conns[user]
            conn.write(
                b"<presence to='%s/%s'><x xmlns='http://jabber.org/protocol/muc'/>"
                b"</presence>" % (room.encode(), user.encode())
            )
            seen = b""
            if create and i == 0:
                conn.write(
                    b"<iq type='set' id='cfg' to='%s'><query xmlns='http://jabber.org/"
                    b"protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/>"
                    b"</query></iq>" % room.encode()
                )
                seen = await conn.expect(b"id='cfg'")
                seen += await conn.expect(b">")
                if b"type='error'" in seen[seen.rfind(b"<iq") :]:
                    raise RuntimeError(f"room configuration refused: {seen[-300:]!r}")
            conn.write(
                b"<iq type='get' id='bar2' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                % self.domain.encode()
            )
            seen += await conn.expect(b"id='bar2'")
            if b"code='110'" not in seen and b'code="110"' not in seen:
                raise RuntimeError(f"{user} did not enter {room}: {seen[-300:]!r}")
        return {"joined": len(users)}


def _main(pipe: mpc.Connection, host: str, port: int, domain: str, pw: str) -> None:
    raise_nofile()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(Worker(pipe, host, port, domain, pw).serve())


class Pool:
    """The worker processes, commanded together."""

    def __init__(self, n: int, host: str, port: int, domain: str, pw: str) -> None:
        ctx = mp.get_context("fork")
        self.pipes: list[mpc.Connection] = []
        self.procs: list[Any] = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_main, args=(child, host, port, domain, pw), daemon=True)
            p.start()
            self.pipes.append(parent)
            self.procs.append(p)

    def __len__(self) -> int:
        return len(self.pipes)

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def call(self, per_worker: list[tuple[Any, ...]], timeout: float = 900) -> list[Any]:
        for pipe, cmd in zip(self.pipes, per_worker, strict=True):
            pipe.send(cmd)
        out = []
        for pipe in self.pipes:
            if not pipe.poll(timeout):
                raise TimeoutError("a load-generator process did not answer")
            res = pipe.recv()
            if isinstance(res, dict) and "error" in res:
                raise RuntimeError(f"load generator: {res['error']}")
            out.append(res)
        return out

    def all(self, *cmd: Any, timeout: float = 900) -> list[Any]:
        return self.call([cmd] * len(self.pipes), timeout)

    def stop(self) -> None:
        for pipe in self.pipes:
            try:
                pipe.send(("quit",))
            except OSError:
                pass
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
