"""The explicit, high-precision cue layer on top of the statistical classifiers.

Statistical models are good on average and weak exactly where a wrong answer costs most: a
customer who writes "12315见" must reach a supervisor even if no training writer ever phrased a
threat that way. The cue layer holds short, reviewed patterns in a data file
(``assist/data/cues.yaml``, or a shop's own file) and lets them adjust a prediction:

- each rule has ``match`` regexes, optional ``unless`` regexes that veto it (so that "怎么投诉" or
  "差评返现吗" are not read as threats), and its effects: an ``intent``, a ``sentiment`` and/or an
  ``emotion``, each with a weight ``w`` in 0..1, and an optional ``intensity`` floor;
- an effect moves the model's probabilities towards the cued class: ``p' = (1-w)·p + w·onehot``.
  ``w >= 0.5`` overrides (the cued class then has more than half the mass); smaller weights only
  tip close calls. Probabilities stay a distribution, so top-3 and confidence remain meaningful;
- every rule that fires is reported (``IntentResult.cues`` / ``SentimentResult.cues``) as
  ``"<rule id>:<matched text>"`` so an agent can see why a turn was flagged.

Rules only belong here when they are high precision: :func:`measure_cues` computes, for each
rule, how often its claims agree with labelled data; training reports it and a test keeps it high.
Patterns are matched against the *normalised* turn (lower-case, simplified Chinese, half-width).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from assist.errors import DataFileError, RecordProblem
from assist.types import Emotion, Intent, SentimentLabel

DEFAULT_CUES_PATH = Path(__file__).resolve().parents[1] / "data" / "cues.yaml"


class CueRule(BaseModel):
    """One reviewed pattern and what it says about a turn."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    why: str = ""
    match: list[str] = Field(min_length=1, description="regexes; any one firing triggers the rule")
    unless: list[str] = Field(default_factory=list, description="regexes that veto the rule")
    intent: Intent | None = None
    intent_weight: float = Field(0.0, ge=0.0, le=1.0)
    sentiment: SentimentLabel | None = None
    emotion: Emotion | None = None
    sentiment_weight: float = Field(0.0, ge=0.0, le=1.0)
    intensity: float | None = Field(None, ge=0.0, le=1.0, description="floor for intensity when it fires")

    @field_validator("match", "unless")
    @classmethod
    def _compiles(cls, patterns: list[str]) -> list[str]:
        for p in patterns:
            re.compile(p)
        return patterns

    @cached_property
    def _match_re(self) -> re.Pattern[str]:
        return re.compile("|".join(f"(?:{p})" for p in self.match))

    @cached_property
    def _unless_re(self) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{p})" for p in self.unless)) if self.unless else None

    def find(self, text: str) -> str | None:
        """The matched text if the rule fires on ``text`` (normalised), else None."""
        m = self._match_re.search(text)
        if m is None:
            return None
        if self._unless_re is not None and self._unless_re.search(text):
            return None
        return m.group(0)


@dataclass(frozen=True)
class CueHit:
    rule: CueRule
    matched: str

    def __str__(self) -> str:
        return f"{self.rule.id}:{self.matched}"


class CueSet:
    """An ordered set of :class:`CueRule` loaded from YAML. Cheap to call: a few compiled regexes."""

    def __init__(self, rules: Sequence[CueRule], *, source: str = "<memory>") -> None:
        ids = [r.id for r in rules]
        if len(set(ids)) != len(ids):
            raise ValueError(f"duplicate cue rule ids in {source}")
        self.rules = list(rules)
        self.source = source

    @classmethod
    def load(cls, path: Path | None = None) -> CueSet:
        """Load and validate a cue file (default: the packaged ``assist/data/cues.yaml``).

        Raises :class:`DataFileError` naming the rule and field of every bad entry.
        """
        path = path or DEFAULT_CUES_PATH
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = mark.line + 1 if mark is not None else 0
            raise DataFileError([RecordProblem(str(path), line, "yaml", str(e))]) from e
        entries = raw.get("rules", []) if isinstance(raw, dict) else []
        rules: list[CueRule] = []
        problems: list[RecordProblem] = []
        for i, entry in enumerate(entries, start=1):
            try:
                rules.append(CueRule.model_validate(entry))
            except ValidationError as e:
                for err in e.errors():
                    loc = ".".join(str(x) for x in err["loc"]) or "rule"
                    problems.append(RecordProblem(str(path), i, loc, err["msg"]))
        if problems:
            raise DataFileError(problems)
        return cls(rules, source=str(path))

    def match(self, text: str) -> list[CueHit]:
        """All rules that fire on the normalised ``text``, in file order."""
        hits = []
        for rule in self.rules:
            found = rule.find(text)
            if found is not None:
                hits.append(CueHit(rule, found))
        return hits


def _mix(probs: np.ndarray, classes: Sequence[str], target: str, weight: float) -> np.ndarray:
    """Move ``probs`` towards ``target``: (1-w)·p + w·onehot(target). Unknown targets are ignored."""
    if target not in classes or weight <= 0:
        return probs
    out = probs * (1.0 - weight)
    out[list(classes).index(target)] += weight
    return out


def apply_intent_cues(
    probs: np.ndarray, classes: Sequence[str], hits: Iterable[CueHit]
) -> tuple[np.ndarray, list[str]]:
    """Adjust intent probabilities by the hits that carry an intent; return them and the cue names.

    Weaker hits are applied first so the strongest has the last word when two disagree (between
    equal weights, the rule earlier in the file). Cue names are reported strongest first.
    """
    relevant = _application_order([h for h in hits if h.rule.intent is not None], lambda r: r.intent_weight)
    out = np.asarray(probs, dtype=np.float64).copy()
    for h in relevant:
        assert h.rule.intent is not None
        out = _mix(out, classes, h.rule.intent.value, h.rule.intent_weight)
    return out, [str(h) for h in relevant[::-1]]


def sentiment_hits(hits: Iterable[CueHit]) -> list[CueHit]:
    """The hits that carry a sentiment or emotion, strongest last (the order to apply them in)."""
    return _application_order(
        [h for h in hits if h.rule.sentiment is not None or h.rule.emotion is not None],
        lambda r: r.sentiment_weight,
    )


def _application_order(hits: list[CueHit], weight: Callable[[CueRule], float]) -> list[CueHit]:
    # ``hits`` come in file order; ties are broken so that the earlier rule is applied last and wins.
    order = sorted(range(len(hits)), key=lambda i: (weight(hits[i].rule), -i))
    return [hits[i] for i in order]


def apply_label_cue(probs: np.ndarray, classes: Sequence[str], target: str, weight: float) -> np.ndarray:
    """Public form of the mixing step, for the sentiment classifier's polarity and emotion heads."""
    return _mix(np.asarray(probs, dtype=np.float64).copy(), classes, target, weight)


def measure_cues(cues: CueSet, rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Precision of every rule on labelled rows (``text`` normalised, ``intent``, ``sentiment``, ``emotion``).

    Returns ``{rule_id: {"fires", "intent_precision", "sentiment_precision", "emotion_precision",
    "misses": [a few texts where a claim was wrong]}}``; a precision is None when the rule makes
    no such claim.
    """
    stats: dict[str, dict[str, Any]] = {
        r.id: {"fires": 0, "intent_ok": 0, "sentiment_ok": 0, "emotion_ok": 0, "misses": []} for r in cues.rules
    }
    for row in rows:
        for hit in cues.match(row["text"]):
            r = hit.rule
            s = stats[r.id]
            s["fires"] += 1
            wrong = []
            for claim, gold, key in (
                (r.intent, row.get("intent"), "intent_ok"),
                (r.sentiment, row.get("sentiment"), "sentiment_ok"),
                (r.emotion, row.get("emotion"), "emotion_ok"),
            ):
                if claim is None:
                    continue
                if claim.value == gold:
                    s[key] += 1
                else:
                    wrong.append(f"{key[:-3]}={gold}")
            if wrong and len(s["misses"]) < 8:
                s["misses"].append(f"{row['text']}  [{', '.join(wrong)}]")
    out: dict[str, dict[str, Any]] = {}
    for r in cues.rules:
        s = stats[r.id]
        n = s["fires"]

        def prec(claim: object, ok: int, n: int = n) -> float | None:
            return None if claim is None or n == 0 else round(ok / n, 3)

        out[r.id] = {
            "fires": n,
            "intent_precision": prec(r.intent, s["intent_ok"]),
            "sentiment_precision": prec(r.sentiment, s["sentiment_ok"]),
            "emotion_precision": prec(r.emotion, s["emotion_ok"]),
            "misses": s["misses"],
        }
    return out
