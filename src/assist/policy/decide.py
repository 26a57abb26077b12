"""The policy: next-best actions for a customer turn, QA alerts for an agent turn, actions for events.

:class:`Policy` wires the rules in a fixed order and ranks what they propose::

    signals  = extract_signals(config, analysis, triggers)      text -> features
    judgment = judge_defect(facts)                              usage question or defect?
    escalation · defect (clarify / quality report) · recovery · answer · care · cross-sell
    rank(...)                                                   deterministic, ids "<turn>:<type>:<n>"

It is pure: no I/O, no clock (``now`` is an argument), no randomness; the same state, analysis and
time always give the same actions. Everything it decides with is in :class:`PolicyConfig` (data).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from assist.policy.actions import Action, Proposal
from assist.policy.config import PolicyConfig, load_policy_config
from assist.policy.facts import Facts, extract_signals, relation_triggers, target_terms, with_learned
from assist.policy.learned import ActionModel, decision_features, refine
from assist.policy.quality import check_text, check_timing, fold, overdue_promises
from assist.policy.rank import rank
from assist.policy.rules import answer, care, cross_sell, defect, escalation, recovery
from assist.policy.rules.care import event_care, first_use_care, kb_first_use_tips
from assist.policy.rules.recovery import late_case, recovery_for_order
from assist.shop import Shop
from assist.state import ConversationState, OrderEvent, TurnSignals, aware
from assist.types import (
    Analysis,
    Emotion,
    Intent,
    IntentResult,
    Retrieval,
    SentimentLabel,
    SentimentResult,
)
from assist.understanding.dialogue import DialogueOutput


class Policy:
    """Next-best actions for one shop, from its data and its policy configuration.

    Build with ``Policy(shop, load_policy_config(settings.rules_dir, shop.policy))`` or
    :meth:`from_shop`. Thread-safe: it holds no mutable state.
    """

    def __init__(self, shop: Shop, config: PolicyConfig, actions: ActionModel | None = None) -> None:
        self.shop = shop
        self.config = config
        self.actions = actions
        self._triggers = tuple(relation_triggers(shop))
        self._target_terms = target_terms(shop)
        self._kb_tips = kb_first_use_tips(config, shop)

    @classmethod
    def from_shop(cls, shop: Shop, defaults_dir: Path | None = None, actions: ActionModel | None = None) -> Policy:
        """The shop's policy: the defaults in ``defaults_dir`` with the shop's ``policy.yaml`` merged over them;
        ``actions`` is the learned judgment of which action types to show (:mod:`assist.policy.learned`)."""
        shop_file = str(shop.root / "policy.yaml") if shop.root else "<shop policy.yaml>"
        return cls(shop, load_policy_config(defaults_dir, shop.policy, shop_file=shop_file), actions)

    # --- text -> features ---------------------------------------------------------------
    def customer_signals(self, analysis: Analysis, state: ConversationState | None = None,
                         learned: DialogueOutput | None = None) -> TurnSignals:
        """Features of a customer turn (for :func:`assist.state.on_customer_turn`).

        ``learned`` is the dialogue model's reading of the turn in context; without it the word
        lists decide alone. With ``state``, a refund / exchange / repair question about a confirmed
        defect stays on that problem (``defect.remedy_intents``): the remedy is part of the defect,
        not a new problem; information the agent asked for (an order number, a photo) or a
        purchase decision stays on the open problem too.
        """
        signals = extract_signals(self.config, analysis, self._triggers)
        if learned is not None:
            signals = with_learned(self.config, signals, learned.fired, learned.signals, analysis)
        p = state.problem if state is not None else None
        if p is not None and not p.resolved and signals.family not in (None, p.family) and \
                (signals.info or signals.purchase) and not signals.retry:
            signals = signals.model_copy(update={"family": p.family})
        if p is not None and not p.resolved and signals.purchase and p.family in self.config.cross_sell.presale_families \
                and not signals.retry and not signals.threat:
            # "那就L码吧": the decision closes the presale question it answers
            signals = signals.model_copy(update={"confirmed": True})
        if p is not None and p.defect and not p.resolved and analysis.intent.label in self.config.defect.remedy_intents:
            signals = signals.model_copy(update={"family": p.family})
        return signals

    def agent_signals(self, state: ConversationState, text: str, ts: datetime) -> TurnSignals:
        """Features of an agent turn: goodbye, a holding reply (not an answer), and whether it was slow."""
        _, slow = check_timing(self.config, state, self._aware(ts))
        folded = fold(text)
        return TurnSignals(goodbye=self.config.signals.goodbye.hit(folded), slow_reply=slow,
                           holding=self.config.signals.holding.hit(folded))

    # --- decisions ----------------------------------------------------------------------
    def facts(self, state: ConversationState, analysis: Analysis, now: datetime,
              signals: TurnSignals | None = None) -> Facts:
        return Facts(cfg=self.config, shop=self.shop, state=state, analysis=analysis,
                     signals=signals if signals is not None else self.customer_signals(analysis, state),
                     now=self._aware(now), triggers=self._triggers,
                     target_terms=self._target_terms)

    def proposals(self, f: Facts) -> list[Proposal]:
        """Every rule's proposals for a customer turn, unranked (in rule order)."""
        return self._rule_proposals(f, defect.judge_defect(f))[0]

    def _rule_proposals(self, f: Facts, j: defect.DefectJudgment,
                        ) -> tuple[list[Proposal], tuple[cross_sell.Gate, list[cross_sell.Candidate]]]:
        """The rules' proposals, and the cross-sell gate and candidates they were decided with."""
        props: list[Proposal] = []
        props += escalation.propose(f, j)
        props += defect.propose(f, j)
        props += recovery.propose(f, j)
        props += answer.propose(f, j, props)
        props += care.propose(f, props)
        judged = cross_sell.judge(f, props)  # last: it needs to know what else is going on
        props += cross_sell.propose(f, props, judged)
        props += overdue_promises(self.config, f.state, f.now)
        return props, judged

    def decide_traced(self, state: ConversationState, analysis: Analysis, now: datetime,
                      signals: TurnSignals | None = None, *, trace: bool = False,
                      ) -> tuple[list[Action], list[float] | None]:
        """:meth:`decide`, and the decision features it rested on (what the action model is trained
        on): computed when the action model needs them or ``trace`` asks for them, else None."""
        f = self.facts(state, analysis, now, signals)
        j = defect.judge_defect(f)
        props, (g, found) = self._rule_proposals(f, j)
        feats = None
        if self.actions is not None or trace:
            feats = decision_features(f, props, j, g.ok, bool(found))
        if self.actions is not None and feats is not None:
            props = refine(self.actions, f, props, j, self.actions.probabilities(feats))
        return rank(props, state.last_turn_id or "turn", self.config.rank), feats

    def decide(self, state: ConversationState, analysis: Analysis, now: datetime,
               signals: TurnSignals | None = None) -> list[Action]:
        """Ranked next-best actions for the customer turn just folded into ``state``.

        ``state`` must already include the turn (:func:`assist.state.on_customer_turn`); action ids
        are ``"<turn_id>:<type>:<n>"``. Record what is shown with :func:`assist.state.on_actions`.
        """
        return self.decide_traced(state, analysis, now, signals)[0]

    def explain(self, state: ConversationState, analysis: Analysis, now: datetime) -> dict[str, Any]:
        """Why the policy decides as it does: signals, defect judgment, cross-sell gate and candidates."""
        f = self.facts(state, analysis, now)
        j = defect.judge_defect(f)
        props = self.proposals(f)
        g = cross_sell.gate(f, [p for p in props if p.type.value != "cross_sell"])
        found, rejected = cross_sell.candidates(f, g.asked)
        return {
            "signals": f.signals.model_dump(),
            "defect": {"kind": j.kind.value, "reason": j.reason, "evidence": list(j.evidence)},
            "escalation": [r.code for r in escalation.escalation_reasons(f, j)],
            "cross_sell": {"ok": g.ok, "solved_by": g.solved_by, "blocked": list(g.blocked),
                           "candidates": [(c.item.sku, c.score, c.source, c.trigger) for c in found],
                           "rejected": rejected},
        }

    def check_agent_turn(self, state: ConversationState, text: str, now: datetime, *,
                         turn_id: str | None = None, ts: datetime | None = None) -> list[Action]:
        """QA alerts for an agent message (DESIGN §5), ``state`` being the state before it.

        ``ts`` is when the message was sent (default ``now``): response times and promise deadlines
        are measured from it. Ids are ``"<turn_id>:qa_alert:<n>"``.
        """
        sent = self._aware(ts or now)
        props = check_text(self.config, text, sent)
        timing, _ = check_timing(self.config, state, sent)
        props += timing + overdue_promises(self.config, state, self._aware(now))
        return rank(props, turn_id or f"agent{state.agent_turns + 1}", self.config.rank)

    def on_event(self, state: ConversationState, event: OrderEvent, now: datetime) -> list[Action]:
        """Actions for an order / logistics event already applied to ``state`` (:func:`on_order_event`).

        delayed / exception -> recovery (within the tier's allowance) and a proactive care notice;
        delivered to a first-time buyer -> care with usage tips. Ids are
        ``"ev:<order_id>:<type>:<YYYYmmddHHMMSS>:<action type>:<n>"``.
        """
        now = self._aware(now)
        cfg = self.config
        order = next((o for o in state.customer.orders if o.order_id == event.order_id), None) \
            if state.customer else None
        props: list[Proposal] = []
        if event.type in ("delayed", "exception") and order is not None:
            lc = late_case(cfg, order, now)
            if lc is not None:
                prop = recovery_for_order(cfg, state, order, lc[0], lc[1], rule=f"recovery.event.{event.type}",
                                          evidence=(f"event={event.type}", f"order={order.order_id}"))
                if prop is not None:
                    props.append(prop)
        care_prop = event_care(cfg, state, event)
        if care_prop is not None:
            props.append(care_prop)
        if event.type == "delivered" and order is not None:
            tip = first_use_care(cfg, self.shop, state, order, now, rule="care.first_use.event",
                                 kb_tips=self._kb_tips)
            if tip is not None:
                props.append(tip)
        props += overdue_promises(cfg, state, now)
        ts = self._aware(event.ts).astimezone(cfg.tz)
        return rank(props, f"ev:{event.order_id}:{event.type}:{ts:%Y%m%d%H%M%S}", cfg.rank)

    def after_resolve(self, state: ConversationState, now: datetime) -> list[Action]:
        """Actions once the agent marked the conversation resolved: a cross-sell, if its moment has come.

        A resolve carries no text, so it is judged as a content-free turn with the last sentiment.
        """
        f = Facts(cfg=self.config, shop=self.shop, state=state, analysis=_silent_turn(state),
                  signals=TurnSignals(), now=self._aware(now), triggers=self._triggers,
                     target_terms=self._target_terms)
        return rank(cross_sell.propose(f, []), f"{state.last_turn_id or 'conversation'}:resolve", self.config.rank)

    def tick(self, state: ConversationState, now: datetime) -> list[Action]:
        """Time-driven alerts (promises past their deadline), for a periodic sweep."""
        now = self._aware(now)
        return rank(overdue_promises(self.config, state, now),
                    f"tick:{now.astimezone(self.config.tz):%Y%m%d%H%M%S}", self.config.rank)

    def _aware(self, dt: datetime) -> datetime:
        return aware(dt, self.config.tz)


def _silent_turn(state: ConversationState) -> Analysis:
    score = state.sentiment_trend[-1] if state.sentiment_trend else 0.0
    label = state.last_sentiment or SentimentLabel.neutral
    return Analysis(
        text="", normalised="", tokens=[],
        intent=IntentResult(label=Intent.greeting_thanks, confidence=1.0),
        sentiment=SentimentResult(label=label, score=score, emotion=Emotion.none, intensity=0.0),
        kb=Retrieval(hits=[], answered=False),
    )
