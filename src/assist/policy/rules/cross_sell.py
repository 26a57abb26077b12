"""Solve first, then suggest: the ``cross_sell`` rule (DESIGN §1).

Two explicit halves, each testable alone:

:func:`gate` — is this the moment? All of:
  - a problem the customer solved is suggested on at the turn where they say so (or decide to buy);
  - the customer is not asking anything in this turn, and the problem was not a product defect;
  - the problem is solved: the customer confirmed after an answer, the agent resolved it, or a
    presale question was answered in an earlier step (never in the same breath as the answer);
    or the customer asks about the complement itself ("保护罩多少钱" after buying a mattress: a
    target named by its catalog words, :func:`~assist.policy.facts.target_terms`), which is then
    the one shown;
  - the recent sentiment is not negative (this turn not negative and the mean of the last
    ``cross_sell.sentiment_window`` scores at least ``cross_sell.min_sentiment_mean``);
  - no complaint or escalation is open, and none is being proposed now (nor a recovery, a quality
    report or a clarify: something is still wrong or unclear);
  - the customer has not opted out of marketing;
  - fewer than ``cross_sell.max_per_conversation`` cross-sells were shown without being accepted.

:func:`candidates` — what is relevant? A relation whose ``from`` (SKU or category) matches a product
in context (the problem's product, products mentioned, the customer's recent orders, the category
of answered KB entries), or whose ``triggers`` were voiced anywhere in the conversation (红屁屁 ->
护臀霜); its target in stock, not the same SKU bought recently (unless consumable), never one shown
before or dismissed. Score = relation weight × source weight (+ ``need_bonus`` when a trigger was
voiced); the best one is proposed, with its reason ("3天前买了A；买A的顾客常加购B") and the
relation's script.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from statistics import fmean

from assist.policy.actions import ActionType, Proposal
from assist.policy.facts import Facts
from assist.shop import CatalogItem, CrossSellRelation
from assist.state import Order
from assist.types import Intent, SentimentLabel

_BLOCKING_NOW = {ActionType.escalate, ActionType.recovery, ActionType.quality_report, ActionType.clarify}


@dataclass(frozen=True)
class Gate:
    ok: bool
    solved_by: str | None
    blocked: tuple[str, ...] = ()
    asked: Mapping[str, str] = field(default_factory=dict)  # :func:`asked_targets` of this turn


def solved_by(f: Facts, earlier: list[Proposal] | None = None) -> str | None:
    """How the current problem got solved, or None if it is not solved.

    A presale question answered in an earlier step counts once the customer has stopped asking
    (nothing is being answered or clarified on this turn).
    """
    p = f.problem
    if p is not None and p.resolved:
        return "agent_resolved" if p.resolved_by == "agent" else "customer_confirmed"
    if p is None and f.state.resolved:
        return "agent_resolved"
    asking_now = any(x.type in (ActionType.answer, ActionType.clarify) for x in earlier or [])
    if p is not None and p.family in f.cfg.cross_sell.presale_families and f.signals.purchase \
            and not f.signals.retry and f.signals.learned:
        # "那就L码吧" / "刷头怎么卖": the customer is deciding what to buy, the moment for a complement
        return "purchase_decision"
    # With the dialogue model the customer must say so (a decision or a thank-you); the word lists
    # alone only ask that nothing is being answered now.
    decided = f.signals.confirmed or f.signals.purchase or not f.signals.learned
    if p is not None and p.family in f.cfg.cross_sell.presale_families and p.answered and not f.signals.retry \
            and not asking_now and decided:
        # Answered in an earlier step, and "好 那就它了" now: the answer went out first, the suggestion after.
        return "presale_answered"
    return None


def asked_targets(f: Facts) -> dict[str, str]:
    """Cross-sell targets this turn names ("保护罩多少钱", "软毛的也要"), each with the word that names it.

    Only targets of a relation that starts from a product in context count: asking about the
    complement of something the customer owns or is buying is the moment to suggest it. And only
    when the agent just named it or the customer's own question was answered earlier: in "红屁屁，
    纸尿裤怎么选码" the open question is the size, not the wipes whose name shares "屁屁".
    """
    p = f.problem
    settled = p is None or p.answered or p.resolved
    agent = f.state.last_agent_text.lower()
    text = f.analysis.normalised or f.analysis.text.lower()
    named: dict[str, str] = {}
    for sku, terms in f.target_terms.items():
        word = sku if sku in f.analysis.skus_mentioned else next((t for t in terms if t in text), None)
        if word is not None and (settled or any(t in agent for t in terms)):
            named[sku] = word
    if not named:
        return {}
    ctx = _context(f)
    return {r.to: named[r.to] for r in f.shop.cross_sell if r.to in named and _source(r, ctx) is not None}


def gate(f: Facts, earlier: list[Proposal]) -> Gate:
    """Whether a cross-sell may be shown now; ``blocked`` names every condition that fails."""
    cfg = f.cfg.cross_sell
    blocked: list[str] = []
    how = solved_by(f, earlier)
    asked = asked_targets(f)
    if how is None and asked:
        # the customer turned to the complement themselves ("那保护罩多少钱"): no open question of
        # theirs is left unanswered by showing it, and what is still wrong blocks it below
        how = "asked_complement"
    if how is None:
        blocked.append("problem_not_solved")
    elif how == "customer_confirmed" and not (f.signals.confirmed or f.signals.purchase):
        # The moment is the turn where the customer says it works (or decides to buy), not any
        # later "嗯" or aside once the problem is behind us.
        blocked.append("not_the_moment")
    s = f.analysis.sentiment
    window = f.state.sentiment_trend[-cfg.sentiment_window:] or [s.score]
    if s.label is SentimentLabel.negative or fmean(window) < cfg.min_sentiment_mean:
        blocked.append("sentiment_negative")
    p = f.problem
    if f.state.escalation_open or (p is not None and p.complaint and not p.resolved) \
            or f.intent is Intent.complaint or f.signals.threat:
        blocked.append("complaint_or_escalation_open")
    if any(x.type in _BLOCKING_NOW for x in earlier) or f.signals.retry:
        blocked.append("problem_still_open_now")
    if not asked and f.cfg.signals.question.hit(f.analysis.normalised or f.analysis.text):
        # "那两样一起拍，一共是3158对吧?": answer the question first, suggest after
        blocked.append("customer_asking")
    if p is not None and p.defect:
        # a product of ours failed in this problem: no selling until the customer has it working
        blocked.append("defect_problem")
    if f.state.customer is not None and f.state.customer.opt_out_marketing:
        blocked.append("opted_out")
    if unaccepted_cross_sells(f) >= cfg.max_per_conversation:
        blocked.append("cross_sell_limit")
    return Gate(ok=not blocked, solved_by=how, blocked=tuple(blocked), asked=asked)


def unaccepted_cross_sells(f: Facts) -> int:
    return sum(1 for x in f.state.suggestions.values()
               if x.type == ActionType.cross_sell.value and x.status not in ("accepted", "edited"))


@dataclass(frozen=True)
class Candidate:
    index: int
    relation: CrossSellRelation
    item: CatalogItem
    score: float
    source: str | None
    source_sku: str | None
    source_category: str | None
    order: Order | None
    trigger: str | None


def _top(category: str) -> str:
    return category.split("/", 1)[0]


def _category_match(category: str, wanted: str) -> bool:
    return category == wanted or category.startswith(wanted + "/")


def _context(f: Facts) -> list[tuple[str, str | None, str, Order | None]]:
    """(source, sku, category, order) for every product in context, strongest source first."""
    out: list[tuple[str, str | None, str, Order | None]] = []
    p = f.problem
    if p is not None and p.sku:
        out.append(("focus", p.sku, f.category_of(p.sku), None))
    for sku in reversed(f.state.products_in_context):
        out.append(("mentioned", sku, f.category_of(sku), None))
    horizon = f.cfg.cross_sell.context_order_days * 24
    for o in sorted(f.orders, key=lambda o: o.order_id):
        if o.status in ("cancelled", "refunded", "returned"):
            continue
        if o.paid_at is None or f.hours_since(o.paid_at) <= horizon:
            out.append(("order", o.sku, f.category_of(o.sku), o))
    for c in reversed(f.state.kb_categories):
        out.append(("kb_category", None, c, None))
    return out


def _source(r: CrossSellRelation, ctx: list[tuple[str, str | None, str, Order | None]],
            ) -> tuple[str, str | None, str, Order | None] | None:
    """The strongest product in context the relation starts from, if any."""
    for source, sku, cat, order in ctx:
        if r.applies_to(sku, cat) if sku else (r.from_category is not None and _category_match(cat, r.from_category)):
            return source, sku, cat, order
    return None


def _voiced(f: Facts, r: CrossSellRelation) -> str | None:
    for t in r.triggers:
        w = t.lower()
        if any(w in text for text in f.state.customer_texts):
            return t
    return None


def _recently_bought(f: Facts, sku: str) -> bool:
    limit = f.cfg.cross_sell.recent_purchase_days * 24
    return any(o.sku == sku and o.status not in ("cancelled", "refunded", "returned")
               and (o.paid_at is None or f.hours_since(o.paid_at) <= limit) for o in f.orders)


def candidates(f: Facts, asked: Mapping[str, str] | None = None) -> tuple[list[Candidate], dict[str, str]]:
    """Relevant, allowed cross-sell candidates, best first; and why each other target was left out.

    ``asked``: :func:`asked_targets` of this turn, if the gate has found them already."""
    cfg = f.cfg.cross_sell
    ctx = _context(f)
    ctx_tops = {_top(c) for _, _, c, _ in ctx if c}
    shown = set(f.state.cross_sells_shown)
    dismissed = f.state.dismissed_skus
    talking_about = set(f.analysis.skus_mentioned) | ({f.problem.sku} if f.problem and f.problem.sku else set())
    out: list[Candidate] = []
    rejected: dict[str, str] = {}
    if asked is None:
        asked = asked_targets(f)
    for i, r in enumerate(f.shop.cross_sell):
        item = f.item(r.to)
        if item is None or (asked and r.to not in asked):
            # a customer asking about one complement is shown that one, not another
            continue
        src = _source(r, ctx)
        trigger = _voiced(f, r) or asked.get(r.to)
        if src is None and trigger is not None:
            # A trigger word alone is not relevance: the need must be voiced about a product domain
            # this conversation is about (a product owned, ordered or asked about).
            from_cat = r.from_category or f.category_of(r.from_)
            if not ctx_tops or _top(from_cat) not in ctx_tops:
                rejected.setdefault(r.to, "need_in_other_domain")
                continue
        if src is None and trigger is None:
            continue
        if r.to in dismissed:
            rejected[r.to] = "dismissed"
            continue
        if r.to in shown:
            rejected[r.to] = "already_shown"
            continue
        if r.to in talking_about and r.to not in asked:
            rejected[r.to] = "already_in_question"
            continue
        if item.stock < cfg.min_stock:
            rejected[r.to] = "out_of_stock"
            continue
        if not item.consumable and _recently_bought(f, r.to):
            rejected[r.to] = "just_bought"
            continue
        weight = cfg.source_weight.get(src[0] if src else "need", 0.0)
        score = r.weight * weight + (cfg.need_bonus if trigger else 0.0)
        if score < cfg.min_score:
            rejected.setdefault(r.to, "low_score")
            continue
        out.append(Candidate(i, r, item, round(score, 4), src[0] if src else None, src[1] if src else None,
                             src[2] if src else None, src[3] if src else None, trigger))
    out.sort(key=lambda c: (-c.score, c.index))
    # Several relations may lead to the same item: keep its best one.
    seen: set[str] = set()
    best = [c for c in out if not (c.item.sku in seen or seen.add(c.item.sku))]  # type: ignore[func-returns-value]
    return best, rejected


def _reason(f: Facts, c: Candidate) -> str:
    parts: list[str] = []
    if c.order is not None:
        item = f.item(c.order.sku)
        days = int(f.hours_since(c.order.paid_at) // 24) if c.order.paid_at else None
        when = "今天" if days == 0 else (f"{days}天前" if days is not None else "之前")
        parts.append(f"{when}买了{item.name if item else c.order.sku}")
    elif c.source in ("focus", "mentioned") and c.source_sku:
        item = f.item(c.source_sku)
        parts.append(f"正在咨询{item.name if item else c.source_sku}")
    elif c.source == "kb_category" and c.source_category:
        parts.append(f"正在咨询{c.source_category.rsplit('/', 1)[-1]}")
    if c.trigger:
        parts.append(f"顾客提到「{c.trigger}」")
    parts.append(c.relation.reason)
    return "；".join(parts)


def judge(f: Facts, earlier: list[Proposal]) -> tuple[Gate, list[Candidate]]:
    """The gate and, when it is open, the relevant candidates (best first)."""
    g = gate(f, earlier)
    return g, (candidates(f, g.asked)[0] if g.ok else [])


def propose(f: Facts, earlier: list[Proposal], judged: tuple[Gate, list[Candidate]] | None = None) -> list[Proposal]:
    """The best candidate as a proposal, if the gate is open; ``judged``: :func:`judge`'s result, if known."""
    g, found = judged if judged is not None else judge(f, earlier)
    if not g.ok or not found:
        return []
    c = found[0]
    s = f.analysis.sentiment
    evidence = [f"relation={c.relation.from_}->{c.relation.to}(w={c.relation.weight:g})", f"solved_by={g.solved_by}",
                f"sentiment={s.label.value}({s.score:.2f})", f"stock={c.item.stock}"]
    if c.order is not None:
        evidence.append(f.ev_order(c.order))
    elif c.source:
        evidence.append(f"context={c.source}:{c.source_sku or c.source_category}")
    if c.trigger:
        evidence.append(f"trigger={c.trigger}")
    return [Proposal(
        type=ActionType.cross_sell, rule=f"cross_sell.{c.source or 'need'}", score=min(c.score, 1.0),
        script=c.relation.script, reason=_reason(f, c), evidence=tuple(evidence), sku=c.item.sku,
        details={"key": f"cross_sell:{c.item.sku}", "name": c.item.name, "price": c.item.price,
                 "relation_from": c.relation.from_, "source": c.source, "trigger": c.trigger,
                 "solved_by": g.solved_by, "raw_score": c.score},
    )]
