"""The quality early warning in the service: record defects with the turns that raised them, judge groups.

:class:`QualityMonitor` is called by :class:`~assist.service.conversations.ConversationService`
inside the transaction that stores a processed customer turn (``record_turn``) or an agent's
feedback (``record_feedback``): what counts is decided by :mod:`assist.insights.defects`, so a
defect is stored exactly when its turn is. Judging the touched groups (:mod:`assist.insights.quality`)
takes a few queries per group, so it runs after the commit, off the turn's path (``evaluate``, as a
task), and again on the periodic sweep (``sweep``), which also closes alerts whose groups subsided
with time. Raised and closed alerts go to the webhook outbox in the transaction that changes them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import BaseModel, Field

from assist.insights.defects import RetractReason, reports_of_turn, solved_as_usage
from assist.insights.quality import AlertRule, GroupKey, GroupStats, Verdict, judge
from assist.policy.actions import Action
from assist.service.metrics import Metrics
from assist.state import ConversationState
from assist.store.records import OutboxTopic, QualityAlertRecord
from assist.store.unit import UnitOfWork
from assist.types import Outcome

_log = logging.getLogger(__name__)


class QualityAlert(BaseModel):
    """A quality alert as the API lists it and the ``quality_alert.*`` webhooks carry it."""

    id: str
    status: str = Field(description="open | closed")
    sku: str
    batch: str | None = Field(description="null: reports without a known batch")
    symptom: str = Field(description="failure mode: kb:<entry id> of the KB entry the defect matched, or 'unmatched'")
    symptom_text: str = Field(description="the latest customer description of the defect")
    region: str | None = Field(description="the region most of the group's defects come from")
    regions: dict[str, int] = Field(description="defects in the window by region")
    count: int = Field(description="conversations with a counted defect of the group in the window")
    baseline: float = Field(description="expected count in the window when nothing is wrong (Poisson mean)")
    p_value: float = Field(description="P(X >= count) for X ~ Poisson(baseline)")
    conversation_ids: list[str]
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None

    @classmethod
    def of(cls, r: QualityAlertRecord) -> QualityAlert:
        return cls.model_validate(r.model_dump())


class Database(Protocol):
    def transaction(self) -> contextlib.AbstractAsyncContextManager[UnitOfWork]: ...


def remedy_intents_of(engine: Any) -> frozenset[str]:
    """The policy's ``defect.remedy_intents`` (refund, exchange, repair), or those defaults."""
    cfg = getattr(getattr(getattr(engine, "policy", None), "config", None), "defect", None)
    return frozenset(str(i) for i in getattr(cfg, "remedy_intents", None) or
                     ("refund", "return_exchange", "repair_warranty"))


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Recorded:
    """What one transaction did to the defects: the groups to judge again, defects new and retracted."""

    groups: frozenset[GroupKey] = frozenset()
    new: int = 0
    retracted: int = 0


class QualityMonitor:
    """Defects in, alerts out. One per app; see the module docstring.

    Args:
        db: the store.
        rule: the test's parameters.
        metrics: defects recorded / retracted, alerts raised / closed.
        remedy_intents: intents that ask for a remedy (a problem with one is no usage problem).
        webhooks: enqueue ``quality_alert.raised`` / ``.closed`` (only when a webhook URL is configured).
    """

    def __init__(self, *, db: Database, rule: AlertRule, metrics: Metrics,
                 remedy_intents: Collection[str] = ("refund", "return_exchange", "repair_warranty"),
                 webhooks: bool = False) -> None:
        self.db = db
        self.rule = rule
        self.metrics = metrics
        self.remedy_intents = frozenset(remedy_intents)
        self.webhooks = webhooks
        # One judgment at a time in this process; across replicas the open-alert unique key decides.
        self._lock = asyncio.Lock()

    # --- recording (inside the caller's transaction) --------------------------------------------

    async def record_turn(self, uow: UnitOfWork, *, conversation_id: str, turn_id: str, at: datetime,
                          before: ConversationState, after: ConversationState, actions: Sequence[Action],
                          intent: str | None) -> Recorded:
        """Store the defects a processed customer turn reported or showed to be usage (pass the
        result to :meth:`committed` once the transaction has committed)."""
        touched: set[GroupKey] = set()
        new = retracted = 0
        for report in reports_of_turn(conversation_id, turn_id, at, after, actions):
            groups, created = await uow.quality.record(report)
            touched |= groups
            new += int(created)
        usage = solved_as_usage(before, after, intent, self.remedy_intents)
        if usage is not None:
            groups, retracted = await uow.quality.retract(conversation_id, reason=RetractReason.usage,
                                                          problem_id=usage)
            touched |= groups
        return Recorded(frozenset(touched), new, retracted)

    async def record_feedback(self, uow: UnitOfWork, *, conversation_id: str, suggestion_id: str,
                              outcome: Outcome, state: ConversationState) -> Recorded:
        """A verdict on a quality report: dismissed retracts it, accepted / edited files it.

        The report belongs to the conversation's current problem, as :func:`assist.state.on_feedback`
        reads it, or else to the problem whose report had this id.
        """
        shown = state.suggestions.get(suggestion_id)
        if shown is None or shown.type != "quality_report":
            return Recorded()
        problem_id = state.problem.id if state.problem is not None and state.problem.defect_reported else None
        if outcome is Outcome.dismissed:
            touched, n = await uow.quality.retract(conversation_id, reason=RetractReason.dismissed,
                                                   problem_id=problem_id, action_id=suggestion_id)
            return Recorded(frozenset(touched), retracted=n)
        touched, _ = await uow.quality.file(conversation_id, problem_id=problem_id, action_id=suggestion_id)
        return Recorded(frozenset(touched))

    def committed(self, recorded: Recorded) -> frozenset[GroupKey]:
        """Count what a committed transaction recorded; returns the groups to judge (:meth:`evaluate_logged`)."""
        if recorded.new:
            self.metrics.defects.labels(event="recorded").inc(recorded.new)
        if recorded.retracted:
            self.metrics.defects.labels(event="retracted").inc(recorded.retracted)
        return recorded.groups

    # --- judging -------------------------------------------------------------------------------

    async def evaluate(self, keys: Iterable[GroupKey], now: datetime | None = None) -> list[QualityAlertRecord]:
        """Judge each group at ``now``; returns the alerts raised, updated or closed."""
        out = []
        for key in sorted(keys, key=lambda k: (k.sku, k.batch or "", k.symptom)):
            # per group, so a sweep does not hold up the judgment of a defect that just came in
            async with self._lock:
                changed = await self._judge(key, now or _now())
            if changed is not None:
                out.append(changed)
        return out

    async def evaluate_logged(self, keys: Iterable[GroupKey]) -> None:
        """``evaluate`` for a background task: a failure is logged, and the next sweep judges again."""
        try:
            await self.evaluate(keys)
        except Exception:
            _log.exception("quality alert evaluation failed")

    async def sweep(self, now: datetime | None = None) -> list[QualityAlertRecord]:
        """Judge every open alert (closing the subsided) and every group with at least ``min_count``
        conversations in the window; a group with fewer can be neither raised nor kept open."""
        now = now or _now()
        async with self.db.transaction() as uow:
            counts = await uow.quality.window_counts(now - self.rule.window, now)
            keys = {k for k, n in counts.items() if n >= self.rule.min_count} | await uow.quality.open_groups()
        return await self.evaluate(keys, now)

    async def _judge(self, key: GroupKey, now: datetime) -> QualityAlertRecord | None:
        rule = self.rule
        event: OutboxTopic | None = None
        async with self.db.transaction() as uow:
            q = uow.quality
            start = now - rule.window
            first = await q.first_reported_at()
            stats = GroupStats(
                key=key, window=await q.window(key, start, now),
                history_count=await q.history_count(key.sku, key.symptom, start - rule.history, start),
                history_observed_days=max(0.0, (start - first).total_seconds() / 86400) if first else 0.0,
            )
            current = await q.open_alert(key)
            verdict, a = judge(rule, stats, is_open=current is not None)
            changed: QualityAlertRecord | None = None
            if verdict is Verdict.raise_:
                changed = await q.raise_alert(key, a, now=now)
                event = OutboxTopic.quality_alert_raised if changed is not None else None
            elif current is not None and verdict is Verdict.close:
                changed = await q.update_alert(current.id, a, now=now, close=True)
                event = OutboxTopic.quality_alert_closed
            elif current is not None and verdict is Verdict.update and (
                    a.count, list(a.conversation_ids), a.p_value) != (
                    current.count, current.conversation_ids, current.p_value):
                changed = await q.update_alert(current.id, a, now=now)
            if event is not None and self.webhooks and changed is not None:
                await uow.outbox.enqueue(event, {"alert": QualityAlert.of(changed).model_dump(mode="json")})
        if event is not None:
            self.metrics.quality_alerts.labels(event="raised" if event is OutboxTopic.quality_alert_raised
                                               else "closed").inc()
            _log.info("quality alert %s: %s", event.value, key)
        return changed

    async def alerts(self, *, status: str | None = "open", sku: str | None = None, batch: str | None = None,
                     limit: int = 100) -> list[QualityAlert]:
        async with self.db.transaction() as uow:
            return [QualityAlert.of(r) for r in await uow.quality.alerts(status=status, sku=sku, batch=batch,
                                                                          limit=limit)]


__all__ = ["QualityAlert", "QualityMonitor", "Recorded", "remedy_intents_of"]
