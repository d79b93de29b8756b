"""The admin pages' session table and tokens (src/descant/http/admin/auth.py), on a fake clock."""

from __future__ import annotations

from descant.http.admin.auth import MAX_AGE, SessionTable, token_ok
from descant.http.admin.views import duration
from descant.jid import parse

BOSS = parse("boss@example.org")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_lives_while_used_and_expires_unused() -> None:
    clock = Clock()
    table = SessionTable(timeout=60, clock=clock)
    s = table.create(BOSS)
    for _ in range(5):
        clock.now += 59
        assert table.get(s.id) is s  # each use starts the timeout again
    clock.now += 61
    assert table.get(s.id) is None
    assert len(table) == 0  # forgotten, not merely refused


def test_a_session_ends_after_max_age_however_busy() -> None:
    clock = Clock()
    table = SessionTable(timeout=MAX_AGE * 2, clock=clock)
    s = table.create(BOSS)
    clock.now += MAX_AGE + 1
    assert table.get(s.id) is None


def test_login_rotates_the_id_and_ends_the_old_session() -> None:
    table = SessionTable(timeout=60, clock=Clock())
    old = table.create(BOSS)
    new = table.create(BOSS, replaces=old.id)
    assert new.id != old.id and new.csrf != old.csrf
    assert table.get(old.id) is None
    assert table.get(new.id) is new
    table.end(new.id)
    assert table.get(new.id) is None


def test_the_table_is_bounded_least_recently_used_first() -> None:
    table = SessionTable(timeout=60, clock=Clock(), limit=3)
    a, b, c = (table.create(BOSS) for _ in range(3))
    assert table.get(a.id) is a  # a is now the most recently used
    table.create(BOSS)
    assert len(table) == 3
    assert table.get(b.id) is None
    assert table.get(a.id) is a and table.get(c.id) is c


def test_unknown_and_empty_ids() -> None:
    table = SessionTable(timeout=60, clock=Clock())
    assert table.get(None) is None
    assert table.get("") is None
    assert table.get("made-up") is None


def test_csrf_tokens() -> None:
    table = SessionTable(timeout=60, clock=Clock())
    s = table.create(BOSS)
    assert token_ok(s, s.csrf)
    assert not token_ok(s, "")
    assert not token_ok(s, s.csrf + "x")
    assert not token_ok(s, "é" * 10)  # not ASCII: refused, not an exception
    other = table.create(BOSS)
    assert not token_ok(s, other.csrf)


def test_login_form_tokens_are_bound_to_their_nonce_and_this_process() -> None:
    table = SessionTable(timeout=60)
    token = table.login_token("nonce-1")
    assert table.login_token_ok("nonce-1", token)
    assert not table.login_token_ok("nonce-2", token)
    assert not table.login_token_ok(None, token)
    assert not table.login_token_ok("nonce-1", "")
    assert not SessionTable(timeout=60).login_token_ok("nonce-1", token)


def test_flash_notes_are_shown_once_and_bounded() -> None:
    s = SessionTable(timeout=60).create(BOSS)
    for i in range(8):
        s.note("info", str(i))
    assert [t for _, t in s.take_flash()] == ["3", "4", "5", "6", "7"]
    assert s.take_flash() == []


def test_duration() -> None:
    assert duration(8) == "0m 8s"
    assert duration(3 * 3600 + 125) == "3h 2m"
    assert duration(2 * 86400 + 5 * 3600 + 7) == "2d 5h"
