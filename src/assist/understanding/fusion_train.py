"""Fit the retrieval fusion combiner and the "no good answer" threshold from a paraphrase set.

The paraphrase file is JSONL, one customer-style query per line::

    {"query": "闺女屁股上一大片红", "kb_id": "mb-diaper-rash", "kind": "hard"}
    {"query": "你们有实体店吗", "kb_id": null, "kind": "none"}       # no entry answers it

Queries are split into a *calibration* and a *test* half by KB entry (a hash of ``kb_id``, or of
the query for ``null``), deterministically, so every paraphrase of one entry lands in the same
half and the test half measures entries whose phrasings the combiner never saw.

On the calibration half: candidates and features come from :meth:`HybridRetriever.candidates`
(the exact code path used in serving); a logistic regression (standardised features, L2,
C=1) predicts "this candidate is the gold entry"; its coefficients are mapped back to raw feature
units so serving is one dot product. The threshold on the top score is the one that best
separates "top hit is right" from "top hit is wrong or nothing answers".

On the test half: recall@1/@5 and MRR for BM25 alone, dense alone and the fitted hybrid, per
``kind`` too, plus how well ``answered`` works.

Entry point: :func:`train_fusion`, called by ``assist train`` and by the benchmark.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from assist.errors import DataFileError, RecordProblem
from assist.shop.models import KbEntry
from assist.understanding.encoder import Encoder
from assist.understanding.normalise import normalise as default_normalise
from assist.understanding.retrieve import (
    FEATURES,
    Candidates,
    FusionParams,
    HybridRetriever,
    load_fusion,
    rank_metrics,
    save_fusion,
)


@dataclass(frozen=True)
class Paraphrase:
    """One labelled query: ``kb_id`` is the entry that answers it, or None if none does."""

    query: str
    kb_id: str | None
    kind: str
    line: int = 0


def load_paraphrases(path: Path, known_ids: Iterable[str] | None = None) -> list[Paraphrase]:
    """Read and validate a paraphrase JSONL file.

    Args:
        path: the file.
        known_ids: if given, every non-null ``kb_id`` must be one of them (published entries).

    Raises:
        DataFileError: listing file, line and field of every bad record.
    """
    known = set(known_ids) if known_ids is not None else None
    out: list[Paraphrase] = []
    problems: list[RecordProblem] = []
    if not path.exists():
        raise DataFileError([RecordProblem(str(path), 0, "<file>", "file not found")])
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except json.JSONDecodeError as exc:
            problems.append(RecordProblem(str(path), lineno, "<json>", exc.msg))
            continue
        if not isinstance(rec, dict):
            problems.append(RecordProblem(str(path), lineno, "<record>", "record must be an object"))
            continue
        query, kb_id, kind = rec.get("query"), rec.get("kb_id"), rec.get("kind", "")
        if not isinstance(query, str) or not query.strip():
            problems.append(RecordProblem(str(path), lineno, "query", "must be a non-empty string"))
            continue
        if kb_id is not None and not isinstance(kb_id, str):
            problems.append(RecordProblem(str(path), lineno, "kb_id", "must be a string or null"))
            continue
        if known is not None and kb_id is not None and kb_id not in known:
            problems.append(RecordProblem(str(path), lineno, "kb_id", f"{kb_id!r} is not a published KB entry"))
            continue
        out.append(Paraphrase(query=query, kb_id=kb_id, kind=str(kind or ""), line=lineno))
    if problems:
        raise DataFileError(problems)
    return out


def split_of(p: Paraphrase) -> str:
    """``"calibration"`` or ``"test"``: a stable hash of the KB entry (or of the query if none)."""
    key = p.kb_id if p.kb_id is not None else f"none:{p.query}"
    return "calibration" if hashlib.sha256(key.encode()).digest()[0] % 2 == 0 else "test"


@dataclass
class _Prepared:
    items: list[Paraphrase]
    norm: list[str]
    tokens: list[list[str]]
    vecs: np.ndarray
    cands: list[Candidates]


def _prepare(
    retriever: HybridRetriever, items: Sequence[Paraphrase], normalise: Callable[[str], str]
) -> _Prepared:
    norm = [normalise(p.query) for p in items]
    tokens = [retriever.tokenise(t) for t in norm]
    vecs = retriever.encoder.encode_queries(norm) if norm else np.zeros((0, retriever.encoder.dim), np.float32)
    cands = [retriever.candidates(q, t, v) for q, t, v in zip(norm, tokens, vecs, strict=True)]
    return _Prepared(list(items), norm, tokens, vecs, cands)


# Features whose direction is known: a code match can only be evidence *for* an entry, a code
# about something else only *against* it. A small calibration set with few code queries can give
# them the wrong sign by chance; such a feature is dropped and the model refitted (a monotonic
# constraint, the simple way).
_SIGNS = {"code_match": 1.0, "code_miss": -1.0, "coverage": 1.0, "dense_margin": 1.0}


def fit_combiner(
    cands: Sequence[Candidates], gold: Sequence[str | None], *, c: float = 1.0,
    features: Sequence[str] = FEATURES,
) -> tuple[tuple[str, ...], tuple[float, ...], float]:
    """Logistic regression of "candidate is gold" on ``features``.

    Returns ``(features, weights, bias)`` with weights in raw feature units; ``features`` may be
    shorter than asked when a sign-constrained feature came out with the wrong sign.

    Raises:
        ValueError: no positive example (no gold entry among any query's candidates).
    """
    feats = list(features)
    while True:
        weights, bias = _fit(cands, gold, c=c, features=feats)
        wrong = [f for f, w in zip(feats, weights, strict=True) if f in _SIGNS and w * _SIGNS[f] < 0]
        if not wrong:
            return tuple(feats), weights, bias
        feats.remove(wrong[0])


def _fit(
    cands: Sequence[Candidates], gold: Sequence[str | None], *, c: float, features: Sequence[str]
) -> tuple[tuple[float, ...], float]:
    from sklearn.linear_model import LogisticRegression

    cols = [FEATURES.index(f) for f in features]
    xs, ys = [], []
    for cand, g in zip(cands, gold, strict=True):
        if not cand.kb_ids:
            continue
        xs.append(cand.features[:, cols])
        ys.append(np.array([kb == g for kb in cand.kb_ids], dtype=np.int64))
    if not xs:
        raise ValueError("no candidates to fit on")
    x = np.vstack(xs)
    y = np.concatenate(ys)
    if y.sum() == 0 or y.sum() == y.size:
        raise ValueError("need both positive and negative candidates to fit the combiner")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0  # a constant feature (e.g. no codes in the set) gets weight 0 anyway
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((x - mean) / scale, y)
    w_std = model.coef_[0]
    weights = w_std / scale
    bias = float(model.intercept_[0] - np.sum(w_std * mean / scale))
    return tuple(round(float(w), 5) for w in weights), round(bias, 5)


def choose_threshold(top_scores: Sequence[float], correct: Sequence[bool]) -> float:
    """Top-score threshold that best separates right answers from wrong/none (max accuracy).

    Ties go to the higher threshold: an unneeded "no good answer" costs the agent a search,
    a wrong answer shown as good costs the customer.
    """
    s = np.asarray(top_scores, dtype=np.float64)
    ok = np.asarray(correct, dtype=bool)
    if s.size == 0:
        return 0.5
    cuts = np.unique(np.concatenate([[0.0, 1.0], s]))
    best_t, best_acc = 0.5, -1.0
    for i, t in enumerate(cuts):
        # Put the threshold halfway to the next lower score so it generalises a little.
        lower = cuts[i - 1] if i else 0.0
        thr = (t + lower) / 2 if i else 0.0
        acc = float(np.mean((s >= thr) == ok))
        if acc >= best_acc:
            best_acc, best_t = acc, thr
    return round(float(best_t), 4)


def _hybrid_rankings(retriever: HybridRetriever, prep: _Prepared, fusion: FusionParams) -> tuple[
        list[list[str]], list[float]]:
    ranked, tops = [], []
    for cand in prep.cands:
        scores = retriever.score_candidates(cand, fusion)
        order = np.lexsort((np.array(cand.kb_ids), -scores)) if cand.kb_ids else np.zeros(0, np.int64)
        ranked.append([cand.kb_ids[i] for i in order[:10]])
        tops.append(float(scores[order[0]]) if order.size else 0.0)
    return ranked, tops


def _evaluate(retriever: HybridRetriever, prep: _Prepared, fusion: FusionParams) -> dict[str, Any]:
    """Ranking metrics for BM25 alone, dense alone and the hybrid, overall and per kind,
    plus the quality of the ``answered`` decision."""
    hybrid, tops = _hybrid_rankings(retriever, prep, fusion)
    dense = [[kb for kb, _ in retriever.search_dense(v, 10)] for v in prep.vecs]
    bm25 = [[kb for kb, _ in retriever.search_bm25(t, 10)] for t in prep.tokens]
    answerable = [i for i, p in enumerate(prep.items) if p.kb_id is not None]

    def block(idx: list[int]) -> dict[str, Any]:
        gold = [prep.items[i].kb_id or "" for i in idx]
        return {
            "bm25": rank_metrics([bm25[i] for i in idx], gold),
            "dense": rank_metrics([dense[i] for i in idx], gold),
            "hybrid": rank_metrics([hybrid[i] for i in idx], gold),
        }

    out: dict[str, Any] = {"n_queries": len(prep.items), "n_answerable": len(answerable), **block(answerable)}
    kinds = sorted({prep.items[i].kind for i in answerable})
    out["by_kind"] = {k: block([i for i in answerable if prep.items[i].kind == k]) for k in kinds}
    answered = [t >= fusion.threshold for t in tops]
    right = [bool(h) and h[0] == p.kb_id for h, p in zip(hybrid, prep.items, strict=True)]
    n_ans = sum(answered)
    unanswerable = [i for i, p in enumerate(prep.items) if p.kb_id is None]
    out["answered"] = {
        "threshold": fusion.threshold,
        "rate": round(n_ans / max(len(answered), 1), 4),
        # Of the turns marked answered, how many have the right entry on top.
        "precision": round(sum(a and r for a, r in zip(answered, right, strict=True)) / max(n_ans, 1), 4),
        # Of the turns whose top hit is right, how many are marked answered.
        "recall": round(sum(a and r for a, r in zip(answered, right, strict=True)) / max(sum(right), 1), 4),
        "unanswerable_rejected": (
            round(sum(not answered[i] for i in unanswerable) / len(unanswerable), 4) if unanswerable else None
        ),
    }
    return out


def train_fusion(
    kb: Any,
    encoder: Encoder,
    tokenise: Callable[[str], list[str]],
    paraphrases_path: Path,
    out_path: Path | None,
    *,
    normalise: Callable[[str], str] = default_normalise,
    retriever: HybridRetriever | None = None,
    c: float = 1.0,
    features: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Fit fusion weights and the answer threshold; write them to ``out_path``; return metrics.

    Args:
        kb: a ``Shop`` (its published KB is used) or an iterable of ``KbEntry``.
        encoder: the encoder the service will use (fusion parameters are per encoder).
        tokenise: the service's tokeniser function.
        paraphrases_path: the labelled JSONL (see module docstring).
        out_path: fusion.json to update (this encoder's section only); None to not write.
        normalise: the service's text normalisation.
        retriever: an already built retriever over the same KB (saves re-embedding it).
        c: inverse L2 strength of the logistic regression.
        features: the features to fit on (default: those of the built-in default for the encoder).

    Returns:
        ``{"encoder", "n_entries", "calibration": {...}, "test": {...}, "params": {...}}`` where
        ``test`` holds recall@1/@5 and MRR for bm25, dense and hybrid on the held-out half, and
        ``calibration`` the same on the half that was fitted.

    Raises:
        DataFileError: bad paraphrase records (unknown kb ids included).
        ValueError: the calibration half has no usable positives.
    """
    entries: list[KbEntry] = list(kb.published_kb if hasattr(kb, "published_kb") else kb)
    entries = [e for e in entries if e.published]
    if retriever is None:
        retriever = HybridRetriever(entries, encoder, tokenise, normalise=normalise)
    items = load_paraphrases(paraphrases_path, known_ids=[e.id for e in entries])
    cal_items = [p for p in items if split_of(p) == "calibration"]
    test_items = [p for p in items if split_of(p) == "test"]
    t0 = time.perf_counter()
    cal = _prepare(retriever, cal_items, normalise)
    test = _prepare(retriever, test_items, normalise)
    base = load_fusion(None, encoder.name)
    feats = tuple(features or base.features)
    feats, weights, bias = fit_combiner(cal.cands, [p.kb_id for p in cal.items], c=c, features=feats)
    fitted = replace(base, encoder=encoder.name, features=feats, weights=weights, bias=bias)
    _, cal_tops = _hybrid_rankings(retriever, cal, fitted)
    cal_ranked, _ = _hybrid_rankings(retriever, cal, fitted)
    correct = [bool(r) and r[0] == p.kb_id for r, p in zip(cal_ranked, cal.items, strict=True)]
    fitted = replace(fitted, threshold=choose_threshold(cal_tops, correct))
    metrics_test = _evaluate(retriever, test, fitted)
    metrics_cal = _evaluate(retriever, cal, fitted)
    fitted = replace(fitted, info={
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "paraphrases": str(paraphrases_path),
        "n_entries": len(entries),
        "n_calibration": len(cal_items),
        "n_test": len(test_items),
        "kb_hash": retriever.content_hash,
        "test": {m: metrics_test[m] for m in ("bm25", "dense", "hybrid")},
    })
    if out_path is not None:
        save_fusion(out_path, fitted)
    return {
        "encoder": encoder.name,
        "n_entries": len(entries),
        "seconds": round(time.perf_counter() - t0, 2),
        "calibration": metrics_cal,
        "test": metrics_test,
        "params": fitted.to_json(),
    }
