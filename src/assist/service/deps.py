"""Named FastAPI dependencies (``SettingsDep``, ``ConversationsDep`` ...) and the app's service container.

Routes declare what they need with these aliases, so signatures stay short and tests can
override one piece (``app.dependency_overrides[get_settings] = ...``). Everything that needs the
loaded models raises ``NotReadyError`` (503 ``service.not_ready``) until start-up has finished.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from assist.errors import NotReadyError
from assist.service.admission import Admission
from assist.service.auth import Authenticator, PrincipalDep
from assist.service.batcher import EmbedBatcher
from assist.service.conversations import ConversationService
from assist.service.kb import KbService
from assist.service.metrics import Metrics
from assist.service.quality import QualityMonitor
from assist.service.tenants import Tenants, TenantServices
from assist.settings import Settings
from assist.store.db import Database


@dataclass
class AppServices:
    """Everything the routes use, built by the lifespan in ``app.py``; one per app instance.

    ``conversations``, ``kb``, ``pipeline`` and ``batcher`` stay ``None`` until the runtime
    (models + index) has loaded; ``ready`` turns true only after recovery of pending turns.
    ``conversations`` and ``kb`` are tenant ``default``'s; requests reach their own tenant's
    through ``tenants`` (:data:`TenantDep`). ``auth`` is set once the store is open.
    """

    settings: Settings
    metrics: Metrics = field(default_factory=Metrics)
    db: Database | None = None
    runtime: Any = None
    pipeline: Any = None
    batcher: EmbedBatcher | None = None
    admission: Admission | None = None  # prices and admits turns (with ``conversations``)
    conversations: ConversationService | None = None
    kb: KbService | None = None
    tenants: Tenants | None = None
    auth: Authenticator | None = None
    cpu: Executor | None = None
    http: Any = None  # httpx.AsyncClient of the webhook worker
    outbox: Any = None  # assist.webhooks.OutboxWorker, when webhooks are configured
    startup: asyncio.Task[None] | None = None
    sweeper: asyncio.Task[None] | None = None
    cpu_sampler: asyncio.Task[None] | None = None  # measures CPU per turn for the cost model
    quality_sweeper: asyncio.Task[None] | None = None
    ready: bool = False
    stage: str = "starting"  # what start-up is doing, for /readyz
    error: str | None = None  # why start-up failed, if it did


def get_services(request: Request) -> AppServices:
    services: AppServices = request.app.state.services
    return services


ServicesDep = Annotated[AppServices, Depends(get_services)]


def get_settings(services: ServicesDep) -> Settings:
    return services.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def _ready(services: AppServices) -> AppServices:
    if not services.ready:
        raise NotReadyError(f"service is not ready ({services.stage}); retry shortly")
    return services


async def get_tenant(services: ServicesDep, principal: PrincipalDep) -> TenantServices:
    """The caller's tenant's services (built on its first request)."""
    tenants = _ready(services).tenants
    assert tenants is not None
    return await tenants.get(principal.tenant)


TenantDep = Annotated[TenantServices, Depends(get_tenant)]


def get_conversations(tenant: TenantDep) -> ConversationService:
    return tenant.conversations


def get_kb(tenant: TenantDep) -> KbService:
    return tenant.kb


def get_quality(tenant: TenantDep) -> QualityMonitor:
    return tenant.quality


def get_db(services: ServicesDep) -> Database:
    if services.db is None:
        raise NotReadyError("database is not open yet")
    return services.db


def get_metrics(services: ServicesDep) -> Metrics:
    return services.metrics


def get_ready(services: ServicesDep) -> AppServices:
    return _ready(services)


ConversationsDep = Annotated[ConversationService, Depends(get_conversations)]
KbDep = Annotated[KbService, Depends(get_kb)]
QualityDep = Annotated[QualityMonitor, Depends(get_quality)]
DbDep = Annotated[Database, Depends(get_db)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
ReadyDep = Annotated[AppServices, Depends(get_ready)]
