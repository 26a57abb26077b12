"""``escalate`` early (DESIGN §1): safety hazards, threats, strong anger, a complaint, repeated
unresolved contact, and defects confirmed after guidance failed.

:func:`escalation_reasons` lists every reason that holds (each testable alone); :func:`propose`
merges them into one ``escalate`` action whose script fits the strongest reason. While a reason
holds the action is proposed again on later turns (the console shows what is warranted now; the
state keeps one open escalation per problem); ``escalation.repeat_while_open: false`` proposes it
once per problem instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from assist.policy.actions import ActionType, Proposal
from assist.policy.facts import Facts
from assist.policy.rules.defect import DefectJudgment, DefectKind
from assist.types import Emotion, SentimentLabel


@dataclass(frozen=True)
class Reason:
    code: str
    score: float
    text: str
    evidence: tuple[str, ...]


def escalation_reasons(f: Facts, j: DefectJudgment) -> list[Reason]:
    """Every escalation reason that holds for this turn, strongest first."""
    cfg = f.cfg.escalation
    out: list[Reason] = []
    p = f.problem
    if j.kind is DefectKind.safety:
        out.append(Reason("safety", 1.0, j.reason, j.evidence))
    elif p is not None and p.hazard and f.on_problem_now and f.intent in f.cfg.defect.defect_intents:
        # "是热水器漏气吗" after "一股煤气味": the hazard is still the subject
        out.append(Reason("safety", 1.0, "此前已报告安全隐患，仍未排除", (f.ev_intent, "hazard=reported_earlier")))
    if f.signals.threat:
        words = "、".join(f.signals.threat)
        out.append(Reason("threat", 0.95, f"顾客威胁投诉/曝光（{words}）",
                          (f.ev_intent, *(f"threat={w}" for w in f.signals.threat))))
    if f.signals.human and not f.signals.confirmed:
        out.append(Reason("human_request", 0.9, "顾客要求人工/主管处理", (f.ev_intent, "human_request")))
    s = f.analysis.sentiment
    # "卧槽 真是这个 关了就正常了 谢谢" swears in relief: a confirmation is not anger
    if s.emotion is Emotion.anger and s.intensity >= cfg.anger_intensity and not f.signals.confirmed:
        out.append(Reason("anger", 0.9, "顾客情绪非常激动", (f.ev_sentiment,)))
    if f.intent in cfg.complaint_intents and f.confidence >= cfg.complaint_min_confidence \
            and s.label is SentimentLabel.negative:
        out.append(Reason("complaint", 0.88, "顾客在投诉", (f.ev_intent, f.ev_sentiment)))
    if j.kind in (DefectKind.failed_guidance, DefectKind.reported_after_guidance):
        out.append(Reason("defect", 0.85, j.reason, j.evidence))
    # Only a still-unhappy turn about the problem counts ("好 等你消息" or "要寄回去吗" on turn 4 are not
    # unresolved contact), and not once the problem is being handled (escalated, or a confirmed defect).
    repeated = (p is not None and p.family in cfg.repeat_families and not p.resolved and f.on_problem_now
                and p.customer_turns >= cfg.repeat_turns and s.label is SentimentLabel.negative
                and not p.escalated and not p.defect)
    if repeated or f.signals.repeat_contact:
        turns = p.customer_turns if p else 0
        text = "顾客表示多次联系仍未解决" if f.signals.repeat_contact else f"同一问题已沟通{turns}轮仍未解决"
        out.append(Reason("repeat", 0.8, text, (f"problem_turns={turns}", f"repeat_contact={f.signals.repeat_contact}")))
    out.sort(key=lambda r: -r.score)
    return out


_SCRIPT_OF = {"safety": "escalate_safety", "defect": "escalate_defect"}


def propose(f: Facts, j: DefectJudgment) -> list[Proposal]:
    reasons = escalation_reasons(f, j)
    if not reasons:
        return []
    p = f.problem
    open_here = p.escalated if p is not None else f.state.escalation_open
    if open_here and not f.cfg.escalation.repeat_while_open and reasons[0].code != "safety":
        return []
    top = reasons[0]
    _, allowance = f.cfg.recovery.allowance(f.tier, "defect")
    script = f.cfg.script(_SCRIPT_OF.get(top.code, "escalate"), remedy=allowance.remedy or "换新或维修")
    evidence: list[str] = []
    for r in reasons:
        evidence.extend(e for e in r.evidence if e not in evidence)
    return [Proposal(
        type=ActionType.escalate, rule=f"escalation.{top.code}", score=top.score, script=script,
        reason="；".join(r.text for r in reasons), evidence=tuple(evidence), sku=p.sku if p else None,
        details={"reasons": [r.code for r in reasons], "key": f"escalate:{p.id if p else 'conversation'}"},
    )]
