"""Named FastAPI dependencies (``SettingsDep``, ``ConversationsDep`` ...) and the app's service container.

Routes declare what they need with these aliases, so signatures stay short and tests can
override one piece (``app.dependency_overrides[get_settings] = ...``). Everything that needs the
loaded models raises ``NotReadyError`` (503 ``service.not_ready``) until start-up has finished.
"""

from __future__ import annotations

import asyncio
import hmac
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from assist.errors import NotReadyError
from assist.service.admission import Admission
from assist.service.batcher import EmbedBatcher
from assist.service.conversations import ConversationService
from assist.service.errors import Unauthorized
from assist.service.kb import KbService
from assist.service.metrics import Metrics
from assist.service.quality import QualityMonitor
from assist.settings import Settings
from assist.store.db import Database


@dataclass
class AppServices:
    """Everything the routes use, built by the lifespan in ``app.py``; one per app instance.

    ``conversations``, ``kb``, ``pipeline`` and ``batcher`` stay ``None`` until the runtime
    (models + index) has loaded; ``ready`` turns true only after recovery of pending turns.
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
    quality: QualityMonitor | None = None
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


def require_token(request: Request, settings: SettingsDep) -> None:
    """Bearer-token check for REST routes; a no-op when ``ASSIST_API_TOKEN`` is empty (dev)."""
    expected = settings.api_token
    if not expected:
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("missing or wrong bearer token (Authorization: Bearer <ASSIST_API_TOKEN>)")


def _ready(services: AppServices) -> AppServices:
    if not services.ready:
        raise NotReadyError(f"service is not ready ({services.stage}); retry shortly")
    return services


def get_conversations(services: ServicesDep) -> ConversationService:
    svc = _ready(services).conversations
    assert svc is not None
    return svc


def get_kb(services: ServicesDep) -> KbService:
    svc = _ready(services).kb
    assert svc is not None
    return svc


def get_quality(services: ServicesDep) -> QualityMonitor:
    svc = _ready(services).quality
    assert svc is not None
    return svc


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
