"""Which action types to show, learned from the gold actions of the dialogue data.

The rules (:mod:`assist.policy.rules`) know *how* to build each action — the KB answer, the
allowance of the customer's tier, the quality report with SKU / batch / region, the cross-sell
candidate and its reason. Whether an action type is wanted on a turn is a judgment that word
lists and thresholds made badly on conversations nobody here wrote. :class:`ActionModel` makes that
judgment from evidence: one calibrated logistic regression per action type over
:func:`decision_features` (the dialogue model's signal, intent and sentiment probabilities, what the
rules proposed and why, the problem's stage, the order facts, the cross-sell gate).

:func:`refine` then applies it to the rules' proposals:

- a proposed type whose probability is under its threshold is dropped — except escalations for a
  threat or a safety hazard, which always stay;
- a type the rules did not propose but the model wants (over a separate *add* threshold, since
  the rules saw nothing there) is added with a plain proposal built from the same facts (escalate, care, clarify, a quality report of the open problem, the recovery the
  tier allows);
- **cross-sell is never added**: the solve-first gate is a hard constraint. The model can only
  withhold a cross-sell the gate allowed, with its own *veto* threshold (chosen by leave-one-writer-out
  cross-validation among the turns where the rules proposed one, weighing a wrong suggestion twice
  a missed one: F0.5; kept only if it beats showing every proposal), and only where the shop's
  policy sets ``cross_sell.model_veto``;
- a type whose judgment did not hold up in cross-validation (F1 under ``MIN_CV_F1`` on writers the
  fold never saw) is left to the rules entirely: threshold ``None``.

Trained by :mod:`assist.training.dialogue` (thresholds by leave-one-writer-out cross-validation
over the tuning writers) and stored as ``actions.json`` beside the dialogue model.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assist.errors import ModelError
from assist.policy.actions import ActionType, Proposal
from assist.policy.rules.defect import DefectKind
from assist.types import Emotion, SentimentLabel
from assist.understanding.dialogue import FAMILIES, INTENTS, SIGNALS, STAGES

if TYPE_CHECKING:
    from assist.policy.facts import Facts
    from assist.policy.rules.defect import DefectJudgment

FORMAT = "assist-actions/1"
TYPES: tuple[str, ...] = ("answer", "clarify", "escalate", "quality_report", "recovery", "care", "cross_sell")
# The feature order follows these tuples: a model is only valid with the order it was trained with.
_KINDS = tuple(k.value for k in DefectKind)
_PROTECTED = {"threat", "safety"}  # escalation reasons no model output may drop


def proposed_index(t: str) -> int:
    """Where :func:`decision_features` says whether the rules proposed type ``t`` (1.0 or 0.0)."""
    return len(SIGNALS) + 14 + len(INTENTS) + len(SentimentLabel) + 2 + len(Emotion) + 2 * TYPES.index(t)


def decision_features(f: Facts, props: list[Proposal], j: DefectJudgment, gate_ok: bool,
                      has_candidate: bool) -> list[float]:
    """The evidence one decision rests on, as numbers (see the module docstring)."""
    from assist.policy.rules.recovery import late_case

    x: list[float] = []
    learned = f.signals.learned
    x += [learned.get(s, 0.0) for s in SIGNALS]
    x += [float(bool(v)) for v in (f.signals.confirmed, f.signals.retry, bool(f.signals.threat), f.signals.affirm,
                                   f.signals.deny, f.signals.repeat_contact, bool(f.signals.safety),
                                   bool(f.signals.damage), f.signals.shipping, f.signals.urgency, f.signals.worry,
                                   f.signals.purchase, f.signals.info, f.signals.human)]
    intent = dict.fromkeys(INTENTS, 0.0)
    for s in f.analysis.intent.top:
        intent[s.label] = s.score
    intent[f.intent.value] = f.confidence
    x += [intent[i] for i in INTENTS]
    s = f.analysis.sentiment
    x += [float(s.label is lab) for lab in SentimentLabel] + [s.score, s.intensity]
    x += [float(s.emotion is e) for e in Emotion]
    for t in TYPES:
        mine = [p for p in props if p.type.value == t]
        x += [float(bool(mine)), max((p.score for p in mine), default=0.0)]
    x += [float(j.kind.value == k) for k in _KINDS]
    st = f.state
    p = st.problem
    x += [float(p is not None and not p.resolved), float(p is None)]
    x += [float(p is not None and p.family == fam) for fam in FAMILIES]
    x += [float(st.stage.value == stg) for stg in STAGES]
    x += [float(bool(p and p.guidance_given)), float(bool(p and p.defect)), float(bool(p and p.defect_reported)),
          float(bool(p and p.escalated)), float(st.escalation_open), float(bool(p and p.retries)),
          float(bool(p and p.hazard)), float(bool(p and p.complaint)), min(p.customer_turns if p else 0, 6) / 6,
          min(st.customer_turns, 10) / 10, min(st.customer_turns_since_agent, 3) / 3,
          float(f.on_problem_now), float(bool(st.recoveries)), float(bool(st.care_given)),
          float(bool(st.cross_sells_shown))]
    late = [late_case(f.cfg, o, f.now) for o in f.orders]
    x += [float(bool(f.orders)), float(any(c and c[0] == "unshipped" for c in late)),
          float(any(c and c[0] == "delay" for c in late)), float(f.relevant_order() is not None)]
    hit = f.top_hit
    x += [float(f.answered), hit.score if hit else 0.0, float(gate_ok), float(has_candidate),
          float(bool(st.customer and st.customer.opt_out_marketing))]
    return x


@dataclass(frozen=True)
class ActionModel:
    """Per action type: weights, bias and the threshold above which the type is wanted."""

    weights: dict[str, list[float]]
    bias: dict[str, float]
    # None: the data does not support judging this type (cross-validated F1 too low), so the rules
    # decide it alone.
    thresholds: dict[str, float | None]
    meta: dict[str, Any]
    # Types the model may only withhold (cross-sell): the probability under which a proposal is dropped.
    vetoes: dict[str, float] = field(default_factory=dict)
    # The probability over which a type the rules did not propose is added (None: never); a type
    # missing here adds at its ``thresholds`` value (models trained before the two were told apart).
    adds: dict[str, float | None] = field(default_factory=dict)

    def add_threshold(self, t: str) -> float | None:
        return self.adds[t] if t in self.adds else self.thresholds.get(t)

    def probabilities(self, x: list[float]) -> dict[str, float]:
        out = {}
        for t in TYPES:
            w = self.weights.get(t)
            if w is None or len(w) != len(x):
                raise ModelError(f"action model for {t!r} expects {len(w or [])} features, got {len(x)}; retrain")
            z = sum(a * b for a, b in zip(w, x, strict=True)) + self.bias[t]
            out[t] = 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))
        return out

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"format": FORMAT, "types": list(TYPES), "weights": self.weights,
                                    "bias": self.bias, "thresholds": self.thresholds, "vetoes": self.vetoes,
                                    "adds": self.adds, "meta": self.meta},
                                   ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> ActionModel:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read the action model {path}: {e}") from e
        if raw.get("format") != FORMAT or tuple(raw.get("types", ())) != TYPES:
            raise ModelError(f"{path}: not an {FORMAT} model for {TYPES}; retrain with `assist train`")
        return cls(raw["weights"], raw["bias"], raw["thresholds"], raw.get("meta", {}), raw.get("vetoes", {}),
                   raw.get("adds", {}))


def load_action_model(path: Path) -> ActionModel | None:
    return ActionModel.load(path) if path.exists() else None


def _fallback(t: str, f: Facts, j: DefectJudgment, p: float) -> Proposal | None:
    """A plain proposal of type ``t`` built from the facts, for a type the model wants and no rule proposed."""
    from assist.policy.rules import defect, recovery
    from assist.policy.rules.defect import DefectJudgment, DefectKind

    cfg = f.cfg
    prob = f.problem
    pid = prob.id if prob else (f.state.last_turn_id or "turn")
    why = f"模型依据对话判断（p={p:.2f}）"
    if t == "escalate":
        return Proposal(type=ActionType.escalate, rule="escalation.learned", score=p, script=cfg.script("escalate"),
                        reason=f"建议升级处理：{why}", evidence=(f.ev_intent, f.ev_sentiment),
                        details={"reasons": ["learned"], "key": f"escalate:{pid}"})
    if t == "care":
        return Proposal(type=ActionType.care, rule="care.learned", score=p, script=cfg.script("care_anxiety"),
                        reason=f"顾客需要安抚与跟进：{why}", evidence=(f.ev_sentiment,),
                        details={"key": f"anxiety:{pid}"})
    if t == "clarify":
        return Proposal(type=ActionType.clarify, rule="clarify.learned", score=p, script=cfg.script("clarify_generic"),
                        reason=f"信息不足，先问清楚：{why}", evidence=(f.ev_intent,), details={"kind": "generic"})
    if t == "quality_report":
        jj = j if j.confirmed else DefectJudgment(DefectKind.known, f"疑似产品质量问题：{why}", j.evidence)
        return defect.quality_report(f, jj)
    if t == "recovery":
        return recovery.offer(f, j)
    if t == "answer":
        hit = f.top_hit
        if hit is None or hit.score < cfg.answer.clarify_min_score:
            return None
        return Proposal(type=ActionType.answer, rule="answer.learned", score=hit.score, script=hit.answer,
                        reason=f"知识库答案「{hit.question}」：{why}", evidence=(f.ev_intent, f.ev_kb(hit)),
                        kb_id=hit.kb_id, details={"question": hit.question, "category": hit.category})
    return None


def refine(model: ActionModel, f: Facts, props: list[Proposal], j: DefectJudgment,
           probs: dict[str, float]) -> list[Proposal]:
    """The rules' proposals with the model's judgment applied (see the module docstring)."""
    out: list[Proposal] = []
    for prop in props:
        t = prop.type.value
        if t in model.vetoes and f.cfg.cross_sell.model_veto and probs.get(t, 1.0) < model.vetoes[t]:
            continue
        if t not in probs or model.thresholds.get(t) is None:  # qa alerts, or a type the rules decide
            out.append(prop)
            continue
        protected = t == "escalate" and _PROTECTED & set(prop.details.get("reasons", []))
        if probs[t] >= model.thresholds[t] or protected:
            out.append(prop)
    have = {p.type.value for p in out}
    for t in TYPES:
        th = model.add_threshold(t) if model.thresholds.get(t) is not None else None
        if t == "cross_sell" or t in have or th is None or probs[t] < th:
            continue
        extra = _fallback(t, f, j, probs[t])
        if extra is not None:
            out.append(extra)
    return out


__all__ = ["TYPES", "ActionModel", "decision_features", "load_action_model", "proposed_index", "refine"]
