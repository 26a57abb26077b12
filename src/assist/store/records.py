"""Values the repositories return: frozen pydantic models, never ORM rows.

State, analysis, actions and frames are kept as plain JSON (``dict``/``list``): the store
persists what the service and the state machine dump and does not interpret it, so a new
field in ``ConversationState`` needs no migration.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from assist.types import Outcome


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True)


class TurnStatus(StrEnum):
    received = "received"  # stored and acknowledged, not yet through pipeline + engine
    processed = "processed"
    failed = "failed"  # processing raised; kept for inspection, not retried at start-up


FeedbackOutcome = Outcome  # the one definition lives in assist.types


class OutboxTopic(StrEnum):
    escalation_created = "escalation.created"
    # One confirmed defect, as the policy reported it (assist.insights.defects).
    quality_report_created = "quality_report.created"
    # Defects of one SKU / batch / symptom significantly above their baseline (assist.insights.quality).
    quality_alert_raised = "quality_alert.raised"
    quality_alert_closed = "quality_alert.closed"
    suggestion_accepted = "suggestion.accepted"


class OutboxStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"  # gave up after max attempts; an operator can requeue it


class ReplayStatus(StrEnum):
    queued = "queued"
    running = "running"
    done = "done"
    failed = "failed"


class ConversationRecord(_Record):
    id: str
    customer_id: str | None
    state: dict[str, Any]
    last_seq: int
    created_at: datetime
    updated_at: datetime


class TurnRecord(_Record):
    conversation_id: str
    turn_id: str
    role: str
    text: str
    ts: datetime
    status: TurnStatus
    analysis: dict[str, Any] | None = None
    actions: list[Any] | None = None
    analysis_seq: int | None = Field(None, description="seq of the frame that carried the result")
    error: str | None = None
    position: int = Field(description="arrival order across all conversations")
    created_at: datetime
    processed_at: datetime | None = None


class FeedbackRecord(_Record):
    id: int
    conversation_id: str
    suggestion_id: str
    outcome: FeedbackOutcome
    edited_text: str | None
    ts: datetime


class CustomerRecord(_Record):
    id: str
    profile: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class OutboxEvent(_Record):
    id: int
    tenant_id: str
    event_id: str
    topic: str
    payload: dict[str, Any]
    attempts: int
    next_attempt_at: datetime
    status: OutboxStatus
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class ReplayRecord(_Record):
    id: str
    tenant_id: str
    status: ReplayStatus
    total: int
    done: int
    errors: int
    params: dict[str, Any]
    report: dict[str, Any] | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class DefectRecord(_Record):
    id: int
    conversation_id: str
    problem_id: str
    turn_id: str
    action_id: str
    sku: str | None
    batch: str | None
    region: str | None
    symptom: str
    symptom_text: str
    kind: str
    status: str
    retracted_reason: str | None
    reported_at: datetime
    updated_at: datetime


class QualityAlertRecord(_Record):
    id: str
    sku: str
    batch: str | None
    symptom: str
    status: str
    count: int
    baseline: float
    p_value: float
    region: str | None
    regions: dict[str, int]
    conversation_ids: list[str]
    symptom_text: str
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None


class Scope(StrEnum):
    """What an API key may do (``admin`` also does everything ``console`` and ``crm`` do, in its tenant)."""

    console = "console"  # conversations over REST and the WebSocket, KB search/read, analyse
    crm = "crm"  # customer profiles and order events
    admin = "admin"  # KB edits, reindex, replay, keys


class ApiKeyRecord(_Record):
    """An API key as listed: never its secret (only the secret's hash is stored at all)."""

    id: str
    tenant_id: str
    scope: Scope
    label: str | None
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class TenantRecord(_Record):
    id: str
    shop_dir: str
    created_at: datetime
