"""XEP-0082 stamps used by delayed delivery (XEP-0203) and archives (XEP-0313)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from descant.stamps import format_stamp, parse_stamp


def test_format_is_utc_with_z_xep0082() -> None:
    when = datetime(2026, 11, 24, 23, 30, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_stamp(when) == "2026-11-24T22:30:00.000005Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-24T22:30:00Z", datetime(2026, 11, 24, 22, 30, tzinfo=UTC)),
        ("2026-11-24T22:30:00", datetime(2026, 11, 24, 22, 30, tzinfo=UTC)),
        ("2026-11-24T23:30:00+01:00", datetime(2026, 11, 24, 22, 30, tzinfo=UTC)),
    ],
)
def test_parse_round_trips_and_assumes_utc_xep0082(text: str, expected: datetime) -> None:
    assert parse_stamp(text) == expected
    assert parse_stamp(format_stamp(expected)) == expected


def test_parse_refuses_what_is_not_a_date() -> None:
    with pytest.raises(ValueError):
        parse_stamp("yesterday")
