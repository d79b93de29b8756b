"""What archiving costs storage: batched inserts into the account archive (XEP-0313).

    PYTHONPATH=src .venv/bin/python -m bench.mam_insert [--rows N] [--runs N]
        [--backend sqlite|postgres|both]

Writes ``--rows`` messages (default 50,000) the way the archive's background writer does:
batches of 256 in one ``MamStore.add`` each, spread over 200 owners and 100 contacts, each
with a 75-character body and a stanza of about 250 bytes. Every run starts from an empty
database.

SQLite runs in this process (on the storage's own threads), so the process's CPU time
(user + system, ``getrusage``) per row is the whole cost of an insert; that is the figure
to compare. PostgreSQL does its work in its server processes, which ``getrusage`` does
not see: for it the wall time per row is the figure to compare, with this process's
(client) CPU beside it, and, when the server runs on this machine, the CPU of every
``postgres`` process meanwhile (from /proc: background writers included, and anyone
else's queries too). Each run's figures are printed, then the median of the runs; the load average
is printed too, since a busy machine inflates wall time (CPU time much less).

PostgreSQL is ``DESCANT_TEST_POSTGRES_URL`` (default as the test suite), in a schema
created for the run and dropped after it; skipped with a note when unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from descant.storage import open_storage
from descant.storage.api import MamEntry

POSTGRES_URL = os.environ.get(
    "DESCANT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BATCH = 256
OWNERS = 200
CONTACTS = 100
HOST = "bench.example"
WORDS = [
    "the",
    "a",
    "to",
    "and",
    "of",
    "in",
    "you",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "are",
    "this",
    "be",
    "at",
    "have",
    "see",
    "ok",
    "yes",
    "no",
    "lunch",
    "tomorrow",
    "meeting",
    "later",
    "home",
    "call",
    "back",
    "soon",
    "thanks",
    "great",
    "idea",
    "sure",
    "maybe",
    "tonight",
    "train",
    "coffee",
    "weekend",
    "photo",
    "link",
    "sent",
    "send",
    "done",
]


def _id_maker() -> Callable[[datetime], str] | None:
    """Archive ids: the store's allocator where there is one, else None (the schema
    before time-ordered keys took any id; random ones are used)."""
    try:
        from descant.storage.api import MamIds
    except ImportError:
        return None
    return MamIds().next


def _body(rng: random.Random) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < 75:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:75]


def make_rows(n: int, seed: int = 1) -> list[tuple[str, str, MamEntry]]:
    rng = random.Random(seed)
    ids = _id_maker()
    now = datetime.now(UTC) - timedelta(days=1)
    rows = []
    for i in range(n):
        now += timedelta(microseconds=rng.randrange(50, 500))
        owner = f"user{rng.randrange(OWNERS)}"
        contact = f"contact{rng.randrange(CONTACTS)}@remote.example"
        body = _body(rng)
        origin = uuid.UUID(int=rng.getrandbits(128)).hex
        outgoing = bool(i % 2)
        id_ = ids(now) if ids is not None else uuid.UUID(int=rng.getrandbits(128)).hex[:20]
        frm, to = (f"{owner}@{HOST}/phone", contact) if outgoing else (contact + "/pc", owner)
        stanza = (
            f"<message type='chat' id='{origin[:8]}' from='{frm}' to='{to}'><body>{body}</body>"
            f"<origin-id xmlns='urn:xmpp:sid:0' id='{origin}'/></message>"
        )
        entry = MamEntry(
            id=id_,
            stamp=now,
            with_jid=contact,
            with_resource="pc",
            outgoing=outgoing,
            origin_id=origin,
            text=body,
            stanza=stanza,
        )
        rows.append((HOST, owner, entry))
    return rows


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _postgres_cpu() -> float | None:
    """CPU seconds of every process named ``postgres`` on this machine (/proc), or None
    where that cannot be read: the server's side of an insert, when the server is local
    and nothing else uses it meanwhile."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        if name == "postgres":
            fields = rest.split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


async def run_once(
    url: str, rows: list[tuple[str, str, MamEntry]]
) -> tuple[float, float, float | None]:
    """CPU and wall seconds to add ``rows`` in batches to a fresh store at ``url``, and the
    local PostgreSQL processes' CPU seconds meanwhile (None if unreadable)."""
    storage = open_storage(url, tempfile.gettempdir())
    await storage.open()
    try:
        cpu, wall, server = _cpu(), time.perf_counter(), _postgres_cpu()
        for start in range(0, len(rows), BATCH):
            await storage.mam.add(rows[start : start + BATCH])
        server_after = _postgres_cpu()
        used = None if server is None or server_after is None else server_after - server
        return _cpu() - cpu, time.perf_counter() - wall, used
    finally:
        await storage.close()


async def _postgres_schema() -> tuple[object, str] | None:
    import asyncpg

    try:
        admin = await asyncpg.connect(POSTGRES_URL, timeout=5)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        print(f"postgres: unreachable at {POSTGRES_URL} ({exc!r}); skipped")
        return None
    return admin, f"descant_bench_{uuid.uuid4().hex[:12]}"


async def bench(backend: str, rows: list[tuple[str, str, MamEntry]], runs: int) -> None:
    n = len(rows)
    cpus, walls, servers = [], [], []
    for run in range(runs):
        if backend == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                cpu, wall, _ = await run_once(f"sqlite:///{tmp}/bench.db", rows)
        else:
            found = await _postgres_schema()
            if found is None:
                return
            admin, schema = found
            try:
                cpu, wall, server = await run_once(f"{POSTGRES_URL}?schema={schema}", rows)
            finally:
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[attr-defined]
                await admin.close()  # type: ignore[attr-defined]
        cpus.append(cpu / n * 1e6)
        walls.append(wall / n * 1e6)
        extra = ""
        if backend == "postgres" and server is not None:
            servers.append(server / n * 1e6)
            extra = f", {servers[-1]:6.1f} µs CPU/row in local postgres processes"
        print(
            f"{backend} run {run + 1}: {cpus[-1]:6.1f} µs CPU/row (this process), "
            f"{walls[-1]:6.1f} µs wall/row{extra}"
        )
    note = ""
    if backend == "postgres":
        note = " (the server's CPU is not in this process: compare wall time"
        if servers:
            note += f"; local postgres processes {statistics.median(servers):.1f} µs CPU/row"
        note += ")"
    print(
        f"{backend} median of {runs}: {statistics.median(cpus):.1f} µs CPU/row, "
        f"{statistics.median(walls):.1f} µs wall/row{note}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backend", choices=("sqlite", "postgres", "both"), default="both")
    args = parser.parse_args()
    rows = make_rows(args.rows)
    print(
        f"{args.rows} rows in batches of {BATCH}, {OWNERS} owners, {CONTACTS} contacts; "
        f"stanza ~{sum(len(r[2].stanza) for r in rows) // len(rows)} bytes; "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        await bench(backend, rows, args.runs)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    asyncio.run(main())
