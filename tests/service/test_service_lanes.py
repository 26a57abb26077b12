"""The per-conversation ordering primitive: processing slots run strictly in reservation order."""

from __future__ import annotations

import asyncio

from assist.service.conversations import _Lane, _slot


async def test_slots_run_in_reservation_order_even_when_earlier_ones_are_slow() -> None:
    lane = _Lane()
    order: list[int] = []

    async def job(i: int, delay: float) -> None:
        prev, mine = lane.reserve()
        async with _slot(prev, mine):
            await asyncio.sleep(delay)
            order.append(i)

    await asyncio.gather(*(job(i, 0.02 if i % 2 == 0 else 0) for i in range(6)))
    assert order == list(range(6))


async def test_a_cancelled_waiter_does_not_let_its_successor_overtake() -> None:
    lane = _Lane()
    running: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        prev, mine = lane.reserve()
        async with _slot(prev, mine):
            running.append("first:start")
            await release.wait()
            running.append("first:end")

    async def waiter(name: str) -> None:
        prev, mine = lane.reserve()
        async with _slot(prev, mine):
            running.append(name)

    t1 = asyncio.create_task(first())
    await asyncio.sleep(0)
    t2 = asyncio.create_task(waiter("second"))
    t3 = asyncio.create_task(waiter("third"))
    await asyncio.sleep(0.01)
    t2.cancel()  # gives up while waiting for "first"
    await asyncio.sleep(0.01)
    assert running == ["first:start"]  # "third" must still wait for "first"
    release.set()
    await asyncio.gather(t1, t3)
    assert running == ["first:start", "first:end", "third"]
    assert t2.cancelled()
