"""Usage question or product defect? (DESIGN §1 "Is the stated problem the real need?")

"声音太小" from a customer who does not know the setting is solved by guidance; the same words
after the guidance was followed are a product defect. :func:`judge_defect` makes that call
explicit, from the intent, the KB entry that matched (guidance or defect handling), the open
problem's history (guidance given, clarify asked) and the turn's signals (还是不行, 试过了 ...):

============================  ===============================================================
kind                          when
============================  ===============================================================
``none``                      not about a malfunctioning product
``safety``                    a hazard word (煤气味, 冒烟, 鼓包 ...): escalate now
``failed_guidance``           retry words on a product problem, or "yes" to "已经按说明调过了吗"
``reported_after_guidance``   intent product_defect after guidance on the same problem
``direct``                    intent product_defect with visible damage (发霉, 破损, 异味 ...):
                              no guidance can fix it
``ambiguous``                 usage and defect within ``defect.ambiguity_margin`` in the intent
                              top-3 and the KB answer is guidance: answer + clarify
``guidance``                  a usage question, or a defect description that gets guidance first
``known``                     the problem was already confirmed a defect and reported
============================  ===============================================================

A defect description without visible damage gets guidance first even when the KB entry that
matched is filed as ``product_defect`` ("卡在开机logo" -> force restart, "咔咔响" -> re-seat the
filter): such entries start with troubleshooting, and only "it still happens" makes it a defect.

:func:`propose` turns the judgment into actions: ``clarify`` for ``ambiguous``, ``quality_report``
(tagged with SKU / batch / region of the customer's order) for confirmed defects, proposed again
on later turns still describing the defect until the agent acts on it (accepts, edits or
dismisses). Escalation and the repair/exchange recovery are their own rules' job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from assist.policy.actions import ActionType, Proposal
from assist.policy.facts import Facts
from assist.types import Intent, KbHit


class DefectKind(StrEnum):
    none = "none"
    safety = "safety"
    failed_guidance = "failed_guidance"
    reported_after_guidance = "reported_after_guidance"
    direct = "direct"
    ambiguous = "ambiguous"
    guidance = "guidance"
    known = "known"


CONFIRMED = frozenset({DefectKind.failed_guidance, DefectKind.reported_after_guidance, DefectKind.direct,
                       DefectKind.safety})

# The clarify question whose "yes" means the guidance was already followed.
TRIED_GUIDANCE = "tried_guidance"


@dataclass(frozen=True)
class DefectJudgment:
    kind: DefectKind
    reason: str = ""
    evidence: tuple[str, ...] = field(default_factory=tuple)

    @property
    def confirmed(self) -> bool:
        return self.kind in CONFIRMED


# An entry's intent label travels with its hit, so an entry added or relabelled through the KB
# API counts at once, without rebuilding the policy.
def _is_guidance(f: Facts, hit: KbHit) -> bool:
    return hit.intent in f.cfg.defect.guidance_intents


def _is_defect_entry(f: Facts, hit: KbHit) -> bool:
    return hit.intent in f.cfg.defect.defect_intents


def judge_defect(f: Facts) -> DefectJudgment:
    """Classify the turn on the usage-vs-defect axis (see the module table)."""
    cfg = f.cfg.defect
    p = f.problem
    hit = f.top_hit if f.answered else None
    ev = [f.ev_intent] + ([f.ev_kb(hit)] if hit else [])
    if f.signals.safety:
        return DefectJudgment(DefectKind.safety, f"顾客提到安全隐患「{'、'.join(f.signals.safety)}」",
                              (*ev, *(f"safety={w}" for w in f.signals.safety)))
    if f.signals.confirmed and not f.signals.retry:
        # "亮了 虚惊一场": a solved problem in the symptom's words is no defect report
        return DefectJudgment(DefectKind.none)
    if p is not None and p.defect and f.on_problem_now:
        # A refund or exchange question about it included: the problem is a known defect.
        return DefectJudgment(DefectKind.known, "已确认为产品故障", tuple(ev))
    on_product = f.intent in cfg.problem_intents or (p is not None and p.intent in cfg.problem_intents)
    if not on_product:
        return DefectJudgment(DefectKind.none)
    if f.signals.retry:
        tried = p.guidance_given if p else 0
        return DefectJudgment(
            DefectKind.failed_guidance,
            "按指导操作后问题仍在，判定为产品故障" if tried else "顾客表示已自行按说明操作仍未解决，判定为产品故障",
            (*ev, f"retry={f.analysis.normalised[:40]}", f"guidance_given={tried}"),
        )
    if p is not None and p.replying_to == TRIED_GUIDANCE and f.signals.affirm and not f.signals.deny:
        return DefectJudgment(DefectKind.failed_guidance, "顾客确认已按说明调整仍未解决，判定为产品故障",
                              (*ev, "clarify=tried_guidance:yes"))
    defect_intent = f.intent in cfg.defect_intents and f.confidence >= cfg.min_intent_confidence
    sure_defect = f.intent in cfg.defect_intents and f.confidence >= cfg.reported_min_confidence
    if sure_defect and p is not None and p.guidance_given > 0 and p.customer_turns > 1 and not f.signals.deny:
        return DefectJudgment(DefectKind.reported_after_guidance, "已给过使用指导，顾客仍反馈故障，判定为产品故障",
                              (*ev, f"guidance_given={p.guidance_given}"))
    if (defect_intent or "damage" in f.signals.learned) and f.signals.damage:
        words = "、".join(f.signals.damage)
        return DefectJudgment(DefectKind.direct, f"顾客描述的是明显的质量问题（{words}），无需先做使用指导",
                              (*ev, *(f"damage={w}" for w in f.signals.damage)))
    if defect_intent and hit is not None and _is_defect_entry(f, hit):
        return DefectJudgment(DefectKind.guidance, "故障描述：先按知识库排查，仍有问题再按故障处理", tuple(ev))
    # The classifier hesitates between usage and defect, and the KB answer is guidance: guide, and ask.
    defect_p = f.intent_prob(Intent.product_defect)
    usage_p = f.intent_prob(Intent.usage_howto)
    close_call = defect_p > 0 and usage_p > 0 and abs(defect_p - usage_p) <= cfg.ambiguity_margin
    if hit is not None and _is_guidance(f, hit) and close_call:
        return DefectJudgment(DefectKind.ambiguous, "像是故障，但知识库答案是使用指导：先指导并确认是否已操作过",
                              (*ev, f"p(defect)={defect_p:.2f} p(usage)={usage_p:.2f}"))
    if hit is not None and _is_guidance(f, hit):
        return DefectJudgment(DefectKind.guidance, "使用问题，知识库有操作指导", tuple(ev))
    return DefectJudgment(DefectKind.none, "", tuple(ev))


def _clarify(f: Facts, j: DefectJudgment) -> list[Proposal]:
    p = f.problem
    if p is not None and (TRIED_GUIDANCE in p.clarify_asked or p.replying_to == TRIED_GUIDANCE):
        return []  # asked once already: never nag
    return [Proposal(
        type=ActionType.clarify, rule="defect.ambiguous", score=0.8,
        script=f.cfg.script("clarify_tried_guidance"), reason=j.reason, evidence=j.evidence,
        kb_id=f.top_hit.kb_id if f.top_hit else None, sku=p.sku if p else None,
        details={"kind": TRIED_GUIDANCE},
    )]


def quality_report(f: Facts, j: DefectJudgment) -> Proposal:
    """A quality report tagged with SKU, batch and region so scattered reports add up."""
    p = f.problem
    order = f.relevant_order()
    sku = (p.sku if p else None) or (order.sku if order else None) or (
        f.analysis.skus_mentioned[0] if f.analysis.skus_mentioned else None)
    if sku is None and f.top_hit and len(f.top_hit.skus) == 1:
        sku = f.top_hit.skus[0]
    item = f.item(sku)
    region = (order.region if order else None) or (f.state.customer.region if f.state.customer else None)
    batch = (p.batch if p else None) or (order.batch if order else None)
    symptom = f.analysis.text
    if p is not None and p.text and p.text != symptom:
        symptom = f"{p.text} / {symptom}"
    details = {
        "kind": j.kind.value, "sku": sku, "name": item.name if item else None,
        "category": item.category if item else None, "batch": batch, "region": region,
        "order_id": order.order_id if order else None, "symptom": symptom,
        "intents": [i.value for i in p.intents] if p else [f.intent.value],
        "kb_ids": list(p.kb_ids) if p else [],
    }
    evidence = list(j.evidence) + ([f.ev_order(order)] if order else [])
    return Proposal(
        type=ActionType.quality_report, rule=f"defect.{j.kind.value}", score=0.9,
        script=f.cfg.script("quality_report", name=item.name if item else "未知商品", sku=sku or "未知",
                            batch=batch or "未知", region=region or "未知",
                            order_id=order.order_id if order else "未知", symptom=symptom),
        reason=j.reason, evidence=tuple(evidence), sku=sku,
        kb_id=f.top_hit.kb_id if f.top_hit and f.answered else None, details=details,
    )


def _report_pending(f: Facts) -> bool:
    """A report was shown for this problem and the agent has not acted on it yet."""
    p = f.problem
    return p is not None and p.defect_reported and not p.report_handled


def propose(f: Facts, j: DefectJudgment) -> list[Proposal]:
    """``clarify`` for an ambiguous usage/defect turn; ``quality_report`` for a confirmed defect."""
    if j.kind is DefectKind.ambiguous:
        return _clarify(f, j)
    p = f.problem
    if j.confirmed and not (p is not None and p.defect_reported and not _report_pending(f)):
        return [quality_report(f, j)]
    if j.kind is DefectKind.known and f.on_problem_now and (
            f.signals.batch or (f.intent in f.cfg.defect.defect_intents and _report_pending(f))):
        # Still describing the defect and the report is not filed yet: keep it in front of the agent;
        # a batch number given now goes into the report even after it was filed.
        return [quality_report(f, j)]
    return []
