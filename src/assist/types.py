"""Shared value types of the understanding pipeline (DESIGN §2 labels are a contract)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema


class Intent(StrEnum):
    presale_product = "presale_product"
    price_promotion = "price_promotion"
    logistics = "logistics"
    order_change = "order_change"
    return_exchange = "return_exchange"
    refund = "refund"
    usage_howto = "usage_howto"
    product_defect = "product_defect"
    repair_warranty = "repair_warranty"
    invoice = "invoice"
    complaint = "complaint"
    account_membership = "account_membership"
    greeting_thanks = "greeting_thanks"
    other = "other"


class Role(StrEnum):
    """Who wrote a turn (one definition for the wire, the store and the engine)."""

    customer = "customer"
    agent = "agent"


class Outcome(StrEnum):
    """What the agent did with a suggestion (feedback)."""

    accepted = "accepted"
    dismissed = "dismissed"
    edited = "edited"


class SentimentLabel(StrEnum):
    negative = "negative"
    neutral = "neutral"
    positive = "positive"


class Emotion(StrEnum):
    anger = "anger"
    anxiety = "anxiety"
    disappointment = "disappointment"
    satisfaction = "satisfaction"
    none = "none"


class Signal(StrEnum):
    """What a customer turn says in its context (eval/LABELLING.md); learned, multi-label."""

    solved = "solved"
    guidance_failed = "guidance_failed"
    affirm = "affirm"
    deny = "deny"
    threat_insult = "threat_insult"
    urgency = "urgency"
    worry = "worry"
    purchase_decision = "purchase_decision"
    info_provided = "info_provided"
    repeat_contact = "repeat_contact"
    safety = "safety"
    damage = "damage"
    human_request = "human_request"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ScoredLabel(_Frozen):
    label: str
    score: float


class IntentResult(_Frozen):
    label: Intent
    confidence: float
    top: list[ScoredLabel] = Field(default_factory=list, description="top-3 labels with probabilities")
    cues: list[str] = Field(default_factory=list, description="high-precision cue words that fired")


class SentimentResult(_Frozen):
    label: SentimentLabel
    score: float = Field(description="-1 (very negative) .. 1 (very positive)")
    emotion: Emotion
    intensity: float = Field(ge=0.0, le=1.0)
    cues: list[str] = Field(default_factory=list)


class KbHit(_Frozen):
    kb_id: str
    question: str
    answer: str
    category: str
    skus: list[str] = Field(default_factory=list)
    score: float = Field(description="fused relevance, calibrated to 0..1")
    bm25: float = 0.0
    dense: float = 0.0
    matched: str = Field("", description="which text matched: question, similar or passage")
    intent: Intent | None = Field(
        None, description="the entry's own intent label (e.g. usage_howto for guidance, product_defect for a "
        "fault), if the KB gives one; the policy tells guidance from defect handling by it")


class Retrieval(_Frozen):
    hits: list[KbHit]
    answered: bool = Field(description="top hit clears the calibrated 'good answer' threshold")


class Analysis(_Frozen):
    """What the understanding pipeline says about one customer turn."""

    text: str
    normalised: str
    tokens: list[str]
    intent: IntentResult
    sentiment: SentimentResult
    kb: Retrieval
    skus_mentioned: list[str] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    # The turn's e5 vector, for the dialogue model in the engine; never serialised (not part of the wire).
    embedding: SkipJsonSchema[Any] = Field(None, exclude=True, repr=False)


# --- the policy→state contract: structured details of an action, one model per action type ----------


class Details(BaseModel):
    """The structured part of an action that the state and other consumers read (the policy→state
    contract). One model per action type (:data:`DETAILS`); further keys are kept as they are (shown
    to the agent, sent with webhooks) but nothing reads them by name."""

    model_config = ConfigDict(frozen=True, extra="allow")


class KeyedDetails(Details):
    """recovery / care / cross_sell / escalate: ``key`` says what was offered, so it is not offered twice."""

    key: str | None = None
    order_id: str | None = None


class EscalateDetails(KeyedDetails):
    reasons: list[str] = Field(default_factory=list, description="why: threat, anger, complaint, safety, defect ...")


class ClarifyDetails(Details):
    kind: str = Field("question", description="which question was asked (tried_guidance, kb:<id>, generic, greeting)")


class AnswerDetails(Details):
    kind: str | None = None
    order_id: str | None = None


class QaDetails(Details):
    """qa_alert: the flag, what matched, and for a tracked promise its deadline and what keeps it."""

    code: str
    match: str = ""
    due: datetime | None = None
    kind: str = ""
    kept_by: list[str] = Field(default_factory=list)
    order_id: str | None = None
    promise_id: str | None = None
