"""The tenant registry and API keys: rows that span tenants (``assist tenants`` / ``assist keys``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from assist.errors import ConflictError, NotFoundError
from assist.store._sql import as_utc, utcnow
from assist.store.models import ApiKeyRow, TenantRow
from assist.store.records import ApiKeyRecord, Scope, TenantRecord


def _key(row: ApiKeyRow) -> ApiKeyRecord:
    return ApiKeyRecord(id=row.id, tenant_id=row.tenant_id, scope=Scope(row.scope), label=row.label,
                        created_at=row.created_at, revoked_at=row.revoked_at)


class KeyRepo:
    """API keys; stores the SHA-256 of each secret, never the secret."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, key_id: str, *, tenant: str, scope: Scope, secret_sha256: str,
                  label: str | None = None, now: datetime | None = None) -> ApiKeyRecord:
        row = ApiKeyRow(id=key_id, tenant_id=tenant, scope=Scope(scope).value, secret_sha256=secret_sha256,
                        label=label, created_at=as_utc(now) if now else utcnow(), revoked_at=None)
        self._s.add(row)
        await self._s.flush()
        return _key(row)

    async def secret_hash(self, key_id: str) -> tuple[ApiKeyRecord, str] | None:
        """The active key ``key_id`` with its stored hash, for verification; None if unknown or revoked."""
        row = await self._s.get(ApiKeyRow, key_id, populate_existing=True)
        if row is None or row.revoked_at is not None:
            return None
        return _key(row), row.secret_sha256

    async def list_keys(self, *, tenant: str | None = None) -> list[ApiKeyRecord]:
        stmt = select(ApiKeyRow).order_by(ApiKeyRow.tenant_id, ApiKeyRow.created_at, ApiKeyRow.id)
        if tenant is not None:
            stmt = stmt.where(ApiKeyRow.tenant_id == tenant)
        return [_key(r) for r in await self._s.scalars(stmt)]

    async def revoke(self, key_id: str, *, now: datetime | None = None) -> ApiKeyRecord:
        """Revoke a key (revoking twice keeps the first time); raises ``NotFoundError``."""
        await self._s.execute(
            update(ApiKeyRow).where(ApiKeyRow.id == key_id, ApiKeyRow.revoked_at.is_(None))
            .values(revoked_at=as_utc(now) if now else utcnow())
        )
        row = await self._s.get(ApiKeyRow, key_id, populate_existing=True)
        if row is None:
            raise NotFoundError(f"no API key {key_id!r}")
        return _key(row)

    async def count_active(self) -> int:
        """Active keys in all tenants: none means the service runs open (loopback only)."""
        n = await self._s.scalar(select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None)))
        return int(n or 0)


class TenantRepo:
    """Tenants other than ``default`` (whose shop is ``ASSIST_SHOP_DIR``) and their shop directories."""

    def __init__(self, session: AsyncSession) -> None:
        self._s = session

    async def add(self, tenant: str, *, shop_dir: str, now: datetime | None = None) -> TenantRecord:
        if await self._s.get(TenantRow, tenant) is not None:
            raise ConflictError(f"tenant {tenant!r} already exists")
        row = TenantRow(id=tenant, shop_dir=shop_dir, created_at=as_utc(now) if now else utcnow())
        self._s.add(row)
        await self._s.flush()
        return TenantRecord(id=row.id, shop_dir=row.shop_dir, created_at=row.created_at)

    async def get(self, tenant: str) -> TenantRecord | None:
        row = await self._s.get(TenantRow, tenant, populate_existing=True)
        return TenantRecord(id=row.id, shop_dir=row.shop_dir, created_at=row.created_at) if row else None

    async def list_tenants(self) -> list[TenantRecord]:
        rows = await self._s.scalars(select(TenantRow).order_by(TenantRow.id))
        return [TenantRecord(id=r.id, shop_dir=r.shop_dir, created_at=r.created_at) for r in rows]
