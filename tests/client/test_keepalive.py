"""TCP keepalive on client connections finds clients that vanished without closing."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from pathlib import Path

from descant.config import (
    C2SConfig,
    Config,
    HTTPConfig,
    S2SConfig,
    ServerConfig,
    StorageConfig,
)
from descant.server import Server
from tests.live import free_port


async def _server_socket_options(tmp_path: Path, keepalive: int) -> tuple[int, int | None]:
    port = free_port()
    config = dataclasses.replace(
        Config(),
        server=ServerConfig(domains=["localhost"], data_dir=str(tmp_path)),
        c2s=C2SConfig(listen=[f"127.0.0.1:{port}"], tcp_keepalive=keepalive),
        s2s=S2SConfig(listen=[]),
        http=HTTPConfig(listen=[]),
        storage=StorageConfig(url="memory://"),
    )
    server = Server(config)
    await server.start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(100):  # bounded wait for the accept
            if server.c2s.streams:
                break
            await asyncio.sleep(0.01)
        (stream,) = server.c2s.streams
        sock = stream.transport.get_extra_info("socket")
        enabled = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        idle = None
        if hasattr(socket, "TCP_KEEPIDLE"):
            idle = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE)
        writer.close()
        return enabled, idle
    finally:
        await server.stop()


async def test_keepalive_probes_are_enabled(tmp_path: Path) -> None:
    enabled, idle = await _server_socket_options(tmp_path, 120)
    assert enabled
    assert idle in (None, 120)


async def test_keepalive_can_be_turned_off(tmp_path: Path) -> None:
    enabled, _ = await _server_socket_options(tmp_path, 0)
    assert not enabled
