"""What a stream needs of the transport carrying it (TCP, WebSocket, BOSH).

A transport moves bytes or frames and nothing else: it feeds what it receives
into the :class:`~descant.stream.protocol.XMLStream` its owner gave it
(``transport.stream``) and writes the text pieces it is handed, one WebSocket
message per piece where framing matters. Negotiation (TLS, SASL, bind, stream
management) is written once, against the stream, by the owner
(net/connection.py and c2s/stream.py), and so is the same on every transport.
"""

from __future__ import annotations

import ssl
from typing import Any, Protocol

from descant.stream.protocol import XMLStream


class Transport(Protocol):
    ip: str  # the peer's address (the real client's, behind a trusted proxy)
    # The hop to the peer is encrypted: TLS ended here, or at a trusted proxy.
    secure: bool
    # This transport ends TLS itself, so channel binding to our certificate works
    # (SCRAM-PLUS is offered only then).
    tls_here: bool
    can_starttls: bool
    stream: XMLStream | None  # where received data goes (set by the owner)

    def write(self, parts: list[str]) -> None:
        """Send these pieces in order (one WebSocket message each)."""

    def write_buffer_size(self) -> int:
        """Bytes accepted by :meth:`write` and not yet sent."""

    async def wait_input(self) -> bool:
        """Wait until more input was handed to the stream; False when input has ended."""

    async def start_tls(
        self, ctx: ssl.SSLContext, server_side: bool = True, server_hostname: str | None = None
    ) -> None:
        """Switch to TLS (STARTTLS); raises OSError or ssl.SSLError on failure."""

    def close(self) -> None:
        """Close after what was written has been sent."""

    def abort(self) -> None:
        """Close now, dropping unsent output."""

    def is_closing(self) -> bool: ...

    def get_extra_info(self, name: str) -> Any: ...
