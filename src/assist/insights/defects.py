"""Which defects count for the quality early warning: pure functions over a processed turn.

**Recorded.** Every ``quality_report`` action the policy raised on a customer turn (a confirmed
defect, :mod:`assist.policy.rules.defect`) is one :class:`DefectReport` per *problem* of the
conversation: the policy proposes the report again on later turns until the agent acts on it, and
those repeats update the record (a batch number given later fills it in) instead of counting twice.
SKU, batch and region are the report's own (the policy took them from the problem, the customer's
order and profile).

**Symptom.** ``kb:<id>`` of the first KB entry proposed for the problem (the entry the customer's
description of the fault matched), else of the report's entry, else ``unmatched``. The shop's KB is
its curated list of failure modes, so the key is stable, explainable to a QA team and the same in
every replica; a clustering of embeddings would move its centroids as data arrives and re-key open
alerts (left to the hot-issues insights, where drifting topics are fine).

**Not counted** (the record stays, with its reason):

- ``dismissed``: the agent dismissed the report (judged it no defect);
- ``usage``: after the report, a customer turn on the same problem says it is solved (the state
  marks the problem resolved *by the customer*) and nobody asked for a remedy: neither that turn
  nor any turn of the problem had an intent of ``defect.remedy_intents`` (refund, exchange,
  repair). The product works after all: it was a usage problem. A problem the agent marks resolved
  keeps counting (an exchange resolves it too), and a later report on the problem ("又坏了")
  counts it again.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from assist.policy.actions import Action, ActionType
from assist.state import ConversationState, Problem


class DefectStatus(StrEnum):
    reported = "reported"  # raised by the policy, counted
    filed = "filed"  # the agent accepted or edited the report, counted
    retracted = "retracted"  # not a defect after all (see ``RetractReason``), not counted


class RetractReason(StrEnum):
    dismissed = "dismissed"
    usage = "usage"


COUNTED = (DefectStatus.reported, DefectStatus.filed)
UNMATCHED = "unmatched"


@dataclass(frozen=True)
class DefectReport:
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
    at: datetime


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def symptom_key(problem: Problem | None, action: Action) -> str:
    """The failure mode a report is about (see the module docstring)."""
    kb_ids = list(problem.kb_ids) if problem is not None else []
    kb_ids += [str(k) for k in action.details.get("kb_ids") or []]
    if kb_ids:
        return f"kb:{kb_ids[0]}"
    return f"kb:{action.kb_id}" if action.kb_id else UNMATCHED


def reports_of_turn(conversation_id: str, turn_id: str, at: datetime, state: ConversationState,
                    actions: Sequence[Action]) -> list[DefectReport]:
    """The defect reports raised by one customer turn (``state``: after the turn)."""
    p = state.problem
    out = []
    for a in actions:
        if a.type is not ActionType.quality_report:
            continue
        d = a.details
        out.append(DefectReport(
            conversation_id=conversation_id, problem_id=p.id if p is not None else turn_id, turn_id=turn_id,
            action_id=a.id, sku=_text(d.get("sku")) or a.sku, batch=_text(d.get("batch")),
            region=_text(d.get("region")), symptom=symptom_key(p, a), symptom_text=str(d.get("symptom") or ""),
            kind=str(d.get("kind") or a.rule), at=at,
        ))
    return out


def solved_as_usage(before: ConversationState, after: ConversationState, intent: str | None,
                    remedy_intents: Collection[str]) -> str | None:
    """The problem id whose reported defect this customer turn showed to be a usage problem, if any."""
    pb, pa = before.problem, after.problem
    if pb is None or pa is None or pb.id != pa.id or not pb.defect_reported or pb.resolved:
        return None
    if not (pa.resolved and pa.resolved_by == "customer"):
        return None
    remedies = set(remedy_intents)
    if (intent is not None and intent in remedies) or any(str(i) in remedies for i in pa.intents):
        return None
    return pa.id


__all__ = ["COUNTED", "UNMATCHED", "DefectReport", "DefectStatus", "RetractReason", "reports_of_turn",
           "solved_as_usage", "symptom_key"]
