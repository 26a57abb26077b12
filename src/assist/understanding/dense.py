"""A FAISS inner-product vector index with stable int ids, incremental updates and save/load.

Index type by size (``hnsw_threshold``, counted in *vectors*; a KB entry contributes 3-6):

- below it, exact ``IndexFlatIP``: one query costs ~0.15 ms at 2k vectors and ~1 ms at 10k, but
  ~7 ms at 40k and ~24 ms at 100k once the vectors no longer fit in the CPU cache (faiss-cpu
  1.15, 384-d, one query, 2-core EPYC VM), so the default threshold is 10k vectors;
- above it, an HNSW graph (inner product, M=32, efConstruction 64, efSearch 64): ~0.2-0.7 ms a
  query from 10k to 300k vectors; on 30k e5 vectors its top-10 overlaps exact search at 0.981
  (M=16: 0.957, costing 1 % hybrid recall@5 end to end). ``storage="sq8"`` keeps 1 byte per
  dimension instead of 4: on the demo shop it left hybrid recall unchanged (4-bit did not: top-10
  overlap 0.79), and it is what keeps a 100k-entry KB (300k vectors) at ~195 MB, not ~550 MB.

FAISS cannot delete from HNSW graphs, so removal is uniform for both types: a removed vector
becomes a *tombstone* filtered out at search time (the search over-fetches by the dead share and
retries if too few live hits remain), and the index is rebuilt from its own stored vectors once
tombstones exceed ``rebuild_fraction`` of it. An update is remove + add.

Vectors must be L2-normalised float32, so inner product is cosine similarity.

Not thread-safe for concurrent writes; concurrent searches are fine (FAISS releases the GIL).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

Storage = Literal["flat", "sq8", "fp16"]
_SQ_TYPES = {"sq8": "QT_8bit", "fp16": "QT_fp16"}
FORMAT = 1


class DenseIndex:
    """Cosine-similarity search over ``(id, vector)`` pairs.

    Args:
        dim: vector dimension.
        hnsw_threshold: live vectors from which an HNSW graph replaces exact search.
        hnsw_m: HNSW graph degree (memory: ~2·M·4 bytes per vector on the base layer).
        ef_construction / ef_search: HNSW build / query beam widths.
        storage: how HNSW stores vectors: ``flat`` (float32, i.e. ``IndexHNSWFlat``), ``fp16`` or
            ``sq8`` (``IndexHNSWSQ``). The exact index always stores float32.
        rebuild_fraction: share of tombstones that triggers a rebuild.

    Ids are non-negative ints, ideally dense (an array indexed by id is kept).
    """

    def __init__(
        self,
        dim: int,
        *,
        hnsw_threshold: int = 10_000,
        hnsw_m: int = 32,
        ef_construction: int = 64,
        ef_search: int = 64,
        storage: Storage = "flat",
        rebuild_fraction: float = 0.2,
    ) -> None:
        if storage not in ("flat", "sq8", "fp16"):
            raise ValueError(f"storage must be flat, sq8 or fp16, not {storage!r}")
        self.dim = int(dim)
        self.hnsw_threshold = int(hnsw_threshold)
        self.hnsw_m = int(hnsw_m)
        self.ef_construction = int(ef_construction)
        self.ef_search = int(ef_search)
        self.storage: Storage = storage
        self.rebuild_fraction = float(rebuild_fraction)
        self._index: Any = faiss.IndexFlatIP(self.dim)
        self._pos_id = np.zeros(0, dtype=np.int64)  # position in the faiss index -> id
        self._pos_alive = np.zeros(0, dtype=bool)
        self._pos_of = np.full(0, -1, dtype=np.int64)  # id -> position, -1 when absent
        self._n_dead = 0

    # ------------------------------------------------------------------ info
    @property
    def kind(self) -> str:
        """``"flat"`` (exact) or ``"hnsw"``."""
        return "hnsw" if isinstance(self._index, faiss.IndexHNSW) else "flat"

    @property
    def description(self) -> str:
        """Index type for manifests and logs, e.g. ``IndexHNSWFlat(M=32)`` or ``IndexFlatIP``."""
        if self.kind == "flat":
            return "IndexFlatIP"
        name = "IndexHNSWFlat" if self.storage == "flat" else f"IndexHNSWSQ({self.storage})"
        return f"{name}(M={self.hnsw_m})"

    def __len__(self) -> int:
        return int(self._index.ntotal) - self._n_dead

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, int | np.integer) and self._pos(int(doc_id)) >= 0

    def _pos(self, doc_id: int) -> int:
        return int(self._pos_of[doc_id]) if 0 <= doc_id < self._pos_of.size else -1

    # ------------------------------------------------------------------ writes
    def _check(self, vecs: np.ndarray, n: int) -> np.ndarray:
        arr = np.ascontiguousarray(vecs, dtype=np.float32).reshape(-1, self.dim) if n else np.zeros(
            (0, self.dim), np.float32)
        if arr.shape[0] != n:
            raise ValueError(f"{n} ids but {arr.shape[0]} vectors")
        return arr

    def _new_index(self, n: int, train: np.ndarray) -> Any:
        if n < self.hnsw_threshold:
            return faiss.IndexFlatIP(self.dim)
        if self.storage == "flat":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        else:
            qtype = getattr(faiss.ScalarQuantizer, _SQ_TYPES[self.storage])
            index = faiss.IndexHNSWSQ(self.dim, qtype, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.train(train)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def add(self, ids: Sequence[int] | np.ndarray, vecs: np.ndarray) -> None:
        """Add vectors under ``ids`` (an id already present is replaced)."""
        ids_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        arr = self._check(vecs, ids_arr.size)
        if ids_arr.size == 0:
            return
        if (ids_arr < 0).any():
            raise ValueError("ids must be non-negative")
        if np.unique(ids_arr).size != ids_arr.size:
            raise ValueError("duplicate ids in one add")
        self._tombstone(ids_arr)
        live = len(self)
        if self.kind == "flat" and live + ids_arr.size >= self.hnsw_threshold:
            # Crossing the threshold: rebuild once with everything, as an HNSW graph.
            self._rebuild(extra_ids=ids_arr, extra_vecs=arr)
            return
        start = int(self._index.ntotal)
        self._index.add(arr)
        self._append_positions(ids_arr, start)
        self._maybe_rebuild()

    def _append_positions(self, ids_arr: np.ndarray, start: int) -> None:
        end = start + ids_arr.size
        if end > self._pos_id.size:
            cap = max(end, 2 * self._pos_id.size, 64)
            self._pos_id = np.resize(self._pos_id, cap)
            self._pos_alive = np.concatenate([self._pos_alive, np.zeros(cap - self._pos_alive.size, bool)])
        self._pos_id[start:end] = ids_arr
        self._pos_alive[start:end] = True
        need = int(ids_arr.max()) + 1
        if need > self._pos_of.size:
            cap = max(need, 2 * self._pos_of.size, 64)
            self._pos_of = np.concatenate([self._pos_of, np.full(cap - self._pos_of.size, -1, np.int64)])
        self._pos_of[ids_arr] = np.arange(start, end)

    def update(self, ids: Sequence[int] | np.ndarray, vecs: np.ndarray) -> None:
        """Replace the vectors of ``ids`` (adds the ones not present)."""
        self.add(ids, vecs)

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Tombstone ``ids``; returns how many were present. Invisible to the next search."""
        removed = self._tombstone(ids)
        self._maybe_rebuild()
        return removed

    def _tombstone(self, ids: Sequence[int] | np.ndarray) -> int:
        removed = 0
        for doc_id in np.asarray(ids, dtype=np.int64).reshape(-1).tolist():
            pos = self._pos(doc_id)
            if pos >= 0:
                self._pos_alive[pos] = False
                self._pos_of[doc_id] = -1
                self._n_dead += 1
                removed += 1
        return removed

    def _maybe_rebuild(self) -> None:
        total = int(self._index.ntotal)
        if total and self._n_dead > self.rebuild_fraction * total:
            self._rebuild()

    def _rebuild(self, extra_ids: np.ndarray | None = None, extra_vecs: np.ndarray | None = None) -> None:
        """Rebuild from the live stored vectors (plus ``extra``): drops tombstones, picks the type."""
        total = int(self._index.ntotal)
        live_pos = np.flatnonzero(self._pos_alive[:total])
        ids = self._pos_id[live_pos]
        vecs = self._reconstruct(live_pos)
        if extra_ids is not None and extra_vecs is not None:
            ids = np.concatenate([ids, extra_ids])
            vecs = np.concatenate([vecs, extra_vecs])
        self.build(ids, vecs)

    def build(self, ids: Sequence[int] | np.ndarray, vecs: np.ndarray) -> None:
        """Replace the whole index with ``(ids, vecs)``; the type follows ``hnsw_threshold``."""
        ids_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        self.build_chunks(ids_arr.size, [(ids_arr, self._check(vecs, ids_arr.size))])

    def build_chunks(self, total: int, chunks: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        """Replace the whole index with ``total`` vectors arriving in ``(ids, vecs)`` chunks.

        Peak memory stays at one chunk of float32 vectors (plus the index) instead of all of
        them, which matters at 100k entries (~300k vectors, 460 MB as float32). A compressed
        storage is trained on the first chunk, so make it representative (a few thousand rows).

        Raises:
            ValueError: duplicate ids, or a chunk whose ids and vectors differ in length.
        """
        index: Any = None
        self._pos_id = np.zeros(0, dtype=np.int64)
        self._pos_alive = np.zeros(0, dtype=bool)
        self._pos_of = np.full(self._pos_of.size, -1, dtype=np.int64)
        self._n_dead = 0
        start = 0
        for ids, vecs in chunks:
            ids_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
            arr = self._check(vecs, ids_arr.size)
            if ids_arr.size == 0:
                continue
            if index is None:
                index = self._new_index(total, arr)
            if (ids_arr < 0).any():
                raise ValueError("ids must be non-negative")
            seen = ids_arr[ids_arr < self._pos_of.size]
            if np.unique(ids_arr).size != ids_arr.size or (self._pos_of[seen] >= 0).any():
                raise ValueError("duplicate ids")
            index.add(arr)
            self._append_positions(ids_arr, start)
            start += ids_arr.size
        self._index = index if index is not None else faiss.IndexFlatIP(self.dim)

    def _reconstruct(self, positions: np.ndarray) -> np.ndarray:
        if positions.size == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = self._index.reconstruct_batch(positions.astype(np.int64))
        return np.ascontiguousarray(out, dtype=np.float32).reshape(-1, self.dim)

    # ------------------------------------------------------------------ reads
    def vectors(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored vectors of ``ids`` (decoded if compressed). Raises ``KeyError`` for an unknown id."""
        ids_arr = np.asarray(ids, dtype=np.int64).reshape(-1)
        inside = (ids_arr >= 0) & (ids_arr < self._pos_of.size)
        pos = np.full(ids_arr.size, -1, dtype=np.int64)
        pos[inside] = self._pos_of[ids_arr[inside]]
        if (pos < 0).any():
            raise KeyError(f"unknown ids: {ids_arr[pos < 0][:5].tolist()}")
        return self._reconstruct(pos)

    def search(
        self, query: np.ndarray, k: int, *, allow: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` live vectors most similar to ``query``.

        Args:
            query: one L2-normalised vector of shape ``(dim,)`` or ``(1, dim)``.
            k: how many to return.
            allow: optional boolean mask indexed by id; only ids with ``allow[id]`` are returned
                (ids beyond its length are excluded).

        Returns:
            ``(ids, scores)``: int64 ids and float32 cosine similarities, best first, at most ``k``.
        """
        q = np.ascontiguousarray(query, dtype=np.float32).reshape(1, self.dim)
        total = int(self._index.ntotal)
        if k <= 0 or total == 0 or len(self) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        if allow is not None:
            return self._search_allowed(q, k, allow)
        live = len(self)
        k = min(k, live)
        if self.kind == "flat":
            # Exact search: fetching k + dead always leaves k live results.
            fetch = min(total, k + self._n_dead)
        else:
            fetch = min(total, math.ceil(k * total / live) + 8)
        while True:
            scores, pos = self._raw_search(q, fetch)
            ids, sc = self._live_hits(pos, scores)
            if ids.size >= k or fetch >= total:
                return ids[:k], sc[:k]
            fetch = min(total, fetch * 4)

    def _raw_search(self, q: np.ndarray, fetch: int, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
        if self.kind == "hnsw":
            if params is None:
                params = faiss.SearchParametersHNSW()
            params.efSearch = max(self.ef_search, fetch)
        if params is None:
            scores, pos = self._index.search(q, fetch)
        else:
            scores, pos = self._index.search(q, fetch, params=params)
        return scores[0], pos[0]

    def _live_hits(self, pos: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ok = pos >= 0
        pos, scores = pos[ok], scores[ok]
        alive = self._pos_alive[pos]
        return self._pos_id[pos[alive]], scores[alive].astype(np.float32)

    def _search_allowed(self, q: np.ndarray, k: int, allow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        total = int(self._index.ntotal)
        ids_at = self._pos_id[:total]
        in_range = ids_at < allow.size
        ok = self._pos_alive[:total] & in_range
        ok[in_range] &= allow[ids_at[in_range]]
        positions = np.flatnonzero(ok)
        if positions.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        k = min(k, positions.size)
        if self.kind == "flat" or positions.size <= 4096:
            # Few candidates (a narrow category): exact scoring of just those beats a filtered
            # graph walk, which degrades when most nodes are excluded.
            scores = self._reconstruct(positions) @ q[0]
            top = np.argpartition(-scores, k - 1)[:k] if positions.size > k else np.arange(positions.size)
            top = top[np.argsort(-scores[top], kind="stable")]
            return ids_at[positions[top]], scores[top].astype(np.float32)
        bitmap = np.packbits(ok, bitorder="little")
        sel = faiss.IDSelectorBitmap(total, faiss.swig_ptr(bitmap))
        params = faiss.SearchParametersHNSW()
        params.sel = sel
        fetch = min(total, k + 8)
        scores, pos = self._raw_search(q, fetch, params)
        ids, sc = self._live_hits(pos, scores)
        return ids[:k], sc[:k]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path, name: str = "dense") -> None:
        """Write ``<name>.faiss`` (the FAISS index), ``<name>.npz`` (id map) and ``<name>.json``."""
        directory.mkdir(parents=True, exist_ok=True)
        total = int(self._index.ntotal)
        faiss.write_index(self._index, str(directory / f"{name}.faiss"))
        np.savez(directory / f"{name}.npz", pos_id=self._pos_id[:total], pos_alive=self._pos_alive[:total])
        meta = {
            "format": FORMAT, "dim": self.dim, "kind": self.kind, "description": self.description,
            "hnsw_threshold": self.hnsw_threshold, "hnsw_m": self.hnsw_m,
            "ef_construction": self.ef_construction, "ef_search": self.ef_search, "storage": self.storage,
            "rebuild_fraction": self.rebuild_fraction,
        }
        (directory / f"{name}.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, name: str = "dense") -> DenseIndex:
        """Read an index written by :meth:`save`. Raises ``FileNotFoundError`` / ``ValueError``."""
        meta = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"dense index format {meta.get('format')} is not {FORMAT}")
        out = cls(
            meta["dim"], hnsw_threshold=meta["hnsw_threshold"], hnsw_m=meta["hnsw_m"],
            ef_construction=meta["ef_construction"], ef_search=meta["ef_search"], storage=meta["storage"],
            rebuild_fraction=meta["rebuild_fraction"],
        )
        index = faiss.read_index(str(directory / f"{name}.faiss"))
        if index.d != out.dim:
            raise ValueError(f"faiss index has dim {index.d}, manifest says {out.dim}")
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = out.ef_search
        with np.load(directory / f"{name}.npz") as z:
            pos_id, pos_alive = z["pos_id"], z["pos_alive"]
        if pos_id.size != index.ntotal:
            raise ValueError(f"id map has {pos_id.size} rows, faiss index {index.ntotal}")
        out._index = index
        if pos_id.size:
            out._append_positions(pos_id, 0)
            out._pos_alive[: pos_id.size] = pos_alive
            dead_ids = pos_id[~pos_alive]
            # A dead position's id may have been re-added later at another position; keep that one.
            live_ids = pos_id[pos_alive]
            out._pos_of[:] = -1
            out._pos_of[live_ids] = np.flatnonzero(pos_alive)
            out._n_dead = int(dead_ids.size)
        return out
