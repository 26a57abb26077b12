"""What the policy hands the agent: ranked :class:`Action` values.

Rules produce :class:`Proposal` values (an action without its id); :func:`assist.policy.rank.rank`
orders them deterministically and gives each its stable id ``"<turn_id>:<type>:<n>"``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from assist.types import AnswerDetails, ClarifyDetails, Details, EscalateDetails, KeyedDetails, QaDetails


class ActionType(StrEnum):
    answer = "answer"
    clarify = "clarify"
    escalate = "escalate"
    quality_report = "quality_report"
    recovery = "recovery"
    care = "care"
    cross_sell = "cross_sell"
    qa_alert = "qa_alert"


DETAILS: dict[ActionType, type[Details]] = {
    ActionType.answer: AnswerDetails,
    ActionType.clarify: ClarifyDetails,
    ActionType.escalate: EscalateDetails,
    ActionType.quality_report: Details,
    ActionType.recovery: KeyedDetails,
    ActionType.care: KeyedDetails,
    ActionType.cross_sell: KeyedDetails,
    ActionType.qa_alert: QaDetails,
}


class Action(BaseModel):
    """One next-best action for the agent, with what it rests on.

    ``script`` is ready to send (or edit) in the shop's tone; ``reason`` says in one line why it is
    proposed; ``evidence`` lists the facts it rests on (intent and confidence, sentiment, KB id and
    score, order facts, trigger words). ``details`` holds rule-specific structured data, e.g. the
    ``code`` and ``span`` of a QA alert, or the SKU / batch / region of a quality report.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    type: ActionType
    script: str = ""
    reason: str = ""
    evidence: list[str] = Field(default_factory=list)
    kb_id: str | None = None
    sku: str | None = None
    score: float = 0.0
    rule: str = Field("", description="the rule that proposed it, e.g. 'defect.failed_guidance'")
    details: dict[str, Any] = Field(default_factory=dict)

    def typed(self) -> Details:
        """``details`` as the model of this action's type (validated when the action was made)."""
        return DETAILS[self.type].model_validate(self.details)


@dataclass(frozen=True)
class Proposal:
    """An action before ranking: rules return these; :func:`rank` turns them into Actions."""

    type: ActionType
    rule: str
    score: float
    script: str = ""
    reason: str = ""
    evidence: tuple[str, ...] = ()
    kb_id: str | None = None
    sku: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_action(self, action_id: str, score: float) -> Action:
        DETAILS[self.type].model_validate(self.details)  # a rule that breaks the contract fails here, in tests
        return Action(
            id=action_id, type=self.type, script=self.script, reason=self.reason,
            evidence=list(self.evidence), kb_id=self.kb_id, sku=self.sku, score=round(score, 4),
            rule=self.rule, details=dict(self.details),
        )
