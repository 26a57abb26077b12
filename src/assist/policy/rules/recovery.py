"""Service ``recovery`` within configured policy (DESIGN §1).

Cases, each offered once per order (or problem) per conversation:

- ``unshipped``: an order paid more than ``recovery.unshipped_after_hours`` ago and not shipped
  -> apology, priority shipping, a coupon / gift within the tier's allowance;
- ``delay``: shipped more than ``recovery.transit_after_hours`` ago and not delivered, or flagged
  delayed / exception by a logistics event -> apology, courier chased, compensation;
- ``defect``: a confirmed defect -> the tier's remedy (exchange / repair) and compensation.

What may be offered comes from ``recovery.allowances[tier][case]``; nothing is hard-coded, and an
unknown tier falls back to ``recovery.default_tier``. Late orders are brought up when the customer
asks about orders (``recovery.intents``), complains, or mentions shipping (``signals.shipping``);
events bring them up by themselves.
"""

from __future__ import annotations

from typing import Any

from assist.policy.actions import ActionType, Proposal
from assist.policy.config import Allowance, Case, PolicyConfig
from assist.policy.facts import Facts
from assist.policy.rules.defect import DefectJudgment
from assist.state import ConversationState, Order, aware


def _extras(cfg: PolicyConfig, a: Allowance) -> str:
    parts = []
    if a.gift:
        parts.append(cfg.script("recovery_gift", gift=a.gift))
    if a.coupon_yuan:
        parts.append(cfg.script("recovery_coupon", coupon_yuan=f"{a.coupon_yuan:g}"))
    return "".join(f"，{p}" for p in parts if p)


def late_case(cfg: PolicyConfig, order: Order, now: Any) -> tuple[Case, float] | None:
    """Whether ``order`` is late at ``now``: ("unshipped" | "delay", hours late) or None."""
    tz = cfg.tz
    now = aware(now, tz)
    if order.status == "paid" and order.paid_at is not None:
        hours = (now - aware(order.paid_at, tz)).total_seconds() / 3600
        if hours > cfg.recovery.unshipped_after_hours:
            return "unshipped", hours
    if order.status == "shipped":
        if order.exception or order.delayed_at:
            start = order.shipped_at or order.delayed_at
            return "delay", (now - aware(start, tz)).total_seconds() / 3600 if start else 0.0
        if order.shipped_at is not None:
            hours = (now - aware(order.shipped_at, tz)).total_seconds() / 3600
            if hours > cfg.recovery.transit_after_hours:
                return "delay", hours
    return None


def recovery_for_order(cfg: PolicyConfig, state: ConversationState, order: Order, case: Case, hours: float,
                       *, rule: str, evidence: tuple[str, ...], repeat: bool = False) -> Proposal | None:
    """The recovery proposal for one late order, or None when already offered in this conversation
    (``repeat``: offer it again, e.g. while the customer is still waiting)."""
    key = f"{case}:{order.order_id}"
    if key in state.recoveries and not repeat:
        return None
    tier = state.customer.tier if state.customer else None
    used_tier, allowance = cfg.recovery.allowance(tier, case)
    script_name = "recovery_unshipped" if case == "unshipped" else "recovery_delay"
    limit = cfg.recovery.unshipped_after_hours if case == "unshipped" else cfg.recovery.transit_after_hours
    reason = (f"订单{order.order_id}付款{hours:.0f}小时未发货（超过{limit:g}小时）" if case == "unshipped"
              else f"订单{order.order_id}物流延误" + (f"（{order.exception}）" if order.exception else ""))
    return Proposal(
        type=ActionType.recovery, rule=rule, score=min(1.0, 0.7 + hours / 240), sku=order.sku,
        script=cfg.script(script_name, order_id=order.order_id, hours=f"{hours:.0f}", extras=_extras(cfg, allowance)),
        reason=f"{reason}；按{used_tier}等级补偿：{_describe(allowance)}",
        evidence=(*evidence, f"tier={tier or '?'}", f"late_hours={hours:.1f}"),
        details={"key": key, "case": case, "order_id": order.order_id, "tier": used_tier,
                 **allowance.model_dump(exclude_none=True)},
    )


def _describe(a: Allowance) -> str:
    parts = []
    if a.priority_shipping:
        parts.append("优先发货")
    if a.remedy:
        parts.append(a.remedy)
    if a.coupon_yuan:
        parts.append(f"{a.coupon_yuan:g}元券")
    if a.gift:
        parts.append(a.gift)
    return "、".join(parts) or "致歉"


def _late_orders(f: Facts) -> list[Proposal]:
    if f.intent not in f.cfg.recovery.intents and not f.signals.shipping \
            and not (f.problem and f.problem.family == "order"):
        return []
    late = []
    for o in f.orders:
        lc = late_case(f.cfg, o, f.now)
        if lc is not None:
            late.append((o, *lc))
    # The order the customer is talking about first, then the one waiting longest.
    mentioned = set(f.analysis.skus_mentioned) | ({f.problem.sku} if f.problem and f.problem.sku else set())
    late.sort(key=lambda t: (t[0].sku not in mentioned, -t[2], t[0].order_id))
    for o, case, hours in late:
        prop = recovery_for_order(f.cfg, f.state, o, case, hours, rule=f"recovery.{case}",
                                  evidence=(f.ev_intent, f.ev_order(o)))
        if prop is not None:
            return [prop]
    return []


def _defect(f: Facts, j: DefectJudgment, *, repeat: bool = False) -> list[Proposal]:
    if not j.confirmed and not repeat:
        return []
    p = f.problem
    order = f.relevant_order()
    key = f"defect:{order.order_id if order else (p.id if p else 'turn')}"
    if key in f.state.recoveries and not repeat:
        return []
    tier, allowance = f.cfg.recovery.allowance(f.tier, "defect")
    return [Proposal(
        type=ActionType.recovery, rule="recovery.defect", score=0.85,
        script=f.cfg.script("recovery_defect", remedy=allowance.remedy or "换新或维修", extras=_extras(f.cfg, allowance)),
        reason=f"产品故障：{allowance.remedy or '换新或维修'}；按{tier}等级补偿：{_describe(allowance)}",
        evidence=(*j.evidence, *( [f.ev_order(order)] if order else []), f"tier={f.tier}"),
        sku=order.sku if order else (p.sku if p else None),
        details={"key": key, "case": "defect", "order_id": order.order_id if order else None, "tier": tier,
                 **allowance.model_dump(exclude_none=True)},
    )]


def propose(f: Facts, j: DefectJudgment) -> list[Proposal]:
    return _defect(f, j) + _late_orders(f)


def offer(f: Facts, j: DefectJudgment) -> Proposal | None:
    """The recovery the facts allow when the learned judgment wants one and no rule proposed it:
    a late order's (even if offered before), else the tier's defect remedy for the open problem."""
    late = [(o, *lc) for o in f.orders if (lc := late_case(f.cfg, o, f.now)) is not None]
    late.sort(key=lambda t: (-t[2], t[0].order_id))
    for o, case, hours in late:
        prop = recovery_for_order(f.cfg, f.state, o, case, hours, rule=f"recovery.learned.{case}",
                                  evidence=(f.ev_intent, f.ev_order(o)), repeat=True)
        if prop is not None:
            return prop
    if f.problem is None:
        return None
    props = _defect(f, j, repeat=True)
    return props[0] if props else None
