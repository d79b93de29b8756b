"""``make soak``: Descant under a churning population for ten minutes; does its memory stay flat?

    python -m bench.soak [--minutes 10] [--connections 2000] [--warmup 2] [--out FILE]
                         [--tracemalloc]

One Descant server (SQLite, accounts and rosters written into storage as ``make bench``
does, ``c2s.resume_timeout`` short enough that hibernated sessions expire during the
run) and two load-generator processes. Each generator keeps its share of
``--connections`` lives going: a life is one login (PLAIN, SCRAM-SHA-256 after
STARTTLS, or PLAIN with stream management), initial presence to a roster of mutual
contacts, chat messages every few seconds to contacts and to random accounts (about half
of the accounts are offline at any moment, so offline storage fills, and drains when
they log in), rooms at ``conference.localhost`` joined, talked in and left (the first
occupant of an empty room creates it: persistent or instant), and an end: a clean
close, a TCP abort, or, with stream management, an abort that leaves the session to
hibernate, then resumed from a new connection or left to time out. The account goes
back to the pool and a new life takes its place.

Every ``--sample`` seconds the server's RSS, PSS and CPU (``/proc``) and the stored
offline messages are sampled. The result: the series, RSS after the warm-up and at the
end, the least-squares slope over the samples after the warm-up, the counts, and what
the server logged. Exit status 1 when the slope would grow RSS by more than
``--max-growth`` (5%) of its post-warm-up figure over the rest of the run, when the
server logged a traceback, or when more than 1% of the lives failed on the client side.

``--tracemalloc`` runs the server under ``tracemalloc`` and compares a snapshot at the
end of the warm-up with one at the end (top allocation sites by growth), and the counts
of live objects by type: how a leak is found, at about twice the server's CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import pickle
import random
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.client import Conn
from bench.proc import machine_info, raise_nofile
from bench.servers import DOMAIN, PASSWORD, ROOT, Descant
from bench.worker import Pool, Worker

MUC = f"conference.{DOMAIN}"
ROOMS = 16
CONTACTS = 5  # mutual contacts on each side of a user in a ring: 10 per user
RESUME_TIMEOUT = 20  # c2s.resume_timeout of the soak server, seconds
ROOM_CONFIG = (
    b"<iq type='set' id='cfg' to='%s'><query xmlns='http://jabber.org/protocol/muc#owner'>"
    b"<x xmlns='jabber:x:data' type='submit'>%s</x></query></iq>"
)
PERSISTENT = (
    b"<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"
    b"<field var='muc#roomconfig_persistentroom'><value>1</value></field>"
)


class SoakServer(Descant):
    """Descant as ``make bench`` runs it, with a short resumption window; under
    ``tracemalloc`` when ``traced`` (snapshots on SIGUSR1, see :func:`traced_main`)."""

    def __init__(self, workdir: Path, traced: bool = False) -> None:
        super().__init__(workdir)
        self.traced = traced
        self.snapshots = 0
        text = self.config.read_text()
        self.config.write_text(
            text.replace("[c2s]\n", f"[c2s]\nresume_timeout = {RESUME_TIMEOUT}\n", 1)
        )

    def command(self) -> list[str]:
        if not self.traced:
            return super().command()
        run = "from bench.soak import traced_main; traced_main()"
        return [sys.executable, "-X", "tracemalloc=10", "-c", run, "--config", str(self.config)]

    def snapshot(self, timeout: float = 300) -> Path:
        """Ask the traced server for a snapshot; wait until it is written."""
        path = self.dir / f"tracemalloc-{self.snapshots}.pickle"
        self.snapshots += 1
        path.unlink(missing_ok=True)
        assert self.proc is not None
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not path.exists() and time.monotonic() < deadline:
            time.sleep(0.5)
        return path


def traced_main() -> None:
    """``descant serve`` that writes, on SIGUSR1, a tracemalloc snapshot and the
    count of live objects by type to ``tracemalloc-N.pickle`` in its directory
    (N = 0, 1, …)."""
    import gc
    import tracemalloc

    from descant.cli import main

    dumps = iter(range(1000))

    def dump(signum: int, frame: Any) -> None:
        gc.collect()
        types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        data = {"snapshot": tracemalloc.take_snapshot(), "types": dict(types)}
        tmp = Path(f"tracemalloc-{next(dumps)}.tmp")
        tmp.write_bytes(pickle.dumps(data))
        tmp.rename(tmp.with_suffix(".pickle"))

    signal.signal(signal.SIGUSR1, dump)
    raise SystemExit(main([*sys.argv[1:], "serve"]))


def compare_snapshots(first: Path, last: Path, top: int = 15) -> list[str]:
    """Allocation sites that grew most between two snapshots, and object types."""
    import tracemalloc

    a, b = pickle.loads(first.read_bytes()), pickle.loads(last.read_bytes())
    filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
    sa = a["snapshot"].filter_traces(filters)
    sb = b["snapshot"].filter_traces(filters)
    out = ["Allocation sites by growth (tracemalloc, 10 frames, newest shown):"]
    grown = sorted(sb.compare_to(sa, "traceback"), key=lambda st: -st.size_diff)
    for stat in grown[:top]:
        frames = stat.traceback.format(limit=4, most_recent_first=True)
        out.append(
            f"  {stat.size_diff / 1024:+.0f} KiB ({stat.count_diff:+d} blocks), "
            f"now {stat.size / 1024:.0f} KiB: " + " <- ".join(f.strip() for f in frames[::2])
        )
    growth = {t: b["types"].get(t, 0) - n for t, n in a["types"].items()}
    growth.update({t: n for t, n in b["types"].items() if t not in a["types"]})
    out.append("Live objects by type, growth:")
    for t, d in sorted(growth.items(), key=lambda kv: -kv[1])[:top]:
        if d <= 0:
            break
        out.append(f"  {t}: {d:+d} (now {b['types'].get(t, 0)})")
    return out


# -- the load generator -------------------------------------------------------------------


class SoakWorker(Worker):
    """A load generator whose ``soak`` command keeps lives going until the deadline."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.stats: collections.Counter[str] = collections.Counter()
        self.errors: list[str] = []
        self.online: set[str] = set()

    def _error(self, what: str, exc: BaseException) -> None:
        self.stats["errors"] += 1
        if len(self.errors) < 20:
            notes = " ".join(getattr(exc, "__notes__", ()))
            self.errors.append(f"{what}: {type(exc).__name__} {exc} ({notes})"[:300])

    async def cmd_soak(
        self,
        users: list[str],
        everyone: int,
        lives: int,
        duration: float,
        lifetime: float,
        ramp: float,
        seed: int,
        report_every: float,
    ) -> dict[str, Any]:
        rnd = random.Random(seed)
        free = collections.deque(rnd.sample(users, len(users)))
        loop = asyncio.get_running_loop()
        end = time.monotonic() + duration

        async def lives_of_one_slot(slot: int) -> None:
            await asyncio.sleep(ramp * slot / lives)
            while time.monotonic() < end:
                if not free:
                    await asyncio.sleep(1)
                    continue
                user = free.popleft()
                back_after = 0.0
                try:
                    back_after = await self._life(user, rnd, everyone, lifetime, end)
                except Exception as exc:  # counted; the slot goes on with another life
                    self._error(user, exc)
                    await asyncio.sleep(1)
                if back_after:
                    loop.call_later(back_after, free.append, user)
                else:
                    free.append(user)

        async def report() -> None:
            while time.monotonic() < end:
                await asyncio.sleep(report_every)
                self.pipe.send({"progress": self._counts()})

        reporter = asyncio.create_task(report())
        slots = [asyncio.create_task(lives_of_one_slot(i)) for i in range(lives)]
        # A life in flight at the deadline ends within one chat interval; a stuck
        # one (e.g. a login timing out) within the client's TIMEOUT.
        _, stuck = await asyncio.wait(slots, timeout=duration + 90)
        for task in stuck:
            task.cancel()
        reporter.cancel()
        self.stats["stuck_at_end"] = len(stuck)
        return {"done": self._counts(), "errors": self.errors}

    def _counts(self) -> dict[str, int]:
        return {**self.stats, "online": len(self.online)}

    async def _life(
        self, user: str, rnd: random.Random, everyone: int, lifetime: float, end: float
    ) -> float:
        """One login, a while of chatting and rooms, one way of ending. Returns after
        how many seconds the account may log in again (0: at once)."""
        # Two devices per account, each with its own resource, as clients keep one
        # across logins (unique ones would grow the server's bounded JID caches all
        # run long: tens of thousands of full JIDs).
        resource = f"d{rnd.randrange(2)}"
        r = rnd.random()
        mode = "scram" if r < 0.1 else "sm" if r < 0.35 else "plain"
        try:
            conn = await self._login(user, resource, mode)
        except Exception as exc:
            exc.add_note(f"logging in ({mode})")
            raise
        self.stats["logins"] += 1
        self.stats[f"logins_{mode}"] += 1
        self.online.add(user)
        room: bytes | None = None
        try:
            conn.start_counting(b"</message>")
            until = min(time.monotonic() + lifetime * rnd.uniform(0.5, 1.5), end)
            while time.monotonic() < until:
                await asyncio.sleep(rnd.uniform(4, 10))
                if conn.lost:
                    raise ConnectionError("connection lost")
                r = rnd.random()
                if room is None and r < 0.15:
                    try:
                        room = await self._join(conn, user, rnd)
                    except Exception as exc:
                        exc.add_note("joining a room")
                        raise
                elif room is not None and r < 0.05:
                    conn.write(b"<presence to='%s' type='unavailable'/>" % room)
                    self.stats["room_leaves"] += 1
                    room = None
                elif room is not None and r < 0.4:
                    body = b"soak %d" % self.stats["groupchat_sent"]
                    to = room.split(b"/")[0]
                    conn.write(
                        b"<message to='%s' type='groupchat'><body>%s</body></message>" % (to, body)
                    )
                    self.stats["groupchat_sent"] += 1
                else:
                    self._chat(conn, user, rnd, everyone)
        except BaseException:
            conn.abort()
            raise
        finally:
            self.online.discard(user)
            self.stats["received"] += conn.count
        return await self._end(conn, user, mode, rnd)

    async def _login(self, user: str, resource: str, mode: str) -> Conn:
        if mode != "scram":
            return await self.login.plain(user, resource, b"<presence/>", None, sm=mode == "sm")
        conn = await self.login.scram(user, resource)
        try:
            conn.drop_input()
            conn.write(
                b"<presence/><iq type='get' id='bar' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
                % DOMAIN.encode()
            )
            await conn.expect(b"id='bar'")
        except BaseException:
            conn.abort()
            raise
        return conn

    def _chat(self, conn: Conn, user: str, rnd: random.Random, everyone: int) -> None:
        """A message to a contact (a ring neighbour) or to any account; both may be
        offline."""
        i = int(user[1:])
        if rnd.random() < 0.5:
            j = (i + rnd.choice([d for d in range(-CONTACTS, CONTACTS + 1) if d])) % everyone
        else:
            j = rnd.randrange(everyone)
        conn.write(
            b"<message to='u%d@%s' type='chat' id='c'><body>soak %d</body></message>"
            % (j, DOMAIN.encode(), self.stats["chat_sent"])
        )
        self.stats["chat_sent"] += 1

    async def _join(self, conn: Conn, user: str, rnd: random.Random) -> bytes | None:
        """Enter a room (XEP-0045 §7.2) with a little history; the first occupant of an
        empty room creates it (§10.1.2): even rooms persistent, odd ones instant (gone
        when the last occupant leaves). A ping is the barrier. None when refused (a
        room still locked by its creator: ``item-not-found``).

        Users have a room of their own most of the time, and their account name as
        nick (an account is never online twice here), as people do: the occupant
        JIDs seen are then a few per account, which the server's bounded JID caches
        (16,384 parsed JIDs, about 5 MiB full) hold within the warm-up. Random
        rooms and per-device nicks make 128,000 of them, and the caches fill all run
        long."""
        n = int(user[1:]) % ROOMS if rnd.random() < 0.8 else rnd.randrange(ROOMS)
        room = b"r%d@%s" % (n, MUC.encode())
        occupant = b"%s/%s" % (room, user.encode())
        self.stats["received"] += conn.count
        conn.drop_input()
        conn.write(
            b"<presence to='%s'><x xmlns='http://jabber.org/protocol/muc'>"
            b"<history maxstanzas='5'/></x></presence>"
            b"<iq type='get' id='j' to='%s'><ping xmlns='urn:xmpp:ping'/></iq>"
            % (occupant, DOMAIN.encode())
        )
        got = await conn.expect(b"id='j'")
        if b"code='201'" in got:
            conn.write(ROOM_CONFIG % (room, PERSISTENT if n % 2 == 0 else b""))
            got += await conn.expect(b"id='cfg'")
            self.stats["rooms_created"] += 1
        conn.start_counting(b"</message>")
        if b"code='110'" not in got:
            self.stats["room_joins_refused"] += 1
            return None
        self.stats["room_joins"] += 1
        return occupant

    async def _end(self, conn: Conn, user: str, mode: str, rnd: random.Random) -> float:
        if mode != "sm":
            if rnd.random() < 0.6:
                conn.close()
                self.stats["closed"] += 1
            else:
                conn.abort()
                self.stats["aborted"] += 1
            return 0.0
        sm_id, h = conn.sm_id, conn.h
        conn.abort()
        self.stats["hibernated"] += 1
        if rnd.random() < 0.5:
            # Left to time out; the account waits until the server has ended it.
            self.stats["left_to_time_out"] += 1
            return RESUME_TIMEOUT + 5.0
        await asyncio.sleep(rnd.uniform(1, 5))
        try:
            resumed = await self.login.resume(user, sm_id, h)
        except Exception as exc:
            exc.add_note("resuming")
            raise
        if resumed:
            self.stats["resumed"] += 1
        else:
            self.stats["resume_failed"] += 1
        return 0.0


# -- the run ------------------------------------------------------------------------------


def offline_count(db: Path) -> int:
    """Messages in offline storage now (read-only; the server holds the writer)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as c:
            return int(c.execute("SELECT count(*) FROM offline").fetchone()[0])
    except sqlite3.Error:
        return -1


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, KiB) points, in KiB per minute."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    sxx = sum((t - mx) ** 2 for t, _ in points)
    sxy = sum((t - mx) * (v - my) for t, v in points)
    return 60 * sxy / sxx if sxx else 0.0


def scan_log(log: Path) -> dict[str, Any]:
    """Tracebacks, errors and warnings the server logged; the first few of each."""
    counts: collections.Counter[str] = collections.Counter()
    first: dict[str, list[str]] = {"Traceback": [], "ERROR": [], "WARNING": []}
    lines = log.read_text(errors="replace").splitlines()
    for i, line in enumerate(lines):
        for key in first:
            if (key == "Traceback" and line.startswith("Traceback")) or f" {key} " in line:
                counts[key] += 1
                if len(first[key]) < 5:
                    context = lines[i : i + 12] if key == "Traceback" else [line]
                    first[key].append("\n".join(context)[:1500])
    return {"counts": dict(counts), "first": first}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="bench.soak", description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--connections", type=int, default=2000)
    p.add_argument("--accounts", type=int, default=0, help="default: 2 × connections")
    p.add_argument("--lifetime", type=float, default=60.0, help="mean seconds of a life")
    p.add_argument("--warmup", type=float, default=2.0, help="minutes")
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--max-growth", type=float, default=5.0, help="percent, after warm-up")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tracemalloc", action="store_true", help="find what grows (slow)")
    p.add_argument("--out", type=Path, help="write the result (Markdown) here")
    args = p.parse_args(argv)

    nofile = raise_nofile()
    # Each connection costs a file descriptor in the server and one in a generator.
    if args.connections > nofile - 500:
        p.error(f"--connections {args.connections}: the open-file limit is {nofile}")
    n_accounts = args.accounts or 2 * args.connections
    users = [f"u{i}" for i in range(n_accounts)]
    rosters = {
        u: [f"u{(i + d) % n_accounts}" for d in range(-CONTACTS, CONTACTS + 1) if d]
        for i, u in enumerate(users)
    }
    duration = args.minutes * 60
    warmup = args.warmup * 60
    started = datetime.datetime.now(datetime.UTC)

    if args.tracemalloc:
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
    workdir = Path(tempfile.mkdtemp(prefix="descant-soak-"))
    srv = SoakServer(workdir, traced=args.tracemalloc)
    t = time.monotonic()
    srv.prepare(users, rosters)
    log(f"{n_accounts} accounts, {CONTACTS * 2} contacts each, in {time.monotonic() - t:.0f}s")
    srv.start()
    pool = Pool(args.workers, "127.0.0.1", srv.port, DOMAIN, PASSWORD, srv.http_port, SoakWorker)
    samples: list[dict[str, Any]] = []
    progress: list[dict[str, int]] = [{} for _ in range(args.workers)]
    finals: list[dict[str, Any] | None] = [None] * args.workers
    snapshots: list[Path] = []
    after: dict[str, Any] = {}
    try:
        cpu0 = srv.cpu()
        t0 = time.monotonic()
        for w in range(args.workers):
            pool.pipes[w].send(
                (
                    "soak",
                    users[w :: args.workers],
                    n_accounts,
                    args.connections // args.workers,
                    duration,
                    args.lifetime,
                    min(60.0, warmup / 2),
                    args.seed * 100 + w,
                    args.sample,
                )
            )
        next_sample = t0
        while any(f is None for f in finals):
            for w, pipe in enumerate(pool.pipes):
                while finals[w] is None and pipe.poll(0):
                    msg = pipe.recv()
                    if "progress" in msg:
                        progress[w] = msg["progress"]
                    elif "error" in msg:
                        raise RuntimeError(f"load generator: {msg['error']}")
                    else:
                        finals[w] = msg
                        progress[w] = msg["done"]
            now = time.monotonic()
            if now >= next_sample and now - t0 <= duration + 1:
                samples.append(sample(srv, now - t0, cpu0, progress))
                log(fmt_sample(samples[-1]))
                if args.tracemalloc and not snapshots and now - t0 >= warmup:
                    snapshots.append(srv.snapshot())
                next_sample += args.sample
            if now - t0 > duration + 300:
                raise TimeoutError("the load generators did not finish")
            time.sleep(0.2)
        if args.tracemalloc:
            snapshots.append(srv.snapshot())
        # Every connection closed, every hibernated session timed out: what remains.
        pool.stop()
        time.sleep(RESUME_TIMEOUT + 10)
        rss, pss = srv.memory()
        after = {"rss_kib": rss, "pss_kib": pss, "offline": offline_count(srv.db)}
    finally:
        pool.stop()
        srv.stop()

    result = summarize(args, samples, finals, scan_log(srv.log), warmup, after)
    result["started"] = started.strftime("%Y-%m-%d %H:%M UTC")
    result["machine"] = machine_info()
    if len(snapshots) == 2 and all(s.exists() for s in snapshots):
        result["tracemalloc"] = compare_snapshots(snapshots[0], snapshots[1])
    text = report(result, srv.log)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        log(f"written to {args.out}")
    return 0 if result["passed"] else 1


def log(msg: str) -> None:
    print(f"# {msg}", file=sys.stderr, flush=True)


def sample(
    srv: SoakServer, t: float, cpu0: float, progress: list[dict[str, int]]
) -> dict[str, Any]:
    rss, pss = srv.memory()
    total: collections.Counter[str] = collections.Counter()
    for p in progress:
        total.update(p)
    return {
        "t": round(t),
        "rss_kib": rss,
        "pss_kib": pss,
        "cpu_s": round(srv.cpu() - cpu0, 1),
        "offline": offline_count(srv.db),
        "online": total["online"],
        "logins": total["logins"],
        "messages": total["chat_sent"] + total["groupchat_sent"],
        "room_joins": total["room_joins"],
    }


def fmt_sample(s: dict[str, Any]) -> str:
    return (
        f"t={s['t']:>4}s rss={s['rss_kib'] / 1024:7.1f} MiB pss={s['pss_kib'] / 1024:7.1f} MiB "
        f"cpu={s['cpu_s']:7.1f}s online={s['online']:>5} logins={s['logins']:>6} "
        f"msgs={s['messages']:>7} joins={s['room_joins']:>5} offline={s['offline']:>5}"
    )


def summarize(
    args: argparse.Namespace,
    samples: list[dict[str, Any]],
    finals: list[dict[str, Any] | None],
    server_log: dict[str, Any],
    warmup: float,
    after: dict[str, Any],
) -> dict[str, Any]:
    counts: collections.Counter[str] = collections.Counter()
    client_errors: list[str] = []
    for f in finals:
        if f is not None:
            counts.update(f["done"])
            client_errors += f["errors"]
    counts.pop("online", None)
    post = [s for s in samples if s["t"] >= warmup]
    rss_after_warmup = post[0]["rss_kib"] if post else 0
    rss_end = samples[-1]["rss_kib"] if samples else 0
    slope = slope_per_minute([(s["t"], s["rss_kib"]) for s in post])
    pss_slope = slope_per_minute([(s["t"], s["pss_kib"]) for s in post])
    span_min = (post[-1]["t"] - post[0]["t"]) / 60 if len(post) > 1 else 0.0
    growth_pct = 100 * slope * span_min / rss_after_warmup if rss_after_warmup else 0.0
    lives = counts["logins"] + counts["errors"]
    failures = []
    if len(post) < 3:
        failures.append("too few samples after the warm-up")
    if growth_pct > args.max_growth:
        failures.append(f"RSS grows {growth_pct:.1f}% after the warm-up (> {args.max_growth}%)")
    if server_log["counts"].get("Traceback"):
        failures.append(f"{server_log['counts']['Traceback']} traceback(s) in the server log")
    if lives and counts["errors"] > 0.01 * lives:
        failures.append(f"{counts['errors']} of {lives} lives failed on the client side")
    cpu = samples[-1]["cpu_s"] if samples else 0.0
    return {
        "args": {
            k: v for k, v in vars(args).items() if k not in ("out",) and not k.startswith("_")
        },
        "samples": samples,
        "rss_after_warmup_kib": rss_after_warmup,
        "rss_end_kib": rss_end,
        "rss_max_kib": max((s["rss_kib"] for s in post), default=0),
        "slope_kib_per_min": round(slope, 1),
        "pss_slope_kib_per_min": round(pss_slope, 1),
        "growth_pct": round(growth_pct, 2),
        "server_cpu_s": cpu,
        "counts": dict(sorted(counts.items())),
        "client_errors": client_errors[:20],
        "server_log": server_log,
        "after_load": after,
        "failures": failures,
        "passed": not failures,
    }


def command_line(args: dict[str, Any]) -> str:
    """The options of the run as they would be typed (flags only when on)."""
    out = []
    for k, v in args.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            out += [flag] if v else []
        else:
            out.append(f"{flag} {v}")
    return " ".join(out)


def report(r: dict[str, Any], server_log: Path) -> str:
    c = r["counts"]
    mib = 1024
    lines = [
        f"# Soak, {r['started']}",
        "",
        f"`python -m bench.soak {command_line(r['args'])}`",
        "",
        "**" + ("PASSED" if r["passed"] else "FAILED: " + "; ".join(r["failures"])) + "**",
        "",
        "| Figure | Value |",
        "|---|---:|",
        f"| RSS after the warm-up | {r['rss_after_warmup_kib'] / mib:.1f} MiB |",
        f"| RSS at the end | {r['rss_end_kib'] / mib:.1f} MiB |",
        f"| RSS, highest after the warm-up | {r['rss_max_kib'] / mib:.1f} MiB |",
        f"| slope after the warm-up (least squares), RSS | {r['slope_kib_per_min']:+.1f} KiB/min |",
        f"| slope after the warm-up, PSS | {r['pss_slope_kib_per_min']:+.1f} KiB/min |",
        f"| growth over the rest of the run, by the slope | {r['growth_pct']:+.2f}% |",
        f"| server CPU | {r['server_cpu_s']:.0f} s |",
        f"| logins (PLAIN / SCRAM+TLS / PLAIN+SM) | {c.get('logins', 0):,} "
        f"({c.get('logins_plain', 0):,} / {c.get('logins_scram', 0):,} / "
        f"{c.get('logins_sm', 0):,}) |",
        f"| chat messages sent / groupchat sent / messages received | "
        f"{c.get('chat_sent', 0):,} / {c.get('groupchat_sent', 0):,} / "
        f"{c.get('received', 0):,} |",
        f"| room joins (refused) / leaves / rooms created | {c.get('room_joins', 0):,} "
        f"({c.get('room_joins_refused', 0)}) / {c.get('room_leaves', 0):,} / "
        f"{c.get('rooms_created', 0):,} |",
        f"| ends: closed / aborted / hibernated (resumed, resume failed, left to time out) | "
        f"{c.get('closed', 0):,} / {c.get('aborted', 0):,} / {c.get('hibernated', 0):,} "
        f"({c.get('resumed', 0):,}, {c.get('resume_failed', 0)}, "
        f"{c.get('left_to_time_out', 0):,}) |",
        f"| client-side failures (lives) | {c.get('errors', 0)} |",
    ]
    if r["after_load"]:
        a = r["after_load"]
        lines.append(
            f"| after the load ({RESUME_TIMEOUT + 10} s, nobody connected): RSS / PSS / "
            f"offline messages | {a['rss_kib'] / mib:.1f} / {a['pss_kib'] / mib:.1f} MiB / "
            f"{a['offline']:,} |"
        )
    sl = r["server_log"]
    lines += [
        "",
        f"Server log ({server_log}): {sl['counts'] or 'nothing at warning level or above'}",
    ]
    for key, firsts in sl["first"].items():
        for text in firsts:
            lines += ["", f"{key}:", "```", text, "```"]
    if r["client_errors"]:
        lines += ["", "Client-side failures (first 20):", "```", *r["client_errors"], "```"]
    lines += [
        "",
        "## Samples",
        "",
        "| t (s) | RSS (MiB) | PSS (MiB) | server CPU (s) | online | logins | messages sent "
        "| room joins | offline stored |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in r["samples"]:
        lines.append(
            f"| {s['t']} | {s['rss_kib'] / mib:.1f} | {s['pss_kib'] / mib:.1f} | {s['cpu_s']} "
            f"| {s['online']} | {s['logins']} | {s['messages']} | {s['room_joins']} "
            f"| {s['offline']} |"
        )
    if "tracemalloc" in r:
        lines += [
            "",
            "## tracemalloc: end of the warm-up → end",
            "",
            "```",
            *r["tracemalloc"],
            "```",
        ]
    m = r["machine"]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}; Linux {m['kernel']}; "
        f"Python {m['python']}, uvloop {m['uvloop']}, Descant {m['descant']}; "
        f"open files {m['nofile']}.",
        "",
        "```json",
        json.dumps({k: v for k, v in r.items() if k not in ("samples", "machine")}),
        "```",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
