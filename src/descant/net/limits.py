"""Open connections per peer address (``limits.max_connections_per_ip``): one
implementation for the client and the server-to-server listeners."""

from __future__ import annotations

import collections


class PerAddress:
    """Open connections per address; ``admit`` refuses past the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: collections.Counter[str] = collections.Counter()

    def admit(self, ip: str) -> bool:
        if self._open[ip] >= self.limit:
            return False
        self._open[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self._open[ip] -= 1
        if self._open[ip] <= 0:
            del self._open[ip]

    def __getitem__(self, ip: str) -> int:
        return self._open.get(ip, 0)

    def __len__(self) -> int:
        """How many addresses have connections open (the table's size)."""
        return len(self._open)
