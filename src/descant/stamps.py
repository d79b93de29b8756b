"""XEP-0082 date and time stamps, as delay (XEP-0203) and archives (XEP-0313) use them."""

from __future__ import annotations

from datetime import UTC, datetime


def format_stamp(when: datetime) -> str:
    """UTC with microseconds and a ``Z``, e.g. ``2026-11-24T22:30:19.000000Z``."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_stamp(text: str) -> datetime:
    """A XEP-0082 DateTime; one without a zone is taken as UTC. Raises ValueError."""
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)
