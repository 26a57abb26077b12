"""Train the dialogue model (:mod:`assist.understanding.dialogue`) on the labelled conversations.

Data: ``data/dialogues/<writer>/<shop>.jsonl`` (eval/LABELLING.md), shops in ``data/shops/<shop>``
(``demo`` is ``kb_data/``), and ``data/dialogues/split.yaml``, which fixes which writers and shops
may be used for tuning. Only conversations whose writer **and** shop are both tuning ones are used
here: everything else is held out for :mod:`assist.replay.protocol`.

Each customer turn becomes one example: the pipeline's analysis of the turn (with its e5 vector)
and the :class:`~assist.understanding.dialogue.TurnContext` of the state before it. The context is
what the real engine builds while replaying the conversation, so the model trains on what it will
see. That state depends on the model itself (signals move the stage and the problem), so training
runs in rounds: round 1 replays with the word lists alone, round 2 replays with the round-1 model.

Heads: one logistic regression per signal (thresholds chosen by leave-one-writer-out
cross-validation over the tuning writers, maximising F1), multinomial logistic regression for
intent and for sentiment. Everything is deterministic for the same data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from assist.engine import Engine, StepResult
from assist.policy.learned import TYPES as ACTION_TYPES
from assist.policy.learned import ActionModel, proposed_index
from assist.replay.parse import Gold, ParsedConversation, read_logs
from assist.settings import Settings
from assist.state import ConversationState
from assist.types import Analysis
from assist.understanding.dialogue import (
    INTENTS,
    SENTIMENTS,
    SIGNALS,
    DialogueModel,
    Layout,
    TurnContext,
    context_of,
)

_log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[3]
# An action type is judged by the learned model only if its leave-one-writer-out F1 reaches this.
MIN_CV_F1 = 0.5
# Types the action model may only withhold, never add (the solve-first gate stays a hard constraint),
# and how much more a wrong one costs than a missed one (F-beta's beta: 0.5 weighs precision twice).
VETO_TYPES = ("cross_sell",)
VETO_BETA = 0.5
DIALOGUES = REPO / "data" / "dialogues"


# --- the corpus ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    tune_writers: frozenset[str]
    tune_shops: frozenset[str]
    report_writers: frozenset[str]
    report_shops: frozenset[str]

    def tunable(self, writer: str, shop: str) -> bool:
        return writer in self.tune_writers and shop in self.tune_shops

    @classmethod
    def load(cls, path: Path) -> Split:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(frozenset(raw["tune"]["writers"]), frozenset(raw["tune"]["shops"]),
                   frozenset(raw["report"]["writers"]), frozenset(raw["report"]["shops"]))


@dataclass(frozen=True)
class DialogueFile:
    writer: str
    shop: str
    path: Path


def shop_dir(shop: str, root: Path = REPO) -> Path:
    """The shop directory of a dialogue shop name (``demo`` is the demo shop in kb_data/)."""
    return root / "kb_data" if shop == "demo" else root / "data" / "shops" / shop


def dialogue_files(root: Path = DIALOGUES) -> list[DialogueFile]:
    """Every ``<writer>/<shop>.jsonl`` under ``root``, sorted."""
    return [DialogueFile(p.parent.name, p.stem, p) for p in sorted(root.glob("w*/*.jsonl"))]


def load_conversations(files: Iterable[DialogueFile]) -> dict[str, list[tuple[DialogueFile, ParsedConversation]]]:
    """Valid conversations by shop. Invalid lines are logged and left out (the checker reports them)."""
    by_shop: dict[str, list[tuple[DialogueFile, ParsedConversation]]] = {}
    for f in files:
        parsed = read_logs(f.path)
        for p in parsed.problems:
            _log.warning("%s:%s %s: %s", f.path, p.line, p.field, p.message)
        by_shop.setdefault(f.shop, []).extend((f, c) for c in parsed.conversations)
    return by_shop


# --- examples from replaying conversations through the real engine ---------------------------


@dataclass(frozen=True)
class Example:
    writer: str
    shop: str
    conversation_id: str
    turn_id: str
    analysis: Analysis
    context: TurnContext
    gold: Gold
    features: list[float] | None = None  # the decision features of the turn (assist.policy.learned)


class _Recorder:
    """An :class:`Engine` stand-in for :class:`~assist.replay.run.Replayer` that records each
    customer turn's analysis, context and decision features, then lets the real engine step on.

    ``model_for(writer)`` picks the dialogue model for a writer's conversations: with the models
    cross-fitted by writer, a turn's signals come from a model that never saw its writer, which is
    what the action model must learn to rely on (not the in-sample probabilities)."""

    def __init__(self, engine: Engine, golds: dict[tuple[str, str], tuple[str, str, Gold]],
                 model_for: Callable[[str], DialogueModel | None],
                 actions_for: Callable[[str], ActionModel | None] | None = None) -> None:
        self.engine = engine
        self.golds = golds
        self.model_for = model_for
        self.actions_for = actions_for
        self.writer_of = {c: w for (c, _), (w, _, _) in golds.items()}
        self.examples: list[Example] = []

    def new_conversation(self, conversation_id: str, *a: Any, **kw: Any) -> ConversationState:
        writer = self.writer_of.get(conversation_id, "")
        self.engine.dialogue = self.model_for(writer)
        # training only: the policy's learned judgment is swapped per writer (cross-fitting)
        self.engine.policy.actions = self.actions_for(writer) if self.actions_for else None
        return self.engine.new_conversation(conversation_id, *a, **kw)

    def agent_turn(self, *a: Any, **kw: Any) -> StepResult:
        return self.engine.agent_turn(*a, **kw)

    def customer_turn(self, state: ConversationState, *, turn_id: str, analysis: Analysis, **kw: Any) -> StepResult:
        step = self.engine.customer_turn(state, turn_id=turn_id, analysis=analysis, **kw)
        key = (state.conversation_id, turn_id)
        if key in self.golds:
            writer, shop, gold = self.golds[key]
            self.examples.append(Example(writer, shop, state.conversation_id, turn_id, analysis,
                                         context_of(state), gold, step.features))
        return step


def collect(settings: Settings, by_shop: dict[str, list[tuple[DialogueFile, ParsedConversation]]],
            model_for: Callable[[str], DialogueModel | None], *, root: Path = REPO,
            progress: Callable[[str], None] | None = None,
            actions_for: Callable[[str], ActionModel | None] | None = None) -> list[Example]:
    """Replay every conversation of ``by_shop`` with its shop's runtime; one example per labelled customer turn."""
    from assist.replay.run import Replayer, engine_for_shop
    from assist.runtime import load_runtime

    out: list[Example] = []
    for shop, items in sorted(by_shop.items()):
        if progress:
            progress(f"{shop}: {len(items)} conversations")
        rt = load_runtime(settings.model_copy(update={"shop_dir": shop_dir(shop, root), "index_dir": None}))
        golds = {(c.conversation.conversation_id, t.turn_id): (f.writer, shop, t.gold)
                 for f, c in items for t in c.conversation.turns
                 if t.role == "customer" and t.gold is not None}
        engine = engine_for_shop(rt.shop, settings.rules_dir)
        engine.trace = True  # the decision features of every turn are what the action judgment learns from
        rec = _Recorder(engine, golds, model_for, actions_for)
        Replayer(rt.pipeline, rec).run([c for _, c in items], now=datetime.fromisoformat("2026-12-01T00:00:00+08:00"))  # type: ignore[arg-type]
        out.extend(rec.examples)
    return out


# --- fitting -------------------------------------------------------------------------------


@dataclass
class Matrices:
    sparse: Any  # scipy csr (n, sparse_dim)
    dense: np.ndarray  # (n, dense_dim)
    groups: list[str] = field(default_factory=list)

    def stacked(self, rows: np.ndarray | None = None) -> Any:
        from scipy.sparse import csr_matrix, hstack

        s = self.sparse if rows is None else self.sparse[rows]
        d = self.dense if rows is None else self.dense[rows]
        return hstack([s, csr_matrix(d)], format="csr")


def featurise(layout: Layout, examples: Sequence[Example]) -> Matrices:
    from scipy.sparse import csr_matrix

    indptr = [0]
    indices: list[np.ndarray] = []
    values: list[np.ndarray] = []
    dense = []
    for e in examples:
        idx, val = layout.sparse(e.analysis, e.context)
        # repeated hashed indices are summed by csr_matrix
        indices.append(idx)
        values.append(val)
        indptr.append(indptr[-1] + len(idx))
        dense.append(layout.dense(e.analysis, e.context, e.analysis.embedding))
    sp = csr_matrix((np.concatenate(values) if values else np.zeros(0, np.float32),
                     np.concatenate(indices) if indices else np.zeros(0, np.int64), np.array(indptr)),
                    shape=(len(examples), layout.sparse_dim), dtype=np.float32)
    sp.sum_duplicates()
    return Matrices(sp, np.vstack(dense).astype(np.float32), [e.writer for e in examples])


def targets(examples: Sequence[Example]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(signal matrix, intent ids, intent mask, sentiment ids, sentiment mask)."""
    y_sig = np.array([[1 if s in {str(x) for x in (e.gold.signals or [])} else 0 for s in SIGNALS]
                      for e in examples], dtype=np.int8)
    y_int = np.array([INTENTS.index(str(e.gold.intent)) if e.gold.intent else -1 for e in examples])
    y_sen = np.array([SENTIMENTS.index(str(e.gold.sentiment)) if e.gold.sentiment else -1 for e in examples])
    return y_sig, y_int, y_int >= 0, y_sen, y_sen >= 0


def _binary(x: Any, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    if y.min() == y.max():  # a signal nobody labelled (or everybody): a constant model
        return np.zeros(x.shape[1], np.float32), (8.0 if y.max() else -8.0)
    m = LogisticRegression(C=c, solver="liblinear", class_weight="balanced", max_iter=500)
    m.fit(x, y)
    return m.coef_[0].astype(np.float32), float(m.intercept_[0])


def _multi(x: Any, y: np.ndarray, k: int, c: float) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    w = np.zeros((x.shape[1], k), np.float32)
    b = np.full(k, -8.0, np.float32)  # a class never seen in training is never predicted
    if len(set(y.tolist())) < 2:
        b[int(y[0])] = 8.0
        return w, b
    m = LogisticRegression(C=c, max_iter=1000, class_weight="balanced")
    m.fit(x, y)
    for j, cls in enumerate(m.classes_):
        w[:, cls] = m.coef_[j] if len(m.classes_) > 2 else (m.coef_[0] if j == 1 else -m.coef_[0])
        b[cls] = m.intercept_[j] if len(m.classes_) > 2 else (m.intercept_[0] if j == 1 else -m.intercept_[0])
    return w, b


@dataclass(frozen=True)
class FitSettings:
    c_signal: float = 1.0
    c_intent: float = 2.0
    c_sentiment: float = 1.0


def fit(layout: Layout, m: Matrices, examples: Sequence[Example], fs: FitSettings,
        thresholds: dict[str, float] | None = None, meta: dict[str, Any] | None = None) -> DialogueModel:
    y_sig, y_int, int_mask, y_sen, sen_mask = targets(examples)
    x = m.stacked()
    nsp = layout.sparse_dim
    sig_w = np.zeros((x.shape[1], len(SIGNALS)), np.float32)
    sig_b = np.zeros(len(SIGNALS), np.float32)
    for j in range(len(SIGNALS)):
        sig_w[:, j], sig_b[j] = _binary(x, y_sig[:, j], fs.c_signal)
    int_w, int_b = _multi(x[np.flatnonzero(int_mask)], y_int[int_mask], len(INTENTS), fs.c_intent)
    sen_w, sen_b = _multi(x[np.flatnonzero(sen_mask)], y_sen[sen_mask], len(SENTIMENTS), fs.c_sentiment)
    weights = {
        "signals": (sig_w[:nsp], sig_w[nsp:], sig_b),
        "intent": (int_w[:nsp], int_w[nsp:], int_b),
        "sentiment": (sen_w[:nsp], sen_w[nsp:], sen_b),
    }
    return DialogueModel(layout, weights, thresholds or dict.fromkeys(SIGNALS, 0.5), meta)


def _probs(model: DialogueModel, m: Matrices, rows: np.ndarray) -> dict[str, np.ndarray]:
    x = m.stacked(rows)
    out = {}
    for head, (ws, wd, b) in model.weights.items():
        z = x @ np.vstack([ws, wd]) + b
        out[head] = 1 / (1 + np.exp(-z)) if head == "signals" else _softmax_rows(z)
    return out


def _softmax_rows(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def cross_validate(layout: Layout, m: Matrices, examples: Sequence[Example],
                   fs: FitSettings) -> tuple[dict[str, np.ndarray], dict[str, DialogueModel]]:
    """Out-of-writer probabilities for every example (each writer predicted by a model trained on
    the others), and those per-writer models."""
    n = len(examples)
    oof = {"signals": np.zeros((n, len(SIGNALS))), "intent": np.zeros((n, len(INTENTS))),
           "sentiment": np.zeros((n, len(SENTIMENTS)))}
    writers = sorted(set(m.groups))
    groups = np.array(m.groups)
    folds: dict[str, DialogueModel] = {}
    for w in writers:
        test = np.flatnonzero(groups == w)
        train = np.flatnonzero(groups != w)
        sub = Matrices(m.sparse[train], m.dense[train], [m.groups[i] for i in train])
        model = fit(layout, sub, [examples[i] for i in train], fs)
        folds[w] = model
        for head, p in _probs(model, m, test).items():
            oof[head][test] = p
    return oof, folds


def choose_thresholds(oof_signals: np.ndarray, y_sig: np.ndarray) -> tuple[dict[str, float], dict[str, Any]]:
    """Per signal: the threshold with the best out-of-writer F1 (0.5 when a signal is too rare to tell)."""
    thresholds: dict[str, float] = {}
    report: dict[str, Any] = {}
    grid = np.round(np.arange(0.15, 0.91, 0.05), 2)
    for j, s in enumerate(SIGNALS):
        y = y_sig[:, j].astype(bool)
        best = (0.5, -1.0, 0.0, 0.0)
        if y.sum() >= 5:
            for t in grid:
                f1, prec, rec = _prf(oof_signals[:, j] >= t, y)
                if f1 > best[1]:
                    best = (float(t), f1, prec, rec)
        thresholds[s] = best[0]
        report[s] = {"support": int(y.sum()), "threshold": best[0], "cv_f1": round(max(best[1], 0.0), 3),
                     "cv_precision": round(best[2], 3), "cv_recall": round(best[3], 3)}
    return thresholds, report


def _macro_f1(y: np.ndarray, p: np.ndarray, k: int) -> float:
    f1s = []
    for c in range(k):
        tp = int(((p == c) & (y == c)).sum())
        fp = int(((p == c) & (y != c)).sum())
        fn = int(((p != c) & (y == c)).sum())
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


def _heads(pred_int: np.ndarray, pred_sen: np.ndarray, y_int: np.ndarray, int_mask: np.ndarray,
           y_sen: np.ndarray, sen_mask: np.ndarray) -> dict[str, Any]:
    """Intent accuracy / macro-F1, sentiment accuracy and negative recall of one set of predictions."""
    neg = SENTIMENTS.index("negative")
    return {
        "intent_accuracy": round(float((pred_int[int_mask] == y_int[int_mask]).mean()), 4),
        "intent_macro_f1": round(_macro_f1(y_int[int_mask], pred_int[int_mask], len(INTENTS)), 4),
        "sentiment_accuracy": round(float((pred_sen[sen_mask] == y_sen[sen_mask]).mean()), 4),
        "negative_recall": round(float((pred_sen[y_sen == neg] == neg).mean()), 4) if (y_sen == neg).any() else None,
    }


def train_dialogue(settings: Settings, out: Path, *, root: Path = REPO, rounds: int = 2, action_rounds: int = 2,
                   fs: FitSettings | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train on the tuning writers and shops of ``split.yaml``, save to ``out``; return the report."""
    fs = fs or FitSettings()
    split = Split.load(root / "data" / "dialogues" / "split.yaml")
    files = [f for f in dialogue_files(root / "data" / "dialogues") if split.tunable(f.writer, f.shop)]
    if not files:
        raise FileNotFoundError("no tuning dialogues under data/dialogues/ (see split.yaml)")
    by_shop = load_conversations(files)
    layout = Layout()
    model: DialogueModel | None = None
    report: dict[str, Any] = {}

    def model_for(writer: str) -> DialogueModel | None:
        return None

    examples: list[Example] = []
    for r in range(1, rounds + 1):
        examples = collect(settings, by_shop, model_for, root=root, progress=progress)
        m = featurise(layout, examples)
        oof, folds = cross_validate(layout, m, examples, fs)
        y_sig, y_int, int_mask, y_sen, sen_mask = targets(examples)
        thresholds, sig_report = choose_thresholds(oof["signals"], y_sig)
        pred_int = oof["intent"].argmax(axis=1)
        pred_sen = oof["sentiment"].argmax(axis=1)
        base_int = np.array([INTENTS.index(e.analysis.intent.label.value) for e in examples])
        base_sen = np.array([SENTIMENTS.index(e.analysis.sentiment.label.value) for e in examples])
        report = {
            "round": r, "examples": len(examples), "conversations": sum(len(v) for v in by_shop.values()),
            "writers": sorted(set(m.groups)), "shops": sorted(by_shop),
            "fit": fs.__dict__,
            "leave_writer_out_cv": {**_heads(pred_int, pred_sen, y_int, int_mask, y_sen, sen_mask),
                                    "signals": sig_report},
            # The utterance models alone on the same turns: what reading the context adds.
            "utterance_models_same_turns": _heads(base_int, base_sen, y_int, int_mask, y_sen, sen_mask),
        }
        meta = {"trained_on": {"writers": report["writers"], "shops": report["shops"],
                               "examples": len(examples)}, "round": r, "fit": fs.__dict__}
        model = fit(layout, m, examples, fs, thresholds, meta)
        # Next round replays each writer with the model that never saw them (cross-fitting).
        crossed = {w: DialogueModel(layout, fm.weights, thresholds) for w, fm in folds.items()}

        def model_for(writer: str, crossed: dict[str, DialogueModel] = crossed,
                      full: DialogueModel = model) -> DialogueModel | None:
            return crossed.get(writer, full)

        if progress:
            cv = report["leave_writer_out_cv"]
            base = report["utterance_models_same_turns"]
            progress(f"round {r}: {len(examples)} turns, intent F1 {cv['intent_macro_f1']} "
                     f"(utterance model {base['intent_macro_f1']}), sentiment acc {cv['sentiment_accuracy']} "
                     f"({base['sentiment_accuracy']}), negative recall {cv['negative_recall']}")
    assert model is not None
    model.save(out)
    # The action judgment learns from the last round's decision features, which were computed with
    # the previous round's cross-fitted signals (never a writer's own in-sample probabilities).
    actions, report["actions"], afolds = train_actions(examples)
    for _ in range(action_rounds - 1):
        # Replay with the action judgment in the loop (each writer with the one that never saw
        # them) and learn again from the states it leads to: its own escalations and recoveries
        # change what later turns look like, which the rules-only replay never showed it.
        examples = collect(settings, by_shop, model_for, root=root, progress=progress,
                           actions_for=lambda w, afolds=afolds, full=actions: afolds.get(w, full))
        actions, report["actions"], afolds = train_actions(examples)
    actions.save(out / "actions.json")
    if progress:
        progress("actions: " + ", ".join(f"{t} F1 {v['cv_f1']}" for t, v in report["actions"].items()))
    import json

    (out / "report.json").write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    return report


def train_actions(examples: Sequence[Example], c: float = 0.5,
                  ) -> tuple[ActionModel, dict[str, Any], dict[str, ActionModel]]:
    """One logistic regression per action type over the decision features; thresholds by
    leave-one-writer-out F1 over the tuning writers."""
    from sklearn.linear_model import LogisticRegression

    rows = [e for e in examples if e.features is not None and e.gold.actions is not None]
    x = np.array([e.features for e in rows], dtype=np.float64)
    groups = np.array([e.writer for e in rows])
    weights: dict[str, list[float]] = {}
    bias: dict[str, float] = {}
    thresholds: dict[str, float | None] = {}
    adds: dict[str, float | None] = {}
    vetoes: dict[str, float] = {}
    report: dict[str, Any] = {}
    grid = np.round(np.arange(0.2, 0.86, 0.05), 2)
    writers = sorted(set(groups.tolist()))
    fold_w: dict[str, dict[str, list[float]]] = {w: {} for w in writers}
    fold_b: dict[str, dict[str, float]] = {w: {} for w in writers}

    def fit_one(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, float]:
        if ys.min() == ys.max():
            return np.zeros(xs.shape[1]), (8.0 if ys.max() else -8.0)
        lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
        lr.fit(xs, ys)
        return lr.coef_[0], float(lr.intercept_[0])

    for t in ACTION_TYPES:
        y = np.array([t in (e.gold.actions or []) for e in rows], dtype=int)
        oof = np.zeros(len(rows))
        for w in writers:
            test, train = groups == w, groups != w
            coef, b = fit_one(x[train], y[train])
            oof[test] = 1 / (1 + np.exp(-(x[test] @ coef + b)))
            fold_w[w][t], fold_b[w][t] = [float(v) for v in coef], float(b)
        proposed = x[:, proposed_index(t)] > 0.5
        keep_th, add_th, f1, prec, rec = _choose_keep_add(oof, y, proposed, grid)
        rules = _prf(proposed, y)
        coef, b = fit_one(x, y)
        weights[t], bias[t] = [round(float(v), 6) for v in coef], round(b, 6)
        # Only where the data supports it: a judgment that does not generalise across writers, or
        # does no better than the rules alone, is left to the rules (threshold None).
        learned = t not in VETO_TYPES and y.sum() >= 5 and f1 >= MIN_CV_F1 and f1 > rules[0]
        thresholds[t] = keep_th if learned else None
        if learned:
            adds[t] = add_th
        report[t] = {"support": int(y.sum()), "threshold": thresholds[t], "add_threshold": adds.get(t),
                     "cv_f1": round(max(f1, 0.0), 3), "cv_precision": round(prec, 3), "cv_recall": round(rec, 3),
                     "cv_f1_rules_alone": round(rules[0], 3)}
        if t in VETO_TYPES:
            proposed = x[:, proposed_index(t)] > 0.5
            veto, report[t]["veto"] = choose_veto(oof[proposed], y[proposed], int(y.sum()))
            if veto is not None:
                vetoes[t] = veto
    meta = {"trained_on": {"writers": writers, "turns": len(rows)}, "C": c}
    folds = {w: ActionModel(fold_w[w], fold_b[w], thresholds, {}, vetoes, adds) for w in writers}
    meta["min_cv_f1"] = MIN_CV_F1
    return ActionModel(weights, bias, thresholds, meta, vetoes, adds), report, folds


def _f_beta(tp: int, predicted: int, positives: int, beta: float = 1.0) -> tuple[float, float, float]:
    """(F-beta, precision, recall) from counts."""
    prec, rec = tp / max(predicted, 1), tp / max(positives, 1)
    b2 = beta * beta
    return ((1 + b2) * prec * rec / (b2 * prec + rec) if prec + rec else 0.0), prec, rec


def _prf(pred: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """(F1, precision, recall) of boolean predictions against 0/1 (or boolean) gold."""
    return _f_beta(int((pred & (y == 1)).sum()), int(pred.sum()), int(y.sum()))


def _choose_keep_add(oof: np.ndarray, y: np.ndarray, proposed: np.ndarray, grid: np.ndarray,
                     ) -> tuple[float, float | None, float, float, float]:
    """Thresholds to keep a proposed type and to add one the rules did not propose (None: never add),
    with the best out-of-writer F1. Adding is judged apart: the rules saw nothing there, so the
    model may need more confidence (with one threshold for both, escalations were added on "然后呢")."""
    best: tuple[float, float | None, float, float, float] = (0.5, None, -1.0, 0.0, 0.0)
    for keep in grid:
        kept = proposed & (oof >= keep)
        for add in [*grid, None]:
            pred = kept | (~proposed & (oof >= add)) if add is not None else kept
            f1, prec, rec = _prf(pred, y)
            if f1 > best[2]:
                best = (float(keep), None if add is None else float(add), f1, prec, rec)
    return best


def choose_veto(p: np.ndarray, y: np.ndarray, positives: int) -> tuple[float | None, dict[str, Any]]:
    """The veto threshold for a type the model may only withhold, from out-of-writer probabilities.

    ``p``, ``y``: the turns where the rules proposed it; ``positives``: every turn whose gold wants it
    (recall counts the moments the gate missed too, which no veto can win back). The veto is kept
    only if its F0.5 beats showing every proposal.
    """
    base = _f_beta(int(y.sum()), len(y), positives, VETO_BETA)[0]
    best: tuple[float | None, float] = (None, base)
    for th in np.round(np.arange(0.05, 0.86, 0.05), 2):
        keep = p >= th
        f = _f_beta(int((keep & (y == 1)).sum()), int(keep.sum()), positives, VETO_BETA)[0]
        if f > best[1] + 1e-9:
            best = (float(th), f)
    th = best[0]
    kept = p >= th if th is not None else np.ones(len(p), dtype=bool)
    return th, {"proposed": len(p), "proposed_good": int(y.sum()), "threshold": th,
                "cv_f05_without": round(base, 3), "cv_f05_with": round(best[1], 3),
                "kept_good": int((kept & (y == 1)).sum()), "kept_bad": int((kept & (y == 0)).sum())}


__all__ = ["DialogueFile", "Example", "FitSettings", "Split", "collect", "dialogue_files", "load_conversations",
           "shop_dir", "train_dialogue"]
