"""One step of a conversation, purely: ``(state, event) -> StepResult(new state, actions)``.

The service (store, ordering, frames) and the replay (in memory) both drive conversations through
:class:`Engine`; nothing else holds business rules. Each method folds the event into the state
(:mod:`assist.state`), asks the :class:`~assist.policy.Policy` what to do, and records the actions
shown (:func:`assist.state.on_actions`), in that order::

    engine = Engine(Policy(shop, load_policy_config(settings.rules_dir, shop.policy)))
    state = engine.new_conversation("c1", customer)
    step = engine.customer_turn(state, turn_id="t1", text=text, ts=ts, analysis=analysis)
    step.state, step.actions       # persist the state, show the actions

No I/O and no clock: ``now`` (default: the turn's ``ts``) is an argument. Naive timestamps are read
in the shop's timezone (``timezone`` in the policy data) so every comparison is between aware times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from assist.policy import Action, Policy
from assist.policy.learned import ActionModel
from assist.shop import Shop
from assist.state import (
    ConversationState,
    CustomerProfile,
    FeedbackOutcome,
    Order,
    OrderEvent,
    aware,
    new_state,
    on_actions,
    on_agent_turn,
    on_customer_turn,
    on_feedback,
    on_order_event,
    on_profile,
    on_resolve,
)
from assist.types import Analysis, Emotion, Intent, IntentResult, ScoredLabel, SentimentLabel
from assist.understanding.dialogue import DialogueModel, DialogueOutput, context_of


@dataclass(frozen=True)
class StepResult:
    """The state after a step and the actions to show for it (possibly none)."""

    state: ConversationState
    actions: list[Action] = field(default_factory=list)
    # Customer turns: the analysis as the engine read it in context (intent and sentiment revised
    # by the dialogue model, when there is one); show this one, not the pipeline's.
    analysis: Analysis | None = None
    # Customer turns: the evidence the decision rested on (assist.policy.learned.decision_features).
    features: list[float] | None = None


class Engine:
    """Pure orchestration of conversation steps around one shop's :class:`Policy`."""

    def __init__(self, policy: Policy, dialogue: DialogueModel | None = None, *, trace: bool = False) -> None:
        self.policy = policy
        self.dialogue = dialogue
        self.trace = trace  # StepResult.features on every customer turn (training), not only when a model needs them

    @classmethod
    def from_shop(cls, shop: Shop, defaults_dir: Path | None = None,
                  dialogue: DialogueModel | None = None, actions: ActionModel | None = None) -> Engine:
        return cls(Policy.from_shop(shop, defaults_dir, actions), dialogue)

    # --- time ------------------------------------------------------------------------------
    def _aware(self, dt: datetime) -> datetime:
        return aware(dt, self.policy.config.tz)

    def _times(self, ts: datetime | None, now: datetime | None) -> tuple[datetime, datetime]:
        if ts is None and now is None:
            raise ValueError("pass the turn's ts or now: the engine does not read the clock")
        t = self._aware(ts if ts is not None else now)  # type: ignore[arg-type]
        return t, self._aware(now) if now is not None else t

    def _profile(self, profile: CustomerProfile) -> CustomerProfile:
        def fix(o: Order) -> Order:
            return o.model_copy(update={k: self._aware(v) for k in ("paid_at", "shipped_at", "delivered_at",
                                                                      "delayed_at")
                                        if (v := getattr(o, k)) is not None})
        return profile.model_copy(update={"orders": [fix(o) for o in profile.orders]})

    # --- steps -----------------------------------------------------------------------------
    def new_conversation(self, conversation_id: str, customer: CustomerProfile | None = None) -> ConversationState:
        return new_state(conversation_id, self._profile(customer) if customer else None)

    def customer_turn(self, state: ConversationState, *, turn_id: str, text: str, ts: datetime | None,
                      analysis: Analysis, now: datetime | None = None) -> StepResult:
        """Fold an analysed customer turn in and return the ranked next-best actions for it."""
        ts, now = self._times(ts, now)
        learned = None
        if self.dialogue is not None:
            learned = self.dialogue.predict(analysis, context_of(state), analysis.embedding)
            analysis = in_context(analysis, learned)
        # Signals are computed once, from the state before the turn, and used by both the state
        # transition and the decision.
        signals = self.policy.customer_signals(analysis, state, learned)
        s = on_customer_turn(state, turn_id=turn_id, text=text, ts=ts, analysis=analysis, signals=signals)
        actions, features = self.policy.decide_traced(s, analysis, now, signals, trace=self.trace)
        return StepResult(on_actions(s, actions, now), actions, analysis, features)

    def agent_turn(self, state: ConversationState, *, turn_id: str, text: str, ts: datetime | None,
                   now: datetime | None = None) -> StepResult:
        """Check an agent message (QA alerts), track its promises and move the stage."""
        ts, now = self._times(ts, now)
        alerts = self.policy.check_agent_turn(state, text, now, turn_id=turn_id, ts=ts)
        signals = self.policy.agent_signals(state, text, ts)
        s = on_agent_turn(state, turn_id=turn_id, text=text, ts=ts, alerts=alerts, signals=signals)
        return StepResult(on_actions(s, alerts, now), alerts)

    def feedback(self, state: ConversationState, *, suggestion_id: str, outcome: FeedbackOutcome | str,
                 ts: datetime, edited_text: str | None = None) -> StepResult:
        """Record accepted / dismissed / edited. Raises :class:`~assist.errors.SuggestionNotFound`."""
        return StepResult(on_feedback(state, suggestion_id=suggestion_id, outcome=outcome, ts=self._aware(ts),
                                      edited_text=edited_text))

    def resolve(self, state: ConversationState, *, ts: datetime, now: datetime | None = None) -> StepResult:
        """The agent marks the conversation resolved; a cross-sell may follow if its moment has come."""
        ts, now = self._times(ts, now)
        s = on_resolve(state, ts=ts)
        actions = self.policy.after_resolve(s, now)
        return StepResult(on_actions(s, actions, now), actions)

    def profile(self, state: ConversationState, profile: CustomerProfile) -> StepResult:
        """Replace the customer profile (CRM upsert)."""
        return StepResult(on_profile(state, self._profile(profile)))

    def order_event(self, state: ConversationState, event: OrderEvent, now: datetime | None = None) -> StepResult:
        """Apply a CRM order / logistics event; delays bring recovery and care, deliveries first-use tips."""
        event = event.model_copy(update={"ts": self._aware(event.ts)})
        _, now = self._times(event.ts, now)
        s = on_order_event(state, event)
        actions = self.policy.on_event(s, event, now)
        return StepResult(on_actions(s, actions, now), actions)

    def tick(self, state: ConversationState, now: datetime) -> StepResult:
        """Time-driven checks (promises past their deadline) for a periodic sweep of open conversations."""
        now = self._aware(now)
        actions = self.policy.tick(state, now)
        return StepResult(on_actions(state, actions, now), actions)


_UPSET = (Emotion.anger, Emotion.anxiety, Emotion.disappointment)


def in_context(analysis: Analysis, out: DialogueOutput) -> Analysis:
    """The analysis with intent and sentiment as the dialogue model reads them in context.

    The utterance models' cue words are kept for the explanation; the sentiment score becomes
    p(positive) - p(negative) of the contextual head so that the trend and the cross-sell gate see
    the same reading as the label.
    """
    ranked = sorted(out.intent.items(), key=lambda kv: -kv[1])
    label, conf = ranked[0]
    intent = IntentResult(label=Intent(label), confidence=round(conf, 4),
                          top=[ScoredLabel(label=k, score=round(v, 4)) for k, v in ranked[:3]],
                          cues=analysis.intent.cues)
    s_label, _ = out.sentiment_label()
    score = out.sentiment["positive"] - out.sentiment["negative"]
    update: dict[str, object] = {"label": SentimentLabel(s_label), "score": round(score, 4)}
    if s_label != "negative" and analysis.sentiment.emotion in _UPSET:
        # the utterance model's upset emotion does not survive a non-negative reading in context
        update.update(emotion=Emotion.none, intensity=min(analysis.sentiment.intensity, 0.3))
    sentiment = analysis.sentiment.model_copy(update=update)
    return analysis.model_copy(update={"intent": intent, "sentiment": sentiment})


__all__ = ["Engine", "StepResult", "in_context"]
