"""TCP keepalive on client connections.

Mobile clients often vanish without closing their TCP connection; until the
kernel notices, the session stays bound and the user looks online. Keepalive
probes after ``idle`` seconds of silence find such peers within about
``idle + interval * count`` seconds, at no cost while data flows.
"""

from __future__ import annotations

import socket


def enable(sock: socket.socket, idle: int, interval: int = 30, count: int = 4) -> None:
    """Turn on keepalive probes (the TCP_KEEP* options where the platform has them)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", idle),
        ("TCP_KEEPINTVL", interval),
        ("TCP_KEEPCNT", count),
    ):
        opt = getattr(socket, name, None)
        if opt is not None:
            sock.setsockopt(socket.IPPROTO_TCP, opt, value)
