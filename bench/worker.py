"""A load-generator process: uvloop, many connections, driven by the parent over a pipe.

The parent sends commands (tuples) to every worker and waits for all the answers,
so the phases of a scenario start together. Each command is bounded in time.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import multiprocessing.connection as mpc
import re
import time
from collections.abc import Callable
from typing import Any

from bench.client import CAPS_ANSWER, CAPS_PRESENCE, JC, SM_ANSWER, SM_REQUEST, Conn, Login
from bench.proc import cpu_seconds, raise_nofile

# Login modes: PLAIN over TCP, PLAIN over WebSocket, PLAIN over TCP with stream
# management (resumption on), PLAIN over TCP with entity capabilities in the initial
# presence (disco#info queries answered), SCRAM-SHA-256 after STARTTLS.
MODES = ("plain", "ws", "sm", "caps", "scram")
_IQ_RESULT = re.compile(rb"""^<iq\b[^>]*\btype=['"]result['"]""")


class Worker:
    def __init__(
        self, pipe: mpc.Connection, host: str, port: int, domain: str, pw: str, http_port: int
    ) -> None:
        self.pipe = pipe
        self.login = Login(host, port, domain, pw, http_port)
        self.domain = domain
        self.conns: dict[str, Conn] = {}
        self.progress = asyncio.Event()
        self._pending_close: list[Conn] = []
        # Sessions left to hibernate: (user, SM-ID, h at the time of the abort).
        self.hibernated: list[tuple[str, str, int]] = []

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
        """Log users in, ``concurrency`` at a time (``mode``: one of MODES). PLAIN
        sessions stay open (available if ``presence``); SCRAM ones too if ``keep``,
        else until ``close_pending``."""
        if mode not in MODES:
            raise ValueError(f"login mode {mode!r}")
        sem = asyncio.Semaphore(concurrency)
        failures: list[str] = []
        ws, sm = mode == "ws", mode == "sm"
        pres = (b"<presence%s/>" % (JC if ws else b"")) if presence else None
        disco = None
        if mode == "caps":
            pres, disco = (CAPS_PRESENCE if presence else None), CAPS_ANSWER

        async def one(user: str) -> None:
            async with sem:
                try:
                    if mode == "scram":
                        conn = await self.login.scram(user, "bench")
                    else:
                        conn = await self.login.plain(
                            user, "bench", pres, self.progress, ws, sm, disco
                        )
                except Exception as exc:
                    failures.append(f"{user}: {type(exc).__name__} {exc}")
                    return
                if mode != "scram" or keep:
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
        """(sender, receiver, pre-serialised message as it goes on the wire: one
        masked frame over WebSocket) for both directions of each pair."""
        dirs = []
        body = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod."
        for a, b in pairs:
            for frm, to in ((a, b), (b, a)):
                tx = self.conns[frm]
                ns = " xmlns='jabber:client'" if tx.ws else ""
                msg = (
                    f"<message{ns} to='{to}@{self.domain}' type='chat' id='m'>"
                    f"<body>{body}</body></message>"
                ).encode()
                dirs.append((tx, self.conns[to], tx.pack(msg)))
        return dirs

    async def cmd_chat_prime(self, pairs: list[tuple[str, str]]) -> dict[str, Any]:
        """One message per direction, then wait (at most 30 s) until each has arrived.

        The first stanza a session sends or receives makes the server load per-user
        state from storage (Descant: the block list), which belongs to no steady
        state. With stream management it also stalls the sender's input, acks
        included, while its partner floods it: the unacknowledged queue overflows
        and the server ends the session."""
        dirs = self._pairs(pairs)
        for _, rx, _ in dirs:
            rx.start_counting(b"</message>")
        for tx, _, msg in dirs:
            tx.write(msg)
        await self._drain(lambda: all(rx.count >= 1 for _, rx, _ in dirs), 30)
        return {"primed": sum(rx.count >= 1 for _, rx, _ in dirs), "directions": len(dirs)}

    async def cmd_chat_saturate(
        self, pairs: list[tuple[str, str]], duration: float, window: int, batch: int = 1
    ) -> dict[str, Any]:
        """Closed loop: each direction keeps ``window`` messages in flight. With
        ``batch`` > 1 (stream management), messages leave in pre-serialised batches of
        ``batch`` followed by an ack request ``<r/>``."""
        dirs = self._pairs(pairs)
        if batch > 1:
            dirs = [(tx, rx, msg * batch + SM_REQUEST) for tx, rx, msg in dirs]
        for _, rx, _ in dirs:
            rx.start_counting(b"</message>")
        sent = [0] * len(dirs)
        t0 = time.monotonic()
        end = t0 + duration
        while time.monotonic() < end:
            for i, (tx, rx, unit) in enumerate(dirs):
                room = window - (sent[i] - rx.count)
                if room > window // 2:
                    units = room // batch
                    tx.write(unit * units)
                    sent[i] += units * batch
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
            "acks_sent": sum(c.acks_sent for c in {rx for _, rx, _ in dirs}),
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

    # -- stream management: hibernation -------------------------------------------------

    async def cmd_sm_settle(self) -> dict[str, Any]:
        """Acknowledge everything received, unasked, then ask the server for its count
        (``<r/>``); its answer means our ack was handled (in order), so no session
        holds unacknowledged stanzas. Bounded by the login timeout per connection."""

        async def one(conn: Conn) -> None:
            conn.drop_input()
            conn.send(b"<a xmlns='urn:xmpp:sm:3' h='%d'/>" % conn.h + SM_REQUEST)
            await conn.expect(SM_ANSWER)

        await asyncio.wait_for(asyncio.gather(*(one(c) for c in self.conns.values())), 120)
        return {"settled": len(self.conns)}

    async def cmd_abort(self) -> dict[str, Any]:
        """Drop every connection without closing its stream (``transport.abort()``):
        each session with resumption hibernates. Remembers what resuming needs."""
        n = len(self.conns)
        for user, conn in self.conns.items():
            self.hibernated.append((user, conn.sm_id, conn.h))
            conn.abort()
        self.conns.clear()
        await asyncio.sleep(0.2)
        return {"aborted": n}

    async def cmd_resume_check(self, n: int) -> dict[str, Any]:
        """Resume ``n`` of the hibernated sessions, spread over all of them (then
        close them): proof that the server held them. The count of ``<resumed/>``
        answers is returned."""
        every = max(len(self.hibernated) // max(n, 1), 1)
        picked = self.hibernated[::every][:n]
        ok = await asyncio.wait_for(
            asyncio.gather(*(self.login.resume(u, sm_id, h) for u, sm_id, h in picked)), 120
        )
        await asyncio.sleep(0.3)
        return {"tried": len(picked), "resumed": sum(ok)}

    # -- client state indication ----------------------------------------------------------

    async def cmd_inactive(self) -> dict[str, Any]:
        """Every connection says ``<inactive/>`` (XEP-0352), then a ping: its answer
        means the indication was handled (the server handles a stream in order)."""

        async def one(conn: Conn) -> None:
            conn.drop_input()  # stop counting: the answer is waited for in the buffer
            conn.send(b"<inactive xmlns='urn:xmpp:csi:0'/>")
            conn.send(
                b"<iq%s type='get' id='csi' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                % (JC if conn.ws else b"", self.domain.encode())
            )
            await conn.expect(b"id='csi'")

        await asyncio.wait_for(asyncio.gather(*(one(c) for c in self.conns.values())), 120)
        return {"inactive": len(self.conns)}

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
        conns, received = self._counting(users, marker)
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
        await self._settled(received)
        return {"sent": sent, "received": received(), "elapsed": elapsed}

    def _counting(self, users: list[str], marker: bytes) -> tuple[list[Conn], Callable[[], int]]:
        """The users' connections, each counting ``marker`` from now; and their total."""
        conns = [self.conns[u] for u in users]
        for c in conns:
            c.start_counting(marker)
        return conns, lambda: sum(c.count for c in conns)

    async def _settled(self, received: Any) -> None:
        """Wait until deliveries stop arriving (0.5 s without one; at most 15 s)."""
        last = -1
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and received() != last:
            last = received()
            await asyncio.sleep(0.5)

    async def cmd_fanout_rate(
        self, users: list[str], stanzas: list[bytes], marker: bytes, rate: float, duration: float
    ) -> dict[str, Any]:
        """Open loop: users send ``stanzas`` in turn (cycling) at ``rate`` per second,
        whatever comes back; counts ``marker``. For clients that receive (almost)
        nothing, where a closed loop would have nothing to pace itself on."""
        conns, received = self._counting(users, marker)
        sent = 0
        t0 = time.monotonic()
        while True:
            now = time.monotonic()
            if now - t0 >= duration:
                break
            for _ in range(int(rate * (now - t0)) - sent):
                conns[sent % len(conns)].write(stanzas[(sent // len(conns)) % len(stanzas)])
                sent += 1
            await asyncio.sleep(0.002)
        elapsed = time.monotonic() - t0
        await self._settled(received)
        return {"sent": sent, "received": received(), "elapsed": elapsed}

    async def cmd_publish_each(
        self, users: list[str], stanza: bytes, marker: bytes, fanout: int, limit: float
    ) -> dict[str, Any]:
        """Every user sends ``stanza`` once; wait until about ``fanout`` ``marker`` per
        user have arrived, or ``limit`` seconds, then until deliveries stop."""
        conns, received = self._counting(users, marker)
        for conn in conns:
            conn.write(stanza)
        await self._drain(lambda: received() >= fanout * len(conns), limit)
        await self._settled(received)
        return {"sent": len(conns), "received": received()}

    async def cmd_disco_answered(self) -> dict[str, Any]:
        """How many disco#info queries the connections have answered so far."""
        return {"answered": sum(c.disco_answered for c in self.conns.values())}

    # -- message archive -----------------------------------------------------------------

    async def cmd_mam_query(self, user: str, queries: list[tuple[str, bytes]]) -> dict[str, Any]:
        """Send archive queries (XEP-0313 §4) one at a time from ``user``'s connection,
        each (iq id, iq); each is done when the result iq of that id has arrived (the
        server sends the page's messages before it). Per query: the latency (ns, send →
        the result iq read) and how many results (``<result``, one per forwarded
        message) came before its iq. An error iq or a missing ``<fin`` is an error."""
        conn = self.conns[user]
        conn.drop_input()
        latencies: list[int] = []
        results: list[int] = []
        errors, example = 0, ""
        for qid, query in queries:
            done = re.compile(
                rb"<iq\b[^>]*\bid=['\"]%s['\"][^>]*?(?:/>|>.*?</iq>)" % re.escape(qid.encode()),
                re.S,
            )
            t0 = time.perf_counter_ns()
            conn.send(query)
            got = await conn.expect(done, 30)
            latencies.append(time.perf_counter_ns() - t0)
            iq = got[got.rfind(b"<iq") :]
            results.append(got.count(b"<result "))
            if b"<fin" not in iq or _IQ_RESULT.search(iq) is None:
                errors += 1
                example = example or iq[:300].decode(errors="replace")
        return {"latencies": latencies, "results": results, "errors": errors, "example": example}

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


def _main(
    cls: type[Worker],
    pipe: mpc.Connection,
    host: str,
    port: int,
    domain: str,
    pw: str,
    http_port: int,
) -> None:
    raise_nofile()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(cls(pipe, host, port, domain, pw, http_port).serve())


class Pool:
    """The worker processes, commanded together. ``http_port``: the server's HTTP
    listener, for WebSocket logins; ``worker``: the class each process runs (a
    subclass adds commands, e.g. the soak's churn)."""

    def __init__(
        self,
        n: int,
        host: str,
        port: int,
        domain: str,
        pw: str,
        http_port: int = 0,
        worker: type[Worker] = Worker,
    ) -> None:
        ctx = mp.get_context("fork")
        self.pipes: list[mpc.Connection] = []
        self.procs: list[Any] = []
        for _ in range(n):
            parent, child = ctx.Pipe()
            args = (worker, child, host, port, domain, pw, http_port)
            p = ctx.Process(target=_main, args=args, daemon=True)
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
