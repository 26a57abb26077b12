"""Okapi BM25 over token lists, with incremental add/remove and millisecond queries at 300k documents.

Score of document d for query q (unique, non-stop-word query terms t)::

    bm25(q, d) = Σ_t idf(t) · tf(t,d)·(k1+1) / (tf(t,d) + k1·(1 − b + b·|d|/avgdl))
    idf(t)     = ln(1 + (N − df(t) + 0.5) / (df(t) + 0.5))          (Lucene's always-positive idf)

How it stays fast and incremental:

- The *main segment* is a scipy CSC matrix (documents × terms) holding the tf part of the formula,
  precomputed and quantised to one byte (it lies in (0, k1+1); 255 steps put every weight within
  0.2 % of k1+1 of its exact value, far below what changes a ranking, and save 3 bytes a posting:
  ~24 MB at 300k documents). A query gathers the few term columns it needs and sums them with
  ``np.bincount``: ~1 ms at 300k short documents, independent of the vocabulary size.
- ``idf`` is computed at query time from live document frequencies, so adds and removes change
  it immediately. Only the tf part depends on ``avgdl``, which moves slowly; it is refreshed
  whenever the segment is rebuilt.
- New documents go to a small *delta buffer* scored in plain Python; removed documents become
  dead rows masked out at query time. When the buffer or the dead rows grow past a limit, the
  segment is rebuilt from the stored term counts ("folded") — tens of milliseconds at 300k
  documents, no re-tokenising, and never on the query path.

Stop words (particles such as 的/了/吗/呢, pronouns, politeness) and punctuation-only tokens are
dropped from documents and queries, so a question full of 吗 and ？ does not match every other
question full of 吗 and ？.

Not thread-safe for concurrent writes; readers may run concurrently with each other. The
retriever serialises writes against reads.
"""

from __future__ import annotations

import json
import math
import re
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import sparse

# Function words that carry no topic: particles, pronouns, politeness, fillers. Negations
# (不/没), question words (怎么/什么/多少) and verbs like 能/退 are kept on purpose: "充不进电"
# and "能退吗" need them, and idf already makes the common ones cheap.
DEFAULT_STOPWORDS: frozenset[str] = frozenset(
    """
    的 地 得 了 着 过 吗 嘛 么 呢 啊 吧 呀 哦 噢 喔 哈 哈哈 嗯 呗 啦 哇 诶 哎 唉 吖 咯 哟 嘞 滴 呐
    我 你 您 他 她 它 我们 你们 他们 咱 咱们 俺 人家 自己
    亲 亲亲 亲们 请问 请 麻烦 谢谢 你好 您好 在吗 在不在 一下 下 这 那 这个 那个 这样 那样 这么 那么
    就 都 也 还 又 再 才 和 与 及 跟 同 或 或者 是 个 一个 些 一些 把 被 让 给 对 于 之 其
    吗? 呢? 啊? 的话 然后 就是 还是 但是 可是 而且 所以 因为 如果 已经 现在 这边 那边
    """.split()
)

_PUNCT_ONLY = re.compile(r"^[\W_]+$", re.UNICODE)

# Levels of the one-byte tf weight (see the module doc); 0 is never used for a present term.
_LEVELS = 255


def is_indexable(token: str, stopwords: frozenset[str] = DEFAULT_STOPWORDS) -> bool:
    """True when ``token`` should take part in BM25 (not blank, punctuation or a stop word)."""
    return bool(token) and not token.isspace() and token not in stopwords and not _PUNCT_ONLY.match(token)


@dataclass(frozen=True)
class BM25Result:
    """Scores of one query: only documents with a positive score are listed (in no order).

    Attributes:
        ids: document ids (int64).
        scores: BM25 scores (float32), same order as ``ids``.
        upper: an upper bound of any document's score for this query, Σ idf(t)·(k1+1); divide by it
            to compare scores across queries.
        terms: the query terms that were scored (stop words and unknown words removed).

    :meth:`coverage` is computed on demand for the few documents that need it; the result is
    valid until the index changes.
    """

    ids: np.ndarray
    scores: np.ndarray
    upper: float
    terms: tuple[str, ...]
    _index: BM25Index | None = field(default=None, repr=False, compare=False)
    _term_ids: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _idfs: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def top(self, k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(id, score)`` pairs, best first (ties broken by id for determinism)."""
        if k <= 0 or self.ids.size == 0:
            return []
        if self.ids.size > k:
            part = np.argpartition(-self.scores, k - 1)[:k]
        else:
            part = np.arange(self.ids.size)
        order = part[np.lexsort((self.ids[part], -self.scores[part]))]
        return [(int(self.ids[i]), float(self.scores[i])) for i in order]

    def coverage(self, ids: np.ndarray) -> np.ndarray:
        """Idf-weighted share (0..1) of the query's terms present in each of the documents ``ids``
        (0 for unknown ids). Costs O(len(ids) · terms · log postings), so ask only for candidates."""
        if self._index is None or not self._term_ids:
            return np.zeros(np.asarray(ids).size, dtype=np.float32)
        return self._index.coverage(ids, self._term_ids, self._idfs)


_EMPTY = BM25Result(np.zeros(0, np.int64), np.zeros(0, np.float32), 0.0, ())


class BM25Index:
    """An incremental Okapi BM25 index over pre-tokenised documents.

    Args:
        k1, b: the usual BM25 parameters. Short chat/KB texts want a mild length normalisation;
            the defaults (1.2, 0.75) are the textbook ones and measured fine on KB questions.
        stopwords: tokens ignored in documents and queries.
        delta_max: documents buffered before the matrix is rebuilt; also the number of dead
            rows tolerated before they are compacted away.

    Document ids are non-negative ints, ideally dense (an array indexed by id is kept).
    """

    def __init__(
        self,
        *,
        k1: float = 1.2,
        b: float = 0.75,
        stopwords: Iterable[str] = DEFAULT_STOPWORDS,
        delta_max: int = 1024,
    ) -> None:
        self.k1 = float(k1)
        self.b = float(b)
        self.stopwords = frozenset(stopwords)
        self.delta_max = max(1, int(delta_max))
        self._vocab: dict[str, int] = {}
        self._terms: list[str] = []
        self._df = np.zeros(0, dtype=np.int64)
        # Rows: main segment rows first, then delta rows. Arrays grow by doubling.
        self._row_id = np.zeros(0, dtype=np.int64)
        self._row_alive = np.zeros(0, dtype=bool)
        self._row_len = np.zeros(0, dtype=np.float32)
        self._n_rows = 0
        self._row_of = np.full(0, -1, dtype=np.int64)  # id -> row, -1 when absent
        self._n_live = 0
        self._total_len = 0.0
        self._dead_in_main = 0
        # Main segment: the tf part of BM25 (CSC: one column per term, rows = main rows), and the
        # raw term counts aligned with its nonzeros (uint8; a term repeated >255 times in one
        # short KB text does not happen, and is clipped). No row-major copy is kept: it would
        # double the memory (~65 MB at 300k documents) for the rare removal, which scans instead.
        self._n_main = 0
        self._weights = sparse.csc_matrix((0, 0), dtype=np.uint8)
        self._tf = np.zeros(0, dtype=np.uint8)
        # Delta buffer: per-row term counts and postings term -> [(row, tf)].
        self._delta_counts: list[dict[int, int]] = []
        self._delta_postings: dict[int, list[tuple[int, int]]] = {}

    # ------------------------------------------------------------------ size and membership
    def __len__(self) -> int:
        return self._n_live

    def __contains__(self, doc_id: object) -> bool:
        return isinstance(doc_id, int | np.integer) and self._row(int(doc_id)) >= 0

    @property
    def vocabulary_size(self) -> int:
        return len(self._terms)

    @property
    def avgdl(self) -> float:
        return self._total_len / self._n_live if self._n_live else 0.0

    def _row(self, doc_id: int) -> int:
        if 0 <= doc_id < self._row_of.size:
            return int(self._row_of[doc_id])
        return -1

    # ------------------------------------------------------------------ writes
    def terms_of(self, tokens: Sequence[str]) -> list[str]:
        """The tokens that are indexed (stop words and punctuation removed), in order."""
        vocab, stop = self._vocab, self.stopwords
        # Every vocabulary term passed the check once; skip the regex for them (build-time hot path).
        return [t for t in tokens if t in vocab or is_indexable(t, stop)]

    def add(self, doc_id: int, tokens: Sequence[str]) -> None:
        """Add (or replace) document ``doc_id``. Visible to the next query."""
        self.add_many([(doc_id, tokens)])

    def add_many(self, docs: Iterable[tuple[int, Sequence[str]]]) -> None:
        """Add (or replace) many documents. ``docs`` may be a lazy iterable: each token list is
        turned into term counts in compact arrays at once, so a 300k-document build never holds
        all token lists (or one dict per document) in memory. A batch larger than the delta
        buffer is merged straight into a rebuilt matrix.

        Raises:
            ValueError: a negative id, or the same id twice in one batch.
        """
        ids = array("q")
        lengths = array("f")
        indptr = array("q", [0])
        indices = array("i")
        data = array("f")
        batch: set[int] = set()
        for doc_id, tokens in docs:
            if doc_id < 0:
                raise ValueError(f"document ids must be non-negative, got {doc_id}")
            if doc_id in batch:
                raise ValueError(f"document id {doc_id} appears twice in one batch")
            batch.add(doc_id)
            if self._row(doc_id) >= 0:
                self._remove(doc_id)
            total = 0
            for term, tf in Counter(self.terms_of(tokens)).items():
                tid = self._vocab.get(term)
                if tid is None:
                    tid = self._vocab[term] = len(self._terms)
                    self._terms.append(term)
                indices.append(tid)
                data.append(tf)
                total += tf
            indptr.append(len(indices))
            ids.append(doc_id)
            lengths.append(total)
        n = len(ids)
        if n and n + len(self._delta_counts) <= self.delta_max:
            for r in range(n):
                span = range(indptr[r], indptr[r + 1])
                self._append_delta_row(ids[r], {indices[j]: int(data[j]) for j in span})
        elif n:
            block = sparse.csr_matrix(
                (np.frombuffer(data, dtype=np.float32), np.frombuffer(indices, dtype=np.int32),
                 np.frombuffer(indptr, dtype=np.int64)),
                shape=(n, len(self._terms)),
            )
            self._set_main(*self._merged(block, np.frombuffer(ids, dtype=np.int64),
                                         np.frombuffer(lengths, dtype=np.float32)))
            return
        if self._dead_in_main > self.delta_max:
            self.fold()

    def _grow(self, rows: int, ids: int, terms: int) -> None:
        if rows > self._row_id.size:
            cap = max(rows, 2 * self._row_id.size, 64)
            self._row_id = np.resize(self._row_id, cap)
            self._row_alive = np.concatenate([self._row_alive, np.zeros(cap - self._row_alive.size, bool)])
            self._row_len = np.resize(self._row_len, cap)
        if ids > self._row_of.size:
            cap = max(ids, 2 * self._row_of.size, 64)
            self._row_of = np.concatenate([self._row_of, np.full(cap - self._row_of.size, -1, np.int64)])
        if terms > self._df.size:
            cap = max(terms, 2 * self._df.size, 256)
            self._df = np.concatenate([self._df, np.zeros(cap - self._df.size, np.int64)])

    def _append_delta_row(self, doc_id: int, counts: dict[int, int]) -> None:
        row = self._n_rows
        self._grow(row + 1, doc_id + 1, len(self._terms))
        self._n_rows += 1
        length = float(sum(counts.values()))
        self._row_id[row] = doc_id
        self._row_alive[row] = True
        self._row_len[row] = length
        self._row_of[doc_id] = row
        self._delta_counts.append(counts)
        for tid, tf in counts.items():
            self._delta_postings.setdefault(tid, []).append((row, tf))
            self._df[tid] += 1
        self._n_live += 1
        self._total_len += length

    def remove(self, doc_id: int) -> bool:
        """Remove a document; returns False if it was not there. Invisible to the next query."""
        removed = self._remove(doc_id)
        if removed and self._dead_in_main > self.delta_max:
            self.fold()
        return removed

    def _remove(self, doc_id: int) -> bool:
        row = self._row(doc_id)
        if row < 0:
            return False
        if row < self._n_main:
            # The row's terms: its nonzeros in the CSC, found by a scan (~5 ms at 8M nonzeros;
            # removals come from KB edits, not from the query path).
            positions = np.flatnonzero(self._weights.indices == row)
            tids = np.searchsorted(self._weights.indptr, positions, side="right") - 1
            self._dead_in_main += 1
        else:
            counts = self._delta_counts[row - self._n_main]
            tids = np.fromiter(counts, dtype=np.int64, count=len(counts))
            for tid in counts:
                plist = self._delta_postings.get(tid)
                if plist:
                    self._delta_postings[tid] = [p for p in plist if p[0] != row]
            counts.clear()
        self._df[tids] -= 1
        self._row_alive[row] = False
        self._row_of[doc_id] = -1
        self._n_live -= 1
        self._total_len -= float(self._row_len[row])
        return True

    def fold(self) -> None:
        """Rebuild the main matrix from stored counts: absorbs the delta, drops dead rows,
        refreshes the tf weights with the current ``avgdl``. Called automatically."""
        self._set_main(*self._merged())

    def _merged(
        self, extra: sparse.csr_matrix | None = None, extra_ids: np.ndarray | None = None,
        extra_lengths: np.ndarray | None = None,
    ) -> tuple[sparse.csr_matrix, np.ndarray, np.ndarray]:
        """Counts (CSR), ids and lengths of every live document — main, delta and ``extra`` rows —
        without changing anything."""
        live_main = np.flatnonzero(self._row_alive[: self._n_main])
        n_terms = len(self._terms)
        parts: list[sparse.csr_matrix] = []
        if self._n_main:
            w = self._weights
            main = sparse.csc_matrix((self._tf.astype(np.float32), w.indices, w.indptr), shape=w.shape).tocsr()
            main = main[live_main]
            main.resize((main.shape[0], n_terms))  # new terms arrived since the last fold
            parts.append(main)
        delta_rows = [
            (self._n_main + i, c) for i, c in enumerate(self._delta_counts) if self._row_alive[self._n_main + i]
        ]
        if delta_rows:
            indptr = np.zeros(len(delta_rows) + 1, dtype=np.int64)
            indptr[1:] = np.cumsum([len(c) for _, c in delta_rows])
            indices = np.fromiter((t for _, c in delta_rows for t in c), dtype=np.int32, count=int(indptr[-1]))
            data = np.fromiter((v for _, c in delta_rows for v in c.values()), dtype=np.float32,
                               count=int(indptr[-1]))
            parts.append(sparse.csr_matrix((data, indices, indptr), shape=(len(delta_rows), n_terms)))
        keep = np.concatenate([live_main, np.array([r for r, _ in delta_rows], dtype=np.int64)])
        ids, lengths = self._row_id[keep], self._row_len[keep]
        if extra is not None and extra_ids is not None and extra_lengths is not None:
            extra.resize((extra.shape[0], n_terms))
            parts.append(extra)
            ids = np.concatenate([ids, extra_ids])
            lengths = np.concatenate([lengths, extra_lengths])
        counts = (
            sparse.vstack([p.astype(np.float32) for p in parts], format="csr")
            if len(parts) > 1
            else parts[0].astype(np.float32).tocsr() if parts
            else sparse.csr_matrix((0, n_terms), dtype=np.float32)
        )
        counts.resize((counts.shape[0], n_terms))
        return counts, ids.copy(), lengths.copy()

    def _set_main(self, counts: sparse.spmatrix, ids: np.ndarray, lengths: np.ndarray) -> None:
        """Install ``counts`` (one row per live document, any sparse format) as the whole index."""
        n = counts.shape[0]
        csc = sparse.csc_matrix(counts, dtype=np.float32)
        csc.sum_duplicates()
        csc.sort_indices()
        self._n_main = self._n_rows = n
        self._row_id = ids.astype(np.int64)
        self._row_alive = np.ones(n, dtype=bool)
        self._row_len = lengths.astype(np.float32)
        max_id = int(ids.max()) + 1 if n else 0
        self._row_of = np.full(max(max_id, self._row_of.size), -1, dtype=np.int64)
        self._row_of[ids] = np.arange(n)
        self._n_live = n
        self._total_len = float(lengths.sum())
        self._dead_in_main = 0
        self._delta_counts = []
        self._delta_postings = {}
        n_terms = len(self._terms)
        self._df = np.zeros(max(n_terms, 256), dtype=np.int64)
        self._df[: csc.shape[1]] = np.diff(csc.indptr)  # documents per term
        # tf part of BM25 with today's avgdl; idf is applied per query.
        avgdl = self.avgdl or 1.0
        row_norm = (self.k1 * (1.0 - self.b + self.b * self._row_len / avgdl)).astype(np.float32)
        tf = csc.data
        weight = tf * (self.k1 + 1.0) / (tf + row_norm[csc.indices])
        self._tf = np.minimum(tf, 255).astype(np.uint8)
        levels = np.clip(np.rint(weight * (_LEVELS / (self.k1 + 1.0))), 1, _LEVELS).astype(np.uint8)
        self._weights = sparse.csc_matrix((levels, csc.indices, csc.indptr), shape=csc.shape)

    # ------------------------------------------------------------------ queries
    def idf(self, term: str) -> float:
        """Current idf of ``term`` (0 for an unknown term)."""
        tid = self._vocab.get(term)
        return self._idf(tid) if tid is not None else 0.0

    def _idf(self, tid: int) -> float:
        df = float(self._df[tid])
        if df <= 0:
            return 0.0
        return math.log(1.0 + (self._n_live - df + 0.5) / (df + 0.5))

    def score(self, tokens: Sequence[str]) -> BM25Result:
        """Score every document against the query ``tokens``.

        Returns a :class:`BM25Result` listing only documents with a positive score.
        """
        terms: list[tuple[str, int, float]] = []
        for term in dict.fromkeys(self.terms_of(tokens)):
            tid = self._vocab.get(term)
            if tid is not None:
                idf = self._idf(tid)
                if idf > 0:
                    terms.append((term, tid, idf))
        if not terms or not self._n_live:
            return _EMPTY
        upper = sum(idf for _, _, idf in terms) * (self.k1 + 1.0)
        score = np.zeros(self._n_rows, dtype=np.float64)
        w = self._weights
        n_cols = w.shape[1]
        rows_parts: list[np.ndarray] = []
        score_parts: list[np.ndarray] = []
        step = (self.k1 + 1.0) / _LEVELS
        for _, tid, idf in terms:
            if tid < n_cols:
                start, end = w.indptr[tid], w.indptr[tid + 1]
                if end > start:
                    rows_parts.append(w.indices[start:end])
                    score_parts.append(w.data[start:end] * np.float32(idf * step))
        if rows_parts:
            # One pass over the query terms' postings: a weighted histogram over main rows.
            rows = np.concatenate(rows_parts) if len(rows_parts) > 1 else rows_parts[0]
            weights = np.concatenate(score_parts) if len(score_parts) > 1 else score_parts[0]
            score[: self._n_main] = np.bincount(rows, weights, minlength=self._n_main)
        if self._delta_postings:
            avgdl = self.avgdl or 1.0
            k1, b = self.k1, self.b
            for _, tid, idf in terms:
                for row, tf in self._delta_postings.get(tid, ()):
                    norm = k1 * (1.0 - b + b * float(self._row_len[row]) / avgdl)
                    score[row] += idf * tf * (k1 + 1.0) / (tf + norm)
        if self._n_live < self._n_rows:
            score[~self._row_alive[: self._n_rows]] = 0.0
        hit = np.flatnonzero(score)
        return BM25Result(
            ids=self._row_id[hit],
            scores=score[hit].astype(np.float32),
            upper=float(upper),
            terms=tuple(t for t, _, _ in terms),
            _index=self,
            _term_ids=tuple(tid for _, tid, _ in terms),
            _idfs=tuple(idf for _, _, idf in terms),
        )

    def coverage(self, ids: np.ndarray, term_ids: Sequence[int], idfs: Sequence[float]) -> np.ndarray:
        """Idf-weighted share (0..1) of the terms ``term_ids`` (with ``idfs``) present in each of the
        documents ``ids`` (0 for unknown ids); see :meth:`BM25Result.coverage`."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.zeros(ids.size, dtype=np.float64)
        if ids.size == 0 or not term_ids:
            return out.astype(np.float32)
        inside = (ids >= 0) & (ids < self._row_of.size)
        rows = np.full(ids.size, -1, dtype=np.int64)
        rows[inside] = self._row_of[ids[inside]]
        w = self._weights
        main = (rows >= 0) & (rows < self._n_main)
        main_rows = rows[main]
        for tid, idf in zip(term_ids, idfs, strict=True):
            if tid < w.shape[1] and main_rows.size:
                col = w.indices[w.indptr[tid] : w.indptr[tid + 1]]  # sorted rows
                if col.size:
                    pos = np.minimum(np.searchsorted(col, main_rows), col.size - 1)
                    out[main] += np.where(col[pos] == main_rows, idf, 0.0)
            for row, _ in self._delta_postings.get(tid, ()):
                out[rows == row] += idf
        return np.minimum(out / sum(idfs), 1.0).astype(np.float32)

    def search(self, tokens: Sequence[str], k: int = 10) -> list[tuple[int, float]]:
        """The ``k`` best ``(id, score)`` pairs for ``tokens``, best first."""
        return self.score(tokens).top(k)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: Path, name: str = "bm25") -> None:
        """Write the index to ``<directory>/<name>.npz`` and ``<name>.json`` (vocabulary, params).

        Read-only: safe while other threads search."""
        directory.mkdir(parents=True, exist_ok=True)
        counts, ids, lengths = self._merged()
        c = counts.tocsc()
        c.sort_indices()
        np.savez(directory / f"{name}.npz", tf=np.minimum(c.data, 255).astype(np.uint8), indices=c.indices,
                 indptr=c.indptr, ids=ids, lengths=lengths)
        meta = {"k1": self.k1, "b": self.b, "delta_max": self.delta_max,
                "stopwords": sorted(self.stopwords), "terms": self._terms}
        (directory / f"{name}.json").write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, name: str = "bm25") -> BM25Index:
        """Read an index written by :meth:`save`. Raises ``FileNotFoundError`` / ``ValueError``."""
        meta = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
        index = cls(k1=meta["k1"], b=meta["b"], stopwords=meta["stopwords"], delta_max=meta["delta_max"])
        index._terms = list(meta["terms"])
        index._vocab = {t: i for i, t in enumerate(index._terms)}
        with np.load(directory / f"{name}.npz") as z:
            n_terms = len(index._terms)
            counts = sparse.csc_matrix(
                (z["tf"].astype(np.float32), z["indices"], z["indptr"]), shape=(z["ids"].size, n_terms)
            )
            index._set_main(counts, z["ids"], z["lengths"])
        return index
