"""Shared fixtures: one real server process for the end-to-end suites."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.live import LiveServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    srv = LiveServer(tmp_path_factory.mktemp("descant"))
    srv.start()
    yield srv
    code = srv.stop()
    assert code == 0, f"server exited with {code}:\n{srv.log()[-4000:]}"


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[object]:
    """Start extra servers with custom config sections: make_server(limits={...})."""
    started: list[LiveServer] = []

    def make(**sections: dict[str, object]) -> LiveServer:
        srv = LiveServer(tmp_path / f"s{len(started)}", **sections)
        srv.start()
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()
