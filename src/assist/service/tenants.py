"""Per-tenant services: each tenant's conversations and KB run on its own shop, in its own rows.

Tenant ``default`` is built at start-up from the loaded runtime (``ASSIST_SHOP_DIR``). Any other
tenant is registered in the store (``assist tenants add T --shop DIR``) and built on first use:
its shop is loaded and its KB index loaded or built in a worker thread, sharing the process's
encoders and classifiers (:func:`assist.runtime.load_tenant_runtime`), so memory grows by one
shop's index and word list per tenant, never by a model. Concurrent first requests for one
tenant wait for the same build.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assist.service.conversations import ConversationService
from assist.service.errors import UnknownTenant
from assist.service.kb import KbService
from assist.service.quality import QualityMonitor
from assist.store.db import Database


@dataclass
class TenantServices:
    """One tenant's live units: its runtime (shop, pipeline with its retriever), engine and services."""

    tenant: str
    runtime: Any
    engine: Any
    conversations: ConversationService
    kb: KbService
    quality: QualityMonitor


TenantBuilder = Callable[[str, Path], Awaitable[TenantServices]]


class Tenants:
    """The tenants an app has built, and the on-demand build of the others."""

    def __init__(self, db: Database, build: TenantBuilder) -> None:
        self.db = db
        self._build_services = build
        self._live: dict[str, TenantServices] = {}
        self._building: dict[str, asyncio.Task[TenantServices]] = {}

    def add(self, services: TenantServices) -> None:
        self._live[services.tenant] = services

    def live(self) -> list[TenantServices]:
        return list(self._live.values())

    async def get(self, tenant: str) -> TenantServices:
        """The tenant's services, building them on first use; raises ``UnknownTenant`` (403)."""
        found = self._live.get(tenant)
        if found is not None:
            return found
        task = self._building.get(tenant)
        if task is None:
            task = self._building[tenant] = asyncio.create_task(self._build(tenant), name=f"tenant-{tenant}")
            task.add_done_callback(lambda _t: self._building.pop(tenant, None))
        # shield: one caller giving up (a client disconnecting) must not cancel everyone's build.
        return await asyncio.shield(task)

    async def _build(self, tenant: str) -> TenantServices:
        async with self.db.transaction() as uow:
            record = await uow.tenants.get(tenant)
        if record is None:
            raise UnknownTenant(f"tenant {tenant!r} is not registered (assist tenants add {tenant} --shop DIR)")
        services = await self._build_services(tenant, Path(record.shop_dir))
        self._live[tenant] = services
        return services
