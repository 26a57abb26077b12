"""Confirmed defects and quality alerts (the quality early warning's storage).

The rules for what counts live in :mod:`assist.insights.defects` and the test in
:mod:`assist.insights.quality`; this repository only stores and counts. Defect writes happen in
the transaction that stores the turn (or the feedback) that caused them; alert writes in the one
that enqueues their webhook events.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from assist.insights.defects import COUNTED, DefectReport, DefectStatus, RetractReason
from assist.insights.quality import Assessment, DefectPoint, GroupKey
from assist.store._sql import as_utc, insert_ignoring_conflicts, utcnow
from assist.store.models import DEFAULT_TENANT, QualityAlertRow, QualityDefectRow
from assist.store.records import DefectRecord, QualityAlertRecord

_COUNTED = [s.value for s in COUNTED]


def open_key(key: GroupKey) -> str:
    # \x1f (unit separator) cannot occur in a SKU, batch or symptom typed by a person
    return "\x1f".join((key.sku, key.batch or "", key.symptom))


def _defect(row: QualityDefectRow) -> DefectRecord:
    return DefectRecord.model_validate(row, from_attributes=True)


def _alert(row: QualityAlertRow) -> QualityAlertRecord:
    return QualityAlertRecord.model_validate(row, from_attributes=True)


def _key(row: QualityDefectRow) -> GroupKey | None:
    return GroupKey(row.sku, row.batch, row.symptom) if row.sku else None


def _batch_is(batch: str | None) -> ColumnElement[bool]:
    return QualityDefectRow.batch.is_(None) if batch is None else QualityDefectRow.batch == batch


class QualityRepo:
    """One tenant's defects and alerts in the caller's session."""

    def __init__(self, session: AsyncSession, tenant: str = DEFAULT_TENANT) -> None:
        self._s = session
        self.tenant = tenant

    def _open_key(self, key: GroupKey) -> str:
        return self.tenant + "\x1f" + open_key(key)  # one open alert per group of each tenant

    # --- defects -----------------------------------------------------------------------------

    async def _row(self, conversation_id: str, problem_id: str) -> QualityDefectRow | None:
        return await self._s.scalar(select(QualityDefectRow).where(
            QualityDefectRow.tenant_id == self.tenant, QualityDefectRow.conversation_id == conversation_id,
            QualityDefectRow.problem_id == problem_id))

    async def record(self, report: DefectReport, *, now: datetime | None = None) -> tuple[set[GroupKey], bool]:
        """Store a report (one row per problem: a repeat updates it and counts it again if it was
        retracted). Returns the groups whose counts may have changed (old and new key) and whether
        the problem's defect is new."""
        now = as_utc(now) if now else utcnow()
        row = await self._row(report.conversation_id, report.problem_id)
        touched: set[GroupKey] = set()
        created = row is None
        if row is None:
            row = QualityDefectRow(
                tenant_id=self.tenant, conversation_id=report.conversation_id, problem_id=report.problem_id, turn_id=report.turn_id,
                action_id=report.action_id, sku=report.sku, batch=report.batch, region=report.region,
                symptom=report.symptom, symptom_text=report.symptom_text, kind=report.kind,
                status=DefectStatus.reported.value, retracted_reason=None, reported_at=as_utc(report.at),
                updated_at=now,
            )
            self._s.add(row)
        else:
            if (old := _key(row)) is not None:
                touched.add(old)
            # A later report knows at least as much: a batch given later fills it in; what it does
            # not know (None) keeps the earlier value. The first report's time stays the defect's time.
            row.sku = report.sku or row.sku
            row.batch = report.batch or row.batch
            row.region = report.region or row.region
            row.symptom_text = report.symptom_text or row.symptom_text
            row.action_id, row.kind, row.updated_at = report.action_id, report.kind, now
            if row.status == DefectStatus.retracted.value:
                row.status, row.retracted_reason = DefectStatus.reported.value, None
        await self._s.flush()
        if (new := _key(row)) is not None:
            touched.add(new)
        return touched, created

    async def _set_status(self, conversation_id: str, problem_id: str | None, action_id: str | None,
                          status: DefectStatus, reason: RetractReason | None, now: datetime | None
                          ) -> tuple[set[GroupKey], int]:
        conds = [QualityDefectRow.action_id == action_id] if action_id else []
        if problem_id:
            conds.append(QualityDefectRow.problem_id == problem_id)
        if not conds:
            return set(), 0
        rows = list(await self._s.scalars(select(QualityDefectRow).where(
            QualityDefectRow.tenant_id == self.tenant, QualityDefectRow.conversation_id == conversation_id, or_(*conds))))
        touched = set()
        changed = 0
        for row in rows:
            if row.status == status.value or (status is DefectStatus.filed and row.status != DefectStatus.reported.value):
                continue  # nothing to do; and filing does not undo a retraction
            changed += 1
            row.status = status.value
            row.retracted_reason = reason.value if reason else None
            row.updated_at = as_utc(now) if now else utcnow()
            if (k := _key(row)) is not None:
                touched.add(k)
        await self._s.flush()
        return touched, changed

    async def retract(self, conversation_id: str, *, reason: RetractReason, problem_id: str | None = None,
                      action_id: str | None = None, now: datetime | None = None) -> tuple[set[GroupKey], int]:
        """Stop counting the problem's defect (or the one reported by ``action_id``); returns the groups
        touched and how many defects stopped counting."""
        return await self._set_status(conversation_id, problem_id, action_id, DefectStatus.retracted, reason, now)

    async def file(self, conversation_id: str, *, problem_id: str | None = None, action_id: str | None = None,
                   now: datetime | None = None) -> tuple[set[GroupKey], int]:
        """The agent accepted or edited the report: it stays counted, now as filed."""
        return await self._set_status(conversation_id, problem_id, action_id, DefectStatus.filed, None, now)

    async def defects(self, conversation_id: str) -> list[DefectRecord]:
        rows = await self._s.scalars(select(QualityDefectRow).where(
            QualityDefectRow.tenant_id == self.tenant, QualityDefectRow.conversation_id == conversation_id).order_by(QualityDefectRow.id))
        return [_defect(r) for r in rows]

    # --- counts for the test ---------------------------------------------------------------------

    async def window(self, key: GroupKey, since: datetime, until: datetime) -> list[DefectPoint]:
        """Counted defects of the group reported in ``(since, until]``."""
        rows = await self._s.execute(select(
            QualityDefectRow.conversation_id, QualityDefectRow.region, QualityDefectRow.reported_at,
            QualityDefectRow.symptom_text,
        ).where(
            QualityDefectRow.tenant_id == self.tenant, QualityDefectRow.sku == key.sku, QualityDefectRow.symptom == key.symptom,
            _batch_is(key.batch),
            QualityDefectRow.status.in_(_COUNTED), QualityDefectRow.reported_at > as_utc(since),
            QualityDefectRow.reported_at <= as_utc(until),
        ))
        return [DefectPoint(c, r, at, t) for c, r, at, t in rows]

    async def history_count(self, sku: str, symptom: str, since: datetime, until: datetime) -> int:
        """Counted defects of (sku, symptom), every batch, reported in ``(since, until]``."""
        n = await self._s.scalar(select(func.count()).select_from(QualityDefectRow).where(
            QualityDefectRow.tenant_id == self.tenant, QualityDefectRow.sku == sku, QualityDefectRow.symptom == symptom,
            QualityDefectRow.status.in_(_COUNTED), QualityDefectRow.reported_at > as_utc(since),
            QualityDefectRow.reported_at <= as_utc(until),
        ))
        return int(n or 0)

    async def first_reported_at(self) -> datetime | None:
        """When the store started recording defects (of any SKU): how much history it has."""
        return await self._s.scalar(select(func.min(QualityDefectRow.reported_at)).where(QualityDefectRow.tenant_id == self.tenant))

    async def window_counts(self, since: datetime, until: datetime) -> dict[GroupKey, int]:
        """Every group with counted defects reported in ``(since, until]``: its number of conversations."""
        rows = await self._s.execute(select(
            QualityDefectRow.sku, QualityDefectRow.batch, QualityDefectRow.symptom,
            func.count(func.distinct(QualityDefectRow.conversation_id)),
        ).where(
            QualityDefectRow.tenant_id == self.tenant, QualityDefectRow.sku.is_not(None), QualityDefectRow.status.in_(_COUNTED),
            QualityDefectRow.reported_at > as_utc(since), QualityDefectRow.reported_at <= as_utc(until),
        ).group_by(QualityDefectRow.sku, QualityDefectRow.batch, QualityDefectRow.symptom))
        return {GroupKey(s, b, sy): int(n) for s, b, sy, n in rows}

    # --- alerts ---------------------------------------------------------------------------------

    async def open_alert(self, key: GroupKey) -> QualityAlertRecord | None:
        row = await self._s.scalar(select(QualityAlertRow).where(QualityAlertRow.open_key == self._open_key(key)))
        return _alert(row) if row is not None else None

    async def alerts(self, *, status: str | None = "open", sku: str | None = None, batch: str | None = None,
                     limit: int = 100) -> list[QualityAlertRecord]:
        """Alerts, newest first; ``status`` None: open and closed."""
        q = select(QualityAlertRow).where(QualityAlertRow.tenant_id == self.tenant)
        if status is not None:
            q = q.where(QualityAlertRow.status == status)
        if sku is not None:
            q = q.where(QualityAlertRow.sku == sku)
        if batch is not None:
            q = q.where(QualityAlertRow.batch == batch)
        rows = await self._s.scalars(q.order_by(QualityAlertRow.opened_at.desc(), QualityAlertRow.id).limit(limit))
        return [_alert(r) for r in rows]

    async def open_groups(self) -> set[GroupKey]:
        rows = await self._s.execute(select(QualityAlertRow.sku, QualityAlertRow.batch, QualityAlertRow.symptom)
                                     .where(QualityAlertRow.tenant_id == self.tenant, QualityAlertRow.status == "open"))
        return {GroupKey(s, b, sy) for s, b, sy in rows}

    async def raise_alert(self, key: GroupKey, a: Assessment, *, now: datetime) -> QualityAlertRecord | None:
        """Open an alert for the group; None when one is open already (another writer won the race)."""
        now = as_utc(now)
        stmt = insert_ignoring_conflicts(self._s, QualityAlertRow, ["open_key"]).values(
            id=str(uuid.uuid4()), tenant_id=self.tenant, open_key=self._open_key(key), sku=key.sku, batch=key.batch, symptom=key.symptom,
            status="open", count=a.count, baseline=a.baseline, p_value=a.p_value, region=a.region,
            regions=a.regions, conversation_ids=list(a.conversation_ids), symptom_text=a.symptom_text,
            opened_at=now, updated_at=now, closed_at=None,
        ).returning(QualityAlertRow.id)
        new_id = await self._s.scalar(stmt)
        if new_id is None:
            return None
        row = await self._s.get(QualityAlertRow, new_id)
        assert row is not None
        return _alert(row)

    async def update_alert(self, alert_id: str, a: Assessment, *, now: datetime,
                           close: bool = False) -> QualityAlertRecord:
        """New figures for an open alert; ``close`` closes it (its group may open a new one later)."""
        values: dict[str, object] = dict(
            count=a.count, baseline=a.baseline, p_value=a.p_value, region=a.region, regions=a.regions,
            conversation_ids=list(a.conversation_ids), symptom_text=a.symptom_text or QualityAlertRow.symptom_text,
            updated_at=as_utc(now),
        )
        if close:
            values.update(status="closed", open_key=None, closed_at=as_utc(now))
        await self._s.execute(update(QualityAlertRow).where(QualityAlertRow.id == alert_id, QualityAlertRow.tenant_id == self.tenant).values(**values))
        row = await self._s.get(QualityAlertRow, alert_id, populate_existing=True)
        assert row is not None
        return _alert(row)

