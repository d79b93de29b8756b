"""KeyedLock: one lock per key, gone once nobody holds or waits for it."""

from __future__ import annotations

import asyncio

from descant.locks import KeyedLock


async def test_same_key_takes_turns_other_keys_do_not_wait() -> None:
    locks = KeyedLock()
    order: list[str] = []

    async def work(key: str, name: str, pause: float) -> None:
        async with locks(key):
            order.append(f"{name}+")
            await asyncio.sleep(pause)
            order.append(f"{name}-")

    await asyncio.gather(work("a", "1", 0.02), work("a", "2", 0), work("b", "3", 0))
    assert order.index("1-") < order.index("2+")  # same key: in turn
    assert order.index("3+") < order.index("1-")  # another key: not behind it
    assert len(locks) == 0  # nothing left once all are done


async def test_entry_released_when_the_block_raises() -> None:
    locks = KeyedLock()
    try:
        async with locks("a"):
            raise ValueError
    except ValueError:
        pass
    assert len(locks) == 0
