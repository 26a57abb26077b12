"""Conversation state and its transitions: pure ``(old state, event) -> new state`` functions.

The state is everything the policy needs to remember between turns of one conversation: the
stage, the open problem, products in context, the customer profile, the sentiment trend, the
suggestions shown and what the agent did with them, open escalations and open promises. It is a
frozen pydantic model that round-trips through JSON (``model_dump(mode="json")`` /
``model_validate``), so the store can persist it and the replay can keep it in memory.

Transitions (one function per event)::

    new_state(conversation_id, customer)            -> opening
    on_customer_turn(state, turn_id, text, ts, analysis, signals)
    on_agent_turn(state, turn_id, text, ts, alerts, signals)
    on_actions(state, actions, ts)                  records suggestions shown, escalations opened ...
    on_feedback(state, suggestion_id, outcome, ts)  accepted / dismissed / edited
    on_resolve(state, ts)                           the agent marks the conversation resolved
    on_profile(state, profile)                      CRM profile upsert
    on_order_event(state, event)                    CRM order / logistics event

Stages move ``opening -> identifying -> solving -> resolved -> closing``:

- a customer turn that raises a problem moves to ``identifying`` (also from ``resolved`` or
  ``closing``: a new problem reopens the conversation);
- an agent turn on an open problem moves ``identifying -> solving``;
- the customer confirming (``TurnSignals.confirmed``) after an answer, or ``on_resolve``, moves to
  ``resolved``; a goodbye from either side moves to ``closing``.

The word lists that decide "confirmed", "goodbye" or "retry" live in the policy's data, not here:
:class:`assist.engine.Engine` computes :class:`TurnSignals` with the policy and passes them in. Without
signals the transitions fall back to the analysis alone (intent ``greeting_thanks`` = confirmation).

Nothing here does I/O, reads settings or the clock: time comes in as arguments.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from assist.errors import SuggestionNotFound
from assist.limits import ID_MAX, LABEL_MAX, ORDERS_MAX, QTY_MAX, Id, Label, Note, Timestamp, text
from assist.types import (
    Analysis,
    ClarifyDetails,
    EscalateDetails,
    Intent,
    KeyedDetails,
    Outcome,
    QaDetails,
    SentimentLabel,
)

if TYPE_CHECKING:  # the policy imports this module; only type names flow back
    from assist.policy.actions import Action

# How much history the state keeps. Conversations are short; these bounds only stop a runaway
# conversation from growing the stored JSON without limit.
SENTIMENT_WINDOW = 10
CUSTOMER_TEXTS_KEPT = 30
PRODUCTS_KEPT = 12
AGENT_TEXT_KEPT = 300
# Escalation reasons a customer's "solved" does not settle.
_UNSETTLED_BY_THANKS = frozenset({"threat", "anger", "complaint", "safety"})


class Stage(StrEnum):
    opening = "opening"
    identifying = "identifying"
    solving = "solving"
    resolved = "resolved"
    closing = "closing"


class _Frozen(BaseModel):
    # extra="ignore": CRM payloads and older stored states may carry fields we do not use.
    model_config = ConfigDict(frozen=True, extra="ignore")


OrderStatus = Literal["paid", "shipped", "delivered", "cancelled", "returned", "refunded"]
OrderEventType = Literal["paid", "shipped", "delivered", "delayed", "cancelled", "refunded", "exception"]


class Order(_Frozen):
    """One order of the customer, as the CRM knows it."""

    order_id: text(ID_MAX, min_length=1)
    sku: text(LABEL_MAX, min_length=1)
    status: OrderStatus = "paid"
    paid_at: Timestamp | None = None
    shipped_at: Timestamp | None = None
    delivered_at: Timestamp | None = None
    qty: int = Field(1, ge=1, le=QTY_MAX)
    batch: Label | None = None
    region: Label | None = None
    tracking_no: Label | None = None
    delayed_at: Timestamp | None = Field(None, description="set by a 'delayed' logistics event")
    exception: Note | None = Field(None, description="detail of an 'exception' logistics event")


class CustomerProfile(_Frozen):
    id: Id
    tier: Label = "normal"
    opt_out_marketing: bool = False
    orders: list[Order] = Field(default_factory=list, max_length=ORDERS_MAX)
    region: Label | None = None


class OrderEvent(_Frozen):
    """An order / logistics event pushed by the CRM."""

    order_id: text(ID_MAX, min_length=1)
    type: OrderEventType
    ts: Timestamp
    sku: Label | None = None
    detail: Note | None = None


class TurnSignals(_Frozen):
    """Text features of one turn computed by the policy from its word lists (text -> features).

    ``family`` is the problem family of the turn's intent (``None``: the turn raises no problem,
    e.g. greetings); ``needs`` are cross-sell trigger words voiced in the turn.
    """

    family: str | None = None
    confirmed: bool = False
    goodbye: bool = False
    retry: bool = False
    affirm: bool = False
    deny: bool = False
    repeat_contact: bool = False
    threat: list[str] = Field(default_factory=list)
    safety: list[str] = Field(default_factory=list)
    damage: list[str] = Field(default_factory=list, description="visible quality damage: 发霉, 破损, 异味 ...")
    shipping: bool = Field(False, description="the customer talks about shipping / delivery")
    batch: str | None = Field(None, description="a batch number the customer gave (批号B2409)")
    needs: list[str] = Field(default_factory=list)
    urgency: bool = Field(False, description="time pressure or a stated consequence")
    worry: bool = Field(False, description="worry or fear about safety, health, money or the outcome")
    purchase: bool = Field(False, description="decides to buy, picks a variant, asks how to order")
    info: bool = Field(False, description="gives information the agent asked for (order no., photo, batch)")
    human: bool = Field(False, description="asks for a human, a supervisor or a manager")
    learned: dict[str, float] = Field(default_factory=dict,
                                      description="the dialogue model's signal probabilities, when it ran")
    slow_reply: bool = Field(False, description="agent turns: slower than the configured reply time")
    holding: bool = Field(False, description="agent turns: a holding reply (稍等, 我查一下), not an answer")


class Problem(_Frozen):
    """The customer's open problem: what it is about and what has been tried."""

    id: str = Field(description="turn id that opened it")
    text: str = Field("", description="the customer's words that opened it")
    family: str
    intent: Intent
    intents: list[Intent] = Field(default_factory=list, description="intent of every turn on it")
    sku: str | None = None
    kb_ids: list[str] = Field(default_factory=list, description="KB entries proposed as answers")
    answered: bool = Field(False, description="an answer was proposed or the agent replied")
    guidance_given: int = Field(0, description="answers proposed + agent replies on it")
    customer_turns: int = 1
    retries: int = Field(0, description="customer turns saying the guidance did not work")
    opened_at: datetime | None = None
    complaint: bool = False
    defect: bool = Field(False, description="a confirmed product defect")
    defect_reported: bool = False
    report_id: str | None = Field(None, description="id of the quality_report suggestion last shown")
    report_handled: bool = Field(False, description="the agent accepted, edited or dismissed a report")
    escalated: bool = False
    hazard: bool = Field(False, description="a safety hazard was reported on it")
    batch: str | None = Field(None, description="batch number the customer gave")
    resolved: bool = False
    resolved_by: Literal["customer", "agent"] | None = None
    pending_clarify: str | None = Field(None, description="kind of the clarify question last asked")
    replying_to: str | None = Field(None, description="the clarify question this turn answers")
    clarify_asked: list[str] = Field(default_factory=list)
    last_turn_id: str | None = Field(None, description="last customer turn that was about this problem")


SuggestionStatus = Literal["shown", "accepted", "dismissed", "edited"]


class Suggestion(_Frozen):
    """An action shown to the agent, and what the agent did with it."""

    id: str
    type: str
    status: SuggestionStatus = "shown"
    sku: str | None = None
    kb_id: str | None = None
    rule: str = ""
    turn_id: str | None = None
    shown_at: datetime | None = None
    updated_at: datetime | None = None
    edited_text: str | None = None


class Escalation(_Frozen):
    id: str = Field(description="id of the escalate action")
    reason: str
    codes: list[str] = Field(default_factory=list, description="reason codes (threat, anger, defect ...)")
    opened_at: datetime | None = None
    problem_id: str | None = None
    closed: bool = False


PromiseStatus = Literal["open", "kept", "overdue"]


class Promise(_Frozen):
    """A commitment with a deadline the agent typed ("明天一定给您发货")."""

    id: str
    turn_id: str
    text: str
    kind: str
    due: datetime
    made_at: datetime | None = None
    kept_by: list[str] = Field(default_factory=list, description="event types that keep it")
    order_id: str | None = None
    status: PromiseStatus = "open"


class ConversationState(_Frozen):
    """Everything the policy remembers about one conversation. JSON round-trips."""

    conversation_id: str
    stage: Stage = Stage.opening
    customer: CustomerProfile | None = None
    problem: Problem | None = None
    problems_seen: int = 0
    products_in_context: list[str] = Field(default_factory=list, description="SKUs, oldest first")
    kb_categories: list[str] = Field(default_factory=list, description="categories of answered KB hits")
    customer_texts: list[str] = Field(default_factory=list, description="normalised customer turns")
    sentiment_trend: list[float] = Field(default_factory=list, description="last sentiment scores")
    last_sentiment: SentimentLabel | None = None
    last_intent: Intent | None = None
    open_escalations: list[Escalation] = Field(default_factory=list)
    suggestions: dict[str, Suggestion] = Field(default_factory=dict)
    cross_sells_shown: list[str] = Field(default_factory=list, description="SKUs, in order shown")
    recoveries: list[str] = Field(default_factory=list, description="recovery keys offered")
    care_given: list[str] = Field(default_factory=list, description="care keys offered")
    open_promises: list[Promise] = Field(default_factory=list)
    qa_counts: dict[str, int] = Field(default_factory=dict)
    customer_turns: int = 0
    agent_turns: int = 0
    last_turn_id: str | None = None
    first_customer_ts: datetime | None = None
    last_customer_ts: datetime | None = None
    last_agent_ts: datetime | None = None
    last_agent_text: str = Field("", description="the agent's last message (context for the next customer turn)")
    customer_turns_since_agent: int = 0
    awaiting_since: datetime | None = Field(None, description="first customer turn not yet answered")
    first_response_s: float | None = None
    slow_responses: int = 0
    resolved: bool = False
    resolved_at: datetime | None = None

    # Derived views, used by the policy; not stored.
    @property
    def escalation_open(self) -> bool:
        return any(not e.closed for e in self.open_escalations)

    @property
    def cross_sell_accepted(self) -> int:
        return sum(1 for s in self.suggestions.values()
                   if s.type == "cross_sell" and s.status in ("accepted", "edited"))

    @property
    def dismissed_skus(self) -> set[str]:
        return {s.sku for s in self.suggestions.values() if s.status == "dismissed" and s.sku}


# --- helpers -------------------------------------------------------------------------------


def aware(dt: datetime, tz: Any = UTC) -> datetime:
    """``dt`` with a timezone: naive values are taken to be in ``tz`` (UTC by default).

    The Engine normalises every timestamp at its boundary with the shop's timezone, so comparisons
    inside the state and the policy never mix naive and aware datetimes.
    """
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=tz)


def _append_bounded(items: Sequence[Any], new: Iterable[Any], keep: int, *, unique: bool = False) -> list[Any]:
    out = list(items)
    for x in new:
        if unique and x in out:
            out.remove(x)  # move to the end: "most recent" is what matters for context
        out.append(x)
    return out[-keep:]


def _stage_after_problem(stage: Stage) -> Stage:
    return Stage.identifying if stage in (Stage.opening, Stage.resolved, Stage.closing) else stage


# --- transitions ---------------------------------------------------------------------------


def new_state(conversation_id: str, customer: CustomerProfile | None = None) -> ConversationState:
    """A fresh conversation in stage ``opening``."""
    return ConversationState(conversation_id=conversation_id, customer=customer)


def _fallback_signals(analysis: Analysis) -> TurnSignals:
    # Without the policy's word lists: each intent is its own family and thanks confirm.
    intent = analysis.intent.label
    problem = intent not in (Intent.greeting_thanks, Intent.other)
    confirmed = intent is Intent.greeting_thanks and analysis.sentiment.label is not SentimentLabel.negative
    return TurnSignals(family=intent.value if problem else None, confirmed=confirmed)


def _next_problem(state: ConversationState, turn_id: str, ts: datetime, analysis: Analysis,
                  signals: TurnSignals) -> tuple[Problem | None, bool]:
    """The problem after this customer turn, and whether it is a new one.

    A turn continues the open problem when it is of the same family, or a complaint (about the
    problem), or a retry ("还是不行" always refers to the last problem, even one that looked solved).
    Naming a different product than the problem's opens a new problem.
    """
    intent = analysis.intent.label
    p = state.problem
    sku = analysis.skus_mentioned[0] if analysis.skus_mentioned else None
    if p is not None:
        # The customer is answering the clarify question asked last turn (if any).
        p = p.model_copy(update={"replying_to": p.pending_clarify, "pending_clarify": None})
    if p is not None and signals.retry:
        return p.model_copy(update={
            "intents": [*p.intents, intent] if signals.family else p.intents,
            "sku": p.sku or sku,
            "customer_turns": p.customer_turns + 1,
            "retries": p.retries + 1,
            "resolved": False,
            "resolved_by": None,
            "complaint": p.complaint or intent is Intent.complaint,
            "last_turn_id": turn_id,
        }), False
    if signals.family is None:
        # Greetings / other raise no problem; "第三次问了", "批号B2409" or a hazard said without a
        # clear intent still count on the open problem.
        if p is not None and not p.resolved and (signals.repeat_contact or signals.batch or signals.safety):
            p = p.model_copy(update={"customer_turns": p.customer_turns + 1, "last_turn_id": turn_id})
        return p, False
    same = (
        p is not None
        and not p.resolved
        and (p.family == signals.family or intent is Intent.complaint)
        and not (sku and p.sku and sku != p.sku and intent is not Intent.complaint)
    )
    if p is not None and same:
        return p.model_copy(update={
            # a complaint is about the open problem: keep what the problem is about
            "intent": p.intent if intent is Intent.complaint else intent,
            "intents": [*p.intents, intent],
            "sku": p.sku or sku,
            "customer_turns": p.customer_turns + 1,
            "complaint": p.complaint or intent is Intent.complaint,
            "last_turn_id": turn_id,
        }), False
    return Problem(
        id=turn_id, text=analysis.text, family=signals.family, intent=intent, intents=[intent], sku=sku, opened_at=ts,
        complaint=intent is Intent.complaint, last_turn_id=turn_id,
    ), True


def on_customer_turn(
    state: ConversationState,
    *,
    turn_id: str,
    text: str,
    ts: datetime,
    analysis: Analysis,
    signals: TurnSignals | None = None,
) -> ConversationState:
    """Fold one analysed customer turn into the state (problem, context, sentiment, stage)."""
    signals = signals or _fallback_signals(analysis)
    problem, is_new = _next_problem(state, turn_id, ts, analysis, signals)
    if problem is not None and problem.last_turn_id == turn_id and (signals.safety or signals.batch):
        problem = problem.model_copy(update={"hazard": problem.hazard or bool(signals.safety),
                                             "batch": signals.batch or problem.batch})
    stage = state.stage
    resolved = state.resolved
    if is_new:
        stage = _stage_after_problem(stage)
        resolved = False
    elif problem is not None and signals.retry:
        # The problem is still there (or came back after it looked solved).
        stage = Stage.solving if problem.answered else Stage.identifying
        resolved = False
    if signals.goodbye:
        stage = Stage.closing
    elif signals.confirmed and not signals.retry and problem is not None and not is_new and (
        problem.answered or stage is Stage.solving
    ):
        problem = problem.model_copy(update={"resolved": True, "resolved_by": "customer"})
        stage = Stage.resolved
        resolved = True
    escalations = state.open_escalations
    if problem is not None and problem.resolved and not problem.complaint and any(
            not e.closed and e.problem_id == problem.id for e in escalations):
        # The customer says the problem is solved: an escalation for the fault itself is settled too;
        # one for a threat, anger or a complaint is not (a thank-you after "12315" settles nothing).
        escalations = [e.model_copy(update={"closed": True})
                       if e.problem_id == problem.id and not set(e.codes) & _UNSETTLED_BY_THANKS else e
                       for e in escalations]
    skus = list(analysis.skus_mentioned)
    if problem is not None and problem.sku:
        skus.append(problem.sku)
    kb_categories = state.kb_categories
    if analysis.kb.answered and analysis.kb.hits and analysis.kb.hits[0].category:
        kb_categories = _append_bounded(kb_categories, [analysis.kb.hits[0].category], 6, unique=True)
    return state.model_copy(update={
        "stage": stage,
        "problem": problem,
        "open_escalations": escalations,
        "problems_seen": state.problems_seen + int(is_new),
        "products_in_context": _append_bounded(state.products_in_context, skus, PRODUCTS_KEPT, unique=True),
        "kb_categories": kb_categories,
        "customer_texts": _append_bounded(state.customer_texts, [analysis.normalised or text],
                                          CUSTOMER_TEXTS_KEPT),
        "sentiment_trend": _append_bounded(state.sentiment_trend, [analysis.sentiment.score], SENTIMENT_WINDOW),
        "last_sentiment": analysis.sentiment.label,
        "last_intent": analysis.intent.label,
        "customer_turns": state.customer_turns + 1,
        "customer_turns_since_agent": state.customer_turns_since_agent + 1,
        "last_turn_id": turn_id,
        "first_customer_ts": state.first_customer_ts or ts,
        "last_customer_ts": ts,
        "awaiting_since": state.awaiting_since or ts,
        "resolved": resolved,
    })


def response_seconds(state: ConversationState, ts: datetime) -> float | None:
    """Seconds the customer has waited for an agent reply sent at ``ts`` (None: nobody waiting)."""
    if state.awaiting_since is None:
        return None
    return (aware(ts) - aware(state.awaiting_since)).total_seconds()


def on_agent_turn(
    state: ConversationState,
    *,
    turn_id: str,
    text: str,
    ts: datetime,
    alerts: Sequence[Action] = (),
    signals: TurnSignals | None = None,
) -> ConversationState:
    """Fold one agent turn in: response times, guidance given, promises made, QA counts, stage.

    ``alerts`` are the ``qa_alert`` actions :meth:`Policy.check_agent_turn` raised for this turn;
    the ``promise_tracked`` ones carry the deadline (``details["due"]``) and become open promises.
    Recording the alerts as suggestions is :func:`on_actions`' job. ``signals`` (from
    :meth:`Policy.agent_signals`) say whether the reply was slow and whether it says goodbye.
    """
    waited = response_seconds(state, ts)
    first_response = state.first_response_s
    if first_response is None and waited is not None:
        first_response = waited
    slow = state.slow_responses + int(signals is not None and signals.slow_reply and first_response is not None
                                      and state.first_response_s is not None)
    problem = state.problem
    stage = state.stage
    holding = signals is not None and signals.holding
    if problem is not None and not problem.resolved and not holding:
        problem = problem.model_copy(update={"answered": True, "guidance_given": problem.guidance_given + 1})
        if stage is Stage.identifying:
            stage = Stage.solving
    if signals is not None and signals.goodbye:
        stage = Stage.closing
    promises = list(state.open_promises)
    qa_counts = dict(state.qa_counts)
    for a in alerts:
        d = a.typed()
        if not isinstance(d, QaDetails):
            continue
        qa_counts[d.code] = qa_counts.get(d.code, 0) + 1
        if d.code == "promise_tracked" and d.due is not None:
            promises.append(Promise(id=a.id, turn_id=turn_id, text=d.match, kind=d.kind, due=d.due, made_at=ts,
                                    kept_by=list(d.kept_by), order_id=d.order_id))
    return state.model_copy(update={
        "agent_turns": state.agent_turns + 1,
        "last_turn_id": turn_id,
        "last_agent_ts": ts,
        "last_agent_text": text[-AGENT_TEXT_KEPT:],
        "customer_turns_since_agent": 0,
        "awaiting_since": None,
        "first_response_s": first_response,
        "slow_responses": slow,
        "problem": problem,
        "stage": stage,
        "open_promises": promises,
        "qa_counts": qa_counts,
    })


def on_actions(state: ConversationState, actions: Sequence[Action], ts: datetime) -> ConversationState:
    """Record actions shown to the agent: suggestions, escalations opened, cross-sells, guidance.

    Call it with exactly the actions the console shows, after :meth:`Policy.decide`,
    :meth:`Policy.check_agent_turn` or :meth:`Policy.on_event`.
    """
    if not actions:
        return state
    suggestions = dict(state.suggestions)
    escalations = list(state.open_escalations)
    cross = list(state.cross_sells_shown)
    recoveries = list(state.recoveries)
    care = list(state.care_given)
    promises = list(state.open_promises)
    problem = state.problem
    for a in actions:
        kind = str(a.type)
        suggestions[a.id] = Suggestion(
            id=a.id, type=kind, sku=a.sku, kb_id=a.kb_id, rule=a.rule, turn_id=state.last_turn_id,
            shown_at=ts, updated_at=ts,
        )
        d = a.typed()
        key = d.key if isinstance(d, KeyedDetails) else None
        if kind == "escalate":
            pid = problem.id if problem else None
            # One open escalation per problem: proposing it again (still warranted) does not open another.
            if not any(not e.closed and e.problem_id == pid for e in escalations):
                codes = list(d.reasons) if isinstance(d, EscalateDetails) else []
                escalations.append(Escalation(id=a.id, reason=a.reason, codes=codes, opened_at=ts, problem_id=pid))
            if problem is not None:
                problem = problem.model_copy(update={"escalated": True})
        elif kind == "cross_sell" and a.sku:
            cross.append(a.sku)
        elif kind == "recovery" and key:
            recoveries.append(str(key))
        elif kind == "care" and key:
            care.append(str(key))
        elif kind == "quality_report" and problem is not None:
            problem = problem.model_copy(update={"defect": True, "defect_reported": True, "report_id": a.id})
        elif kind == "answer" and problem is not None and not problem.resolved:
            kb_ids = [*problem.kb_ids, a.kb_id] if a.kb_id and a.kb_id not in problem.kb_ids else problem.kb_ids
            problem = problem.model_copy(update={
                "answered": True, "kb_ids": kb_ids, "guidance_given": problem.guidance_given + 1,
            })
        elif kind == "clarify" and problem is not None:
            ck = d.kind if isinstance(d, ClarifyDetails) else "question"
            problem = problem.model_copy(update={
                "pending_clarify": ck, "clarify_asked": [*problem.clarify_asked, ck],
            })
        elif isinstance(d, QaDetails) and d.code == "promise_overdue":
            pid = d.promise_id
            promises = [p.model_copy(update={"status": "overdue"}) if p.id == pid else p for p in promises]
    return state.model_copy(update={
        "suggestions": suggestions, "open_escalations": escalations, "cross_sells_shown": cross,
        "recoveries": recoveries, "care_given": care, "problem": problem, "open_promises": promises,
    })


FeedbackOutcome = Outcome  # the one definition lives in assist.types


def on_feedback(
    state: ConversationState,
    *,
    suggestion_id: str,
    outcome: FeedbackOutcome | str,
    ts: datetime,
    edited_text: str | None = None,
) -> ConversationState:
    """Record what the agent did with a suggestion.

    A dismissed escalation is closed (the agent judged it unnecessary); a dismissed cross-sell is
    never offered again in this conversation (see the cross-sell rule).

    Raises:
        SuggestionNotFound: ``suggestion_id`` was never shown in this conversation.
        ValueError: ``outcome`` is not accepted / dismissed / edited.
    """
    if outcome not in {o.value for o in Outcome}:
        raise ValueError(f"unknown feedback outcome {outcome!r}")
    s = state.suggestions.get(suggestion_id)
    if s is None:
        raise SuggestionNotFound(f"suggestion {suggestion_id!r} not found in conversation "
                                 f"{state.conversation_id!r}")
    suggestions = dict(state.suggestions)
    suggestions[suggestion_id] = s.model_copy(update={
        "status": outcome, "updated_at": ts, "edited_text": edited_text if outcome == "edited" else s.edited_text,
    })
    escalations = state.open_escalations
    problem = state.problem
    if s.type == "quality_report" and problem is not None and problem.defect_reported:
        problem = problem.model_copy(update={"report_handled": True})
    if s.type == "escalate" and outcome == "dismissed":
        pid = next((e.problem_id for e in escalations if e.id == suggestion_id), problem.id if problem else None)
        escalations = [e.model_copy(update={"closed": True}) if e.id == suggestion_id or (
            not e.closed and e.problem_id == pid) else e for e in escalations]
        if problem is not None and not any(not e.closed and e.problem_id == problem.id for e in escalations):
            problem = problem.model_copy(update={"escalated": False})
    return state.model_copy(update={"suggestions": suggestions, "open_escalations": escalations,
                                    "problem": problem})


def on_resolve(state: ConversationState, *, ts: datetime) -> ConversationState:
    """The agent marks the conversation resolved: the problem, its escalations and 'handle' promises close."""
    problem = state.problem
    if problem is not None and not problem.resolved:
        problem = problem.model_copy(update={"resolved": True, "resolved_by": "agent"})
    promises = [p.model_copy(update={"status": "kept"}) if p.status == "open" and "resolve" in p.kept_by else p
                for p in state.open_promises]
    return state.model_copy(update={
        "stage": Stage.resolved if state.stage is not Stage.closing else Stage.closing,
        "problem": problem,
        "resolved": True,
        "resolved_at": ts,
        "open_escalations": [e.model_copy(update={"closed": True}) for e in state.open_escalations],
        "open_promises": promises,
    })


def on_profile(state: ConversationState, profile: CustomerProfile) -> ConversationState:
    """Replace the customer profile (CRM upsert); orders the CRM sends replace the known ones."""
    return state.model_copy(update={"customer": profile})


_STATUS_OF_EVENT: dict[str, OrderStatus] = {
    "paid": "paid", "shipped": "shipped", "delivered": "delivered", "cancelled": "cancelled",
    "refunded": "refunded",
}


def _apply_event(order: Order, event: OrderEvent) -> Order:
    update: dict[str, Any] = {}
    if event.type in _STATUS_OF_EVENT:
        update["status"] = _STATUS_OF_EVENT[event.type]
    if event.type == "paid":
        update["paid_at"] = order.paid_at or event.ts
    elif event.type == "shipped":
        update.update(shipped_at=event.ts, delayed_at=None, exception=None)
    elif event.type == "delivered":
        update.update(delivered_at=event.ts, delayed_at=None, exception=None)
    elif event.type == "delayed":
        update["delayed_at"] = event.ts
    elif event.type == "exception":
        update["exception"] = event.detail or "exception"
    return order.model_copy(update=update)


def on_order_event(state: ConversationState, event: OrderEvent) -> ConversationState:
    """Apply a CRM order / logistics event to the customer's orders and keep promises it fulfils.

    An event for an unknown order adds that order when the event names its SKU; a conversation
    without a profile gets an anonymous one so the order facts are not lost.
    """
    customer = state.customer or CustomerProfile(id=f"anon:{state.conversation_id}")
    orders = list(customer.orders)
    for i, o in enumerate(orders):
        if o.order_id == event.order_id:
            orders[i] = _apply_event(o, event)
            break
    else:
        if event.sku:
            orders.append(_apply_event(Order(order_id=event.order_id, sku=event.sku,
                                             paid_at=event.ts if event.type == "paid" else None), event))
    promises = [
        p.model_copy(update={"status": "kept"})
        if p.status == "open" and event.type in p.kept_by and p.order_id in (None, event.order_id) else p
        for p in state.open_promises
    ]
    return state.model_copy(update={"customer": customer.model_copy(update={"orders": orders}),
                                    "open_promises": promises})


__all__ = [
    "ConversationState",
    "CustomerProfile",
    "Escalation",
    "Order",
    "OrderEvent",
    "Problem",
    "Promise",
    "Stage",
    "Suggestion",
    "TurnSignals",
    "aware",
    "new_state",
    "on_actions",
    "on_agent_turn",
    "on_customer_turn",
    "on_feedback",
    "on_order_event",
    "on_profile",
    "on_resolve",
]
