"""metrics.py, http/metrics.py and storage/timed.py without a server process: who may
read /metrics, /health with storage that fails or hangs, storage timing, counters."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from descant.config import Config, ConfigError, HTTPConfig, load
from descant.http import metrics as http_metrics
from descant.server import Server
from descant.storage import open_storage
from descant.storage.memory import MemoryStorage
from descant.storage.timed import TimedDatabase


def make_server(storage: Any = None, **http: Any) -> Server:
    cfg = dataclasses.replace(Config(), http=HTTPConfig(**http))
    server = Server(cfg, storage=storage or MemoryStorage())
    server.bound_ports["c2s"] = [5222]  # as if the listeners were up
    return server


@pytest.fixture
async def client_for() -> AsyncIterator[Any]:
    clients: list[TestClient[Any, Any]] = []

    async def make(server: Server) -> TestClient[Any, Any]:
        http_metrics.install(server.http)
        client = TestClient(TestServer(server.http.app))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


def test_allow_default_is_loopback_and_trusted_proxies() -> None:
    server = make_server(trusted_proxies=["127.0.0.1", "10.0.0.0/8"])
    ep = http_metrics.MetricsEndpoints(server.http)
    assert ep.allowed("127.0.0.1")
    assert ep.allowed("::1")
    assert ep.allowed("10.1.2.3")
    assert not ep.allowed("192.0.2.1")
    assert not ep.allowed("not an address")


def test_allow_list_replaces_the_default() -> None:
    server = make_server(metrics_allow=["192.0.2.0/24", "2001:db8::1"])
    ep = http_metrics.MetricsEndpoints(server.http)
    assert ep.allowed("192.0.2.99")
    assert ep.allowed("2001:db8::1")
    assert not ep.allowed("127.0.0.1")


def test_metrics_allow_is_validated(tmp_path: Any) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[http]\nmetrics_allow = ["nowhere"]\n')
    with pytest.raises(ConfigError, match=r"http.metrics_allow\[0\]"):
        load(str(path))


async def test_metrics_render_parses(client_for: Any) -> None:
    server = make_server()
    server.metrics.count("uploads")
    server.metrics.count("upload_bytes", 1234)
    server.metrics.auth_failed("SCRAM-SHA-256", "not-authorized")
    server.metrics.auth_failed("X-MADE-UP", "made-up-condition")  # bounded labels
    client = await client_for(server)
    resp = await client.get("/metrics")
    assert resp.status == 200
    families = {f.name: f for f in text_string_to_metric_families(await resp.text())}
    uploads = families["descant_uploads"].samples
    assert [s.value for s in uploads if s.name == "descant_uploads_total"] == [1.0]
    failures = {
        (s.labels["mechanism"], s.labels["reason"]): s.value
        for s in families["descant_auth_failures"].samples
        if s.name.endswith("_total")
    }
    assert failures == {("SCRAM-SHA-256", "not-authorized"): 1.0, ("other", "other"): 1.0}
    sessions = {s.labels["transport"]: s.value for s in families["descant_c2s_sessions"].samples}
    assert sessions == {"tcp": 0, "websocket": 0, "bosh": 0}


def test_counter_declared_once() -> None:
    server = make_server()
    c = server.metrics.counter("widgets", "Widgets made")
    assert server.metrics.counter("widgets", "Widgets made") is c
    with pytest.raises(KeyError):
        server.metrics.count("never-declared")


def test_metrics_off_counts_nothing() -> None:
    server = make_server(metrics=False)
    assert server.metrics.received_c2s is None and server.metrics.sent_c2s is None
    assert server.router._latency is None
    server.metrics.count("uploads")
    server.metrics.auth_failed("PLAIN", "not-authorized")
    assert server.metrics.storage_observer("main") is None
    text = server.metrics.render().decode()
    assert "descant_uploads_total 0.0" in text
    assert "descant_stanzas_received" not in text


async def test_health_ok(client_for: Any) -> None:
    client = await client_for(make_server())
    resp = await client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok" and body["uptime_s"] >= 0


class BrokenStorage(MemoryStorage):
    def __init__(self, hang: bool) -> None:
        super().__init__()
        self.hang = hang
        self.pings = 0

    async def ping(self) -> None:
        self.pings += 1
        if self.hang:
            await asyncio.sleep(3600)
        raise OSError("database is gone")


async def test_health_503_when_storage_fails(client_for: Any) -> None:
    client = await client_for(make_server(BrokenStorage(hang=False)))
    resp = await client.get("/health")
    assert resp.status == 503
    assert await resp.json() == {
        "status": "unavailable",
        "uptime_s": pytest.approx(0, abs=60),
        "reason": "storage",
    }


async def test_health_503_when_storage_hangs_one_check_at_a_time(
    client_for: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(http_metrics, "HEALTH_TIMEOUT", 0.05)
    storage = BrokenStorage(hang=True)
    server = make_server(storage)
    client = await client_for(server)
    answers = await asyncio.gather(*(client.get("/health") for _ in range(5)))
    assert [r.status for r in answers] == [503] * 5
    resp = await client.get("/health")
    assert resp.status == 503
    # A stuck database gets one query, however many probes come.
    assert storage.pings == 1
    await server.http.stop()


async def test_health_503_when_stopping(client_for: Any) -> None:
    server = make_server()
    client = await client_for(server)
    server.c2s.stopping = True
    resp = await client.get("/health")
    assert resp.status == 503
    assert (await resp.json())["reason"] == "stopping"


async def test_storage_calls_timed(tmp_path: Any) -> None:
    seen: list[tuple[str, str]] = []

    def observe(database: str) -> Any:
        return lambda op, seconds: seen.append((database, op)) if seconds >= 0 else None

    storage = open_storage(f"sqlite:///{tmp_path}/t.db", str(tmp_path), observe)
    db = storage.db  # type: ignore[attr-defined]
    assert isinstance(db, TimedDatabase)
    assert isinstance(storage.mam_db, TimedDatabase)  # type: ignore[attr-defined]
    await storage.open()
    try:
        seen.clear()
        await storage.ping()
        await db.execute("CREATE TABLE t (x INTEGER)")
        await db.fetchall("SELECT x FROM t")
        await db.script([("INSERT INTO t VALUES (?)", (1,))])
        async with db.transaction() as tx:
            await tx.execute("INSERT INTO t VALUES (?)", 2)
        await storage.mam_db.fetchone("SELECT 1")  # type: ignore[attr-defined]
        assert db.path.endswith("t.db")  # engine attributes read through
    finally:
        await storage.close()
    assert seen == [
        ("main", "fetchone"),
        ("main", "execute"),
        ("main", "fetchall"),
        ("main", "script"),
        ("main", "transaction"),
        ("archive", "fetchone"),
    ]
