"""Stream management state (descant.c2s.sm): counters and the unacknowledged queue
(XEP-0198 §4, §6), without a stream."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from descant.c2s.sm import MASK, NS, HandledCountTooHigh, StreamManagement, parse_h


def msg(n: int) -> str:
    return f"<message id='{n}'/>"


def ids(sm: StreamManagement) -> list[str]:
    """The ids of the queued stanzas, oldest first."""
    return [ET.fromstring(text).get("id", "") for text, _, _ in sm.pending()]


def test_ack_drops_what_it_acknowledges_xep0198_4() -> None:
    sm = StreamManagement(limit=100)
    for n in range(5):
        assert sm.track(msg(n))
    assert sm.sent == 5
    sm.ack(3)
    assert ids(sm) == ["3", "4"]
    sm.ack(3)  # the same h again acknowledges nothing new
    assert sm.unacked == 2
    sm.ack(5)
    assert not sm.unacked and sm.sent == 5


def test_handled_count_too_high_xep0198_6() -> None:
    sm = StreamManagement(limit=100)
    sm.track(msg(1))
    with pytest.raises(HandledCountTooHigh) as info:
        sm.ack(2)
    assert (info.value.h, info.value.sent) == (2, 1)
    el = info.value.element()
    assert el.tag == f"{{{NS}}}handled-count-too-high"
    assert el.attrib == {"h": "2", "send-count": "1"}
    assert sm.unacked == 1  # nothing was dropped


def test_counters_wrap_at_2_32_xep0198_4() -> None:
    sm = StreamManagement(limit=100)
    sm.acked = MASK - 1  # two short of wrapping
    for n in range(4):
        sm.track(msg(n))
    assert sm.sent == 2
    sm.ack(MASK)  # 1 acknowledged
    assert sm.unacked == 3
    sm.ack(1)  # past the wrap: 2 more
    assert sm.unacked == 1
    sm.handled = MASK
    sm.count_handled()
    assert sm.handled == 0
    assert sm.answer() == f"<a xmlns='{NS}' h='0'/>"


def test_queue_bound_is_reported() -> None:
    sm = StreamManagement(limit=2)
    assert sm.track(msg(1)) and sm.track(msg(2))
    assert not sm.track(msg(3))


def test_take_unacked_keeps_order_and_stamps() -> None:
    sm = StreamManagement(limit=10)
    sm.track(msg(1))
    sm.track(msg(2))
    out = sm.take_unacked()
    assert [st.get("id") for st, _ in out] == ["1", "2"]
    assert out[0][1] <= out[1][1]
    assert not sm.unacked


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("42", 42),
        (str(MASK), MASK),
        (str(MASK + 1), None),
        ("-1", None),
        ("", None),
        ("x", None),
        ("٣", None),
        (None, None),
    ],
)
def test_parse_h_is_an_unsigned_int(value: str | None, expected: int | None) -> None:
    assert parse_h(value) == expected


def test_many_acks_keep_the_queue_in_order() -> None:
    """The acknowledged front is cut off in steps; what remains stays in order."""
    sm = StreamManagement(limit=100_000)
    sent = 0
    for step in range(1, 400):
        for _ in range(step % 11 + 1):
            sm.track(msg(sent))
            sent += 1
        sm.ack((sm.acked + step % 5) % (MASK + 1) if step % 5 <= sm.unacked else sm.acked)
        assert [int(i) for i in ids(sm)] == list(range(sent - sm.unacked, sent))
    assert sm.sent == sent
