"""Customer profiles pushed by the CRM (``PUT /v1/customers/{id}``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from assist.store._sql import as_utc, insert_ignoring_conflicts, to_json, utcnow
from assist.store.models import CustomerRow
from assist.store.records import CustomerRecord


def _customer(row: CustomerRow) -> CustomerRecord:
    return CustomerRecord(id=row.id, profile=row.profile, created_at=row.created_at, updated_at=row.updated_at)


class CustomerRepo:
    """One tenant's profiles as JSON (``CustomerProfile.model_dump(mode="json")``), in the caller's session."""

    def __init__(self, session: AsyncSession, tenant: str) -> None:
        self._s = session
        self.tenant = tenant

    async def upsert(
        self, customer_id: str, profile: Mapping[str, Any] | BaseModel, *, now: datetime | None = None
    ) -> CustomerRecord:
        """Create or replace the profile (the CRM sends whole profiles, so no merging)."""
        now = as_utc(now) if now else utcnow()
        doc = to_json(profile)
        # Insert-or-nothing, then update: portable across both dialects and race-free, where
        # a select-then-insert would fail when two CRM pushes for a new customer cross.
        await self._s.execute(
            insert_ignoring_conflicts(self._s, CustomerRow, ["tenant_id", "id"]).values(
                tenant_id=self.tenant, id=customer_id, profile=doc, created_at=now, updated_at=now
            )
        )
        row = await self._s.get(CustomerRow, (self.tenant, customer_id), populate_existing=True,
                                with_for_update=True)
        assert row is not None
        row.profile = doc
        row.updated_at = now
        await self._s.flush()
        return _customer(row)

    async def get(self, customer_id: str) -> CustomerRecord | None:
        """The stored profile, or None: an unknown customer is normal (no CRM push yet)."""
        row = await self._s.get(CustomerRow, (self.tenant, customer_id), populate_existing=True)
        return _customer(row) if row else None

    async def list_customers(self, *, limit: int = 100, offset: int = 0) -> list[CustomerRecord]:
        rows = await self._s.scalars(select(CustomerRow).where(CustomerRow.tenant_id == self.tenant)
                                     .order_by(CustomerRow.id).limit(limit).offset(offset))
        return [_customer(r) for r in rows]
