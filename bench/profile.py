"""Profile Descant under the chat scenario with py-spy (``pip install -e '.[bench]'``).

    python -m bench.profile [--pairs 100] [--duration 15]
                            [--scenario chat|chat-ws|chat-sm|presence|pep|muc]
                            [--archive]

Starts Descant as ``make bench`` does (the message archive off unless ``--archive``,
as in ``chat-mam``), loads it (closed-loop saturation), samples it
with ``py-spy record --nonblocking`` and prints the functions with the most samples:
own time (the frame on top of the stack) and inclusive time (anywhere on it).
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import scenarios
from bench.proc import raise_nofile
from bench.servers import DOMAIN, PASSWORD, Descant
from bench.worker import Pool


def summarize(raw: Path, top: int) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n_s = line.rpartition(" ")
        if not n_s.isdigit():
            continue
        n = int(n_s)
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1] + ")"
            if " (" in f
            else f
            for f in stack.split(";")
        ]
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{total} samples", "", "own time:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in own.most_common(top)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * c / total:5.1f}%  {f}" for f, c in incl.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="bench.profile", description=__doc__)
    ap.add_argument(
        "--scenario",
        default="chat",
        choices=["chat", "chat-ws", "chat-sm", "presence", "pep", "muc"],
    )
    ap.add_argument("--pairs", type=int, default=100)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument(
        "--archive", action="store_true", help="archive every message (XEP-0313), as chat-mam"
    )
    ap.add_argument("--raw", default=None, help="keep py-spy's collapsed stacks here")
    args = ap.parse_args(argv)
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(pyspy).exists():
        print("py-spy is not installed: pip install -e '.[bench]'", file=sys.stderr)
        return 1
    raise_nofile()
    with tempfile.TemporaryDirectory(prefix="descant-profile-") as tmp:
        work = Path(tmp)
        srv = Descant(work, archive=args.archive)
        users = [f"u{i}" for i in range(max(2 * args.pairs, 100))]
        rosters = scenarios.presence_rosters(2)
        srv.prepare([*users, *rosters], rosters)
        srv.start()
        pool = Pool(args.workers, "127.0.0.1", srv.port, DOMAIN, PASSWORD, srv.http_port)
        raw = Path(args.raw) if args.raw else work / "raw.txt"
        alternating = args.scenario in ("chat-ws", "chat-sm")
        phase = max(args.duration / scenarios.ROUNDS, 2.0) if alternating else args.duration - 2
        try:
            # Sampling starts with the measured phase, and stops before it ends.
            record = [
                pyspy,
                "record",
                "--nonblocking",
                "-r",
                "200",
                "-f",
                "raw",
                "-o",
                str(raw),
                "-d",
                # chat-ws and chat-sm measure in ROUNDS phases of duration/ROUNDS each.
                str(max(int(phase) - 1, 1)),
                "-p",
                str(srv.pid),
            ]
            spy: list[subprocess.Popen[bytes]] = []
            # chat-ws and chat-sm measure a warm-up and a reference phase first: sample
            # the third phase (the first of the mode under study).
            skip = [2 if args.scenario in ("chat-ws", "chat-sm") else 0]

            def start_spy() -> None:
                if skip[0]:
                    skip[0] -= 1
                    scenarios.Meter.on_next_start = start_spy
                    return
                spy.append(
                    subprocess.Popen(record, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                )

            scenarios.Meter.on_next_start = start_spy
            if args.scenario == "chat-ws":
                res = scenarios.chat_ws(srv, pool, args.pairs, args.duration, 16)
            elif args.scenario == "chat-sm":
                res = scenarios.chat_sm(srv, pool, args.pairs, args.duration, 16)
            elif args.scenario == "chat":
                res = scenarios.chat(srv, pool, args.pairs, args.duration, 2000, 16)[0]
            elif args.scenario == "presence":
                res = scenarios.presence(srv, pool, 2, args.duration)
            elif args.scenario == "pep":
                res = scenarios.pep(srv, pool, 2, args.duration)
            else:
                res = scenarios.muc(srv, pool, 100, args.duration)
            for p in spy:
                p.wait(60)
            print(res)
        finally:
            pool.stop()
            srv.stop()
        print(summarize(raw, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
