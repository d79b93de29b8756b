"""Connections per address (descant.net.limits): the limit, and the table's bound."""

from __future__ import annotations

from descant.net.limits import PerAddress


def test_admits_up_to_the_limit_per_address() -> None:
    per_ip = PerAddress(2)
    assert per_ip.admit("192.0.2.1") and per_ip.admit("192.0.2.1")
    assert not per_ip.admit("192.0.2.1")
    assert per_ip.admit("192.0.2.2")  # another address has its own count
    per_ip.release("192.0.2.1")
    assert per_ip["192.0.2.1"] == 1
    assert per_ip.admit("192.0.2.1")


def test_addresses_leave_the_table_with_their_last_connection() -> None:
    per_ip = PerAddress(5)
    for n in range(100):
        assert per_ip.admit(f"198.51.100.{n}")
    assert len(per_ip) == 100
    for n in range(100):
        per_ip.release(f"198.51.100.{n}")
    assert len(per_ip) == 0 and per_ip["198.51.100.7"] == 0
