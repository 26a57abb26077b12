"""Replay runs started with ``POST /v1/replay``: status, progress and the final report."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from assist.errors import ConflictError, ReplayNotFound
from assist.store._sql import as_utc, to_json, utcnow
from assist.store.models import ReplayRow
from assist.store.records import ReplayRecord, ReplayStatus

_FINISHED = {ReplayStatus.done.value, ReplayStatus.failed.value}


def _replay(row: ReplayRow) -> ReplayRecord:
    return ReplayRecord(
        id=row.id, tenant_id=row.tenant_id, status=ReplayStatus(row.status), total=row.total, done=row.done, errors=row.errors,
        params=row.params, report=row.report, error=row.error, created_at=row.created_at,
        updated_at=row.updated_at, finished_at=row.finished_at,
    )


class ReplayRepo:
    """Replay runs in the caller's session. Progress writes are cheap single-row updates, but
    callers should still throttle them (e.g. every N conversations or every second)."""

    def __init__(self, session: AsyncSession, tenant: str) -> None:
        self._s = session
        self.tenant = tenant

    async def create(
        self,
        *,
        replay_id: str | None = None,
        total: int = 0,
        params: Mapping[str, Any] | None = None,
        now: datetime | None = None,
    ) -> ReplayRecord:
        """Register a queued run (id: a fresh uuid hex unless given)."""
        now = as_utc(now) if now else utcnow()
        row = ReplayRow(
            id=replay_id or uuid.uuid4().hex, tenant_id=self.tenant, status=ReplayStatus.queued.value, total=total, done=0, errors=0,
            params=to_json(params), report=None, created_at=now, updated_at=now,
        )
        self._s.add(row)
        await self._s.flush()
        return _replay(row)

    async def get(self, replay_id: str) -> ReplayRecord:
        """The run; raises ``ReplayNotFound``."""
        return _replay(await self._row(replay_id))

    async def list_replays(self, *, limit: int = 50) -> list[ReplayRecord]:
        rows = await self._s.scalars(
            select(ReplayRow).where(ReplayRow.tenant_id == self.tenant)
            .order_by(ReplayRow.created_at.desc(), ReplayRow.id).limit(limit)
        )
        return [_replay(r) for r in rows]

    async def update_progress(
        self,
        replay_id: str,
        *,
        done: int,
        total: int | None = None,
        errors: int | None = None,
        now: datetime | None = None,
    ) -> ReplayRecord:
        """Record progress (absolute counts) and mark the run running; raises ``ConflictError`` once finished."""
        row = await self._row(replay_id, for_update=True)
        if row.status in _FINISHED:
            raise ConflictError(f"replay {replay_id!r} is already {row.status}")
        row.status = ReplayStatus.running.value
        row.done = done
        if total is not None:
            row.total = total
        if errors is not None:
            row.errors = errors
        row.updated_at = as_utc(now) if now else utcnow()
        await self._s.flush()
        return _replay(row)

    async def finish(
        self, replay_id: str, report: Mapping[str, Any] | BaseModel, *, now: datetime | None = None
    ) -> ReplayRecord:
        """Store the report and mark the run done."""
        return await self._end(replay_id, ReplayStatus.done, report=to_json(report), now=now)

    async def fail(self, replay_id: str, error: str, *, now: datetime | None = None) -> ReplayRecord:
        """Mark the run failed with a message for the user."""
        return await self._end(replay_id, ReplayStatus.failed, error=error[:4000], now=now)

    async def _end(
        self,
        replay_id: str,
        status: ReplayStatus,
        *,
        report: dict[str, Any] | None = None,
        error: str | None = None,
        now: datetime | None,
    ) -> ReplayRecord:
        row = await self._row(replay_id, for_update=True)
        if row.status in _FINISHED:
            raise ConflictError(f"replay {replay_id!r} is already {row.status}")
        now = as_utc(now) if now else utcnow()
        row.status = status.value
        row.report = report
        row.error = error
        row.updated_at = row.finished_at = now
        await self._s.flush()
        return _replay(row)

    async def _row(self, replay_id: str, *, for_update: bool = False) -> ReplayRow:
        row = await self._s.get(ReplayRow, replay_id, with_for_update=for_update, populate_existing=True)
        if row is None or row.tenant_id != self.tenant:  # another tenant's run does not exist here
            raise ReplayNotFound(f"replay {replay_id!r} not found")
        return row
