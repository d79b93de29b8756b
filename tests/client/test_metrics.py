"""/metrics and /health against a real server: the Prometheus text format read back
with prometheus_client's own parser, figures that move with what clients do."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.live import Client, LiveServer, connect_slixmpp, disconnect, wait_for_http


async def scrape(srv: LiveServer) -> dict[str, Any]:
    """Every family of /metrics by name, each a {labels-tuple: value} per sample name."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{srv.http_port}/metrics") as resp,
    ):
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await resp.text()
    families: dict[str, Any] = {}
    for family in text_string_to_metric_families(text):
        samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
        for s in family.samples:
            samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        families[family.name] = (family.type, samples)
    return families


def value(families: dict[str, Any], sample: str, **labels: str) -> float:
    family = next(f for name, f in families.items() if sample.startswith(name))
    return float(family[1][sample].get(tuple(sorted(labels.items())), 0.0))


async def test_metrics_families_and_values(server: LiveServer) -> None:
    await wait_for_http(server)
    before = await scrape(server)
    for name, kind in (
        ("descant_c2s_sessions", "gauge"),
        ("descant_c2s_connections", "gauge"),
        ("descant_c2s_sessions_hibernated", "gauge"),
        ("descant_s2s_connections", "gauge"),
        ("descant_components_connected", "gauge"),
        ("descant_stanzas_received", "counter"),
        ("descant_stanzas_sent", "counter"),
        ("descant_routing_seconds", "histogram"),
        ("descant_storage_seconds", "histogram"),
        ("descant_auth_failures", "counter"),
        ("descant_uploads", "counter"),
        ("descant_upload_bytes", "counter"),
        ("descant_start_time_seconds", "gauge"),
        ("descant_uptime_seconds", "gauge"),
        ("process_cpu_seconds", "counter"),
        ("process_resident_memory_bytes", "gauge"),
        ("python_info", "gauge"),
    ):
        assert name in before, name
        assert before[name][0] == kind, (name, before[name][0])

    a_jid, a_pw = await server.make_user("mal")
    b_jid, b_pw = await server.make_user("mbo")
    alice = await connect_slixmpp(server, a_jid, a_pw)
    bob = await connect_slixmpp(server, b_jid, b_pw)
    try:
        for i in range(20):
            alice.send_message(mto=b_jid, mbody=f"m{i}", mtype="chat")
        for _ in range(20):
            await bob.next_message()
        during = await scrape(server)
        assert value(during, "descant_c2s_sessions", transport="tcp") >= 2
        assert value(during, "descant_c2s_connections", transport="tcp") >= 2
        received = "descant_stanzas_received_total"
        sent = "descant_stanzas_sent_total"
        for sample, kind, n in (
            (received, "message", 20),
            (received, "presence", 2),
            (received, "iq", 2),  # roster gets
            (sent, "message", 20),
            (sent, "iq", 2),
        ):
            grew = value(during, sample, via="c2s", kind=kind) - value(
                before, sample, via="c2s", kind=kind
            )
            assert grew >= n, (sample, kind, grew)
        # Logins read accounts and rosters: storage calls were timed.
        assert (
            value(during, "descant_storage_seconds_count", database="main", operation="fetchone")
            > 0
        )
        # One stanza in 16 is timed; 40 and more went through the router.
        assert value(during, "descant_routing_seconds_count") > value(
            before, "descant_routing_seconds_count"
        )
        assert value(during, "descant_uptime_seconds") > 0
    finally:
        await disconnect(alice, bob)


async def test_auth_failure_counted(server: LiveServer) -> None:
    await wait_for_http(server)
    jid, _ = await server.make_user("mfail")
    before = await scrape(server)
    client = Client(jid, "wrong password")
    client.connect("127.0.0.1", server.port)
    try:
        await asyncio.wait_for(client.failed.wait(), 15)
    finally:
        client.disconnect()
    after = await scrape(server)
    # On the shared server, earlier tests' failures from this address may have reached
    # the throttle: then this one counts as temporary-auth-failure. Either is a failure.
    assert failures(after) >= failures(before) + 1
    # The mechanism is a label too: one of the SASL mechanisms offered, or "other" for
    # what other tests on the shared server tried (unknown mechanisms, none at all).
    mechanisms = {dict(k)["mechanism"] for k in after["descant_auth_failures"][1][FAILURES]}
    assert mechanisms and mechanisms <= {
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "SCRAM-SHA-1-PLUS",
        "SCRAM-SHA-256-PLUS",
        "PLAIN",
        "other",
    }


FAILURES = "descant_auth_failures_total"


def failures(families: dict[str, Any], reason: str | None = None) -> float:
    samples = families["descant_auth_failures"][1].get(FAILURES, {})
    return sum(v for k, v in samples.items() if reason is None or dict(k)["reason"] == reason)


async def test_health(server: LiveServer) -> None:
    await wait_for_http(server)
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.http_port}/health") as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
    assert body["status"] == "ok"
    assert body["uptime_s"] >= 0


async def test_metrics_forbidden_outside_allow_list(make_server: Any) -> None:
    """Only http.metrics_allow may read /metrics: a list without loopback shuts us out
    (and a forwarded-for address from a trusted proxy is judged as itself)."""
    srv: LiveServer = make_server(http={"metrics_allow": ["192.0.2.0/24"]})
    await wait_for_http(srv)
    base = f"http://127.0.0.1:{srv.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/metrics") as resp:
            assert resp.status == 403
        async with http.get(f"{base}/metrics", headers={"X-Forwarded-For": "192.0.2.7"}) as resp:
            assert resp.status == 200  # loopback is a trusted proxy by default
        async with http.get(f"{base}/health") as resp:
            assert resp.status == 200


async def test_metrics_off(make_server: Any) -> None:
    srv: LiveServer = make_server(http={"metrics": False})
    await wait_for_http(srv)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{srv.http_port}/metrics") as resp:
            assert resp.status == 404
        async with http.get(f"http://127.0.0.1:{srv.http_port}/health") as resp:
            assert resp.status == 200
