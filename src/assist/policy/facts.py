"""What the rules look at for one decision: :class:`Facts`, and the text features behind it.

``extract_signals`` is the "text -> features" half (word lists from the config, trigger words from
the shop's cross-sell relations); the rules are the "features -> decision" half and read only
:class:`Facts`, so each can be tested with values built by hand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from assist.policy.config import PolicyConfig
from assist.shop import CatalogItem, Shop
from assist.state import ConversationState, Order, Problem, TurnSignals, aware
from assist.types import Analysis, Intent, KbHit


def relation_triggers(shop: Shop) -> list[str]:
    """Every cross-sell trigger word of the shop, longest first (so "屁股红" wins over "红")."""
    words = {t.lower() for r in shop.cross_sell for t in r.triggers if t.strip()}
    return sorted(words, key=lambda w: (-len(w), w))


_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_COMMON_FREQ = 1000  # jieba dictionary count above which a two-character word is everyday language


def target_terms(shop: Shop, *, max_items: int = 2) -> dict[str, tuple[str, ...]]:
    """Words that name each cross-sell target, from its catalog name: "护罩" for "A类防水防螨床垫保护罩".

    A customer asking "保护罩多少钱" after the agent mentioned one is asking about the complement.
    Terms are the 2-4 character pieces of the target's name that name at most ``max_items`` catalog
    items and no item the relation starts from, so brand names and the source product's own words
    ("床垫" in a mattress protector) never count as asking about the target.
    """
    import jieba

    names = {sku: item.name for sku, item in shop.catalog.items()}

    def pieces(name: str) -> set[str]:
        # two characters only when they are a word of the name ("电池", not "性电" of "碱性电池") and
        # not an everyday word (jieba's general-language frequency: "标准", "天然", "专用" name nothing)
        words = {w for w in jieba.cut_for_search(name) if len(w) == 2 and (jieba.get_FREQ(w) or 0) < _COMMON_FREQ}
        return {w for run in _CJK_RUN.findall(name) for n in (2, 3, 4) for i in range(len(run) - n + 1)
                if len(w := run[i:i + n]) > 2 or w in words}

    by_piece: dict[str, set[str]] = {}
    for sku, name in names.items():
        for w in pieces(name):
            by_piece.setdefault(w, set()).add(sku)
    # a piece shared with a need word ("屁屁" of "红屁屁") names the symptom, not the product
    needs = relation_triggers(shop)
    out: dict[str, set[str]] = {}
    for r in shop.cross_sell:
        if r.to not in names:
            continue
        if r.from_category is not None:
            sources = {sku for sku, item in shop.catalog.items()
                       if item.category == r.from_category or item.category.startswith(r.from_category + "/")}
        else:
            sources = {r.from_}
        sources.discard(r.to)  # a protector in the mattress category is still not a mattress
        banned = set().union(*(pieces(names[s]) for s in sources if s in names))
        keep = {w for w in pieces(names[r.to]) if len(by_piece[w]) <= max_items and w not in banned
                and not any(w in t or t in w for t in needs)}
        out.setdefault(r.to, set()).update(keep)
    # longest first, so the evidence names the most specific word
    return {sku: tuple(sorted(ws, key=lambda w: (-len(w), w))) for sku, ws in out.items()}


def find_needs(text: str, triggers: Iterable[str]) -> list[str]:
    """Trigger words voiced in ``text`` (normalised), each once, longest match first."""
    found: list[str] = []
    for t in triggers:
        if t in text and not any(t in f for f in found):
            found.append(t)
    return found


def cue_words(analysis: Analysis, rules: Iterable[str]) -> list[str]:
    """The words matched by the cue rules ``rules`` on this turn (intent and sentiment cues), each once."""
    wanted = set(rules)
    out: list[str] = []
    for cue in (*analysis.intent.cues, *analysis.sentiment.cues):
        rule, _, word = cue.partition(":")
        if rule in wanted and word and word not in out:
            out.append(word)
    return out


def _family(cfg: PolicyConfig, analysis: Analysis, confirmed: bool) -> str | None:
    """The turn's problem family; a thank-you read with a weak intent raises none."""
    if confirmed and analysis.intent.confidence < cfg.signals.confirm_overrides_intent_below:
        return None  # "那我按你说的弄 谢谢哈" read as a usage question is still a thank-you
    return cfg.family_of(analysis.intent.label)


def extract_signals(cfg: PolicyConfig, analysis: Analysis, triggers: Iterable[str] = ()) -> TurnSignals:
    """Text features of a customer turn: confirmation, retry, threats, needs ... (pure)."""
    text = analysis.normalised or analysis.text.lower()
    s = cfg.signals
    retry = s.retry.hit(text)
    threat = cue_words(analysis, s.threat_cues) + s.threat.found(text)
    # "谢谢你们的高效处理，12315见" thanks nobody: a threat or a retry cancels the thanks
    confirmed = s.confirm.hit(text) and not retry and not threat
    if not confirmed:
        threat += [w for w in cue_words(analysis, s.insult_cues) if w not in threat]
    family = _family(cfg, analysis, confirmed)
    batch = next((b.strip(":： ") for b in s.batch.found(text)), None)
    return TurnSignals(
        family=family,
        confirmed=confirmed,
        goodbye=s.goodbye.hit(text),
        retry=retry,
        affirm=s.affirm.hit(text),
        deny=s.deny.hit(text),
        repeat_contact=s.repeat_contact.hit(text),
        threat=threat,
        safety=s.safety.found(text),
        damage=s.damage.found(text),
        shipping=s.shipping.hit(text),
        batch=batch.upper() if batch else None,
        needs=find_needs(text, triggers),
    )


def with_learned(cfg: PolicyConfig, rx: TurnSignals, fired: frozenset[str], probs: dict[str, float],
                 analysis: Analysis) -> TurnSignals:
    """Merge the dialogue model's signals (``fired``: over their thresholds) with the word lists.

    The learned signals are the main source; a word list counts only if it is one of
    ``signals.learned_overrides`` (high-precision patterns). A threat, a retry or a decision keep
    their meaning from either source.
    """
    keep = set(cfg.signals.learned_overrides)

    def listed(name: str) -> bool:
        return name in keep and bool(getattr(rx, name))

    def words(name: str, signal: str) -> list[str]:
        # the override's matched words, else the learned signal's name as its evidence
        found = list(getattr(rx, name)) if name in keep else []
        return found or ([signal] if signal in fired else [])

    threat = words("threat", "threat_insult")
    safety = words("safety", "safety")
    damage = words("damage", "damage")
    retry = "guidance_failed" in fired or listed("retry")
    said_solved = "solved" in keep and cfg.signals.solved.hit(analysis.normalised or analysis.text.lower())
    confirmed = ("solved" in fired or listed("confirm") or said_solved) and not retry and not threat
    family = _family(cfg, analysis, confirmed)
    return rx.model_copy(update={
        "family": family, "confirmed": confirmed, "retry": retry, "threat": threat, "safety": safety,
        "damage": damage,
        "affirm": "affirm" in fired or listed("affirm"),
        "deny": "deny" in fired or listed("deny"),
        "repeat_contact": "repeat_contact" in fired or listed("repeat_contact"),
        "goodbye": listed("goodbye"), "shipping": listed("shipping"),
        "batch": rx.batch if "batch" in keep else None,
        "urgency": "urgency" in fired, "worry": "worry" in fired, "purchase": "purchase_decision" in fired,
        "info": "info_provided" in fired, "human": "human_request" in fired,
        "learned": {k: round(v, 3) for k, v in probs.items()},
    })


def fmt_dt(dt: datetime | None, tz: object) -> str:
    if dt is None:
        return "?"
    return aware(dt).astimezone(tz).strftime("%m-%d %H:%M")  # type: ignore[arg-type]


@dataclass(frozen=True)
class Facts:
    """One decision's inputs: config, shop, state (after the turn), analysis, signals, time."""

    cfg: PolicyConfig
    shop: Shop
    state: ConversationState
    analysis: Analysis
    signals: TurnSignals
    now: datetime
    triggers: tuple[str, ...] = field(default_factory=tuple)
    target_terms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # see :func:`target_terms`

    # --- the turn -----------------------------------------------------------------------
    @property
    def intent(self) -> Intent:
        return self.analysis.intent.label

    @property
    def confidence(self) -> float:
        return self.analysis.intent.confidence

    @property
    def problem(self) -> Problem | None:
        return self.state.problem

    @property
    def on_problem_now(self) -> bool:
        """This turn was about the open problem (it counted on it), not a greeting or an aside."""
        p = self.problem
        return p is not None and p.last_turn_id is not None and p.last_turn_id == self.state.last_turn_id

    @property
    def top_hit(self) -> KbHit | None:
        return self.analysis.kb.hits[0] if self.analysis.kb.hits else None

    @property
    def answered(self) -> bool:
        """The top KB hit is good enough to send (the retriever's calibrated flag, or the config's threshold)."""
        hit = self.top_hit
        if hit is None:
            return False
        if self.cfg.answer.min_score is not None:
            return hit.score >= self.cfg.answer.min_score
        return self.analysis.kb.answered

    def intent_prob(self, intent: Intent) -> float:
        if self.intent is intent:
            return self.confidence
        for s in self.analysis.intent.top:
            if s.label == intent.value:
                return s.score
        return 0.0

    # --- the customer -------------------------------------------------------------------
    @property
    def tier(self) -> str:
        return self.state.customer.tier if self.state.customer else self.cfg.recovery.default_tier

    @property
    def orders(self) -> list[Order]:
        return list(self.state.customer.orders) if self.state.customer else []

    def item(self, sku: str | None) -> CatalogItem | None:
        return self.shop.catalog.get(sku or "")

    def category_of(self, sku: str | None) -> str:
        item = self.item(sku)
        return item.category if item else ""

    def hours_since(self, dt: datetime | None) -> float:
        if dt is None:
            return 0.0
        return (aware(self.now, self.cfg.tz) - aware(dt, self.cfg.tz)).total_seconds() / 3600

    def relevant_order(self) -> Order | None:
        """The order the current problem is most likely about.

        Tried in turn: the problem's or a mentioned SKU; a SKU of the top KB hit; the category of
        the top KB hit; the only order. Latest paid first, then order id, so it is deterministic.
        """
        orders = sorted(self.orders, reverse=True, key=lambda o: (
            aware(o.paid_at, self.cfg.tz).timestamp() if o.paid_at else float("-inf"), o.order_id))
        if not orders:
            return None
        wanted: list[str] = []
        if self.problem and self.problem.sku:
            wanted.append(self.problem.sku)
        wanted.extend(self.analysis.skus_mentioned)
        for sku in wanted:
            for o in orders:
                if o.sku == sku:
                    return o
        hit = self.top_hit
        if hit is not None:
            for o in orders:
                if o.sku in hit.skus:
                    return o
            if hit.category:
                for o in orders:
                    cat = self.category_of(o.sku)
                    if cat and (cat == hit.category or cat.startswith(hit.category + "/")):
                        return o
        return orders[0] if len(orders) == 1 else None

    # --- evidence strings ---------------------------------------------------------------
    @cached_property
    def ev_intent(self) -> str:
        return f"intent={self.intent.value}({self.confidence:.2f})"

    @cached_property
    def ev_sentiment(self) -> str:
        s = self.analysis.sentiment
        return f"sentiment={s.label.value}/{s.emotion.value} score={s.score:.2f} intensity={s.intensity:.2f}"

    @staticmethod
    def ev_kb(hit: KbHit) -> str:
        return f"kb={hit.kb_id}({hit.score:.2f})"

    def ev_order(self, o: Order) -> str:
        tz = self.cfg.tz
        parts = [f"order={o.order_id}", f"sku={o.sku}", f"status={o.status}", f"paid={fmt_dt(o.paid_at, tz)}"]
        if o.shipped_at:
            parts.append(f"shipped={fmt_dt(o.shipped_at, tz)}")
        if o.batch:
            parts.append(f"batch={o.batch}")
        if o.region:
            parts.append(f"region={o.region}")
        return " ".join(parts)
