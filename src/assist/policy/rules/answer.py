"""``answer`` and ``clarify``: solve the stated problem from the KB, or ask what it is.

- A KB hit good enough to send (the retriever's calibrated ``answered``) becomes an ``answer`` whose
  script is the entry's answer, citing its id — except guidance the customer already followed
  without success (repeating failed guidance is not an answer).
- With no such hit, an order question is answered from the customer's order facts.
- A near miss (score above ``answer.clarify_min_score``) asks whether the top entry is what the
  customer means; a vague turn (low intent confidence, or a product problem with nothing found)
  asks what the problem is; a bare greeting at the start ("在吗") is answered with "有什么可以帮您".
"""

from __future__ import annotations

from assist.policy.actions import ActionType, Proposal
from assist.policy.facts import Facts, fmt_dt
from assist.policy.rules.defect import DefectJudgment, DefectKind
from assist.state import Order, Stage
from assist.types import Intent

_STATUS_TEXT = {
    "paid": "已付款，正在等待发货（付款时间 {paid}）",
    "shipped": "已于 {shipped} 发出{tracking}，正在运输中",
    "delivered": "已于 {delivered} 签收",
    "cancelled": "已取消",
    "returned": "已退货",
    "refunded": "已退款",
}


def _order_status_text(f: Facts, o: Order) -> str:
    tz = f.cfg.tz
    text = _STATUS_TEXT.get(o.status, o.status).format(
        paid=fmt_dt(o.paid_at, tz), shipped=fmt_dt(o.shipped_at, tz), delivered=fmt_dt(o.delivered_at, tz),
        tracking=f"，运单号 {o.tracking_no}" if o.tracking_no else "")
    if o.exception:
        text += f"；物流异常：{o.exception}"
    elif o.delayed_at:
        text += "；物流有延迟，我们已在催促快递"
    return text


def _order_answer(f: Facts) -> list[Proposal]:
    if f.intent not in f.cfg.answer.order_status_intents:
        return []
    order = f.relevant_order()
    if order is None:
        return []
    item = f.item(order.sku)
    return [Proposal(
        type=ActionType.answer, rule="answer.order_status", score=0.6,
        script=f.cfg.script("answer_order_status", order_id=order.order_id, name=item.name if item else order.sku,
                            status_text=_order_status_text(f, order)),
        reason="知识库没有合适答案，按订单信息回复物流状态", evidence=(f.ev_intent, f.ev_order(order)),
        sku=order.sku, details={"order_id": order.order_id, "status": order.status},
    )]


def _greeting(f: Facts) -> list[Proposal]:
    """"在吗" before anything else: answer the greeting and ask what the customer needs."""
    st = f.state
    if st.stage is not Stage.opening or st.problem is not None or st.agent_turns or f.signals.goodbye \
            or st.customer_turns > 1:
        return []
    return [Proposal(type=ActionType.clarify, rule="answer.clarify_greeting", score=0.5,
                     script=f.cfg.script("clarify_greeting"), reason="顾客在打招呼，先回应并询问需求",
                     evidence=(f.ev_intent,), details={"kind": "greeting"})]


def _fits_context(f: Facts, hit_skus: list[str], hit_category: str) -> bool:
    """A near-miss KB entry is worth asking about only if it is about what the conversation is about."""
    skus = set(f.state.products_in_context) | {o.sku for o in f.orders}
    cats = {f.category_of(s) for s in skus} | set(f.state.kb_categories)
    cats.discard("")
    if not skus and not f.state.kb_categories:
        return True
    return bool(skus & set(hit_skus)) or any(c == hit_category or c.startswith(hit_category + "/")
                                             for c in cats if hit_category)


def propose(f: Facts, j: DefectJudgment, earlier: list[Proposal] | None = None) -> list[Proposal]:
    """Answer / clarify proposals for the turn, given the usage-vs-defect judgment ``j``.

    ``earlier``: what the rules before this one proposed (an escalation is the reply to a
    complaint: no "how to complain" KB answer next to it).
    """
    cfg = f.cfg.answer
    escalating = any(x.type is ActionType.escalate for x in earlier or [])
    if f.intent in cfg.skip_intents and not f.signals.retry:
        return _greeting(f) if f.intent is Intent.greeting_thanks and f.signals.family is None \
            and not f.signals.confirmed else []
    hit = f.top_hit
    p = f.problem
    if escalating and f.intent in cfg.skip_when_escalating:
        return []
    # Clarify questions belong to the first turn of a problem; later turns are answered in context.
    opening_turn = p is None or p.id == f.state.last_turn_id
    if hit is not None and f.answered:
        already = p is not None and hit.kb_id in p.kb_ids
        if j.confirmed and already:
            # The customer followed this entry and it did not help: do not send it again.
            return []
        sku = (p.sku if p else None) or (f.analysis.skus_mentioned[0] if f.analysis.skus_mentioned else None)
        if sku is None and len(hit.skus) == 1:
            sku = hit.skus[0]
        reason = {
            DefectKind.guidance: "使用问题：先按知识库指导操作",
            DefectKind.ambiguous: "先给出使用指导（可能只是设置问题）",
            DefectKind.direct: "知识库有该故障的处理方式",
            DefectKind.safety: "知识库有该安全问题的处理方式",
        }.get(j.kind, "知识库有匹配的答案")
        return [Proposal(
            type=ActionType.answer, rule=f"answer.kb.{j.kind.value}", score=hit.score, script=hit.answer,
            reason=f"{reason}：「{hit.question}」", evidence=(f.ev_intent, f.ev_kb(hit)), kb_id=hit.kb_id, sku=sku,
            details={"question": hit.question, "category": hit.category, "guidance": j.kind in (
                DefectKind.guidance, DefectKind.ambiguous)},
        )]
    order_answer = _order_answer(f)
    if order_answer:
        return order_answer
    if j.confirmed:
        return []  # the defect handling (escalate, report, exchange) is the answer
    if not opening_turn or escalating or (p is not None and p.defect):
        return []
    if hit is not None and hit.score >= cfg.clarify_min_score and _fits_context(f, hit.skus, hit.category):
        if p is not None and f"kb:{hit.kb_id}" in p.clarify_asked:
            return []
        return [Proposal(
            type=ActionType.clarify, rule="answer.clarify_kb", score=hit.score,
            script=f.cfg.script("clarify_kb", question=hit.question),
            reason=f"知识库最接近的是「{hit.question}」，但把握不足，先确认", evidence=(f.ev_intent, f.ev_kb(hit)),
            kb_id=hit.kb_id, details={"kind": f"kb:{hit.kb_id}", "question": hit.question},
        )]
    vague = f.confidence < cfg.min_intent_confidence or f.intent in f.cfg.defect.problem_intents
    if vague and f.signals.family is not None and not f.signals.confirmed:
        # "热水器不好使了": nothing in the KB fits; ask what exactly happens.
        if p is not None and "generic" in p.clarify_asked:
            return []
        return [Proposal(
            type=ActionType.clarify, rule="answer.clarify_generic", score=1 - f.confidence,
            script=f.cfg.script("clarify_generic"), reason="问题描述不具体、知识库也没有合适答案，先问清楚情况",
            evidence=(f.ev_intent,), details={"kind": "generic"},
        )]
    return []
