"""Where outgoing s2s connects (RFC 6120 §3.2.1, XEP-0368): routes, SRV, fallback."""

from __future__ import annotations

from typing import Any

import dns.resolver
import pytest

from descant.s2s import resolve as r


class _SRV:
    def __init__(self, priority: int, weight: int, port: int, target: str) -> None:
        self.priority, self.weight, self.port = priority, weight, port
        self.target = dns.name.from_text(target)


def _fake(records: dict[str, list[_SRV]]) -> Any:
    async def fake_resolve(name: str, rdtype: str, lifetime: float = 0) -> list[_SRV]:
        if name not in records:
            raise dns.resolver.NXDOMAIN()
        return records[name]

    return fake_resolve


async def test_static_route_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(r.dns.asyncresolver, "resolve", _fake({}))
    got = await r.resolve("example.net", {"example.net": "127.0.0.3:5270"})
    assert got == [r.Target("127.0.0.3", 5270)]


async def test_ip_literal_needs_no_dns() -> None:
    assert await r.resolve("127.0.0.2", {}) == [r.Target("127.0.0.2", 5269)]


async def test_no_srv_falls_back_to_the_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(r.dns.asyncresolver, "resolve", _fake({}))
    assert await r.resolve("example.org", {}) == [r.Target("example.org", 5269)]


async def test_srv_order_and_direct_tls(monkeypatch: pytest.MonkeyPatch) -> None:
    records = {
        "_xmpp-server._tcp.example.org": [
            _SRV(20, 0, 5269, "backup.example.org."),
            _SRV(10, 0, 5269, "xmpp.example.org."),
        ],
        "_xmpps-server._tcp.example.org": [_SRV(10, 0, 5270, "xmpp.example.org.")],
    }
    monkeypatch.setattr(r.dns.asyncresolver, "resolve", _fake(records))
    got = await r.resolve("example.org", {})
    assert got == [
        r.Target("xmpp.example.org", 5270, True),
        r.Target("xmpp.example.org", 5269, False),
        r.Target("backup.example.org", 5269, False),
    ]


async def test_dot_target_means_no_service(monkeypatch: pytest.MonkeyPatch) -> None:
    records = {"_xmpp-server._tcp.example.org": [_SRV(0, 0, 0, ".")]}
    monkeypatch.setattr(r.dns.asyncresolver, "resolve", _fake(records))
    with pytest.raises(r.NoService):
        await r.resolve("example.org", {})
