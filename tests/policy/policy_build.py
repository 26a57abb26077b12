"""Hand-built inputs for the policy, state and engine tests: a tiny shop and real Analysis values.

The shop is built in code (not the demo ``kb_data``, which changes as the KB grows) so every
expectation here is visible next to the data it rests on. Analyses are real
:class:`assist.types.Analysis` objects, filled the way the pipeline fills them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from assist.engine import Engine
from assist.policy import Policy, load_policy_config
from assist.shop import CatalogItem, CrossSellRelation, KbEntry, Shop
from assist.state import ConversationState, CustomerProfile, Order, new_state, on_actions, on_customer_turn
from assist.types import (
    Analysis,
    Emotion,
    Intent,
    IntentResult,
    KbHit,
    Retrieval,
    ScoredLabel,
    SentimentLabel,
    SentimentResult,
)
from assist.understanding.cues import CueSet, sentiment_hits
from assist.understanding.normalise import normalise

# The packaged cue file, applied as the classifiers apply it: an analysis built here carries the
# same cue words a real one would (the policy reads threats and insults from them).
_CUES = CueSet.load()

CST = timezone(timedelta(hours=8))
# A Monday in winter (heater reminders are seasonal): 2026-11-23 20:00 +08:00.
T0 = datetime(2026, 11, 23, 20, 0, tzinfo=CST)


def at(minutes: float = 0, *, hours: float = 0, days: float = 0) -> datetime:
    return T0 + timedelta(minutes=minutes, hours=hours, days=days)


KB = [
    KbEntry(id="ep-volume-low", question="蓝牙耳机声音太小怎么办？", similar=["耳机声音小"],
            answer="亲，先把手机媒体音量和耳机音量都调到最大，再到蓝牙设置里关闭“绝对音量”试试～",
            category="数码/耳机", skus=["EP-1"], intent=Intent.usage_howto),
    KbEntry(id="ep-silent-after-reset", question="耳机重置后还是一边没声音怎么办？",
            answer="重置后仍一边没声音属于硬件故障，请申请售后换新。", category="数码/耳机", skus=["EP-1"],
            intent=Intent.product_defect),
    KbEntry(id="dp-size", question="纸尿裤尺码怎么选？", answer="按体重选：M码6-11kg，L码9-14kg。",
            category="母婴/纸尿裤", skus=["DP-M", "DP-L"], intent=Intent.presale_product),
    KbEntry(id="dp-rash", question="宝宝屁股红红的用什么好？", answer="勤换尿布，薄涂氧化锌护臀霜。",
            category="母婴/护臀霜", skus=["RC-1"], intent=Intent.usage_howto),
    KbEntry(id="wh-not-hot", question="热水器水不够热怎么调？", answer="把温度调到50℃，冬季模式打开。",
            category="家电/热水器", skus=["WH-1"], intent=Intent.usage_howto),
    KbEntry(id="wh-defect", question="按说明调整后热水器还是不出热水怎么办？", answer="请预约上门检修。",
            category="家电/热水器", skus=["WH-1"], intent=Intent.product_defect),
    KbEntry(id="pb-swelling", question="充电宝鼓包了怎么办？", answer="立即停止使用，联系客服换新。",
            category="数码/充电宝", skus=["PB-1"], intent=Intent.product_defect),
    KbEntry(id="ship-time", question="下单后多久发货？", answer="付款后48小时内发货。", category="",
            intent=Intent.logistics),
    KbEntry(id="thanks", question="好的谢谢，问题解决了", answer="不客气～", intent=Intent.greeting_thanks),
    KbEntry(id="fm-allergy", question="宝宝奶粉过敏有什么表现？", answer="起疹子、腹泻，建议换适度水解奶粉。",
            category="母婴/奶粉", skus=["FM-1", "FM-LA"], intent=Intent.usage_howto),
]

CATALOG = {i.sku: i for i in [
    CatalogItem(sku="EP-1", name="声屿 TWS-5 蓝牙耳机", category="数码/耳机", price=199, stock=50),
    CatalogItem(sku="DP-M", name="贝舒纸尿裤 M码", category="母婴/纸尿裤", price=129, stock=100, consumable=True),
    CatalogItem(sku="DP-L", name="贝舒纸尿裤 L码", category="母婴/纸尿裤", price=129, stock=100, consumable=True),
    CatalogItem(sku="RC-1", name="安肤宝 护臀霜", category="母婴/护臀霜", price=59, stock=20, consumable=True,
                tags=["红屁屁"]),
    CatalogItem(sku="RC-2", name="安肤宝 屏障护臀膏", category="母婴/护臀霜", price=49, stock=0, consumable=True),
    CatalogItem(sku="WP-1", name="棉朵朵 屁屁湿巾", category="母婴/湿巾", price=79, stock=30, consumable=True),
    CatalogItem(sku="WH-1", name="暖泉 16L 燃气热水器", category="家电/热水器", price=2999, stock=10),
    CatalogItem(sku="AC-1", name="暖泉 热水器防冻套件", category="家电/热水器", price=199, stock=15),
    CatalogItem(sku="PH-1", name="星耀 X20 手机", category="数码/手机", price=2599, stock=5),
    CatalogItem(sku="PB-1", name="能量方 20000mAh 充电宝", category="数码/充电宝", price=199, stock=8),
    CatalogItem(sku="FM-1", name="澳牧源 奶粉 1段", category="母婴/奶粉", price=239, stock=40, consumable=True),
    CatalogItem(sku="FM-LA", name="澳牧源 适度水解 低敏奶粉", category="母婴/奶粉", price=299, stock=12,
                consumable=True, tags=["低敏"]),
]}


def _rel(frm: str, to: str, triggers: Sequence[str], weight: float, reason: str, script: str) -> CrossSellRelation:
    return CrossSellRelation.model_validate({"from": frm, "to": to, "triggers": list(triggers), "weight": weight,
                                             "reason": reason, "script": script})


RELATIONS = [
    # Out of stock with the highest weight: must never be chosen.
    _rel("category:母婴/纸尿裤", "RC-2", ["闷"], 0.95, "夏天闷热用护臀膏", "护臀膏脚本"),
    _rel("category:母婴/纸尿裤", "RC-1", ["红屁屁", "屁股红"], 0.9, "买纸尿裤的宝妈常加购护臀霜", "护臀霜脚本"),
    _rel("category:母婴/纸尿裤", "WP-1", ["湿巾", "擦屁屁"], 0.8, "换尿布离不开湿巾", "湿巾脚本"),
    _rel("category:家电/热水器", "AC-1", ["冬天", "结冰", "水管冻"], 0.8, "北方冬天热水器要防冻", "防冻套件脚本"),
    _rel("PH-1", "PB-1", ["没电", "续航"], 0.8, "买X20的顾客常加购充电宝", "充电宝脚本"),
    _rel("FM-1", "FM-LA", ["过敏", "起疹子"], 0.85, "易过敏宝宝适合适度水解低敏奶粉", "低敏奶粉脚本"),
]


def make_shop(policy: dict[str, Any] | None = None) -> Shop:
    return Shop(root=None, kb=tuple(KB), catalog=dict(CATALOG), cross_sell=tuple(RELATIONS), policy=policy or {})


def make_policy(overrides: dict[str, Any] | None = None) -> Policy:
    shop = make_shop(overrides)
    return Policy(shop, load_policy_config(None, shop.policy))


def make_engine(overrides: dict[str, Any] | None = None) -> Engine:
    return Engine(make_policy(overrides))


_KB_BY_ID = {e.id: e for e in KB}


def hit(kb_id: str, score: float) -> KbHit:
    e = _KB_BY_ID[kb_id]
    return KbHit(kb_id=e.id, question=e.question, answer=e.answer, category=e.category, skus=e.skus, score=score,
                 intent=e.intent)


def analysis(
    text: str,
    intent: Intent | str = Intent.other,
    conf: float = 0.9,
    *,
    top: Sequence[tuple[str, float]] = (),
    sentiment: SentimentLabel | str = SentimentLabel.neutral,
    score: float | None = None,
    emotion: Emotion | str = Emotion.none,
    intensity: float = 0.0,
    hits: Sequence[tuple[str, float]] = (),
    answered: bool | None = None,
    skus: Sequence[str] = (),
) -> Analysis:
    """A real Analysis as the pipeline would produce it; ``answered`` defaults to top score >= 0.6."""
    label = SentimentLabel(sentiment)
    if score is None:
        score = {"negative": -0.6, "neutral": 0.0, "positive": 0.7}[label.value]
    kb_hits = [hit(k, s) for k, s in hits]
    hits_ = _CUES.match(normalise(text))
    intent = Intent(intent)
    top_list = [ScoredLabel(label=intent.value, score=conf)] + [ScoredLabel(label=str(lbl), score=s) for lbl, s in top]
    return Analysis(
        text=text, normalised=normalise(text), tokens=list(normalise(text)),
        intent=IntentResult(label=intent, confidence=conf, top=top_list,
                            cues=[str(h) for h in hits_ if h.rule.intent is not None]),
        sentiment=SentimentResult(label=label, score=score, emotion=Emotion(emotion), intensity=intensity,
                                  cues=[str(h) for h in sentiment_hits(hits_)]),
        kb=Retrieval(hits=kb_hits, answered=(kb_hits[0].score >= 0.6) if answered is None and kb_hits else bool(answered)),
        skus_mentioned=list(skus),
    )


def customer(*orders: Order, tier: str = "normal", opt_out: bool = False, region: str | None = None) -> CustomerProfile:
    return CustomerProfile(id="u1", tier=tier, opt_out_marketing=opt_out, orders=list(orders), region=region)


def order(order_id: str, sku: str, *, status: str = "delivered", paid: datetime | None = None,
          shipped: datetime | None = None, delivered: datetime | None = None, batch: str | None = None,
          region: str | None = None) -> Order:
    return Order(order_id=order_id, sku=sku, status=status, paid_at=paid, shipped_at=shipped,  # type: ignore[arg-type]
                 delivered_at=delivered, batch=batch, region=region)


class Chat:
    """Drive a conversation through the Engine turn by turn (minutes apart), keeping the state."""

    def __init__(self, engine: Engine | None = None, profile: CustomerProfile | None = None,
                 start: datetime = T0) -> None:
        self.engine = engine or make_engine()
        self.state: ConversationState = self.engine.new_conversation("c1", profile)
        self.clock = start
        self.n = 0
        self.log: list[tuple[str, list[Any]]] = []

    def _tick(self, minutes: float) -> datetime:
        self.clock += timedelta(minutes=minutes)
        self.n += 1
        return self.clock

    def customer(self, a: Analysis, *, minutes: float = 1.0) -> list[Any]:
        ts = self._tick(minutes)
        step = self.engine.customer_turn(self.state, turn_id=f"t{self.n}", text=a.text, ts=ts, analysis=a)
        self.state = step.state
        self.log.append((f"t{self.n}", step.actions))
        return step.actions

    def agent(self, text: str, *, seconds: float = 10.0) -> list[Any]:
        self.clock += timedelta(seconds=seconds)
        self.n += 1
        step = self.engine.agent_turn(self.state, turn_id=f"t{self.n}", text=text, ts=self.clock)
        self.state = step.state
        self.log.append((f"t{self.n}", step.actions))
        return step.actions


def types(actions: Sequence[Any]) -> list[str]:
    return [str(a.type) for a in actions]


def of_type(actions: Sequence[Any], kind: str) -> list[Any]:
    return [a for a in actions if str(a.type) == kind]


def fold_turn(state: ConversationState, a: Analysis, turn_id: str = "t1", ts: datetime = T0,
              policy: Policy | None = None) -> ConversationState:
    """on_customer_turn with the policy's signals, without deciding (for state-level tests)."""
    policy = policy or make_policy()
    return on_customer_turn(state, turn_id=turn_id, text=a.text, ts=ts, analysis=a,
                            signals=policy.customer_signals(a))


__all__ = [
    "CST", "T0", "Chat", "analysis", "at", "customer", "fold_turn", "hit", "make_engine", "make_policy",
    "make_shop", "new_state", "of_type", "on_actions", "order", "types",
]
