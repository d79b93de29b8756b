"""The scenarios. Each returns one result dict (printed as a JSON line and a table row).

Server cost is the server process's utime+stime and RSS/PSS (bench/proc.py), per
unit delivered; the load generator's own CPU is reported beside it.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from bench.servers import DOMAIN, Server
from bench.worker import Pool

LOGIN_CONCURRENCY = 50  # per worker process
CLIQUE = 51  # presence, pep: every user has CLIQUE - 1 mutual contacts


def split(items: list[Any], n: int) -> list[list[Any]]:
    return [items[i::n] for i in range(n)]


def _quiet(pool: Pool) -> None:
    pool.all("quiet", 1.0, 30.0)


def _cpu_quiet(server: Server, limit: float = 60.0) -> float | None:
    """Wait until the server process has used at most 2% of a core for a second
    (at most ``limit`` s): what it was handling is done, even what the clients
    cannot see (held presence, hibernating sessions). Returns the CPU seconds of
    that quiet second (to leave out of a measure), None if it never came."""
    deadline = time.monotonic() + limit
    last = server.cpu()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = server.cpu()
        if now - last <= 0.02:
            return now - last
        last = now
    return None


def _login(pool: Pool, per_worker: list[list[str]], mode: str) -> float:
    """Log in each worker's users (``mode``: worker.MODES), all kept and available;
    any failure stops the scenario. Returns the slowest worker's time."""
    res = pool.call([("login", part, mode, LOGIN_CONCURRENCY, True, True) for part in per_worker])
    failed = sum(r["n_failed"] for r in res)
    if failed:
        example = next(r["failed"] for r in res if r["failed"])
        raise RuntimeError(f"{failed} {mode} logins failed, e.g. {example}")
    return float(max(r["elapsed"] for r in res))


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
        self.io0 = syscalls(server.pid)

    def done(self) -> tuple[float, float, float]:
        """(server CPU s, generator CPU s, wall s) since creation."""
        reads, writes = syscalls(self.server.pid)
        self.reads, self.writes = reads - self.io0[0], writes - self.io0[1]
        return (
            self.server.cpu() - self.cpu0,
            self.pool.cpu() - self.gen0,
            time.monotonic() - self.t0,
        )


def syscalls(pid: int) -> tuple[int, int]:
    """The read and write system calls a process made so far (/proc/PID/io)."""
    counts = {}
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            key, _, value = line.partition(":")
            counts[key] = int(value)
    return counts.get("syscr", 0), counts.get("syscw", 0)


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
    sat = {
        "scenario": "chat-saturation",
        "pairs": pairs_n,
        **_saturate(server, pool, parts, duration, window),
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


def _saturate(
    server: Server,
    pool: Pool,
    parts: list[list[tuple[str, str]]],
    duration: float,
    window: int,
    batch: int = 1,
) -> dict[str, Any]:
    """One closed-loop saturation phase over logged-in pairs (``batch``: messages per
    ``<r/>`` with stream management, 1 without): rate and server CPU per message.
    Each direction first sends one message, outside the measure (worker.cmd_chat_prime)."""
    res = pool.call([("chat_prime", part) for part in parts])
    primed, dirs = sum(r["primed"] for r in res), sum(r["directions"] for r in res)
    if primed < dirs:
        raise RuntimeError(f"only {primed} of {dirs} directions delivered a first message")
    _quiet(pool)
    m = Meter(server, pool)
    res = pool.call([("chat_saturate", part, duration, window, batch) for part in parts])
    cpu, gen, _ = m.done()
    received = sum(r["received"] for r in res)
    in_window = sum(r["received_in_window"] for r in res)
    elapsed = max(r["elapsed"] for r in res)
    out: dict[str, Any] = {
        "sent": sum(r["sent"] for r in res),
        "delivered": received,
        "msgs_per_s": in_window / elapsed,
        "cpu_us_per_msg": cpu * 1e6 / max(received, 1),
        # Reads and writes (system calls) per delivered message: batching at work.
        "reads_per_msg": m.reads / max(received, 1),
        "writes_per_msg": m.writes / max(received, 1),
        "generator_cpu_s": gen,
        # Raw totals, for phases measured in parts (_alternate).
        "cpu_s": cpu,
        "elapsed_s": elapsed,
        "writes": m.writes,
        "primed": primed,  # delivered before the measure (chat-mam counts what is archived)
    }
    if batch > 1:
        out["acks_sent"] = sum(r["acks_sent"] for r in res)
    return out


def _pair_parts(
    pool: Pool, pairs_n: int, first: int = 0
) -> tuple[list[list[tuple[str, str]]], list[list[str]]]:
    """The chat pairs per worker (users u<first>, u<first + 1>, …), and the users per
    worker (both ends of a pair are on the same worker, which counts what the
    receiver got)."""
    pairs = [(f"u{first + 2 * k}", f"u{first + 2 * k + 1}") for k in range(pairs_n)]
    parts = split(pairs, len(pool))
    return parts, [[u for p in part for u in p] for part in parts]


ROUNDS = 3  # chat-ws, chat-sm: alternating phases of each kind


def _alternate(
    server: Server,
    pool: Pool,
    pairs_n: int,
    duration: float,
    window: int,
    modes: tuple[tuple[str, int], tuple[str, int]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The saturation phase in two modes — (login mode, messages per ``<r/>``), the
    reference first — alternating ROUNDS times in one server process, so that both
    see the same machine: a comparison minutes apart carries its drift (±25% here).
    Returns each mode's figures over all its rounds."""
    parts, users = _pair_parts(pool, pairs_n)
    _login(pool, users, modes[0][0])
    _quiet(pool)
    _saturate(server, pool, parts, min(duration, 1.0), window)  # warm-up, not measured
    pool.all("close")
    totals: list[dict[str, float]] = [{}, {}]
    for _ in range(ROUNDS):
        for total, (mode, batch) in zip(totals, modes, strict=True):
            _login(pool, users, mode)
            _quiet(pool)
            res = _saturate(server, pool, parts, max(duration / ROUNDS, 2.0), window, batch)
            pool.all("close")
            _add(total, res)
    return _summary(totals[0]), _summary(totals[1])


def _add(total: dict[str, float], res: dict[str, Any]) -> None:
    """Add one phase's raw totals (``_saturate``) to a mode's."""
    for key in ("sent", "delivered", "cpu_s", "elapsed_s", "writes", "acks_sent", "primed"):
        total[key] = total.get(key, 0) + res.get(key, 0)


def _summary(total: dict[str, float]) -> dict[str, Any]:
    """A mode's figures over all its phases."""
    n = max(total["delivered"], 1)
    return {
        "delivered": int(total["delivered"]),
        "msgs_per_s": total["delivered"] / total["elapsed_s"],
        "cpu_us_per_msg": total["cpu_s"] * 1e6 / n,
        "writes_per_msg": total["writes"] / n,
        **({"acks_sent": int(total["acks_sent"])} if total.get("acks_sent") else {}),
    }


def chat_ws(
    server: Server, pool: Pool, pairs_n: int, duration: float, window: int
) -> dict[str, Any]:
    """The saturation phase of ``chat`` with every client on WebSocket (RFC 7395),
    against TCP in the same server process, alternating."""
    tcp, ws = _alternate(server, pool, pairs_n, duration, window, (("plain", 1), ("ws", 1)))
    return {
        "scenario": "chat-ws",
        "pairs": pairs_n,
        **ws,
        "msgs_per_s_tcp": tcp["msgs_per_s"],
        "cpu_us_per_msg_tcp": tcp["cpu_us_per_msg"],
        "writes_per_msg_tcp": tcp["writes_per_msg"],
        "ratio_to_tcp": ws["cpu_us_per_msg"] / tcp["cpu_us_per_msg"],
    }


SM_BATCH = 5  # chat-sm: a client sends <r/> after every SM_BATCH messages


def chat_sm(
    server: Server, pool: Pool, pairs_n: int, duration: float, window: int
) -> dict[str, Any]:
    """The saturation phase of ``chat`` with stream management on every connection,
    against the same without it in the same server process, alternating."""
    plain, sm = _alternate(
        server, pool, pairs_n, duration, window, (("plain", 1), ("sm", SM_BATCH))
    )
    return {
        "scenario": "chat-sm",
        "pairs": pairs_n,
        **sm,
        "msgs_per_s_plain": plain["msgs_per_s"],
        "cpu_us_per_msg_plain": plain["cpu_us_per_msg"],
        "writes_per_msg_plain": plain["writes_per_msg"],
        "ratio_to_plain": sm["cpu_us_per_msg"] / plain["cpu_us_per_msg"],
    }


def chat_mam(
    server: Server, pool: Pool, pairs_n: int, duration: float, window: int
) -> dict[str, Any]:
    """The saturation phase of ``chat`` in a server archiving every account's
    messages (XEP-0313), against the same without archiving in the same process,
    alternating as ``chat-ws`` does. Both groups of ``pairs_n`` pairs are logged in
    throughout: group "on" (u0…) has the server's default, archive everything;
    group "off" (the next 2 × ``pairs_n`` users) has preferences ``default='never'``,
    written into storage before the server started (``Server.archive_never``).

    ``delivered_on_total`` is every message group "on" exchanged, the first messages
    and the warm-up included: each should be archived twice, once per account
    (run.py counts the archive's rows after the server stopped). ``sent_on_total``
    is what group "on" sent: a server that archives what it has not delivered yet
    (the sender's copy, or the messages of a drain that timed out) has more rows."""
    on_parts, on_users = _pair_parts(pool, pairs_n)
    off_parts, off_users = _pair_parts(pool, pairs_n, 2 * pairs_n)
    _login(pool, [a + b for a, b in zip(on_users, off_users, strict=True)], "plain")
    _quiet(pool)
    groups = (off_parts, on_parts)  # the reference first, as in _alternate
    totals: list[dict[str, float]] = [{}, {}]
    everything: list[dict[str, float]] = [{}, {}]  # the warm-up too
    for all_, parts in zip(everything, groups, strict=True):
        _add(all_, _saturate(server, pool, parts, min(duration, 1.0), window))
    for _ in range(ROUNDS):
        for total, all_, parts in zip(totals, everything, groups, strict=True):
            res = _saturate(server, pool, parts, max(duration / ROUNDS, 2.0), window)
            _add(total, res)
            _add(all_, res)
    pool.all("close")
    off, on = _summary(totals[0]), _summary(totals[1])
    return {
        "scenario": "chat-mam",
        "pairs": pairs_n,
        **on,
        "msgs_per_s_off": off["msgs_per_s"],
        "cpu_us_per_msg_off": off["cpu_us_per_msg"],
        "writes_per_msg_off": off["writes_per_msg"],
        "ratio_to_off": on["cpu_us_per_msg"] / off["cpu_us_per_msg"],
        "delivered_on_total": int(everything[1]["delivered"] + everything[1]["primed"]),
        "delivered_off_total": int(everything[0]["delivered"] + everything[0]["primed"]),
        # Sent, first messages included: more than delivered when a phase's drain
        # (worker.cmd_chat_saturate, 10 s) ended with messages still on their way.
        "sent_on_total": int(everything[1]["sent"] + everything[1]["primed"]),
    }


METRICS_ROUNDS = 4  # chat-metrics: pairs of server processes, metrics off and on (ABBA)
SCRAPE_INTERVAL = 1.0  # chat-metrics: /metrics read this often (Prometheus: 15-60 s)


class Scraper:
    """Reads ``/metrics`` every SCRAPE_INTERVAL seconds in a thread of the runner
    until stopped, as a (very eager) Prometheus would; each scrape's body is read
    whole, so the server renders every figure."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.scrapes = 0
        self.failures = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="scraper", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SCRAPE_INTERVAL):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as resp:
                    self.bytes += len(resp.read())
                self.scrapes += 1
            except OSError:
                self.failures += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def chat_metrics_phase(
    server: Server, pool: Pool, pairs_n: int, duration: float, window: int, scrape: bool
) -> dict[str, Any]:
    """One process's share of ``chat-metrics``: the saturation phase of ``chat`` after
    a 1 s warm-up; with ``scrape``, /metrics is read every second meanwhile (run.py
    alternates processes with metrics off and on, and compares)."""
    parts, users = _pair_parts(pool, pairs_n)
    _login(pool, users, "plain")
    _quiet(pool)
    _saturate(server, pool, parts, min(duration, 1.0), window)
    scraper = Scraper(server.http_port) if scrape else None
    try:
        res = _saturate(server, pool, parts, duration, window)
    finally:
        if scraper is not None:
            scraper.stop()
    pool.all("close")
    if scraper is not None:
        if scraper.failures or not scraper.scrapes:
            raise RuntimeError(f"/metrics: {scraper.failures} failed scrapes")
        res["scrapes"] = scraper.scrapes
        res["scrape_bytes"] = scraper.bytes // scraper.scrapes
    return res


MAM_PAGE = 50  # mam-query: messages per page (RSM <max/>)


def mam_queries(ids: list[tuple[str, str]], n: int, seed: int = 313) -> list[tuple[str, bytes]]:
    """``n`` archive queries (XEP-0313 §4) of a page of MAM_PAGE, each with a full
    page to return, from random positions of an archive whose messages are ``ids``
    ((archive id, contact), oldest first): 60% RSM ``<after/>`` an id of the whole
    archive, 20% the last page (empty ``<before/>``), 20% ``with`` one contact
    and ``<after/>`` one of that contact's messages. Returns (kind, iq) pairs; the
    iq of query i has id and queryid ``q<i>``."""
    import random

    rng = random.Random(seed)
    by_contact: dict[str, list[str]] = {}
    for id_, contact in ids:
        by_contact.setdefault(contact, []).append(id_)
    contacts = sorted(by_contact)
    out = []
    for i in range(n):
        r = rng.random()
        with_field = ""
        if r < 0.6:
            kind = "after"
            paging = f"<after>{ids[rng.randrange(len(ids) - MAM_PAGE)][0]}</after>"
        elif r < 0.8:
            kind = "last"
            paging = "<before/>"
        else:
            kind = "with"
            contact = rng.choice(contacts)
            theirs = by_contact[contact]
            with_field = f"<field var='with'><value>{contact}</value></field>"
            paging = f"<after>{theirs[rng.randrange(len(theirs) - MAM_PAGE)]}</after>"
        iq = (
            f"<iq type='set' id='q{i}'><query xmlns='urn:xmpp:mam:2' queryid='q{i}'>"
            "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
            f"<value>urn:xmpp:mam:2</value></field>{with_field}</x>"
            f"<set xmlns='http://jabber.org/protocol/rsm'><max>{MAM_PAGE}</max>{paging}</set>"
            "</query></iq>"
        )
        out.append((kind, iq.encode()))
    return out


def mam_query(
    server: Server, pool: Pool, owner: str, ids: list[tuple[str, str]], n: int, warmup: int = 20
) -> dict[str, Any]:
    """One client (``owner``, whose archive holds ``ids``) sends ``n`` archive queries
    (``mam_queries``) one after the other: latency from sending a query to reading
    its result iq, all its messages read before, and server CPU per query.
    ``warmup`` queries of the same mix go first, outside the measure."""
    _login(pool, [[owner]] + [[]] * (len(pool) - 1), "plain")
    _quiet(pool)
    queries = mam_queries(ids, warmup + n)
    idle = [("quiet", 0.1, 1.0)] * (len(pool) - 1)
    iqs = [(f"q{i}", q) for i, (_, q) in enumerate(queries)]
    pool.call([("mam_query", owner, iqs[:warmup]), *idle])
    m = Meter(server, pool)
    res = pool.call([("mam_query", owner, iqs[warmup:]), *idle])[0]
    cpu, gen, _ = m.done()
    pool.all("close")
    if res["errors"]:
        raise RuntimeError(f"{res['errors']} of {n} queries failed, e.g. {res['example']}")
    lat = [x / 1e6 for x in res["latencies"]]

    def pct(values: list[float], p: float) -> float:
        values = sorted(values)
        return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")

    out: dict[str, Any] = {
        "scenario": "mam-query",
        "archived": len(ids),
        "queries": n,
        "page": MAM_PAGE,
        "results_per_query": sum(res["results"]) / max(n, 1),
        "short_pages": sum(1 for r in res["results"] if r < MAM_PAGE),
        "latency_p50_ms": pct(lat, 0.50),
        "latency_p99_ms": pct(lat, 0.99),
        "latency_max_ms": max(lat),
        "cpu_ms_per_query": cpu * 1000 / max(n, 1),
    }
    for kind in ("after", "last", "with"):
        mine = [x for (k, _), x in zip(queries[warmup:], lat, strict=True) if k == kind]
        out[f"queries_{kind}"] = len(mine)
        out[f"latency_p99_ms_{kind}"] = pct(mine, 0.99)
    out["generator_cpu_s"] = gen
    return out


HIBERNATE_ROUND = 200  # hibernated: sessions logged in, then dropped, at a time


def hibernated(
    server: Server, pool: Pool, steps: list[int], check: int = 5
) -> list[dict[str, Any]]:
    """N sessions with stream management and resumption whose connections are
    dropped (no close), so that each hibernates: memory per hibernated session.

    Cumulative like ``idle``. Sessions are made to hibernate in rounds of
    HIBERNATE_ROUND: log in (PLAIN, ``<enable resume='true'/>``, initial presence),
    acknowledge everything so that no session holds a queue, abort every
    connection. What the connections of one round release (transport, parser,
    buffers) is reused by the next round, so the process's high-water mark holds
    the hibernated sessions and one round of live ones, not N live sessions.
    After each step the server's CPU must be quiet before memory is read. At the
    end ``check`` sessions per worker are resumed, to show the server held them."""
    login_plain(pool, [f"u{i}" for i in range(20)])  # warm-up, as in idle
    pool.all("close")
    time.sleep(1.0)
    base_rss, base_pss = server.memory()
    out: list[dict[str, Any]] = []
    have = 0
    for n in steps:
        m = Meter(server, pool)
        for start in range(have, n, HIBERNATE_ROUND):
            users = [f"u{i}" for i in range(start, min(start + HIBERNATE_ROUND, n))]
            _login(pool, split(users, len(pool)), "sm")
            pool.all("sm_settle")
            pool.all("abort")
        quiet = _cpu_quiet(server) is not None
        cpu, gen, _ = m.done()
        time.sleep(1.0)
        rss, pss = server.memory()
        out.append(
            {
                "scenario": f"hibernated-{n}",
                "hibernated": n,
                "cpu_ms_per_session": cpu * 1000 / (n - have),
                "rss_kib_per_session": (rss - base_rss) / n,
                "pss_kib_per_session": (pss - base_pss) / n,
                "rss_mib": rss / 1024,
                "cpu_quiet": quiet,
                "generator_cpu_s": gen,
            }
        )
        have = n
    res = pool.all("resume_check", check)
    tried, resumed = sum(r["tried"] for r in res), sum(r["resumed"] for r in res)
    out[-1]["resume_check"] = f"{resumed}/{tried}"
    if resumed < tried:
        raise RuntimeError(f"only {resumed} of {tried} hibernated sessions could be resumed")
    pool.all("close")
    return out


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
        "cpu_us_per_change": cpu * 1e6 / max(changes, 1),
        "presences_per_change": received / max(changes, 1),
        "generator_cpu_s": gen,
    }


def presence_csi(
    server: Server, pool: Pool, cliques: int, duration: float, rate: float
) -> dict[str, Any]:
    """The users of ``presence`` change presence at a fixed rate, first all active,
    then all inactive (XEP-0352 ``<inactive/>``): server CPU per change and the
    presences written to the clients, in both states.

    Open loop at ``rate`` changes/s (both phases, so the two compare): inactive
    clients receive (almost) nothing, which leaves a closed loop nothing to pace
    itself on. Each phase ends when the server's CPU is quiet."""
    groups = [[f"p{c * CLIQUE + k}" for k in range(CLIQUE)] for c in range(cliques)]
    parts = [[u for g in groups[w :: len(pool)] for u in g] for w in range(len(pool))]
    _login(pool, parts, "plain")
    _quiet(pool)
    stanzas = [b"<presence><show>away</show></presence>", b"<presence/>"]

    def phase() -> tuple[int, int, float, float]:
        m = Meter(server, pool)
        res = pool.call(
            [
                ("fanout_rate", part, stanzas, b"<presence", rate / len(pool), duration)
                for part in parts
            ]
        )
        idle = _cpu_quiet(server, 30.0)
        cpu, gen, _ = m.done()
        cpu -= idle or 0.0
        return sum(r["sent"] for r in res), sum(r["received"] for r in res), cpu, gen

    sent_a, recv_a, cpu_a, gen_a = phase()
    _quiet(pool)
    pool.all("inactive")
    _quiet(pool)
    sent, recv, cpu, gen = phase()
    pool.all("close")
    return {
        "scenario": "presence-csi",
        "users": cliques * CLIQUE,
        "contacts": CLIQUE - 1,
        "rate_per_s": rate,
        "changes": sent,
        "presences_received": recv,
        "presences_per_change": recv / max(sent, 1),
        "cpu_us_per_change": cpu * 1e6 / max(sent, 1),
        "changes_active": sent_a,
        "presences_received_active": recv_a,
        "presences_per_change_active": recv_a / max(sent_a, 1),
        "cpu_us_per_change_active": cpu_a * 1e6 / max(sent_a, 1),
        "cpu_ratio_to_active": (cpu / max(sent, 1)) / max(cpu_a / max(sent_a, 1), 1e-12),
        "generator_cpu_s": gen + gen_a,
    }


PEP_NODE = "http://jabber.org/protocol/tune"  # User Tune (XEP-0118)
PEP_EVENT = b"pubsub#event"  # once in each notification, nowhere else


def tune_publish(title: str) -> bytes:
    """A PEP publication (XEP-0163 §3) of the user's tune, item 'current'."""
    return (
        "<iq type='set' id='pub'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        f"<publish node='{PEP_NODE}'><item id='current'><tune xmlns='{PEP_NODE}'>"
        f"<artist>A</artist><title>{title}</title></tune></item></publish></pubsub></iq>"
    ).encode()


def pep(server: Server, pool: Pool, cliques: int, duration: float) -> dict[str, Any]:
    """The users of ``presence``, their initial presence with entity capabilities
    (XEP-0115) whose disco#info has ``tune+notify``, publish their tune in turn
    (XEP-0163): every publication notifies the publisher's contacts (and the
    publisher's own resource), who never subscribed other than by caps.

    A client with no contacts (``u0``) logs in first, alone: each server learns the
    caps hash from it, as a server that has been running knows a common client's.
    The users' caps are then known when their presence arrives, which is the steady
    state measured here. (Were it learnt while 102 users log in at once, Prosody
    would also notify the bare JID of each user whose own disco#info answer came in
    before the hash was known — a second copy of every notification to that user,
    by timing, 51 to 101 notifications per publication; and Descant's PEP module
    would spawn a task per presence awaiting the one query, beyond its bound.)

    Every user publishes once first, outside the measure: it creates the node
    (storage), and shows the notifications arrive (how many per publication is the
    window's unit). The measured phase keeps about 4,000 notifications in flight."""
    groups = [[f"p{c * CLIQUE + k}" for k in range(CLIQUE)] for c in range(cliques)]
    parts = [[u for g in groups[w :: len(pool)] for u in g] for w in range(len(pool))]
    _login(pool, [["u0"]] + [[]] * (len(pool) - 1), "caps")
    _quiet(pool)
    _login(pool, parts, "caps")
    _quiet(pool)
    asked = sum(r["answered"] for r in pool.all("disco_answered"))
    res = pool.call(
        [("publish_each", part, tune_publish("T-0"), PEP_EVENT, CLIQUE, 20.0) for part in parts]
    )
    warm_sent, warm_received = sum(r["sent"] for r in res), sum(r["received"] for r in res)
    per_publish = warm_received / max(warm_sent, 1)
    if warm_received == 0:
        raise RuntimeError(
            f"no notification for {warm_sent} publications ({asked} disco#info queries answered)"
        )
    _quiet(pool)
    fanout = max(round(per_publish), 1)
    stanzas = [tune_publish("T-1"), tune_publish("T-2")]
    m = Meter(server, pool)
    res = pool.call(
        [("fanout", part, stanzas, PEP_EVENT, fanout, duration, 4000) for part in parts]
    )
    cpu, gen, _ = m.done()
    received = sum(r["received"] for r in res)
    publishes = sum(r["sent"] for r in res)
    elapsed = max(r["elapsed"] for r in res)
    asked_total = sum(r["answered"] for r in pool.all("disco_answered"))
    pool.all("close")
    return {
        "scenario": "pep",
        "users": cliques * CLIQUE,
        "contacts": CLIQUE - 1,
        "disco_queries": asked_total,
        "expected_per_publish": CLIQUE,  # the contacts and the publisher's own resource
        "warmup_notifications_per_publish": per_publish,
        "publishes": publishes,
        "delivered": received,
        "delivered_per_s": received / elapsed,
        "notifications_per_publish": received / max(publishes, 1),
        "cpu_us_per_notification": cpu * 1e6 / max(received, 1),
        "cpu_us_per_publish": cpu * 1e6 / max(publishes, 1),
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
