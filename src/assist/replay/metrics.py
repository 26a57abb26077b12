"""Score replayed turns against whatever gold they carry. Pure: values in, numbers out.

Every metric is computed only over the turns that carry the gold field it needs; a metric with
no such turn is ``None`` (never 0, which would read as "measured and bad"). The rules:

intent / sentiment
    accuracy, macro-F1 (unweighted mean of per-label F1 over every label that occurs in the gold
    or in the predictions, as scikit-learn's default), per-label precision/recall/F1/support, and
    the confusion matrix (rows gold, columns predicted, labels in DESIGN §2 order).
kb (turns whose gold ``kb_ids`` is non-empty)
    ``recall_at_k``: share of turns where *any* gold id is among the top-k hits (gold lists the
    entries that answer the turn, any one of them will do); ``mrr``: mean of 1/rank of the first
    gold id in the returned hits (0 when none is returned).
actions (customer turns with gold ``actions``; ``[]`` means "nothing expected")
    The predicted set of a turn is the distinct types among the first :data:`ACTION_TOP_K`
    actions the engine returned (rank positions, as the agent sees the cards; qa alerts excluded).
    Per type: TP = expected and predicted, FP = predicted not expected, FN = expected not
    predicted; micro precision/recall/F1 sum them over types.
cross_sell (customer turns with gold ``cross_sell_ok``)
    A *violation* is a turn with ``cross_sell_ok: false`` where a cross_sell action appears
    *anywhere* in the returned list (the console shows every card, so rank does not excuse it;
    target zero). A *missed opportunity* is a turn with ``cross_sell_ok: true`` with no cross_sell
    at all. ``opportunity_recall`` = 1 - missed / opportunities.
qa (agent turns with gold ``qa``; ``[]`` means a clean turn)
    Per flag and micro precision/recall/F1 of the flags raised by qa_alert actions, plus
    turn-level precision/recall of "this turn needs a look" (any flag). Only flags that the logs
    label somewhere are scored; others raised are counted apart (see :func:`qa`).
latency (every turn that ran)
    p50/p95/p99/mean/max per stage in ms; ``total`` is a customer turn's whole processing time
    (prepare, its share of the batched embedding, classify + retrieve, policy); agent turns report
    their check as the ``qa`` stage.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from assist.replay.parse import GOLD_ACTIONS, QA_FLAGS
from assist.replay.results import ConversationResult, TurnResult
from assist.types import Intent, SentimentLabel

ACTION_TOP_K = 3
KB_KS = (1, 5)
INTENT_LABELS: tuple[str, ...] = tuple(i.value for i in Intent)
SENTIMENT_LABELS: tuple[str, ...] = tuple(s.value for s in SentimentLabel)
# Stages whose latency is part of the stable summary; other stages a pipeline reports are kept in
# the detailed section only, so a new stage does not change the summary's key set.
LATENCY_STAGES: tuple[str, ...] = (
    "total", "normalise", "tokenise", "embed", "intent", "sentiment", "retrieve", "policy", "qa",
)
PERCENTILES = (50, 95, 99)


# ---------------------------------------------------------------- small numeric helpers


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


def _f1(p: float | None, r: float | None) -> float | None:
    if p is None or r is None:
        return None
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation between ranks (numpy's default)."""
    if not values:
        return None
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def _prf(tp: int, fp: int, fn: int) -> dict[str, Any]:
    p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"precision": p, "recall": r, "f1": _f1(p, r), "tp": tp, "fp": fp, "fn": fn, "support": tp + fn}


# ---------------------------------------------------------------- the metric families


def classification(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-label scores and the confusion matrix of paired labels.

    ``labels`` gives the display order; labels outside it that occur are appended (sorted).
    """
    if len(gold) != len(pred):
        raise ValueError("gold and pred must have the same length")
    n = len(gold)
    present = set(gold) | set(pred)
    order = [lab for lab in labels if lab in present] + sorted(present - set(labels))
    index = {lab: i for i, lab in enumerate(order)}
    matrix = [[0] * len(order) for _ in order]
    for g, p in zip(gold, pred, strict=True):
        matrix[index[g]][index[p]] += 1
    per_label: dict[str, Any] = {}
    for lab in order:
        i = index[lab]
        tp = matrix[i][i]
        fp = sum(matrix[r][i] for r in range(len(order))) - tp
        fn = sum(matrix[i]) - tp
        s = _prf(tp, fp, fn)
        # A label that never occurs in gold and is never predicted cannot appear; one predicted but
        # never gold has undefined recall: F1 counts as 0 there (it only produced false positives).
        per_label[lab] = {"precision": s["precision"] or 0.0, "recall": s["recall"] or 0.0,
                          "f1": s["f1"] or 0.0, "support": s["support"]}
    correct = sum(matrix[i][i] for i in range(len(order)))
    return {
        "n": n,
        "accuracy": _ratio(correct, n),
        "macro_f1": (sum(v["f1"] for v in per_label.values()) / len(per_label)) if per_label else None,
        "per_label": per_label,
        "confusion": {"labels": order, "matrix": matrix},
    }


def kb_retrieval(pairs: Sequence[tuple[Sequence[str], Sequence[str]]], ks: Sequence[int] = KB_KS) -> dict[str, Any]:
    """Recall@k (any gold id in the top k) and MRR over (gold ids, ranked hit ids) pairs."""
    scored = [(set(g), list(h)) for g, h in pairs if g]
    n = len(scored)
    out: dict[str, Any] = {"n": n}
    for k in ks:
        out[f"recall_at_{k}"] = _ratio(sum(1 for g, h in scored if g & set(h[:k])), n)
    rr = []
    for g, h in scored:
        rank = next((i for i, kb_id in enumerate(h, 1) if kb_id in g), None)
        rr.append(0.0 if rank is None else 1.0 / rank)
    out["mrr"] = _ratio(sum(rr), n)
    return out


def predicted_action_set(turn: TurnResult, top_k: int = ACTION_TOP_K) -> set[str]:
    """The action types a turn is credited with: distinct types among its first ``top_k`` actions."""
    return set(turn.action_types[:top_k])


def actions(pairs: Sequence[tuple[Iterable[str], Iterable[str]]], types: Sequence[str] = GOLD_ACTIONS) -> dict[str, Any]:
    """Per-type and micro precision/recall/F1 over (expected types, predicted types) pairs."""
    counts = {t: Counter() for t in types}
    exact = 0
    for gold, pred in pairs:
        g, p = set(gold), set(pred)
        exact += g == (p & set(types))
        for t in types:
            if t in g and t in p:
                counts[t]["tp"] += 1
            elif t in p:
                counts[t]["fp"] += 1
            elif t in g:
                counts[t]["fn"] += 1
    per_type = {t: _prf(c["tp"], c["fp"], c["fn"]) for t, c in counts.items()}
    micro = _prf(sum(c["tp"] for c in counts.values()), sum(c["fp"] for c in counts.values()),
                 sum(c["fn"] for c in counts.values()))
    return {"n": len(pairs), "top_k": ACTION_TOP_K, "precision": micro["precision"], "recall": micro["recall"],
            "f1": micro["f1"], "exact_match": _ratio(exact, len(pairs)), "per_type": per_type}


def cross_sell(turns: Sequence[TurnResult]) -> dict[str, Any]:
    """Policy violations (cross-sell shown where gold says no) and missed opportunities."""
    not_ok = [t for t in turns if t.gold is not None and t.gold.cross_sell_ok is False]
    ok = [t for t in turns if t.gold is not None and t.gold.cross_sell_ok is True]
    violations = [t for t in not_ok if "cross_sell" in t.action_types]
    missed = [t for t in ok if "cross_sell" not in t.action_types]
    return {
        "n_not_ok": len(not_ok),
        "violations": len(violations),
        "violation_turns": [f"{t.conversation_id}/{t.turn_id}" for t in violations],
        "opportunities": len(ok),
        "missed": len(missed),
        "missed_turns": [f"{t.conversation_id}/{t.turn_id}" for t in missed],
        "opportunity_recall": None if not ok else 1 - len(missed) / len(ok),
    }


def qa(pairs: Sequence[tuple[Iterable[str], Iterable[str]]], flags: Sequence[str] = QA_FLAGS) -> dict[str, Any]:
    """Per-flag and micro precision/recall of qa alerts, and turn-level flagged/not precision/recall.

    Only flags the logs *label* (that occur in at least one gold ``qa`` list) are scored: a flag
    nobody labelled — typically the timing checks (slow_first_response) on logs labelled for
    wording — was not looked for, so raising it is neither right nor wrong by this gold. Such
    flags are counted in ``unlabelled_raised`` and shown, never averaged in.
    """
    pairs = [(list(g), list(p)) for g, p in pairs]
    labelled = [f for f in flags if any(f in g for g, _ in pairs)]
    scored = actions([(g, set(p) & set(labelled)) for g, p in pairs], types=labelled)
    per_flag: dict[str, Any] = {}
    unlabelled: dict[str, int] = {}
    for f in flags:
        raised = sum(1 for _, p in pairs if f in p)
        if f in scored["per_type"]:
            per_flag[f] = {**scored["per_type"][f], "labelled": True, "raised": raised}
        else:
            per_flag[f] = {"precision": None, "recall": None, "f1": None, "tp": 0, "fp": 0, "fn": 0, "support": 0,
                           "labelled": False, "raised": raised}
            if raised:
                unlabelled[f] = raised
    sets = [(set(g), set(p) & set(labelled)) for g, p in pairs]
    tp = sum(1 for g, p in sets if g and p)
    fp = sum(1 for g, p in sets if not g and p)
    fn = sum(1 for g, p in sets if g and not p)
    turn = _prf(tp, fp, fn)
    return {"n": len(pairs), "precision": scored["precision"], "recall": scored["recall"], "f1": scored["f1"],
            "labelled_flags": labelled, "unlabelled_raised": unlabelled, "per_flag": per_flag,
            "turn_level": {"precision": turn["precision"], "recall": turn["recall"], "f1": turn["f1"],
                           "flagged_gold": tp + fn}}


def latency(turns: Sequence[TurnResult]) -> dict[str, Any]:
    """Per-stage latency percentiles in ms over every turn that reports the stage."""
    by_stage: dict[str, list[float]] = {}
    for t in turns:
        for stage, ms in t.timings_ms.items():
            by_stage.setdefault(stage, []).append(float(ms))
    out: dict[str, Any] = {}
    for stage in [*LATENCY_STAGES, *sorted(set(by_stage) - set(LATENCY_STAGES))]:
        xs = by_stage.get(stage, [])
        entry: dict[str, Any] = {"n": len(xs)}
        for q in PERCENTILES:
            entry[f"p{q}"] = percentile(xs, q)
        entry["mean"] = (sum(xs) / len(xs)) if xs else None
        entry["max"] = max(xs) if xs else None
        out[stage] = entry
    return out


def histogram(values: Sequence[float], bins: int = 20) -> dict[str, Any]:
    """Equal-width bins from 0 to the 99th percentile, with one overflow bin above it.

    Cutting at p99 keeps a single cold-start outlier from squashing every other bar into one.
    """
    if not values:
        return {"edges": [], "counts": [], "overflow": 0}
    top = percentile(values, 99) or max(values)
    top = top if top > 0 else max(max(values), 1e-6)
    width = top / bins
    counts = [0] * bins
    overflow = 0
    for v in values:
        if v > top:
            overflow += 1
        else:
            counts[min(int(v / width), bins - 1)] += 1
    return {"edges": [round(i * width, 4) for i in range(bins + 1)], "counts": counts, "overflow": overflow}


# ---------------------------------------------------------------- everything at once


def _scored_turns(conversations: Sequence[ConversationResult]) -> list[TurnResult]:
    return [t for c in conversations for t in c.turns if t.error is None]


def compute(conversations: Sequence[ConversationResult]) -> dict[str, Any]:
    """Every metric family for a replay, as a JSON-ready dict keyed by family."""
    turns = _scored_turns(conversations)
    cust = [t for t in turns if t.role == "customer"]
    agent = [t for t in turns if t.role == "agent"]

    it = [t for t in cust if t.gold and t.gold.intent is not None and t.intent is not None]
    st = [t for t in cust if t.gold and t.gold.sentiment is not None and t.sentiment is not None]
    kb = [t for t in cust if t.gold and t.gold.kb_ids]
    ac = [t for t in cust if t.gold and t.gold.actions is not None]
    qt = [t for t in agent if t.gold and t.gold.qa is not None]
    return {
        "intent": classification([str(t.gold.intent) for t in it if t.gold], [str(t.intent) for t in it],
                                 INTENT_LABELS),
        "sentiment": classification([str(t.gold.sentiment) for t in st if t.gold], [str(t.sentiment) for t in st],
                                    SENTIMENT_LABELS),
        "kb": kb_retrieval([(t.gold.kb_ids or [], list(t.kb_ids)) for t in kb if t.gold]),
        "actions": actions([(t.gold.actions or [], predicted_action_set(t)) for t in ac if t.gold]),
        "cross_sell": cross_sell(cust),
        "qa": qa([(t.gold.qa or [], t.qa_flags) for t in qt if t.gold]),
        "latency": latency(turns),
    }


# Summary keys whose value is better when lower; compare.py and floors.py read this.
LOWER_IS_BETTER_PREFIXES = ("latency.", "cross_sell.violations", "cross_sell.missed", "input.skipped_lines",
                            "input.failed_conversations", "input.failed_turns")
# Counts describe the data, not quality: shown in comparisons but never called a regression.
NEUTRAL_SUFFIXES = (".n", ".opportunities", ".n_not_ok", "input.conversations", "input.turns")


def summary_keys() -> list[str]:
    """The stable, flat metric names of a report's ``summary`` (what floors and compare use)."""
    keys = ["input.conversations", "input.turns", "input.skipped_lines", "input.failed_conversations",
            "input.failed_turns"]
    for fam in ("intent", "sentiment"):
        keys += [f"{fam}.accuracy", f"{fam}.macro_f1", f"{fam}.n"]
    keys += [f"kb.recall_at_{k}" for k in KB_KS] + ["kb.mrr", "kb.n"]
    keys += ["actions.precision", "actions.recall", "actions.f1", "actions.exact_match", "actions.n"]
    for t in GOLD_ACTIONS:
        keys += [f"actions.{t}.precision", f"actions.{t}.recall"]
    keys += ["cross_sell.violations", "cross_sell.missed", "cross_sell.opportunities",
             "cross_sell.opportunity_recall", "cross_sell.n_not_ok"]
    keys += ["qa.precision", "qa.recall", "qa.f1", "qa.turn_precision", "qa.turn_recall", "qa.n"]
    for f in QA_FLAGS:
        keys += [f"qa.{f}.precision", f"qa.{f}.recall"]
    for stage in LATENCY_STAGES:
        keys += [f"latency.{stage}.p{q}" for q in PERCENTILES]
    return keys


def summarise(metrics: dict[str, Any], *, conversations: int, turns: int, skipped_lines: int,
              failed_conversations: int, failed_turns: int) -> dict[str, float | int | None]:
    """Flatten :func:`compute`'s output into the stable ``summary`` (every key of :func:`summary_keys`)."""
    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 4)

    s: dict[str, float | int | None] = {
        "input.conversations": conversations, "input.turns": turns, "input.skipped_lines": skipped_lines,
        "input.failed_conversations": failed_conversations, "input.failed_turns": failed_turns,
    }
    for fam in ("intent", "sentiment"):
        m = metrics[fam]
        s.update({f"{fam}.accuracy": r(m["accuracy"]), f"{fam}.macro_f1": r(m["macro_f1"]), f"{fam}.n": m["n"]})
    kb = metrics["kb"]
    s.update({f"kb.recall_at_{k}": r(kb[f"recall_at_{k}"]) for k in KB_KS})
    s.update({"kb.mrr": r(kb["mrr"]), "kb.n": kb["n"]})
    ac = metrics["actions"]
    s.update({"actions.precision": r(ac["precision"]), "actions.recall": r(ac["recall"]),
              "actions.f1": r(ac["f1"]), "actions.exact_match": r(ac["exact_match"]), "actions.n": ac["n"]})
    for t in GOLD_ACTIONS:
        s[f"actions.{t}.precision"] = r(ac["per_type"][t]["precision"])
        s[f"actions.{t}.recall"] = r(ac["per_type"][t]["recall"])
    cs = metrics["cross_sell"]
    s.update({"cross_sell.violations": cs["violations"], "cross_sell.missed": cs["missed"],
              "cross_sell.opportunities": cs["opportunities"],
              "cross_sell.opportunity_recall": r(cs["opportunity_recall"]), "cross_sell.n_not_ok": cs["n_not_ok"]})
    q = metrics["qa"]
    s.update({"qa.precision": r(q["precision"]), "qa.recall": r(q["recall"]), "qa.f1": r(q["f1"]),
              "qa.turn_precision": r(q["turn_level"]["precision"]), "qa.turn_recall": r(q["turn_level"]["recall"]),
              "qa.n": q["n"]})
    for f in QA_FLAGS:
        s[f"qa.{f}.precision"] = r(q["per_flag"][f]["precision"])
        s[f"qa.{f}.recall"] = r(q["per_flag"][f]["recall"])
    for stage in LATENCY_STAGES:
        for p in PERCENTILES:
            s[f"latency.{stage}.p{p}"] = r(metrics["latency"][stage][f"p{p}"])
    assert list(s) == summary_keys(), "summary keys drifted from summary_keys()"
    return s


def lower_is_better(key: str) -> bool:
    return key.startswith(LOWER_IS_BETTER_PREFIXES)


def is_neutral(key: str) -> bool:
    return key.endswith(NEUTRAL_SUFFIXES) or key in NEUTRAL_SUFFIXES


# ---------------------------------------------------------------- the error list


def errors(conversations: Sequence[ConversationResult], *, top_k: int = ACTION_TOP_K) -> list[dict[str, Any]]:
    """Every scored mistake, one row each, in log order: what was expected, what came out.

    Kinds: ``failed`` (the turn or conversation could not be replayed), ``intent``,
    ``sentiment``, ``kb`` (no gold id at rank 1), ``action_missing`` / ``action_extra``,
    ``cross_sell_violation``, ``cross_sell_missed``, ``qa_missed`` / ``qa_false_alarm``.
    """
    rows: list[dict[str, Any]] = []
    # Same rule as qa(): a flag no gold turn labels was not looked for, so it is not an error.
    labelled = {f for c in conversations for t in c.turns if t.gold and t.gold.qa for f in t.gold.qa}

    def add(c: ConversationResult, t: TurnResult | None, kind: str, expected: Any, predicted: Any) -> None:
        rows.append({"conversation_id": c.conversation_id, "line": c.line, "turn_id": t.turn_id if t else None,
                     "role": t.role if t else None, "kind": kind, "expected": expected, "predicted": predicted,
                     "text": t.text if t else ""})

    for c in conversations:
        if c.error and not any(t.error for t in c.turns):
            add(c, None, "failed", None, c.error)
        for t in c.turns:
            if t.error:
                add(c, t, "failed", None, t.error)
                continue
            g = t.gold
            if g is None:
                continue
            if t.role == "agent":
                if g.qa is not None:
                    pred = set(t.qa_flags) & labelled
                    for f in sorted(set(g.qa) - pred):
                        add(c, t, "qa_missed", f, sorted(pred))
                    for f in sorted(pred - set(g.qa)):
                        add(c, t, "qa_false_alarm", sorted(g.qa), f)
                continue
            if g.intent is not None and t.intent != g.intent:
                add(c, t, "intent", str(g.intent), t.intent)
            if g.sentiment is not None and t.sentiment != g.sentiment:
                add(c, t, "sentiment", str(g.sentiment), t.sentiment)
            if g.kb_ids and (not t.kb_ids or t.kb_ids[0] not in g.kb_ids):
                rank = next((i for i, k in enumerate(t.kb_ids, 1) if k in g.kb_ids), None)
                add(c, t, "kb", g.kb_ids, {"top": list(t.kb_ids[:3]), "gold_rank": rank})
            if g.actions is not None:
                pred = predicted_action_set(t, top_k)
                for a in sorted(set(g.actions) - pred):
                    add(c, t, "action_missing", a, t.action_types[:top_k])
                for a in sorted(pred - set(g.actions)):
                    add(c, t, "action_extra", sorted(g.actions), a)
            if g.cross_sell_ok is False and "cross_sell" in t.action_types:
                sku = next((a.sku for a in t.actions if a.type == "cross_sell"), None)
                add(c, t, "cross_sell_violation", "no cross_sell", {"sku": sku})
            if g.cross_sell_ok is True and "cross_sell" not in t.action_types:
                add(c, t, "cross_sell_missed", "cross_sell", t.action_types[:top_k])
    return rows
