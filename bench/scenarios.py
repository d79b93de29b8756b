"""The scenarios. Each returns one result dict (printed as a JSON line and a table row).

Server cost is the server process's utime+stime and RSS/PSS (bench/proc.py), per
unit delivered; the load generator's own CPU is reported beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.servers import DOMAIN, Server
from bench.worker import Pool

LOGIN_CONCURRENCY = 50  # per worker process
CLIQUE = 51  # presence: every user has CLIQUE - 1 mutual contacts


def split(items: list[Any], n: int) -> list[list[Any]]:
    return [items[i::n] for i in range(n)]


def _quiet(pool: Pool) -> None:
    pool.all("quiet", 1.0, 30.0)


class Meter:
    """Server and load-generator CPU over a phase."""

    # Called once, at the start of the next measured phase (bench/profile.py).
    on_next_start: Callable[[], None] | None = None

    def __init__(self, server: Server, pool: Pool) -> None:
        hook, Meter.on_next_start = Meter.on_next_start, None
        if hook is not None:
            hook()
        self.server, self.pool = server, pool
        self.cpu0, self.gen0, self.t0 = server.cpu(), pool.cpu(), time.monotonic()

    def done(self) -> tuple[float, float, float]:
        """(server CPU s, generator CPU s, wall s) since creation."""
        return (
            self.server.cpu() - self.cpu0,
            self.pool.cpu() - self.gen0,
            time.monotonic() - self.t0,
        )


def login_plain(pool: Pool, users: list[str]) -> float:
    res = pool.call(
        [
            ("login", part, "plain", LOGIN_CONCURRENCY, True, True)
            for part in split(users, len(pool))
        ]
    )
    failed = sum(r["n_failed"] for r in res)
    if failed:
        raise RuntimeError(f"{failed} logins failed, e.g. {res[0]['failed'] or res[-1]['failed']}")
    return float(max(r["elapsed"] for r in res))


def idle(server: Server, pool: Pool, steps: list[int]) -> list[dict[str, Any]]:
    """N authenticated, bound, available sessions: login cost and memory per session."""
    # Warm up (imports, caches) so the baseline is a running server, not a cold one.
    login_plain(pool, [f"u{i}" for i in range(20)])
    pool.all("close")
    time.sleep(1.0)
    base_rss, base_pss = server.memory()
    out = []
    have = 0
    for n in steps:
        users = [f"u{i}" for i in range(have, n)]
        m = Meter(server, pool)
        elapsed = login_plain(pool, users)
        _quiet(pool)
        cpu, gen, _ = m.done()
        time.sleep(1.0)
        rss, pss = server.memory()
        have = n
        out.append(
            {
                "scenario": f"idle-{n}",
                "sessions": n,
                "logins": len(users),
                "login_rate_per_s": len(users) / elapsed,
                "cpu_ms_per_login": cpu * 1000 / len(users),
                "rss_kib_per_session": (rss - base_rss) / n,
                "pss_kib_per_session": (pss - base_pss) / n,
                "rss_mib": rss / 1024,
                "generator_cpu_s": gen,
            }
        )
    pool.all("close")
    return out


def chat(
    server: Server,
    pool: Pool,
    pairs_n: int,
    duration: float,
    rate: float,
    window: int,
) -> list[dict[str, Any]]:
    """pairs_n online pairs: saturation, then latency at a fixed offered rate."""
    pairs = [(f"u{2 * k}", f"u{2 * k + 1}") for k in range(pairs_n)]
    parts = split(pairs, len(pool))
    pool.call(
        [
            ("login", [u for p in part for u in p], "plain", LOGIN_CONCURRENCY, True, True)
            for part in parts
        ]
    )
    _quiet(pool)
    m = Meter(server, pool)
    res = pool.call([("chat_saturate", part, duration, window) for part in parts])
    cpu, gen, _ = m.done()
    received = sum(r["received"] for r in res)
    in_window = sum(r["received_in_window"] for r in res)
    elapsed = max(r["elapsed"] for r in res)
    sat = {
        "scenario": "chat-saturation",
        "pairs": pairs_n,
        "sent": sum(r["sent"] for r in res),
        "delivered": received,
        "msgs_per_s": in_window / elapsed,
        "cpu_us_per_msg": cpu * 1e6 / max(received, 1),
        "generator_cpu_s": gen,
    }
    m = Meter(server, pool)
    res = pool.call([("chat_rate", part, rate / len(pool), duration) for part in parts])
    cpu, gen, _ = m.done()
    lat = sorted(x for r in res for x in r["latencies"])
    received = sum(r["received"] for r in res)
    sent = sum(r["sent"] for r in res)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] / 1e6 if lat else float("nan")

    fixed = {
        "scenario": f"chat-{int(rate)}",
        "offered_per_s": rate,
        "sent": sent,
        "delivered": received,
        "latency_p50_ms": pct(0.50),
        "latency_p99_ms": pct(0.99),
        "cpu_us_per_msg": cpu * 1e6 / max(received, 1),
        "generator_cpu_s": gen,
    }
    pool.all("close")
    return [sat, fixed]


def presence_rosters(cliques: int) -> dict[str, list[str]]:
    rosters = {}
    for c in range(cliques):
        members = [f"p{c * CLIQUE + k}" for k in range(CLIQUE)]
        for u in members:
            rosters[u] = [v for v in members if v != u]
    return rosters


def presence(server: Server, pool: Pool, cliques: int, duration: float) -> dict[str, Any]:
    """Users with CLIQUE-1 mutual contacts each, all online, changing presence."""
    groups = [[f"p{c * CLIQUE + k}" for k in range(CLIQUE)] for c in range(cliques)]
    parts = [[u for g in groups[w :: len(pool)] for u in g] for w in range(len(pool))]
    pool.call([("login", part, "plain", LOGIN_CONCURRENCY, True, True) for part in parts])
    _quiet(pool)
    m = Meter(server, pool)
    stanzas = [b"<presence><show>away</show></presence>", b"<presence/>"]
    res = pool.call(
        [("fanout", part, stanzas, b"<presence", CLIQUE - 1, duration, 4000) for part in parts]
    )
    cpu, gen, _ = m.done()
    received = sum(r["received"] for r in res)
    changes = sum(r["sent"] for r in res)
    elapsed = max(r["elapsed"] for r in res)
    pool.all("close")
    return {
        "scenario": "presence",
        "users": cliques * CLIQUE,
        "contacts": CLIQUE - 1,
        "changes": changes,
        "delivered": received,
        "delivered_per_s": received / elapsed,
        "cpu_us_per_presence": cpu * 1e6 / max(received, 1),
        "generator_cpu_s": gen,
    }


def login_scram(server: Server, pool: Pool, n: int) -> dict[str, Any]:
    """SCRAM-SHA-256 over STARTTLS, then bind: logins/s and CPU per login."""
    users = [f"u{i}" for i in range(n)]
    m = Meter(server, pool)
    res = pool.call(
        [("login", part, "scram", 10, False, False) for part in split(users, len(pool))]
    )
    cpu, gen, _ = m.done()
    failed = sum(r["n_failed"] for r in res)
    if failed:
        raise RuntimeError(f"{failed} SCRAM logins failed, e.g. {res[0]['failed']}")
    elapsed = max(r["elapsed"] for r in res)
    pool.all("close_pending")
    return {
        "scenario": "login-scram",
        "logins": n,
        "logins_per_s": n / elapsed,
        "cpu_ms_per_login": cpu * 1000 / n,
        "generator_cpu_s": gen,
    }


def muc(server: Server, pool: Pool, occupants: int, duration: float) -> dict[str, Any]:
    """One room, ``occupants`` occupants sending groupchat messages in turn."""
    room = f"bench@conference.{DOMAIN}"
    users = [f"u{i}" for i in range(occupants)]
    parts = split(users, len(pool))
    pool.call([("login", part, "plain", LOGIN_CONCURRENCY, True, True) for part in parts])
    _quiet(pool)
    # The first worker creates the room, then the others join.
    pool.call(
        [
            ("muc_join", part, room, w == 0) if w == 0 else ("quiet", 0.1, 1.0)
            for w, part in enumerate(parts)
        ]
    )
    pool.call(
        [
            ("quiet", 0.1, 1.0) if w == 0 else ("muc_join", part, room, False)
            for w, part in enumerate(parts)
        ]
    )
    _quiet(pool)
    msg = (
        f"<message to='{room}' type='groupchat'><body>Lorem ipsum dolor sit amet, "
        "consectetur adipiscing elit.</body></message>"
    ).encode()
    m = Meter(server, pool)
    res = pool.call(
        [("fanout", part, [msg], b"</message>", occupants, duration, 4000) for part in parts]
    )
    cpu, gen, _ = m.done()
    received = sum(r["received"] for r in res)
    sent = sum(r["sent"] for r in res)
    elapsed = max(r["elapsed"] for r in res)
    pool.all("close")
    return {
        "scenario": "muc",
        "occupants": occupants,
        "sent": sent,
        "delivered": received,
        "delivered_per_s": received / elapsed,
        "cpu_us_per_stanza": cpu * 1e6 / max(received, 1),
        "generator_cpu_s": gen,
    }
