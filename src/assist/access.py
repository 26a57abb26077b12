"""Tenants and API keys as the operator manages them (``assist tenants ...``, ``assist keys ...``).

A thin layer over the store's registry that adds what the store does not judge: tenant ids are
slugs, a tenant's shop directory must validate before it is registered, and a key is only minted
for a tenant that exists (``default`` always does: its shop is ``ASSIST_SHOP_DIR``).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from assist.apikeys import mint_key
from assist.errors import NotFoundError, ValidationError
from assist.store.db import Database
from assist.store.models import DEFAULT_TENANT
from assist.store.records import ApiKeyRecord, Scope, TenantRecord

_TENANT = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_tenant_id(tenant: str) -> str:
    if not _TENANT.fullmatch(tenant):
        raise ValidationError(f"tenant id {tenant!r}: use 1-64 of a-z 0-9 _ - (starting with a letter or digit)")
    return tenant


def _checked_shop(shop_dir: Path) -> str:
    from assist.errors import DataFileError
    from assist.shop import validate_shop

    if not shop_dir.is_dir():
        raise ValidationError(f"shop directory {shop_dir} does not exist")
    problems = validate_shop(shop_dir)
    if problems:
        raise DataFileError(problems)
    return str(shop_dir.resolve())


async def add_tenant(db: Database, tenant: str, shop_dir: Path) -> TenantRecord:
    """Register ``tenant`` with its shop; raises ``DataFileError`` for a shop with bad records."""
    check_tenant_id(tenant)
    if tenant == DEFAULT_TENANT:
        raise ValidationError("tenant 'default' is built in: its shop is ASSIST_SHOP_DIR")
    resolved = await asyncio.to_thread(_checked_shop, shop_dir)
    async with db.transaction() as uow:
        return await uow.tenants.add(tenant, shop_dir=resolved)


async def create_key(db: Database, tenant: str, scope: Scope, *, label: str | None = None
                     ) -> tuple[ApiKeyRecord, str]:
    """Mint a key; returns its record and the token, which is shown once and stored only hashed."""
    check_tenant_id(tenant)
    minted = mint_key()
    async with db.transaction() as uow:
        if tenant != DEFAULT_TENANT and await uow.tenants.get(tenant) is None:
            raise NotFoundError(f"no tenant {tenant!r}: register it first with `assist tenants add {tenant} "
                                "--shop DIR`")
        record = await uow.keys.add(minted.id, tenant=tenant, scope=scope, secret_sha256=minted.secret_sha256,
                                    label=label)
    return record, minted.token


async def list_keys(db: Database, tenant: str | None = None) -> list[ApiKeyRecord]:
    async with db.transaction() as uow:
        return await uow.keys.list_keys(tenant=tenant)


async def revoke_key(db: Database, key_id: str) -> ApiKeyRecord:
    async with db.transaction() as uow:
        return await uow.keys.revoke(key_id)


async def list_tenants(db: Database) -> list[TenantRecord]:
    async with db.transaction() as uow:
        return await uow.tenants.list_tenants()
