"""``make bench``: every scenario against Descant, then Prosody; a side-by-side table.

    python -m bench.run [--servers descant,prosody] [--quick] [--out FILE]
                        [--only SCENARIOS | --skip SCENARIOS]

Writes bench/results/YYYY-MM-DD.md (both figures, the ratio Descant/Prosody, the
machine) and prints one JSON line and one Markdown row per scenario and server.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import scenarios
from bench.proc import machine_info, raise_nofile
from bench.servers import DOMAIN, PASSWORD, Descant, Prosody, Server
from bench.worker import Pool

RESULTS = Path(__file__).resolve().parent / "results"

# The scenarios, in the order they run; --only and --skip take these names.
SCENARIOS = (
    "idle",
    "hibernated",
    "chat",
    "chat-ws",
    "chat-sm",
    "chat-metrics",
    "presence",
    "presence-csi",
    "pep",
    "muc",
    "login-scram",
    "chat-mam",
    "mam-query",
)

# mam-query: the account whose archive is filled and queried, and its contacts.
MAM_OWNER = "mam0"
MAM_CONTACTS = [f"mam{i}" for i in range(1, 11)]

# (scenario, metric, unit, better): the figures compared in the results table.
METRICS = [
    ("idle-{n}", "cpu_ms_per_login", "ms CPU per PLAIN login", "lower"),
    ("idle-{n}", "login_rate_per_s", "logins/s", "higher"),
    ("idle-{n}", "rss_kib_per_session", "KiB RSS per idle session", "lower"),
    ("idle-{n}", "pss_kib_per_session", "KiB PSS per idle session", "lower"),
    ("hibernated-{h}", "rss_kib_per_session", "KiB RSS per hibernated session", "lower"),
    ("hibernated-{h}", "pss_kib_per_session", "KiB PSS per hibernated session", "lower"),
    ("hibernated-{h}", "cpu_ms_per_session", "ms CPU per session: login, SM, drop", "lower"),
    ("chat-saturation", "msgs_per_s", "delivered msgs/s at saturation", "higher"),
    ("chat-saturation", "cpu_us_per_msg", "µs CPU per delivered message", "lower"),
    ("chat-{rate}", "latency_p50_ms", "latency p50 (ms)", "lower"),
    ("chat-{rate}", "latency_p99_ms", "latency p99 (ms)", "lower"),
    ("chat-{rate}", "cpu_us_per_msg", "µs CPU per delivered message", "lower"),
    ("chat-ws", "msgs_per_s", "delivered msgs/s at saturation, WebSocket", "higher"),
    ("chat-ws", "cpu_us_per_msg", "µs CPU per delivered message, WebSocket", "lower"),
    ("chat-ws", "ratio_to_tcp", "CPU per message, WebSocket / TCP (same process)", "lower"),
    ("chat-sm", "msgs_per_s", "delivered msgs/s at saturation, stream management", "higher"),
    ("chat-sm", "cpu_us_per_msg", "µs CPU per delivered message, stream management", "lower"),
    ("chat-sm", "ratio_to_plain", "CPU per message, SM / without SM (same process)", "lower"),
    ("chat-sm", "ratio_to_chat_saturation", "CPU per message, SM / chat-saturation", "lower"),
    ("chat-metrics", "cpu_us_per_msg", "µs CPU per delivered message, metrics on", "lower"),
    ("chat-metrics", "ratio_median", "CPU per message, metrics on / off (median pair)", "lower"),
    ("presence", "delivered_per_s", "delivered presences/s", "higher"),
    ("presence", "cpu_us_per_presence", "µs CPU per delivered presence", "lower"),
    ("presence", "cpu_us_per_change", "µs CPU per presence change", "lower"),
    ("presence-csi", "cpu_us_per_change_active", "µs CPU per change, fixed rate, active", "lower"),
    ("presence-csi", "cpu_us_per_change", "µs CPU per change, fixed rate, inactive", "lower"),
    (
        "presence-csi",
        "presences_per_change_active",
        "presences to clients per change, active",
        "lower",
    ),
    ("presence-csi", "presences_per_change", "presences to clients per change, inactive", "lower"),
    ("pep", "delivered_per_s", "delivered PEP notifications/s", "higher"),
    ("pep", "cpu_us_per_notification", "µs CPU per delivered PEP notification", "lower"),
    ("pep", "cpu_us_per_publish", "µs CPU per PEP publication", "lower"),
    ("pep", "notifications_per_publish", "PEP notifications per publication", "higher"),
    ("muc", "cpu_us_per_stanza", "µs CPU per delivered groupchat", "lower"),
    ("login-scram", "logins_per_s", "SCRAM-SHA-256+TLS logins/s", "higher"),
    ("login-scram", "cpu_ms_per_login", "ms CPU per SCRAM login", "lower"),
    ("chat-mam", "msgs_per_s", "delivered msgs/s at saturation, archiving", "higher"),
    ("chat-mam", "cpu_us_per_msg", "µs CPU per delivered message, archiving", "lower"),
    ("chat-mam", "ratio_to_off", "CPU per message, archiving on / off (same process)", "lower"),
    (
        "chat-mam",
        "ratio_to_chat_saturation",
        "CPU per message, archiving / chat-saturation",
        "lower",
    ),
    ("chat-mam", "archived_per_delivered", "archived rows per message (2 expected)", "higher"),
    ("mam-query", "latency_p50_ms", "archive query of 50, latency p50 (ms)", "lower"),
    ("mam-query", "latency_p99_ms", "archive query of 50, latency p99 (ms)", "lower"),
    ("mam-query", "cpu_ms_per_query", "ms CPU per archive query of 50", "lower"),
    ("mam-query", "results_per_query", "results per query (50 expected)", "higher"),
]


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return str(v)


def row(server: str, res: dict[str, Any]) -> str:
    cells = [f"{k}={_fmt(v)}" for k, v in res.items() if k != "scenario"]
    return f"| {server} | {res['scenario']} | {' · '.join(cells)} |"


def run_server(
    srv: Server, args: argparse.Namespace, prepared: tuple[Any, Any]
) -> list[dict[str, Any]]:
    """Every scenario against one server; each scenario gets a freshly started
    process (what one leaves behind, e.g. a heap grown by 10,000 sessions, must
    not weigh on the next)."""
    users, rosters = prepared
    t = time.monotonic()
    srv.prepare(users, rosters)
    print(
        f"# {srv.name}: {len(users)} accounts prepared in {time.monotonic() - t:.1f}s",
        file=sys.stderr,
    )
    results: list[dict[str, Any]] = []

    def emit(res: dict[str, Any]) -> None:
        res = {"server": srv.name, **res}
        results.append(res)
        print(json.dumps(res), flush=True)
        print(row(srv.name, {k: v for k, v in res.items() if k != "server"}), flush=True)

    def fresh(fn: Callable[[Pool], None], archive: bool = False) -> None:
        srv.start(archive)
        pool = Pool(args.workers, "127.0.0.1", srv.port, DOMAIN, PASSWORD, srv.http_port)
        try:
            fn(pool)
        finally:
            pool.stop()
            srv.stop()

    def guarded(name: str, fn: Callable[[Pool], list[dict[str, Any]]]) -> Callable[[Pool], None]:
        """A scenario whose failure (a feature the server lacks or refuses) is a
        skipped row with the reason, not the end of the run."""

        def run(pool: Pool) -> None:
            try:
                out = fn(pool)
            except RuntimeError as exc:
                emit({"scenario": name, "skipped": f"failed: {exc}"[:300]})
                return
            for res in out:
                emit(res)

        return run

    def idle(pool: Pool) -> None:
        for res in scenarios.idle(srv, pool, args.idle):
            emit(res)

    def chat(pool: Pool) -> None:
        for res in scenarios.chat(srv, pool, args.pairs, args.duration, args.rate, 16):
            emit(res)

    def muc(pool: Pool) -> None:
        try:
            emit(scenarios.muc(srv, pool, args.occupants, args.duration))
        except RuntimeError as exc:
            emit({"scenario": "muc", "skipped": f"failed: {exc}"[:300]})

    def hibernated(pool: Pool) -> list[dict[str, Any]]:
        out = scenarios.hibernated(srv, pool, args.hibernated)
        idles = {r["scenario"]: r for r in results if r["scenario"].startswith("idle-")}
        for res in out:  # the live figure beside it: idle-N of this run, if it ran
            live = idles.get(f"idle-{res['hibernated']}")
            if live is not None:
                res["idle_rss_kib_per_session"] = live["rss_kib_per_session"]
                res["idle_pss_kib_per_session"] = live["pss_kib_per_session"]
        return out

    def chat_sm(pool: Pool) -> list[dict[str, Any]]:
        res = scenarios.chat_sm(srv, pool, args.pairs, args.duration, 16)
        plain = next((r for r in results if r["scenario"] == "chat-saturation"), None)
        if plain is not None:  # the chat scenario of this run, another process
            res["ratio_to_chat_saturation"] = res["cpu_us_per_msg"] / plain["cpu_us_per_msg"]
        return [res]

    def chat_metrics() -> None:
        """Metrics off and on in fresh processes, METRICS_ROUNDS pairs: the two modes
        cannot alternate inside one process (the setting is read at start), so each
        pair is compared on its own, a minute apart at most, and the median pair's
        ratio reported beside the ratio of the totals. Pairs go off-on, on-off, …
        (ABBA), so a machine getting busier or quieter over the run does not favour
        the mode that always runs second."""
        set_metrics = getattr(srv, "set_metrics", None)
        if set_metrics is None:
            emit({"scenario": "chat-metrics", "skipped": f"{srv.name}: no metrics switch"})
            return
        configured = srv.metrics  # type: ignore[attr-defined]
        phases: list[tuple[dict[str, Any], dict[str, Any]]] = []
        try:
            for i in range(scenarios.METRICS_ROUNDS):
                pair: list[dict[str, Any]] = [{}, {}]
                for on in (False, True) if i % 2 == 0 else (True, False):
                    set_metrics(on)
                    got: list[dict[str, Any]] = []
                    fresh(
                        lambda pool, on=on, got=got: got.append(  # type: ignore[misc]
                            scenarios.chat_metrics_phase(
                                srv, pool, args.pairs, args.duration, 16, on
                            )
                        )
                    )
                    pair[on] = got[0]
                phases.append((pair[0], pair[1]))
        except RuntimeError as exc:
            emit({"scenario": "chat-metrics", "skipped": f"failed: {exc}"[:300]})
            return
        finally:
            set_metrics(configured)
        ratios = sorted(on["cpu_us_per_msg"] / off["cpu_us_per_msg"] for off, on in phases)
        off_total = {k: sum(p[0][k] for p in phases) for k in ("cpu_s", "delivered")}
        on_total = {k: sum(p[1][k] for p in phases) for k in ("cpu_s", "delivered")}
        cpu_off = off_total["cpu_s"] * 1e6 / off_total["delivered"]
        cpu_on = on_total["cpu_s"] * 1e6 / on_total["delivered"]
        emit(
            {
                "scenario": "chat-metrics",
                "pairs": args.pairs,
                "cpu_us_per_msg": cpu_on,
                "cpu_us_per_msg_off": cpu_off,
                "msgs_per_s": sum(p[1]["msgs_per_s"] for p in phases) / len(phases),
                "msgs_per_s_off": sum(p[0]["msgs_per_s"] for p in phases) / len(phases),
                "ratio_median": statistics.median(ratios),
                "ratio_total": cpu_on / cpu_off,
                "ratios": [round(r, 3) for r in ratios],
                "scrapes": sum(p[1]["scrapes"] for p in phases),
                "scrape_bytes": phases[-1][1]["scrape_bytes"],
                "loadavg": [round(x, 2) for x in os.getloadavg()],
            }
        )

    def archiving(
        name: str,
        setup: Callable[[], Any],
        fn: Callable[[Pool, Any], list[dict[str, Any]]],
        counted: Callable[[dict[str, Any], int, int], None],
    ) -> None:
        """An archive scenario: ``setup`` writes into storage (server stopped) and
        returns what ``fn`` needs; then a fresh process with the archive on runs
        ``fn``; the archive's rows are counted before it starts and after it stopped
        (the server writes its archive out as it stops) and handed to ``counted``
        (result, rows before, rows after) before the results are emitted."""
        reason = srv.supports_archive()
        if reason is not None:
            emit({"scenario": name, "skipped": reason})
            return
        t0 = time.monotonic()
        prepared = setup()
        setup_s = time.monotonic() - t0
        rows0 = srv.archive_rows()
        out: list[dict[str, Any]] = []

        def run(pool: Pool) -> None:
            out.extend(fn(pool, prepared))

        try:
            fresh(run, archive=True)
        except RuntimeError as exc:
            emit({"scenario": name, "skipped": f"failed: {exc}"[:300]})
            return
        rows = srv.archive_rows()
        for res in out:
            res["setup_s"] = setup_s
            counted(res, rows0, rows)
            emit(res)

    def chat_mam_rows(res: dict[str, Any], before: int, after: int) -> None:
        res["archived_rows"] = after - before
        res["archived_per_delivered"] = (after - before) / max(res["delivered_on_total"], 1)
        res["archived_per_sent"] = (after - before) / max(res["sent_on_total"], 1)
        plain = next((r for r in results if r["scenario"] == "chat-saturation"), None)
        if plain is not None and "cpu_us_per_msg" in plain:  # another process, as chat-sm
            res["ratio_to_chat_saturation"] = res["cpu_us_per_msg"] / plain["cpu_us_per_msg"]

    def mam_query_rows(res: dict[str, Any], before: int, after: int) -> None:
        res["archive_rows"] = after  # all accounts; queries add none
        res["archive_rows_added"] = after - before

    if "idle" not in args.skip:
        fresh(idle)
    if "hibernated" not in args.skip:
        fresh(guarded("hibernated", hibernated))
    if "chat" not in args.skip:
        fresh(chat)
    if "chat-ws" not in args.skip:
        fresh(
            guarded(
                "chat-ws",
                lambda pool: [scenarios.chat_ws(srv, pool, args.pairs, args.duration, 16)],
            )
        )
    if "chat-sm" not in args.skip:
        fresh(guarded("chat-sm", chat_sm))
    if "chat-metrics" not in args.skip:
        chat_metrics()
    if "presence" not in args.skip:
        fresh(lambda pool: emit(scenarios.presence(srv, pool, args.cliques, args.duration)))
    if "presence-csi" not in args.skip:
        fresh(
            guarded(
                "presence-csi",
                lambda pool: [
                    scenarios.presence_csi(
                        srv, pool, args.cliques, args.duration, args.presence_rate
                    )
                ],
            )
        )
    if "pep" not in args.skip:
        fresh(guarded("pep", lambda pool: [scenarios.pep(srv, pool, args.cliques, args.duration)]))
    if "muc" in args.skip:
        if not args.only:
            emit({"scenario": "muc", "skipped": "skipped (--skip muc)"})
    elif not srv.supports_muc():
        emit({"scenario": "muc", "skipped": f"{srv.name} has no MUC yet"})
    else:
        fresh(muc)
    if "login-scram" not in args.skip:
        fresh(lambda pool: emit(scenarios.login_scram(srv, pool, args.scram)))
    # The archive scenarios last: they leave archived messages in storage.
    if "chat-mam" not in args.skip:
        off = [f"u{i}" for i in range(2 * args.pairs, 4 * args.pairs)]
        archiving(
            "chat-mam",
            lambda: srv.archive_never(off),
            lambda pool, _: [scenarios.chat_mam(srv, pool, args.pairs, args.duration, 16)],
            chat_mam_rows,
        )
    if "mam-query" not in args.skip:
        archiving(
            "mam-query",
            lambda: srv.fill_archive(MAM_OWNER, MAM_CONTACTS, args.mam_archive),
            lambda pool, ids: [scenarios.mam_query(srv, pool, MAM_OWNER, ids, args.mam_queries)],
            mam_query_rows,
        )
    return results


def table(all_results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> list[str]:
    by = {name: {r["scenario"]: r for r in rs} for name, rs in all_results.items()}
    d, p = by.get("Descant", {}), by.get("Prosody", {})
    lines = [
        "| Scenario | Figure | Descant | Prosody | Descant/Prosody | Better |",
        "|---|---|---:|---:|---:|---|",
    ]
    for scen, key, label, better in METRICS:
        if "{n}" in scen:
            names = [scen.format(n=n) for n in args.idle]
        elif "{h}" in scen:
            names = [scen.format(h=h) for h in args.hibernated]
        else:
            names = [scen.format(rate=int(args.rate))]
        family = scen.split("-{")[0]  # the row of a scenario that failed as a whole
        for name in names:
            dr, pr = d.get(name) or d.get(family) or {}, p.get(name) or p.get(family) or {}
            dv, pv = dr.get(key), pr.get(key)
            notes = [
                f"{n}: {r['skipped']}"
                for n, r in (("Descant", dr), ("Prosody", pr))
                if r.get("skipped")
            ]
            if dv is None and pv is None:
                if notes:
                    lines.append(f"| {name} | {label} | – | – | – | {'; '.join(notes)} |")
                continue
            ratio = (dv / pv) if isinstance(dv, float) and isinstance(pv, float) and pv else None
            lines.append(
                f"| {name} | {label} | {_fmt(dv) if dv is not None else '–'} | "
                f"{_fmt(pv) if pv is not None else '–'} | "
                f"{f'{ratio:.2f}' if ratio is not None else '–'} | "
                f"{'; '.join([better, *notes])} |"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.run", description=__doc__)
    ap.add_argument("--servers", default="descant,prosody")
    ap.add_argument(
        "--idle",
        default="1000,5000,10000,max",
        help="session counts for the idle scenario, cumulative; 'max': as many as the "
        "open-file limit allows (up to 50,000)",
    )
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--rate", type=float, default=2000.0, help="offered msg/s for latency")
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per measured phase")
    ap.add_argument("--cliques", type=int, default=4, help="presence, pep: groups of 51 users")
    ap.add_argument("--scram", type=int, default=400, help="SCRAM logins")
    ap.add_argument("--workers", type=int, default=2, help="load-generator processes")
    ap.add_argument("--occupants", type=int, default=100, help="muc: occupants of the room")
    ap.add_argument(
        "--hibernated",
        default="1000,5000",
        help="session counts for the hibernated scenario, cumulative",
    )
    ap.add_argument(
        "--presence-rate",
        type=float,
        default=300.0,
        help="presence-csi: presence changes/s offered (both servers must keep up)",
    )
    ap.add_argument(
        "--mam-archive", type=int, default=100_000, help="mam-query: messages in the archive"
    )
    ap.add_argument("--mam-queries", type=int, default=500, help="mam-query: queries measured")
    ap.add_argument("--skip", default="", help="scenarios to skip: " + ",".join(SCENARIOS))
    ap.add_argument("--only", default="", help="scenarios to run, none other (e.g. --only chat-ws)")
    ap.add_argument("--quick", action="store_true", help="small sizes, to try the rig")
    ap.add_argument(
        "--metrics",
        choices=("on", "off"),
        default="on",
        help="Descant's [http] metrics in every scenario but chat-metrics (default: on, "
        "as shipped)",
    )
    ap.add_argument("--out", default=None, help="results file (default results/DATE.md)")
    args = ap.parse_args(argv)
    nofile = raise_nofile()
    # The server needs one descriptor per session, plus its own; so does the generator.
    most = min(50_000, (nofile - 2000) // 1000 * 1000)
    sizes = [most if x == "max" else int(x) for x in args.idle.split(",")]
    args.idle = sorted({n for n in sizes if 0 < n <= most}) or [max(most, 100)]
    args.skip = set(args.skip.split(",")) if args.skip else set()
    if args.only:
        args.skip |= set(SCENARIOS) - set(args.only.split(","))
    unknown = (args.skip | set(args.only.split(",") if args.only else [])) - set(SCENARIOS)
    if unknown:
        ap.error(f"unknown scenarios {sorted(unknown)}; they are: {','.join(SCENARIOS)}")
    args.hibernated = sorted({int(x) for x in args.hibernated.split(",")})
    if args.quick:
        (args.idle, args.pairs, args.duration, args.cliques, args.scram, args.occupants) = (
            [200, 500],
            20,
            3.0,
            2,
            50,
            30,
        )
        args.hibernated = [200, 500]
        args.mam_archive, args.mam_queries = 20_000, 200
    if len(args.idle) < len(sizes):
        print(f"# open-file limit {nofile}: idle sizes capped at {most}", file=sys.stderr)
    if not shutil.which("prosody") and "prosody" in args.servers:
        print("# prosody not installed (make peers): running Descant only", file=sys.stderr)
        args.servers = "descant"

    # chat-mam: two groups of pairs.
    n_users = max([*args.idle, *args.hibernated, 4 * args.pairs, args.scram, args.occupants])
    users = [f"u{i}" for i in range(n_users)] + [MAM_OWNER, *MAM_CONTACTS]
    rosters = scenarios.presence_rosters(args.cliques)
    users += list(rosters)
    started = datetime.datetime.now(datetime.UTC)
    all_results: dict[str, list[dict[str, Any]]] = {}
    modules: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="descant-bench-") as tmp:
        work = Path(tmp)
        from descant.net import tls

        cert = tls.ensure_certificate([DOMAIN], str(work / "certs"), "", "")
        for name in args.servers.split(","):
            srv: Server = (
                Descant(work, archive=False, metrics=args.metrics == "on")
                if name == "descant"
                else Prosody(work, cert)
            )
            modules[srv.name] = srv.modules()
            all_results[srv.name] = run_server(srv, args, (users, rosters))
    lines = table(all_results, args)
    print("\n".join(lines))
    if args.out:
        out = Path(args.out)
    elif args.quick:  # a try of the rig, not a result to keep
        out = Path(tempfile.gettempdir()) / f"descant-bench-quick-{started:%Y-%m-%d}.md"
    else:
        out = RESULTS / f"{started:%Y-%m-%d}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(started, args, all_results, lines, modules))
    print(f"# written {out}", file=sys.stderr)
    return 0


def report(
    started: datetime.datetime,
    args: argparse.Namespace,
    all_results: dict[str, list[dict[str, Any]]],
    lines: list[str],
    modules: dict[str, str],
) -> str:
    info = machine_info()
    parts = [
        f"# Benchmark results, {started:%Y-%m-%d %H:%M} UTC",
        "",
        "Made by `make bench` (bench/README.md says what each scenario does). Server cost "
        "is the server process's own utime+stime and RSS/PSS from /proc, per unit "
        "delivered, so it holds on a shared machine; ratios below 1 favour Descant for "
        "'lower' figures, above 1 for 'higher' ones.",
        "",
        *lines,
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in info.items()],
        "",
        f"Settings: idle {args.idle}, hibernated {args.hibernated}, {args.pairs} chat pairs, "
        f"{args.duration:g}s phases, latency at {args.rate:g} msg/s, presence "
        f"and pep {args.cliques}×51 users (presence-csi at {args.presence_rate:g} changes/s), "
        f"{args.scram} SCRAM logins, {args.workers} load-generator processes; chat-mam "
        f"2×{args.pairs} pairs; mam-query {args.mam_queries} queries on an archive of "
        f"{args.mam_archive:,} messages.",
        "",
        "## Modules loaded",
        "",
        "| Server | Modules |",
        "|---|---|",
        *[f"| {name} | {text} |" for name, text in modules.items()],
        "",
        "## Raw results (one JSON line per scenario and server)",
        "",
        "```",
        *[json.dumps(r) for rs in all_results.values() for r in rs],
        "```",
        "",
    ]
    return "\n".join(parts)


if __name__ == "__main__":
    sys.exit(main())
