"""The per-address registration window (XEP-0077, registration.per_ip_per_hour)."""

from __future__ import annotations

import pytest

from descant.features import register
from descant.features.register import WINDOW, RegistrationWindow


def test_limit_per_address_and_expiry() -> None:
    w = RegistrationWindow(2)
    for _ in range(2):
        assert w.allowed("192.0.2.1", 0.0)
        w.count("192.0.2.1", 0.0)
    assert not w.allowed("192.0.2.1", 1.0)
    assert w.allowed("192.0.2.2", 1.0)  # another address is not affected
    assert w.allowed("192.0.2.1", WINDOW + 1)  # an hour later
    assert len(w) == 0  # and forgotten


def test_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(register, "MAX_ADDRESSES", 100)
    w = RegistrationWindow(5)
    for i in range(1000):
        w.count(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(w) <= 100
    assert "10.0.3.231" in w._seen  # the most recent stay
