"""What a process costs, read from /proc: CPU (utime+stime) and memory (RSS, PSS).

The figures come from the server process itself, so they hold on a machine shared
with other work: a busy neighbour makes a run slower, not more expensive.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import subprocess
import sys

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # Fields 14 and 15 of proc(5); the split starts at field 3 (state).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def memory_kib(pid: int) -> tuple[int, int]:
    """(RSS, PSS) in KiB from /proc/PID/smaps_rollup."""
    rss = pss = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    return rss, pss


def raise_nofile() -> int:
    """Raise this process's open-file soft limit to the hard limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _first(path: str, pattern: str) -> str:
    try:
        with open(path) as f:
            m = re.search(pattern, f.read(), re.M)
        return m.group(1).strip() if m else "?"
    except OSError:
        return "?"


def _cmd(*args: str) -> str:
    try:
        out = subprocess.run(args, capture_output=True, text=True, timeout=20)
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired):
        return "?"


def machine_info() -> dict[str, str]:
    import uvloop

    import descant

    mem_kib = _first("/proc/meminfo", r"^MemTotal:\s+(\d+)")
    return {
        "cpu": _first("/proc/cpuinfo", r"^model name\s*:\s*(.*)$"),
        "cores": str(os.cpu_count()),
        "memory": f"{int(mem_kib) // 1024} MiB" if mem_kib.isdigit() else "?",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "uvloop": getattr(uvloop, "__version__", "?"),
        "descant": descant.__version__,
        "prosody": _cmd("dpkg-query", "-W", "-f", "${Version}", "prosody"),
        "lua": _cmd("dpkg-query", "-W", "-f", "${Version}", "lua5.4"),
        "lua-event": _cmd("dpkg-query", "-W", "-f", "${Version}", "lua-event"),
        "nofile": str(resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
    }
