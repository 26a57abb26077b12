"""Turn signals, intent and sentiment of a customer turn read in its conversation.

The utterance classifiers (:mod:`assist.understanding.intent`, :mod:`~.sentiment`) see one message
alone. Chat turns are short and lean on what came before: "多久" after a logistics answer, a bare
order number the agent asked for, "还是一样" after troubleshooting, "亮了 虚惊一场" that repeats the
symptom's word. This model reads the turn together with its context:

    x = [ e5(turn) · w_emb ,  hashed char 1-3-grams(turn) ,  hashed char 1-3-grams(previous agent turn) · w_agent ,
          hashed char 1-2-grams(previous customer turn) · w_prev ,  utterance-model outputs ,  state features ]

and gives, with one linear layer per head:

- ``signals``: 13 independent probabilities (:class:`assist.types.Signal`, eval/LABELLING.md),
  each with its own threshold chosen at training time on the tuning writers only;
- ``intent``: the 14 DESIGN §2 intents in context (softmax);
- ``sentiment``: negative / neutral / positive in context (softmax).

Character n-grams are hashed (crc32, stable across processes) into fixed spaces, so the model file
holds no vocabulary and unseen words cost nothing. Inference is numpy only: ~100 n-gram rows and
one small dense product, well under a millisecond.

The state features come from :class:`TurnContext`, built from the conversation state *before* the
turn (:func:`context_of`): the open problem's family, intent and stage, whether guidance was given
and how many customer turns ago, whether a defect or an escalation is open. Training builds the
same context by replaying the labelled conversations through the real engine
(:mod:`assist.training.dialogue`), so what the model learns from is what it sees in service.
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assist.errors import ModelError
from assist.types import Intent, SentimentLabel, Signal
from assist.understanding.features import canonical_chars

if TYPE_CHECKING:
    from assist.state import ConversationState
    from assist.types import Analysis

FORMAT = "assist-dialogue/1"
SIGNALS: tuple[str, ...] = tuple(s.value for s in Signal)
INTENTS: tuple[str, ...] = tuple(i.value for i in Intent)
SENTIMENTS: tuple[str, ...] = tuple(s.value for s in SentimentLabel)
FAMILIES: tuple[str, ...] = ("presale", "order", "product", "service", "admin")
STAGES: tuple[str, ...] = ("opening", "identifying", "solving", "resolved", "closing")

_URL = re.compile(r"https?://|\.com|\.htm|item\.|taobao|tmall|jd\.")
_LONG_NUMBER = re.compile(r"\d{8,}")
_CODE = re.compile(r"[a-z]{1,4}[-\d]{3,}|\d{3,}[a-z]")
_PHOTO = re.compile(r"\[(图片|照片|视频|image|photo)\]")


@dataclass(frozen=True)
class TurnContext:
    """What the conversation says about the next customer turn, from the state before it."""

    prev_agent: str = ""
    prev_customer: str = ""
    problem_family: str | None = None
    problem_intent: str | None = None
    problem_open: bool = False
    stage: str = "opening"
    guidance_given: int = 0
    turns_since_guidance: int = 0
    retries: int = 0
    defect: bool = False
    escalation_open: bool = False
    customer_turns: int = 0
    problem_turns: int = 0
    last_sentiment: float = 0.0


def context_of(state: ConversationState) -> TurnContext:
    """The :class:`TurnContext` of the next customer turn of ``state`` (pure)."""
    p = state.problem
    open_ = p is not None and not p.resolved
    return TurnContext(
        prev_agent=state.last_agent_text,
        prev_customer=state.customer_texts[-1] if state.customer_texts else "",
        problem_family=p.family if p is not None else None,
        problem_intent=p.intent.value if p is not None else None,
        problem_open=open_,
        stage=state.stage.value,
        guidance_given=p.guidance_given if p is not None else 0,
        turns_since_guidance=state.customer_turns_since_agent,
        retries=p.retries if p is not None else 0,
        defect=bool(p is not None and p.defect),
        escalation_open=state.escalation_open,
        customer_turns=state.customer_turns,
        problem_turns=p.customer_turns if p is not None else 0,
        last_sentiment=state.sentiment_trend[-1] if state.sentiment_trend else 0.0,
    )


# --- features --------------------------------------------------------------------------------


def _grams(text: str, n_max: int) -> Counter[str]:
    s = canonical_chars(text)
    out: Counter[str] = Counter()
    for n in range(1, n_max + 1):
        for i in range(len(s) - n + 1):
            g = s[i:i + n]
            if g.strip() and g not in ("^", "$", "^$"):
                out[g] += 1
    return out


def _hashed(text: str, n_max: int, dim: int, offset: int, tag: str) -> tuple[list[int], list[float]]:
    """Sublinear-tf hashed n-grams of ``text``, L2-normalised, at ``offset`` in the sparse space."""
    if not text:
        return [], []
    acc: dict[int, float] = {}
    for g, c in _grams(text, n_max).items():
        j = offset + zlib.crc32((tag + g).encode("utf-8")) % dim
        acc[j] = acc.get(j, 0.0) + 1.0 + math.log(c)
    norm = math.sqrt(sum(v * v for v in acc.values())) or 1.0
    return list(acc), [v / norm for v in acc.values()]


def _onehot(value: str | None, options: tuple[str, ...]) -> list[float]:
    return [1.0 if value == o else 0.0 for o in options]


def dense_features(analysis: Analysis, ctx: TurnContext) -> list[float]:
    """Utterance-model outputs, surface cues and state features (no embedding)."""
    text = analysis.normalised or analysis.text
    intent_probs = dict.fromkeys(INTENTS, 0.0)
    for s in analysis.intent.top:
        intent_probs[s.label] = s.score
    intent_probs[analysis.intent.label.value] = analysis.intent.confidence
    sent = analysis.sentiment
    n = len(text)
    feats = [intent_probs[i] for i in INTENTS]
    feats += [*_onehot(sent.label.value, SENTIMENTS), sent.score, sent.intensity]
    feats += [float(n <= 4), float(n <= 10), float(n > 30), float(bool(_URL.search(text))),
              float(bool(_LONG_NUMBER.search(text))), float(bool(_CODE.search(text))),
              float(bool(_PHOTO.search(text))), float("?" in text or "吗" in text)]
    feats += [*_onehot(ctx.problem_family, FAMILIES), float(ctx.problem_family is None)]
    feats += _onehot(ctx.problem_intent, INTENTS)
    feats += _onehot(ctx.stage, STAGES)
    feats += [float(ctx.problem_open), float(ctx.guidance_given > 0), min(ctx.guidance_given, 4) / 4,
              min(ctx.turns_since_guidance, 4) / 4, float(ctx.retries > 0), float(ctx.defect),
              float(ctx.escalation_open), min(ctx.customer_turns, 10) / 10, min(ctx.problem_turns, 6) / 6,
              ctx.last_sentiment, float(bool(ctx.prev_agent)), float("?" in ctx.prev_agent or "吗" in ctx.prev_agent)]
    return feats


@dataclass(frozen=True)
class Layout:
    """Where each block lives in the feature vector, and its weight."""

    turn_dim: int = 1 << 14
    agent_dim: int = 1 << 13
    prev_dim: int = 1 << 12
    emb_dim: int = 384
    w_emb: float = 1.0
    w_agent: float = 0.6
    w_prev: float = 0.4
    w_dense: float = 1.0

    @property
    def sparse_dim(self) -> int:
        return self.turn_dim + self.agent_dim + self.prev_dim

    def sparse(self, analysis: Analysis, ctx: TurnContext) -> tuple[np.ndarray, np.ndarray]:
        text = analysis.normalised or analysis.text
        i1, v1 = _hashed(text, 3, self.turn_dim, 0, "t")
        i2, v2 = _hashed(ctx.prev_agent.lower(), 3, self.agent_dim, self.turn_dim, "a")
        i3, v3 = _hashed(ctx.prev_customer, 2, self.prev_dim, self.turn_dim + self.agent_dim, "p")
        idx = np.array(i1 + i2 + i3, dtype=np.int64)
        val = np.array(v1 + [v * self.w_agent for v in v2] + [v * self.w_prev for v in v3], dtype=np.float32)
        return idx, val

    def dense(self, analysis: Analysis, ctx: TurnContext, embedding: np.ndarray | None) -> np.ndarray:
        emb = np.zeros(self.emb_dim, dtype=np.float32) if embedding is None else \
            np.asarray(embedding, dtype=np.float32).reshape(-1)[: self.emb_dim]
        d = np.asarray(dense_features(analysis, ctx), dtype=np.float32) * self.w_dense
        return np.concatenate([emb * self.w_emb, d])


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DialogueOutput:
    """The model's reading of one turn in context."""

    signals: dict[str, float]
    fired: frozenset[str]
    intent: dict[str, float]
    sentiment: dict[str, float]

    def intent_label(self) -> tuple[str, float]:
        label = max(self.intent, key=self.intent.__getitem__)
        return label, self.intent[label]

    def sentiment_label(self) -> tuple[str, float]:
        label = max(self.sentiment, key=self.sentiment.__getitem__)
        return label, self.sentiment[label]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max()
    e = np.exp(z)
    return e / e.sum()


class DialogueModel:
    """Linear heads over :class:`Layout` features. Load with :meth:`load`; pure and thread-safe."""

    def __init__(self, layout: Layout, weights: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                 thresholds: dict[str, float], meta: dict[str, Any] | None = None) -> None:
        # weights[head] = (sparse rows (sparse_dim, k), dense rows (dense_dim, k), bias (k,))
        self.layout = layout
        self.weights = weights
        self.thresholds = thresholds
        self.meta = meta or {}

    def predict(self, analysis: Analysis, ctx: TurnContext, embedding: np.ndarray | None) -> DialogueOutput:
        idx, val = self.layout.sparse(analysis, ctx)
        x = self.layout.dense(analysis, ctx, embedding)
        out: dict[str, np.ndarray] = {}
        for head, (ws, wd, b) in self.weights.items():
            z = (val @ ws[idx] if len(idx) else np.zeros_like(b)) + x @ wd + b
            out[head] = z
        sig = 1.0 / (1.0 + np.exp(-out["signals"]))
        signals = {s: float(p) for s, p in zip(SIGNALS, sig, strict=True)}
        fired = frozenset(s for s, p in signals.items() if p >= self.thresholds.get(s, 0.5))
        intent = {i: float(p) for i, p in zip(INTENTS, _softmax(out["intent"]), strict=True)}
        sentiment = {s: float(p) for s, p in zip(SENTIMENTS, _softmax(out["sentiment"]), strict=True)}
        return DialogueOutput(signals, fired, intent, sentiment)

    # --- files ---------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {}
        for head, (ws, wd, b) in self.weights.items():
            # float16 keeps the file small (a few MB); the rounding is far below the models' noise.
            arrays[f"{head}.sparse"] = ws.astype(np.float16)
            arrays[f"{head}.dense"] = wd.astype(np.float16)
            arrays[f"{head}.bias"] = b.astype(np.float32)
        np.savez_compressed(path / "model.npz", **arrays)
        lay = self.layout
        meta = {**self.meta, "format": FORMAT, "signals": list(SIGNALS), "intents": list(INTENTS),
                "sentiments": list(SENTIMENTS), "thresholds": self.thresholds,
                "layout": {"turn_dim": lay.turn_dim, "agent_dim": lay.agent_dim, "prev_dim": lay.prev_dim,
                           "emb_dim": lay.emb_dim, "w_emb": lay.w_emb, "w_agent": lay.w_agent,
                           "w_prev": lay.w_prev, "w_dense": lay.w_dense}}
        (path / "meta.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> DialogueModel:
        try:
            meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
            data = np.load(path / "model.npz")
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read the dialogue model in {path}: {e}") from e
        if meta.get("format") != FORMAT:
            raise ModelError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        if tuple(meta.get("signals", ())) != SIGNALS or tuple(meta.get("intents", ())) != INTENTS:
            raise ModelError(f"{path}: trained for other labels; retrain with `assist train`")
        layout = Layout(**meta["layout"])
        weights = {h: (data[f"{h}.sparse"].astype(np.float32), data[f"{h}.dense"].astype(np.float32),
                       data[f"{h}.bias"].astype(np.float32)) for h in ("signals", "intent", "sentiment")}
        return cls(layout, weights, {k: float(v) for k, v in meta["thresholds"].items()}, meta)


def load_dialogue_model(path: Path) -> DialogueModel | None:
    """The dialogue model in ``path``, or None when none was trained (the engine then uses word lists)."""
    if not (path / "meta.json").exists():
        return None
    return DialogueModel.load(path)


__all__ = ["DialogueModel", "DialogueOutput", "Layout", "TurnContext", "context_of", "dense_features",
           "load_dialogue_model"]
