"""Proactive ``care``: a reassuring line for an anxious customer, seasonal reminders (冬天热水器
防冻), first-use tips for a first-time buyer, and notices of order events (delayed, exception).

Each care message has a key and is offered once per conversation (anxiety: once per problem).
Seasonal reminders wait until the problem is solved and the customer is not upset (a reminder in
the middle of a complaint reads as not listening); first-use tips come with the delivery event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from assist.policy.actions import ActionType, Proposal
from assist.policy.config import PolicyConfig
from assist.policy.facts import Facts
from assist.policy.rules.cross_sell import solved_by
from assist.shop import Shop
from assist.state import ConversationState, Order, OrderEvent, aware
from assist.types import Emotion, SentimentLabel


def _in_category(category: str, wanted: str) -> bool:
    return bool(category) and (category == wanted or category.startswith(wanted + "/"))


def _anxiety(f: Facts) -> list[Proposal]:
    s = f.analysis.sentiment
    anxious = s.emotion is Emotion.anxiety and s.intensity >= f.cfg.care.anxiety_intensity
    said = [name for name, on in (("urgency", f.signals.urgency), ("worry", f.signals.worry)) if on]
    if (not anxious and not said) or f.signals.confirmed:
        return []
    key = f"anxiety:{f.problem.id if f.problem else f.state.last_turn_id}"
    if key in f.state.care_given:
        return []
    reason = "顾客说明了紧急情况或后果，先安抚并优先跟进" if "urgency" in said else "顾客比较着急，先安抚再处理"
    return [Proposal(type=ActionType.care, rule="care.anxiety", score=max(s.intensity, 0.7 if said else 0.0),
                     script=f.cfg.script("care_anxiety"), reason=reason,
                     evidence=(f.ev_sentiment, *(f"signal={n}" for n in said)), details={"key": key})]


def turn_categories(f: Facts) -> list[str]:
    """Categories this turn is about: mentioned SKUs, the problem's SKU, the answered KB hit, the order in question."""
    skus = [*f.analysis.skus_mentioned, *([f.problem.sku] if f.problem and f.problem.sku else [])]
    order = f.relevant_order()
    if order is not None:
        skus.append(order.sku)
    cats = [f.category_of(s) for s in skus]
    if f.answered and f.top_hit is not None:
        cats.append(f.top_hit.category)
    return [c for c in dict.fromkeys(cats) if c]


def _seasonal(f: Facts) -> list[Proposal]:
    month = aware(f.now, f.cfg.tz).astimezone(f.cfg.tz).month
    cats = turn_categories(f)
    region = (f.state.customer.region if f.state.customer else None) or ""
    out = []
    for rule in f.cfg.care.seasonal:
        key = f"seasonal:{rule.id}"
        if month not in rule.months or key in f.state.care_given:
            continue
        if rule.regions and not any(region.startswith(r) for r in rule.regions):
            continue
        matched = next((c for c in cats for w in rule.categories if _in_category(c, w)), None)
        if rule.categories and matched is None:
            continue
        out.append(Proposal(type=ActionType.care, rule=f"care.seasonal.{rule.id}", score=0.5, script=rule.script,
                            reason=rule.reason or "季节性提醒", evidence=(f"month={month}", f"category={matched}"),
                            details={"key": key}))
    return out


def kb_first_use_tips(cfg: PolicyConfig, shop: Shop) -> dict[str, str]:
    """SKU -> a usage tip from its first guidance KB entry (by id), for :func:`first_use_tip`.

    Built once per policy: scanning the KB on every delivery event cost ~0.1 s at 100k entries.
    """
    tips: dict[str, str] = {}
    for e in sorted(shop.published_kb, key=lambda e: e.id):
        if e.intent in cfg.defect.guidance_intents:
            answer = e.answer if len(e.answer) <= 80 else e.answer[:80] + "……"
            for sku in e.skus:
                tips.setdefault(sku, f"{e.question} {answer}")
    return tips


def first_use_tip(cfg: PolicyConfig, shop: Shop, sku: str, kb_tips: Mapping[str, str]) -> str | None:
    """The configured tip for ``sku`` (SKU or category match), else its KB tip (:func:`kb_first_use_tips`)."""
    item = shop.catalog.get(sku)
    category = item.category if item else ""
    for t in cfg.care.first_use_tips:
        target = t.match.removeprefix("category:")
        if t.match == sku or (t.match.startswith("category:") and _in_category(category, target)):
            return t.tip
    return kb_tips.get(sku)


def first_time_buyer(state: ConversationState, order: Order) -> bool:
    """The customer's only order of this SKU (no earlier purchase of it)."""
    if state.customer is None:
        return False
    return sum(1 for o in state.customer.orders if o.sku == order.sku) == 1


def first_use_care(cfg: PolicyConfig, shop: Shop, state: ConversationState, order: Order, now: datetime,
                   *, rule: str, kb_tips: Mapping[str, str]) -> Proposal | None:
    """Usage tips for a first-time buyer whose order was delivered within ``care.first_use_days``."""
    key = f"first_use:{order.sku}"
    if key in state.care_given or order.status != "delivered" or not first_time_buyer(state, order):
        return None
    if order.delivered_at is not None:
        age_days = (aware(now, cfg.tz) - aware(order.delivered_at, cfg.tz)).total_seconds() / 86400
        if age_days > cfg.care.first_use_days:
            return None
    tip = first_use_tip(cfg, shop, order.sku, kb_tips)
    if tip is None:
        return None
    item = shop.catalog.get(order.sku)
    name = item.name if item else order.sku
    return Proposal(type=ActionType.care, rule=rule, score=0.45,
                    script=cfg.script("care_first_use", name=name, tip=tip),
                    reason=f"首次购买{name}，刚签收，送上使用小贴士", evidence=(f"order={order.order_id}",),
                    sku=order.sku, details={"key": key, "order_id": order.order_id})


def propose(f: Facts, earlier: list[Proposal] | None = None) -> list[Proposal]:
    """Anxiety care; seasonal reminders once the problem is solved and the customer is calm.

    No anxiety line next to a recovery (its script already apologises and says what happens next)
    unless the customer states an urgency or a worry. First-use tips come with the delivery event
    (:func:`first_use_care`).
    """
    handled = any(p.type is ActionType.recovery for p in earlier or [])
    # A stated urgency or consequence ("宝宝明天就没得用了") needs its own reassurance and follow-up
    # even next to a recovery; a merely anxious tone is covered by the recovery's apology.
    out = [] if handled and not (f.signals.urgency or f.signals.worry) else _anxiety(f)
    calm = f.analysis.sentiment.label is not SentimentLabel.negative and not f.state.escalation_open
    if calm and not f.signals.threat and solved_by(f, earlier) is not None:
        out += _seasonal(f)
    return out


def event_care(cfg: PolicyConfig, state: ConversationState, event: OrderEvent) -> Proposal | None:
    """A proactive notice to the customer when a logistics event goes wrong."""
    if event.type not in ("delayed", "exception"):
        return None
    key = f"event:{event.type}:{event.order_id}"
    if key in state.care_given:
        return None
    name = "care_event_delayed" if event.type == "delayed" else "care_event_exception"
    return Proposal(type=ActionType.care, rule=f"care.event.{event.type}", score=0.6,
                    script=cfg.script(name, order_id=event.order_id, detail=event.detail or "物流异常"),
                    reason=f"订单{event.order_id}物流{'延迟' if event.type == 'delayed' else '异常'}，主动告知顾客",
                    evidence=(f"event={event.type} order={event.order_id}",), sku=event.sku,
                    details={"key": key, "order_id": event.order_id})
