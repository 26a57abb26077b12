"""The durable outbox for webhooks to the CRM (DESIGN §4: nothing is lost if the CRM is down).

An event is written with ``enqueue`` in the same transaction as the change that caused it
(the escalation, the quality alert, the accepted suggestion), so either both commit or
neither does. ``assist.webhooks.OutboxWorker`` then delivers it: ``claim_due`` leases a
batch, delivery happens outside any transaction, and ``mark_delivered`` / ``mark_failed``
record the outcome. Delivery is at-least-once; every event carries a unique ``event_id``
the receiver can deduplicate on.

Life of an event::

    pending --2xx--> delivered
       |  \\--error, attempts < max--> pending (next_attempt_at = now + backoff)
       \\--error, attempts == max--> dead --requeue--> pending
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from assist.errors import NotFoundError
from assist.store._sql import as_utc, to_json, utcnow
from assist.store.models import OutboxRow
from assist.store.records import OutboxEvent, OutboxStatus, OutboxTopic


def _event(row: OutboxRow) -> OutboxEvent:
    return OutboxEvent(
        id=row.id, tenant_id=row.tenant_id, event_id=row.event_id, topic=row.topic, payload=row.payload, attempts=row.attempts,
        next_attempt_at=row.next_attempt_at, status=OutboxStatus(row.status), last_error=row.last_error,
        created_at=row.created_at, delivered_at=row.delivered_at,
    )


class OutboxRepo:
    """Outbox events in the caller's session.

    ``enqueue`` files the event under ``tenant``; the delivery side (``claim_due``, ``mark_*``)
    is the process-wide webhook worker's and spans every tenant (each event carries its own).
    """

    def __init__(self, session: AsyncSession, tenant: str) -> None:
        self._s = session
        self.tenant = tenant

    async def enqueue(
        self,
        topic: OutboxTopic | str,
        payload: Mapping[str, Any] | BaseModel,
        *,
        now: datetime | None = None,
    ) -> OutboxEvent:
        """Add an event, due immediately. Call inside the transaction that made the change."""
        now = as_utc(now) if now else utcnow()
        row = OutboxRow(
            tenant_id=self.tenant, event_id=str(uuid.uuid4()), topic=str(topic), payload=to_json(payload), attempts=0,
            next_attempt_at=now, status=OutboxStatus.pending.value, created_at=now,
        )
        self._s.add(row)
        await self._s.flush()
        return _event(row)

    async def claim_due(
        self, *, now: datetime | None = None, limit: int = 20, lease: timedelta = timedelta(seconds=60)
    ) -> list[OutboxEvent]:
        """Lease up to ``limit`` due pending events, counting this as an attempt; oldest first.

        The lease pushes ``next_attempt_at`` forward so no other worker (another replica, or
        this one on its next poll) takes an event while its delivery is in flight; if the
        worker dies mid-delivery the lease simply expires and the event is retried. Counting
        the attempt at claim time means an event that crashes its worker still reaches the
        dead-letter state instead of looping forever. ``SKIP LOCKED`` lets replicas claim
        disjoint batches on PostgreSQL; SQLite has a single writer and ignores it.
        """
        now = as_utc(now) if now else utcnow()
        ids = list(
            await self._s.scalars(
                select(OutboxRow.id)
                .where(OutboxRow.status == OutboxStatus.pending.value, OutboxRow.next_attempt_at <= now)
                .order_by(OutboxRow.next_attempt_at, OutboxRow.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if not ids:
            return []
        await self._s.execute(
            update(OutboxRow)
            .where(OutboxRow.id.in_(ids))
            .values(attempts=OutboxRow.attempts + 1, next_attempt_at=now + lease)
            .execution_options(synchronize_session=False)
        )
        rows = await self._s.scalars(
            select(OutboxRow).where(OutboxRow.id.in_(ids)).order_by(OutboxRow.id).execution_options(populate_existing=True)
        )
        by_id = {r.id: _event(r) for r in rows}
        return [by_id[i] for i in ids]

    async def mark_delivered(self, event_id: int, *, now: datetime | None = None) -> None:
        await self._set(event_id, status=OutboxStatus.delivered.value, delivered_at=as_utc(now) if now else utcnow(),
                        last_error=None)

    async def mark_failed(self, event_id: int, error: str, *, retry_at: datetime | None) -> None:
        """Record a failed attempt: retry at ``retry_at``, or dead-letter the event when it is None."""
        if retry_at is None:
            await self._set(event_id, status=OutboxStatus.dead.value, last_error=error[:4000])
        else:
            await self._set(event_id, next_attempt_at=as_utc(retry_at), last_error=error[:4000])

    async def requeue(self, event_id: int, *, now: datetime | None = None) -> None:
        """Give a dead event a fresh set of attempts (an operator's action after fixing the CRM)."""
        await self._set(event_id, status=OutboxStatus.pending.value, attempts=0,
                        next_attempt_at=as_utc(now) if now else utcnow())

    async def get(self, event_id: int) -> OutboxEvent:
        row = await self._s.get(OutboxRow, event_id, populate_existing=True)
        if row is None:
            raise NotFoundError(f"outbox event {event_id} not found")
        return _event(row)

    async def list_events(
        self, *, status: OutboxStatus | None = None, limit: int = 100
    ) -> list[OutboxEvent]:
        """Events oldest first, optionally of one status (dead letters for an operator)."""
        stmt = select(OutboxRow).order_by(OutboxRow.id).limit(limit).execution_options(populate_existing=True)
        if status is not None:
            stmt = stmt.where(OutboxRow.status == status.value)
        return [_event(r) for r in await self._s.scalars(stmt)]

    async def counts(self) -> dict[OutboxStatus, int]:
        """Events per status, every status present (for metrics and readiness)."""
        rows = await self._s.execute(select(OutboxRow.status, func.count()).group_by(OutboxRow.status))
        out = dict.fromkeys(OutboxStatus, 0)
        out.update({OutboxStatus(status): n for status, n in rows})
        return out

    async def _set(self, event_id: int, **values: Any) -> None:
        result = await self._s.execute(
            update(OutboxRow).where(OutboxRow.id == event_id).values(**values)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise NotFoundError(f"outbox event {event_id} not found")
